// taskhubctl: the command-line client. Talks to taskhubd over its Unix socket (JSON lines, see
// docs/control-protocol.md), except `validate`, `next --cron` and `plugin check`, which work
// offline. Prints tables by default and the response data as JSON with --json. Exit status:
// 0 success, 1 the command failed (or a waited-for or watched run did not succeed), 2 usage
// error, 3 the daemon could not be reached.
//
// The commands are one table (cli.h), filled by daemon_commands.cc, run_commands.cc and
// offline_commands.cc; client.h talks to the daemon, render.h prints its answers.
#include <cstdio>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"

int main(int argc, char** argv) {
    using namespace taskhub::ctl;
    std::string err;
    auto line = parseCommandLine(std::vector<std::string>(argv + 1, argv + argc), &err);
    if (!line) return usageError(err);
    if (line->help_text) {
        std::fputs(line->help_text->c_str(), stdout);
        return 0;
    }
    const Invocation& in = line->inv;
    const Context ctx{in.globals, Client(in.globals)};
    return in.command->handler(ctx, in);
}

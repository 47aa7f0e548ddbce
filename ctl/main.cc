// taskhubctl: the command-line client. Talks to taskhubd over its Unix socket (JSON lines, see
// docs/control-protocol.md), except `validate`, `next --cron`, `plugin check` and `help`, which
// work offline. Prints tables by default and the response data as JSON with --json. Exit status:
// 0 success, 1 the command failed (or a waited-for or watched run did not succeed), 2 usage
// error, 3 the daemon could not be reached.
//
// The commands are one table (cli.h), filled by daemon_commands.cc, run_commands.cc and
// offline_commands.cc; client.h talks to the daemon, render.h prints its answers, term.h holds
// the manners (colour, time zone, pager) that main() decides here once.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli.h"
#include "commands.h"
#include "term.h"
#include "daemon_info.h"

int main(int argc, char** argv) {
    using namespace taskhub::ctl;
    const std::vector<std::string> args(argv + 1, argv + argc);
    // Before the line is parsed: a usage error of a line asking for --json is JSON too.
    setJsonErrors(std::find(args.begin(), args.end(), "--json") != args.end());
    std::string err, command;
    auto line = parseCommandLine(args, &err, &command);
    if (!line) return usageError(err, command);
    const Globals& g = line->inv.globals;
    setJsonErrors(g.json);
    const bool tty = ::isatty(STDOUT_FILENO) == 1;
    Manners manners;
    manners.colour = colourWanted(tty, g.json, g.no_color, std::getenv("NO_COLOR"), std::getenv("TERM"));
    manners.pager = tty && !g.json && !g.no_pager;
    const Client client(g);
    manners.zone = [&client, utc = g.utc] { return utc ? utcZone() : daemonZone(client); };
    setManners(std::move(manners));
    if (g.version) return printVersions(client, g.json);
    if (line->help_text) {
        showText(*line->help_text, true);
        return 0;
    }
    const Invocation& in = line->inv;
    const Context ctx{g, client};
    return in.command->handler(ctx, in);
}

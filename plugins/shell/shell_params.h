// Settings and task parameters of the shell executor, parsed from the JSON the host hands over.
//
// Pure functions with no I/O, shared by validate() and execute() so that a task accepted when
// its workflow file is loaded means the same thing when it runs. Boost.JSON stays in the .cc.
#ifndef TASKHUB_PLUGINS_SHELL_SHELL_PARAMS_H
#define TASKHUB_PLUGINS_SHELL_SHELL_PARAMS_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::plugins::shell {

// The [plugins.shell] table of taskhub.toml, engine-owned keys already removed.
struct Config {
    // How long a cancelled task's process group gets between SIGTERM and SIGKILL.
    uint64_t kill_grace_ms = 5000;
    // The same duration as the operator wrote it, for messages ("cancelled (SIGKILL after 5s
    // grace)").
    std::string kill_grace = "5s";
};

// Parses the plugin settings. Throws std::invalid_argument naming the setting, what is wrong and
// what is accepted, e.g. "unknown setting 'kill_grase' in [plugins.shell] (accepted:
// kill_grace); did you mean 'kill_grace'?".
Config parseConfig(std::string_view config_json);

// One task's parameters: every key of its [[task]] table the engine does not own. Exactly one
// of command and argv is set.
struct Params {
    // The command line handed to /bin/sh -c. Shell text: the host escapes the values of its
    // templates for the shell (kShellParams in shell_plugin.h).
    std::string command;
    // The program and its arguments, exec'd without a shell: each element is one argument,
    // whatever a template put into it. The program is looked up in PATH when it has no '/'.
    std::vector<std::string> argv;
    std::string cwd; // absolute working directory; empty keeps the daemon's
};

// Parses and checks one task's parameters. Throws sdk::InvalidParam with the offending key
// (empty when the problem is the whole object) and a message that says what would be right.
Params parseParams(std::string_view params_json);

// Parses a duration of the form <digits><unit> with unit ms, s, m, h or d ("500ms", "5s",
// "2m") into milliseconds. nullopt when the text has another form or overflows.
std::optional<uint64_t> parseDuration(std::string_view text);

} // namespace taskhub::plugins::shell

#endif // TASKHUB_PLUGINS_SHELL_SHELL_PARAMS_H

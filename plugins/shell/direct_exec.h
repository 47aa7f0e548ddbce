// When the shell executor may skip /bin/sh.
//
// A command line that is one simple command with no shell syntax at all (no quoting, expansion,
// redirection, globbing, operators or assignments) means the same to every POSIX shell: split at
// blanks, look the first word up in PATH, exec it. For such a command the plugin execs the
// program itself, the way GNU make runs recipe lines, and saves starting a shell (about a
// millisecond of CPU per task on a small VM). dash's `sh -c` ends the same way, by exec'ing the
// program in its own process, so the process the task's signals and cancel reach is the same.
//
// Pure functions, no I/O; the plugin falls back to /bin/sh -c whenever one of these says no, and
// also when the program cannot be exec'd (not found, not executable, no #! line), so that the
// shell reports such errors in its own words and with its exit codes (127, 126).
#ifndef TASKHUB_PLUGINS_SHELL_DIRECT_EXEC_H
#define TASKHUB_PLUGINS_SHELL_DIRECT_EXEC_H

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::plugins::shell {

// The words of `command` when it can run without a shell, else nullopt. Accepted: words made of
// ASCII letters, digits and - _ . / , : + @ % =, separated by spaces or tabs; the first word has
// no '=' (that would be an assignment) and is neither a shell keyword nor a shell built-in
// (those behave differently or change shell state), except `true` and `false` alone, whose
// standalone programs behave exactly like the built-ins when given no arguments.
std::optional<std::vector<std::string>> simpleCommandWords(std::string_view command);

// The paths to try, in order, for the program `word` with the search path `path` (the value of
// PATH): `word` itself when it contains a '/', else one entry per PATH element (an empty
// element means the working directory, as in POSIX).
std::vector<std::string> programCandidates(std::string_view word, std::string_view path);

} // namespace taskhub::plugins::shell

#endif // TASKHUB_PLUGINS_SHELL_DIRECT_EXEC_H

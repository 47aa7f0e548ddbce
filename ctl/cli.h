// taskhubctl's command line: one table of commands (name, arguments, options with their value
// hints and help, handler), from which the usage text, the parsing and each command's --help
// are generated, as taskhubd's control channel has one table of control commands. The table is
// assembled from the command files (daemon_commands.cc, run_commands.cc, offline_commands.cc);
// this file knows no command by name.
#ifndef TASKHUB_CTL_CLI_H
#define TASKHUB_CTL_CLI_H

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client.h"

namespace taskhub::ctl {

struct Command;

// A parsed command line: the global options, the command, its arguments and its options.
struct Invocation {
    Globals globals;
    const Command* command = nullptr;
    // The arguments after the command's words ("plugin show NAME": {NAME}).
    std::vector<std::string> args;
    // The command's options as given, in order, each by its name (an alias is replaced by the
    // name); a flag's value is empty.
    std::vector<std::pair<std::string, std::string>> options;

    bool has(std::string_view name) const;
    // The (first) value given for name.
    std::optional<std::string> value(std::string_view name) const;
};

// What a command runs with: the global options and a client for the daemon.
struct Context {
    Globals globals;
    Client client;
};

// Runs a command; returns taskhubctl's exit status.
using Handler = int (*)(const Context& ctx, const Invocation& in);

// What a value completes to in the shell (`taskhubctl completion`): an option's value or a
// command's argument. Every option that takes a value says which (a unit test checks), so that
// the completion scripts, generated from this table, cannot forget one.
enum class Values : unsigned char {
    None,          // a flag (no value), or a command without arguments
    Text,          // nothing to offer: a number, a time, JSON, NAME=VALUE, a task id
    Workflow,      // a loaded workflow's name (asked of the daemon)
    Run,           // a run id (asked of the daemon)
    WorkflowOrRun, // either
    Plugin,        // a loaded plugin's name (asked of the daemon)
    Zone,          // an IANA time zone (the system's tzdata)
    File,          // a path
    Command,       // a command's name, one or two words (help COMMAND)
    RunState,      // a run state or "lost" (runs --state)
    DstGap,        // run_after, skip
    DstFold,       // first, second, both
    Shell,         // bash, zsh, fish (completion SHELL)
    CandidateKind, // workflows, runs, plugins, zones (completion --candidates)
};

// One option. An option name used by several commands means the same everywhere (alias and
// value), which the unit tests check; its help may differ.
struct Option {
    std::string_view name;       // "--task", "-n"
    std::string_view alias = {}; // another spelling ("-f" for --follow); empty: none
    std::string_view value = {}; // the value's placeholder ("ID"); empty: a flag
    std::string_view needs = {}; // what "--task needs a value: ..." says ("a task id")
    bool repeatable = false;     // may be given more than once (--param)
    std::string_view help = {};
    Values values = Values::None; // what completes the value
};

// Where the usage text lists a command.
enum class Section { Daemon, Offline, Either };

struct Command {
    std::string_view name;     // "status", "plugin show"
    std::string_view synopsis; // its arguments: "RUN TASK", "[WORKFLOW]", "FILE..."
    size_t min_args = 0;
    size_t max_args = 0;
    std::string_view takes; // "<name> takes ..." when the number of arguments is wrong
    Section section = Section::Daemon;
    std::string_view help;
    std::vector<Option> options;
    Handler handler = nullptr;
    // What completes each argument of the synopsis, in order; the last one also completes the
    // further arguments of a command that takes more ("FILE...").
    std::vector<Values> args = {};
};

// Every command, in the order the usage text lists them within a section.
const std::vector<Command>& commands();
// The options every command takes (--socket, --config, --json, --no-color, --utc, --no-pager,
// --version).
const std::vector<Option>& globalOptions();
// -h, --help: taken everywhere, handled by parseCommandLine().
const Option& helpOption();

// What a command line asks for: run inv.command, or print help_text (-h, --help) and exit 0, or
// (inv.globals.version, inv.command may be null) print the versions and exit 0.
struct ParsedLine {
    Invocation inv;
    std::optional<std::string> help_text;
};

// Parses argv[1..] against the table. nullopt: *err is the usage error ("unknown option '-x'"),
// which taskhubctl prints in one line with a hint, exiting 2; *command (when given) is the name of
// the command the line named before the error, "" when none.
std::optional<ParsedLine> parseCommandLine(const std::vector<std::string>& argv, std::string* err,
                                           std::string* command = nullptr);

// `taskhubctl help WORDS...`: no words, the usage text; a command's name ("plugin show"), its
// help; a group's first word ("plugin"), the help of each of its commands; nullopt otherwise.
std::optional<std::string> helpText(const std::vector<std::string>& words);

// The usage text: every command of the table with its arguments and help, then the global
// options.
std::string usageText();
// `taskhubctl COMMAND --help`: the command's synopsis, help and options.
std::string commandHelp(const Command& cmd);

// Lines of text wrapped at width, the first starting with first, the others with indent.
std::string wrapText(std::string_view text, const std::string& first, const std::string& indent,
                     size_t width);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_CLI_H

// The command files' side of the table: each file (daemon_commands.cc, run_commands.cc,
// offline_commands.cc) returns its commands, and shares these helpers for what every handler
// does on failure.
#ifndef TASKHUB_CTL_COMMANDS_H
#define TASKHUB_CTL_COMMANDS_H

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "client.h"

namespace taskhub::ctl {

// status, metrics, list, show, reload, plugins, plugin show: reading the daemon.
std::vector<Command> daemonCommands();
// run, watch, runs, pause, resume, cancel, retry, logs, wait: runs and their controls.
std::vector<Command> runCommands();
// validate, next, plugin check: offline (next WORKFLOW asks the daemon).
std::vector<Command> offlineCommands();
// backfill: make up for a workflow's time firings in a past range (backfill_command.cc).
std::vector<Command> backfillCommands();
// completion: the shell completion scripts and their candidates (completion_command.cc).
std::vector<Command> completionCommands();

// How failures are printed: "taskhubctl: <why>" on stderr, or, with --json, one object on stdout:
// {"error": {"code": CODE, "message": WHY}} (usage errors add "hint"), CODE the protocol's error
// code or taskhubctl's own (Failure::code; "usage", "unreachable", "bad_response", "failed").
// main() sets it once the command line is read.
void setJsonErrors(bool on);

// Prints the failure; returns code (the exit status). Its error code follows from the exit
// status: 2 "usage", 3 "unreachable", else "failed".
int failed(const std::string& why, int code = 1);
int failed(const Failure& f);
// A usage error: "taskhubctl: <command>: <why>" (the command's name is not repeated when why
// starts with it) and the hint "see 'taskhubctl <command> --help'" ("see 'taskhubctl --help'"
// when no command is known), on stderr; with --json the object above. Returns 2.
int usageError(const std::string& why, std::string_view command = {});

// The value of a numeric option, from 1 to max; def when it is not given. nullopt: *err is the
// usage error.
std::optional<int> countOption(const Invocation& in, std::string_view name, int def, long max, std::string* err);

// Sends one request and stores the response's data in *out. false: the failure is printed on
// stderr and *exit_code is taskhubctl's exit status.
bool request(const Context& ctx, std::string_view cmd, boost::json::object args, boost::json::value* out,
             int* exit_code);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_COMMANDS_H

// `taskhubctl plugin check PATH.so`: the pre-install harness for plugin authors. Offline (no
// daemon): loads one plugin with plugin_host::PluginHost as taskhubd does, on an event loop of its
// own and a worker pool for blocking plugins, and runs it once through every step —
// negotiation, create(), validate(params), one execute() writing to a temporary log file, and a
// health check — then reports what each step did.
//
// A refused plugin's reason is taskhubd's, verbatim (PLUGIN_REFUSED in its log); run as root, the
// check applies taskhubd's root-ownership rule to the file. An attempt that has not completed
// within the timeout is cancelled, and given another timeout to complete.
//
// The plugin runs in this process, as in taskhubd with isolation = "in_process": a crash ends the
// process. While the check runs, a handler for SIGSEGV, SIGBUS, SIGABRT, SIGFPE and SIGILL first
// says on stderr which step crashed, then the signal takes its default course.
//
// Threading: runPluginCheck() runs the event loop on the calling thread; the plugin's blocking
// calls run on the pool. When the plugin leaves an attempt running even after cancel() and a
// second timeout, its instance cannot safely be destroyed: PluginCheckReport::abandoned is set,
// the host is left alive, and the caller must end the process with _exit() after printing (a
// plugin call may still be running on another thread).
#ifndef TASKHUB_CTL_PLUGIN_CHECK_H
#define TASKHUB_CTL_PLUGIN_CHECK_H

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/fwd.hpp>

namespace taskhub::ctl {

struct PluginCheckOptions {
    std::filesystem::path file;
    std::string params_json = "{}";  // the task parameters given to validate() and execute()
    std::string config_json = "{}";  // the plugin's [plugins.NAME] settings, given to create()
    std::chrono::milliseconds timeout{10'000}; // for execute(); again for it to end once cancelled
};

// Reads the command line of `plugin check`: --params and --config-json must be JSON objects,
// --timeout a duration ("500ms", "10s") of at least 1ms. Returns false with *err set (a usage
// error) otherwise.
bool parsePluginCheckOptions(const std::string& file, const std::optional<std::string>& params,
                             const std::optional<std::string>& config_json,
                             const std::optional<std::string>& timeout, PluginCheckOptions* out,
                             std::string* err);

// What the plugin's table declares; filled in as far as the table could be read.
struct PluginTableInfo {
    uint32_t magic = 0;
    int abi_major = 0;
    int abi_minor = 0;
    uint32_t struct_size = 0;
    uint32_t min_host_minor = 0;
    bool negotiated = false; // the fields below are valid only when the table passed negotiation
    std::string name;
    std::string version;
    std::string description;
    uint64_t capabilities = 0;
    bool thread_safe = false;
};

struct CheckStep {
    enum class Status { Passed, Failed, Skipped };
    std::string name; // negotiation | create | validate | execute | health
    Status status = Status::Skipped;
    std::string detail; // one line: why it failed or was skipped, or what it answered
};

// The one execute() attempt.
struct ExecuteResult {
    std::string outcome; // succeeded | failed | cancelled | "" when it never completed
    std::optional<int> exit_code;
    std::string message;
    std::vector<std::pair<std::string, std::string>> outputs;
    std::vector<std::pair<std::string, std::string>> json_outputs; // name -> compact JSON text
    std::string log; // what the plugin wrote to its log fd
    bool timed_out = false; // cancelled by the check after the timeout
    int64_t duration_ms = 0;
};

struct PluginCheckReport {
    std::string file;
    std::optional<PluginTableInfo> table; // none when the library or its entry could not be used
    std::vector<CheckStep> steps;         // in order; every step is listed
    std::optional<ExecuteResult> execute;
    std::vector<std::string> daemon_log; // what taskhubd would have logged meanwhile ("LEVEL text")
    bool abandoned = false; // the attempt was still running at the end

    bool passed() const; // every step passed
};

// Runs the check. Never throws for anything the plugin does.
PluginCheckReport runPluginCheck(const PluginCheckOptions& options);

// The report as text (`taskhubctl plugin check`) and as JSON (with --json).
std::string formatPluginCheck(const PluginCheckReport& report);
boost::json::object pluginCheckJson(const PluginCheckReport& report);

// Capability flags by name ("cancel", "health_check", ...); unknown bits as hex.

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_PLUGIN_CHECK_H

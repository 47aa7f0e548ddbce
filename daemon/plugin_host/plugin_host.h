// Loading executor plugins through the C ABI (plugin_api/), negotiating versions, and calling
// them on the right thread. The engine sees Plugin::start/cancel/suspend/resume and a completion
// callback; it never touches the ABI.
//
// Threading: everything here runs on the event-loop thread except calls that the plugin declared
// blocking (made on the worker pool) and the plugin's own completion calls, which may come from
// any thread and are handed to the event loop. Done callbacks always run on the event loop and
// never inside Plugin::start().
//
// Lifetime: a loaded library is never unloaded while the daemon runs; instances are destroyed,
// then libraries closed, when the PluginHost is destroyed. Except a plugin with a thread still
// inside its code (a blocking execute() that has not returned, e.g. after its attempt was
// cancelled or timed out): it is never destroyed nor unloaded; the PluginHost's destruction logs
// PLUGIN_THREAD_HELD for each such thread, lets the worker pool detach it instead of joining it,
// and keeps the plugin until the process exits, which must then end without running static
// destructors under that thread (threadsLeftInPlugins()).
#ifndef TASKHUB_PLUGIN_HOST_PLUGIN_HOST_H
#define TASKHUB_PLUGIN_HOST_PLUGIN_HOST_H

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cgroup/resources.h"
#include "common/identity.h"
#include "config/daemon_config.h"
#include "config/workflow.h"
#include "model/name_values.h"

struct th_plugin_api;

namespace boost::asio {
class io_context;
}
namespace taskhub::pool {
class WorkerPool;
}
namespace taskhub::cgroup {
class Manager;
}

namespace taskhub::plugin_host {

using config::Isolation;

struct PluginInfo {
    std::string name;
    std::string version;
    std::string description;
    std::filesystem::path file;
    int abi_major = 0;
    int abi_minor = 0;
    uint64_t capabilities = 0;
    bool blocking = false;    // execute() blocks: called on the worker pool
    bool thread_safe = false; // TH_THREADS_SAFE
    Isolation isolation = Isolation::InProcess;
    // ABI 1.3 th_plugin_api.shell_params: the parameters whose string value is POSIX shell text,
    // whose templates are escaped for the shell (expr/shell_context.h). Empty for older tables.
    std::vector<std::string> shell_params;
};

// Loads `file` and negotiates its table as PluginHost::loadFile() does, without creating an
// instance (for `taskhub-runner --describe`). Returns the refusal reason in loadFile()'s words,
// or std::nullopt with *info filled in.
std::optional<std::string> describeFile(const std::filesystem::path& file, PluginInfo* info);

// Whether `path` may be (or hold) a plugin, or false with *why saying why not: the trust rule of
// common/trust.h (a directory, directory = true, or a single-link regular file, owned by root or
// the daemon's user, that neither group nor others may write, and so is every directory above its
// real location; cron's rule for crontabs: whoever can write it runs code as the daemon).
bool ownershipTrusted(const std::filesystem::path& path, bool directory, std::string* why);

// The names of TH_CAP_* bits ("cancel", "health_check", "blocking_execute", "suspend", "no_log",
// "run_as", "cgroup", "durable_start", "adopt", "hold"), unknown bits as one hex number.
std::vector<std::string> capabilityNames(uint64_t capabilities);
// An attempt's external handle (th_host_api.report_handle, ABI 1.6): 1 to kMaxHandle bytes of
// text without control characters. False with *why saying what is wrong.
constexpr size_t kMaxHandle = 256;
bool validHandle(const char* handle, std::string* why);

// Checks a plugin's table against this host's ABI version: magic, major, the host minor the plugin
// requires, that the table covers every 1.0 field, the name and the required functions.
// Returns why the plugin is refused, or std::nullopt when it is accepted.
std::optional<std::string> negotiate(const th_plugin_api* api);

// The process that runs an attempt, as its plugin reported it (th_host_api.report_process):
// pid, process group (0: none of its own) and start time in clock ticks after boot (0 when the
// process was already gone when it was reported).
struct ProcessIdentity {
    int64_t pid = 0;
    int64_t pgid = 0;
    int64_t start_ticks = 0;
};

struct AttemptSpec {
    std::string workflow;
    std::string run_id;
    std::string task_id;
    uint32_t attempt = 1;
    std::string params_json = "{}";
    std::vector<std::string> env; // "NAME=value"
    int log_fd = -1;              // owned by the caller; kept open until done runs
    uint64_t timeout_ms = 0;
    // The task's run_as account, resolved when the attempt starts; unset: taskhubd's own user.
    // Handed to the plugin as th_task.run_as (only plugins with TH_CAP_RUN_AS get tasks with it).
    std::optional<Identity> run_as;
    // Called on the event loop when the plugin reports the attempt's process, before `done`;
    // may be empty.
    std::function<void(const ProcessIdentity&)> on_process;
    // Called on the event loop when the plugin reports the attempt's external handle
    // (th_host_api.report_handle, ABI 1.6), before `done`; may be empty.
    std::function<void(const std::string&)> on_handle;
    // Containment (cgroup/cgroup.h): the attempt's limits (refused at load time when the
    // machine cannot apply them) and what happens to processes left after its main process
    // exited. Used only when the daemon runs with cgroups and the plugin declares TH_CAP_CGROUP.
    cgroup::Limits limits;
    cgroup::Leftovers leftovers = cgroup::Leftovers::Kill;
    // Set by the engine for an attempt started before its start was committed: the host's
    // containment hands it the removal of the attempt's (empty) cgroup, to be run once the start
    // is on disk, so that a crash before then still finds the attempt by its cgroup. Empty: the
    // cgroup is removed as soon as the attempt has ended.
    std::function<void(std::function<void()>)> after_start_durable;
    // Set by the host's containment (never by the engine): the attempt's cgroup as a directory
    // descriptor (th_task.cgroup_fd) and as a path from the cgroup2 mount (for a runner, which
    // opens it itself). -1 / empty: the attempt has no cgroup.
    int cgroup_fd = -1;
    std::string cgroup_path;
};

struct AttemptResult {
    enum class Outcome { Succeeded, Failed, Cancelled };
    AttemptResult() = default;
    AttemptResult(Outcome o, std::optional<int> code, std::string msg, model::NameValues outs = {},
                  bool is_transient = false)
        : outcome(o), exit_code(code), message(std::move(msg)), outputs(std::move(outs)),
          transient(is_transient) {}
    Outcome outcome = Outcome::Failed;
    std::optional<int> exit_code;
    std::string message;
    // What the plugin published through th_host_api.set_output before complete(), in the order
    // names were first set, already checked against the rules of plugin_host/outputs.h (values
    // over a cap were refused to the plugin, so they are not here). Outputs written as
    // `::set-output` lines are parsed by engine::TaskOutput; TaskOutput::addPluginOutputs()
    // merges both.
    model::NameValues outputs;
    // What the plugin published through th_host_api.set_output_json (ABI 1.7): name -> compact
    // JSON text of a non-string value, checked like outputs; a name is in one list only.
    model::NameValues json_outputs;
    // The attempt was lost, not failed by the plugin: its plugin's runner process died while it
    // ran. The engine retries a transient failure whenever the task has retries left, whatever
    // its retry_on_exit_codes say.
    bool transient = false;
    // The attempt's work could not be found (TH_OUTCOME_LOST, or an adoption the plugin refused,
    // ABI 1.6): the engine records it as lost, with the message as the reason, and runs the task
    // again if its retries and at_most_once allow.
    bool lost = false;
    // What the attempt cost (its cgroup; or its main process's rusage in process-group mode);
    // unset when nothing could be measured (e.g. a plugin without processes).
    std::optional<cgroup::Usage> usage;
    // Processes found in the attempt's cgroup after its main process exited, and what was done
    // with them; unset without a cgroup, or when none were left.
    std::optional<cgroup::LeftoverReport> leftovers;
};

// One plugin's health: what a check answered, or what the host concluded.
enum class HealthState { Healthy, Degraded, Unhealthy };
const char* toString(HealthState s) noexcept; // "healthy" | "degraded" | "unhealthy"

struct HealthReport {
    HealthState state = HealthState::Healthy;
    std::string message;
};

// A thread inside a plugin's code: a blocking execute() that has not returned yet.
struct ThreadInPlugin {
    std::string plugin;
    std::string workflow;
    std::string run_id;
    std::string task_id;
    uint32_t attempt = 0;
    int64_t since_ms = 0; // Unix milliseconds: when execute() was called
};

// How many threads destroyed PluginHosts of this process left running inside plugins (see
// "Lifetime" above). When not 0, the process must end with _exit() (std::_Exit) after its last
// orderly step: exit() would run static destructors (the plugin's own, spdlog's) while those
// threads still run plugin code that may use them.
size_t threadsLeftInPlugins();

class Plugin {
public:
    using Done = std::function<void(AttemptResult)>;
    using HealthDone = std::function<void(HealthReport)>;
    // up=false: the plugin cannot take work until further notice (a process plugin's runner
    // died; message says how). up=true: it can again (the runner was restarted).
    using LivenessListener = std::function<void(bool up, const std::string& message)>;
    virtual ~Plugin() = default;
    virtual const PluginInfo& info() const = 0;
    virtual std::optional<config::PluginCatalog::Problem> validate(const std::string& params) const = 0;
    // Starts an attempt and returns its token. `done` runs exactly once, on the event loop, after
    // start() returned: with the plugin's result, or with a failure when the plugin refused to
    // start the attempt.
    virtual uint64_t start(const AttemptSpec& spec, Done done) = 0;
    // ABI 1.6 (TH_CAP_ADOPT): whether the plugin can re-attach to an attempt a previous taskhubd
    // process started, and adopt() to do so: like start(), with the handle the plugin reported
    // for the attempt (std::nullopt: none was recorded). Returns the attempt's token, and `done`
    // runs exactly once, on the event loop, after adopt() returned: with the attempt's result, or
    // with a lost result (lost = true) when the plugin could not adopt it. Returns std::nullopt,
    // without calling `done`, when the plugin cannot adopt. Default: cannot.
    virtual bool canAdopt() const { return false; }
    // ABI 1.6 (TH_CAP_HOLD): whether the plugin can keep a running attempt's work from starting
    // while its run is paused (a queued batch job), and hold()/release() to do so and undo it.
    // Event-loop thread; harmless for a token that already finished; a failure the plugin reports
    // is logged (PLUGIN_HOLD_FAILED). Default: cannot; the calls do nothing.
    virtual bool canHold() const { return false; }
    virtual void hold(uint64_t) {}
    virtual void release(uint64_t) {}
    virtual std::optional<uint64_t> adopt(const AttemptSpec&, std::optional<std::string>, Done) {
        return std::nullopt;
    }
    // Asks a running attempt to stop; harmless after it finished.
    virtual void cancel(uint64_t token) = 0;
    // True when the plugin can stop and continue running attempts (TH_CAP_SUSPEND, ABI 1.1).
    virtual bool canSuspend() const = 0;
    // Stops a running attempt where it is / lets it continue. Event-loop thread. No-ops (logged
    // as PLUGIN_CANNOT_SUSPEND) when !canSuspend(); harmless for a token that already finished.
    // A failure the plugin reports is logged (PLUGIN_SUSPEND_FAILED); the attempt then counts as
    // running. The attempt still ends through `done`, also when cancelled while suspended.
    virtual void suspend(uint64_t token) = 0;
    virtual void resume(uint64_t token) = 0;
    virtual size_t running() const = 0;

    // Runs one health check. `done` runs exactly once, on the event loop, never inside
    // checkHealth(): with the plugin's answer; with Unhealthy "health check timed out after 2s"
    // when it has not answered within `timeout` (a late answer is then ignored); or with
    // Unhealthy and the reason no check could run. A plugin without TH_CAP_HEALTH_CHECK answers
    // Healthy. The caller starts no second check of a plugin before `done` of the first ran.
    virtual void checkHealth(std::chrono::milliseconds timeout, HealthDone done) = 0;
    // Where the plugin reports changes of its availability between checks (process isolation:
    // the runner died, or was restarted). Set once, before the first start(). Default: never.
    virtual void setLivenessListener(LivenessListener) {}

    // The threads inside the plugin's code now: blocking execute() calls that have not returned
    // (an in-process plugin's; a runner reports its own). Any thread. Default: none.
    virtual std::vector<ThreadInPlugin> threadsInside() const { return {}; }
    // The host is being destroyed (its event loop no longer runs). False: no thread is inside,
    // destroy the plugin as usual. True: a thread still runs in the plugin's code, so the plugin
    // has logged PLUGIN_THREAD_HELD for it, handed the thread to the worker pool to detach
    // (WorkerPool::letGo()) and cut itself off from the event loop; it must then never be
    // destroyed (nor its library unloaded) and is kept until the process exits. A plugin that
    // wraps another forwards both calls to it. Default: false.
    virtual bool abandonIfHeld() { return false; }
};

// A change of a plugin's health state, as `taskhubctl plugin show` lists it.
struct HealthTransition {
    int64_t at_ms = 0; // Unix milliseconds
    HealthState from = HealthState::Healthy;
    HealthState to = HealthState::Healthy;
    std::string message;
};

// What the host knows about a plugin's health (event-loop thread).
struct PluginHealth {
    HealthState state = HealthState::Healthy;
    std::string message;        // the last check's message, or why the state changed
    int64_t since_ms = 0;       // when the current state began (the plugin's load, at first)
    int64_t last_check_ms = 0;  // 0: not checked yet
    int failures = 0;           // consecutive failed checks
    int passes = 0;             // consecutive passed checks
    uint64_t checks = 0;        // checks run since the plugin was loaded
    config::HealthSettings settings;
    std::deque<HealthTransition> recent; // the latest transitions, oldest first (at most 64)
};

struct RefusedPlugin {
    std::filesystem::path file;
    std::string name; // when known
    std::string reason;
};

// How PluginHost loads plugins. The defaults suit offline tools (`taskhubd --check`,
// `taskhubctl validate`): every plugin in this process, no ownership rule.
struct LoadPolicy {
    // Honour process isolation: a plugin whose isolation (config::DaemonConfig::isolationOf) is
    // Process is loaded by a taskhub-runner child process and never mapped into this one.
    bool isolate = false;
    Isolation default_isolation = Isolation::InProcess; // for plugins not shipped with TaskHub
    std::filesystem::path runner;                       // the taskhub-runner executable
    // Refuse plugin directories and files that fail the trust rule (ownershipTrusted()), and load
    // each plugin from the descriptor that was checked (taskhubd sets this).
    bool require_trusted = false;
    // Containment with cgroups (cgroup/cgroup.h; taskhubd sets this when it runs with cgroups;
    // not owned, must outlive the PluginHost; null: process groups):
    // - the attempts of every plugin that declares TH_CAP_CGROUP run in cgroups of their own
    //   (plugin_host/containment.h);
    // - each runner process starts in cgroups->runnerCgroup(plugin, its uid, its gid) before it
    //   loads the plugin, and is told the cgroup2 mount, so that it can open the cgroups of its
    //   attempts (AttemptSpec::cgroup_path).
    cgroup::Manager* cgroups = nullptr;
    // How long after cancelling an attempt the host writes cgroup.kill itself when the plugin has
    // not completed it (ContainedPlugin::Options::kill_after).
    std::chrono::milliseconds cgroup_kill_after{15'000};
};

class PluginHost : public config::PluginCatalog {
public:
    // io and pool may be null for offline use (validation only: `taskhubd --check`,
    // `taskhubctl validate`); start() must not be called then.
    PluginHost(boost::asio::io_context* io, pool::WorkerPool* pool);
    ~PluginHost() override;
    PluginHost(const PluginHost&) = delete;
    PluginHost& operator=(const PluginHost&) = delete;

    void setLoadPolicy(LoadPolicy policy) { policy_ = std::move(policy); }

    // Loads every *.so in the directories (in name order). A plugin that fails to load is
    // recorded in refused() and never stops the others.
    void loadDirectories(const std::vector<std::filesystem::path>& dirs,
                         const std::map<std::string, config::PluginSettings>& settings);
    // Loads one file; returns the refusal reason or std::nullopt.
    std::optional<std::string> loadFile(const std::filesystem::path& file,
                                        const std::map<std::string, config::PluginSettings>& settings);

    Plugin* find(const std::string& name) const;
    std::vector<const Plugin*> plugins() const;
    // Every plugin's threadsInside() (any thread may ask).
    std::vector<ThreadInPlugin> threadsInside() const;
    const std::vector<RefusedPlugin>& refused() const noexcept { return refused_; }

    // Health checks (docs/operations.md, "Plugin health"). startHealthChecks() arms one timer per
    // plugin on the event loop (io must not be null); the first check runs at once. Every state
    // change is logged (PLUGIN_HEALTH) and handed to the listener, after health() shows it.
    using HealthListener = std::function<void(const std::string& plugin, const HealthTransition&)>;
    void setHealthListener(HealthListener listener);
    void startHealthChecks(const std::map<std::string, config::PluginSettings>& settings);
    void stopHealthChecks();
    // Null when no such plugin is loaded.
    const PluginHealth* health(const std::string& plugin) const;
    // True when a new task may be dispatched to the plugin now (healthy or degraded).
    bool dispatchable(const std::string& plugin) const;

    // config::PluginCatalog
    std::optional<std::string> unavailable(const std::string& plugin) const override;
    std::optional<Problem> validate(const std::string& plugin,
                                    const std::string& params_json) const override;
    std::vector<std::string> shellParams(const std::string& plugin) const override;
    // Refuses run_as for a plugin without TH_CAP_RUN_AS (it runs inside taskhubd, as root) and
    // for a plugin whose isolation is process (its runner has one user: [plugins.NAME] user).
    std::optional<std::string> runAsUnsupported(const std::string& plugin) const override;
    // Refuses limits for a plugin without TH_CAP_CGROUP (its attempts get no cgroup to apply them to).
    std::optional<std::string> limitsUnsupported(const std::string& plugin) const override;

private:
    class Loaded;
    class Monitor;
    // Wraps a plugin that declares TH_CAP_CGROUP in a ContainedPlugin when the policy has cgroups.
    std::unique_ptr<Plugin> contain(std::unique_ptr<Plugin> plugin, bool isolated);
    boost::asio::io_context* io_;
    pool::WorkerPool* pool_;
    LoadPolicy policy_;
    std::map<std::string, std::unique_ptr<Plugin>> plugins_;
    std::vector<RefusedPlugin> refused_;
    std::map<std::string, Isolation> isolation_; // of each loaded plugin, as configured
    HealthListener health_listener_;
    std::unique_ptr<Monitor> monitor_;
};

} // namespace taskhub::plugin_host

#endif // TASKHUB_PLUGIN_HOST_PLUGIN_HOST_H

// The engine: turns a firing into a run, walks the run's DAG, dispatches ready tasks to their
// plugins, and handles completions, retries, timeouts, failure policy, overlap and cancellation.
//
// Event-driven by construction: every method runs on the event-loop thread and returns without
// waiting; a running task is a token and a callback, never a blocked thread. That is why nested
// or parallel work cannot deadlock the pool (there is nothing to wait on a worker).
//
// Every state change is handed to the store at once; the store's writer thread makes it durable
// in group commits without blocking the loop (see store/store.h). Whoever acknowledges a change
// to a client waits for Store::whenDurable first.
#ifndef TASKHUB_ENGINE_ENGINE_H
#define TASKHUB_ENGINE_ENGINE_H

#include <chrono>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "config/workflow.h"
#include "engine/task_output.h"
#include "model/states.h"
#include "store/records.h"

namespace boost::asio {
class io_context;
}
namespace taskhub::store {
class Store;
}
namespace taskhub::plugin_host {
class PluginHost;
}

namespace taskhub::cgroup {
class Manager;
}

namespace taskhub::engine {

struct Core;
class PluginPort;
class EngineClock;
class EngineObserver;

struct EngineOptions {
    std::filesystem::path log_dir;              // task logs: log_dir/<run>/<task>.<attempt>.log
    std::filesystem::path state_dir;            // every attempt gets TASKHUB_STATE_DIR=state_dir
    int max_running_tasks = 0;                  // 0 = unlimited
    std::map<std::string, int> plugin_max_concurrency; // per plugin; absent or 0 = unlimited
    int max_nesting_depth = 10;                 // child runs below a top-level run, at most
    size_t max_foreach_items = 10'000;          // items one foreach may expand to (max_foreach_items)
    LogCap log_cap;                             // the most one attempt's log file holds
    // Containment with cgroups (cgroup/cgroup.h); null in process-group mode. recover() then
    // finds lost attempts by their cgroups, and the /proc environ scan is not made. Must
    // outlive the engine.
    cgroup::Manager* cgroups = nullptr;
};

// The workflows a workflow task may start as child runs, by name; replaced on reload. Runs
// already active keep the definitions they started with.
using WorkflowLookup = std::function<std::shared_ptr<const config::Workflow>(const std::string&)>;

// What a firing asks of Engine::trigger; every caller names the fields it sets.
struct TriggerRequest {
    std::shared_ptr<const config::Workflow> workflow{};
    // The run's trigger field. A time trigger's firing (cron, every, at, reboot) with its
    // scheduled instant, and a file drop (with file_run_id), are created at most once; a manual
    // run gets a unique id. Parent is not for trigger(): child runs start from their parent's
    // workflow task.
    model::TriggerSource source = model::TriggerSource::Manual;
    std::optional<std::chrono::sys_seconds> scheduled{};
    store::NameValues params{}; // override the workflow's declared defaults
    std::string actor{};       // who asked, e.g. "uid 1000 (ada)": "manual by uid 1000 (ada)"
    std::string note{};        // why it fires when not on time, e.g. "catch-up of ...": "cron: catch-up of ..."
    // Not None: record the run as skipped with skip_reason (by default store::
    // kPausedFiringMessage) instead of starting it. Paused: a firing of a paused workflow, which
    // its catch-up after `resume` may turn into the run.
    model::SkipCause skip = model::SkipCause::None;
    std::string skip_reason{};
    std::string file_run_id{}; // a file drop's run id (see triggers/file_watch.h)
    // > 0: a backfill's run (`taskhubctl backfill`; source and scheduled name the time firing it
    // makes up for). See Engine::trigger.
    int backfill_max_active = 0;
};

struct TriggerResult {
    bool ok = false;
    std::string run_id;
    model::RunState state = model::RunState::Queued; // the new run's state: running, queued or skipped
    std::string error;  // when !ok
    bool duplicate = false; // !ok because this scheduled instant is already recorded
};

struct EngineStats {
    size_t active_runs = 0;
    size_t queued_runs = 0;
    size_t running_tasks = 0;
    size_t waiting_tasks = 0; // ready but held back by a concurrency limit
    uint64_t runs_started = 0;
};

// What recover() found and did.
struct RecoveryReport {
    size_t runs = 0;      // runs left unfinished by the previous process (child runs included)
    size_t resumed = 0;   // runs that continue
    size_t abandoned = 0; // runs that could not continue (their workflow changed or is gone)
    size_t lost = 0;      // attempts found lost
    size_t adopted = 0;   // attempts handed back to their plugins (TH_CAP_ADOPT, ABI 1.6)
    size_t killed = 0;    // leftover processes killed
    size_t cgroups_removed = 0; // attempt cgroups of the previous process killed and removed
    size_t cgroups_kept = 0;    // cgroups of ended attempts with leftovers = "keep", left alone
};

class Engine {
public:
    Engine(boost::asio::io_context& io, store::Store& store, plugin_host::PluginHost& plugins,
           EngineOptions options);
    // With the plugins and the clock given (engine/plugin_port.h, engine/clock.h), for tests:
    // fake plugins and simulated time. Both must outlive the engine.
    Engine(boost::asio::io_context& io, store::Store& store, PluginPort& plugins, EngineClock& clock,
           EngineOptions options);
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    // Reconciles the runs a previous process left unfinished (a crash, a kill -9, a power loss),
    // before any new firing. Every attempt left starting, running or frozen is lost: its process
    // group, if it still runs, is killed (the pid verified by its start time, and only when
    // same_boot says the previous process ran in this boot), as is any other process carrying
    // the attempt's TASKHUB_STATE_DIR, TASKHUB_RUN_ID, TASKHUB_TASK_ID and TASKHUB_ATTEMPT; the
    // loss is recorded (`lost` event, the run's lost count); the task is retried if it has
    // retries left and is not at_most_once, and fails as lost otherwise. Runs then continue
    // where they stopped: tasks that ended keep their outcome, child runs continue under their
    // parent's workflow task, queued runs stay queued, paused runs stay paused. A run whose
    // workflow is no longer loaded or has changed cannot continue and fails. Call once, after
    // setWorkflowLookup() and the store's startWriter(), before the first trigger.
    RecoveryReport recover(bool same_boot);

    // Where workflow tasks find their child workflows. Set once before the first trigger.
    void setWorkflowLookup(WorkflowLookup lookup);

    // Creates a run of req.workflow and starts it, queues it or records it as skipped, as the
    // workflow's overlap policy says. A time trigger's firing's id is "<workflow>@<UTC instant>"
    // and is created at most once: firing the same instant again returns ok=false, duplicate.
    // Manual runs get a unique id. params override the workflow's declared defaults; an
    // undeclared name is refused (ok=false, "workflow 'x' has no param 'k' (declared: a, b)").
    // actor and note are recorded in the run_created event ("manual by uid 1000", "cron:
    // catch-up of ..."). A file drop's run takes file_run_id as its id and, like a time firing,
    // is created at most once (ok=false, duplicate) unless its record is a firing skipped while
    // the workflow was paused.
    //
    // A backfill's run (req.backfill_max_active > 0) is never skipped by the overlap policy and
    // never revives a recorded firing (any record of its id makes it a duplicate): it is recorded
    // as queued, with a `backfill` event ("max_active=N") that tells recovery it is one, and
    // waits in the workflow's backfill queue. That queue starts its oldest scheduled instant
    // first, and only when the workflow admits a run: no run queued by the overlap policy waits,
    // and fewer runs of the workflow are running than 1 (overlap skip, queue_one, queue_all,
    // replace: backfill runs never overlap another run of the workflow) or, with overlap = allow,
    // than N and than max_active_runs. For the overlap policy of later firings a waiting backfill
    // run does not count (a running one does, like any run). Shutdown leaves waiting backfill
    // runs queued in the store; the next start continues them.
    TriggerResult trigger(const TriggerRequest& req);

    // Cancels a queued, running or paused run and its child runs: running tasks are asked to
    // stop, the rest are marked cancelled. With task_id, cancels only that task (a running
    // attempt is stopped, a pending or ready one is marked cancelled; its downstream follows the
    // trigger rules). Returns false with *err when the run or task is unknown or already
    // finished. actor is recorded in the event ("cancelled by uid 1000").
    bool cancel(const std::string& run_id, const std::string& task_id, const std::string& actor,
                std::string* err);

    // Pauses a running run and its child runs: no new task starts; running tasks go on, or
    // with freeze, tasks whose plugin can suspend are stopped (SIGSTOP for shell) and their
    // timeouts stop counting. Returns false with *err when the run is not running.
    bool pause(const std::string& run_id, bool freeze, const std::string& actor, std::string* err);
    // Resumes a paused run and its child runs (frozen tasks continue, their timeouts with the
    // time they had left).
    bool resume(const std::string& run_id, const std::string& actor, std::string* err);

    // Re-runs failed and cancelled tasks of a finished run in place, as new attempts; with
    // task_id only that task (which must have failed or been cancelled), and with downstream
    // also every task downstream of the retried ones. The run goes back to running. Skipped
    // tasks downstream of a retried task are re-evaluated. Returns false with *err when the run
    // is unknown, still active, a child run (retry its top-level run), or nothing is to retry.
    bool retry(const std::string& run_id, const std::string& task_id, bool downstream,
               const std::string& actor, std::string* err);

    // A plugin's health changed (PluginHost::dispatchable): ready tasks of an unhealthy plugin
    // wait for it (their timeouts running) or, with on_unhealthy = "fail", fail at once; when it
    // recovers they start.
    void pluginHealthChanged(const std::string& plugin);

    // Why each ready task of an active run has not started yet (task id -> reason, e.g.
    // "waiting: plugin 'shell' is at max_concurrency (2)"), for `show`. Empty when none waits.
    std::map<std::string, std::string> waitingReasons(const std::string& run_id) const;

    // Calls fn with the run's final record once it has ended (at once if it already has).
    // Returns false when no such run exists.
    bool whenEnded(const std::string& run_id, std::function<void(const store::RunRecord&)> fn);

    // Stops accepting runs; running runs get `grace` to finish and are then cancelled. done runs
    // once no run is active.
    void shutdown(std::chrono::milliseconds grace, std::function<void()> done);

    EngineStats stats() const;

    // Adds an observer of runs and attempts (engine/observer.h); it must outlive the engine or
    // be removed first. Add before recover() to hear of what recovery finds.
    void addObserver(EngineObserver* observer);
    void removeObserver(EngineObserver* observer);

private:
    std::unique_ptr<PluginPort> own_plugins_; // the daemon's: PluginHostPort
    std::unique_ptr<EngineClock> own_clock_;  // the daemon's: AsioClock
    std::unique_ptr<Core> core_;              // engine_state.h

};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_ENGINE_H

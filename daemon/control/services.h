// What the control channel may ask of the daemon. The composition root (app/) implements it on
// top of the engine, the store, the scheduler and the loaded configuration; the control module
// sees only this interface and plain records.
//
// Threading: every call happens on the event-loop thread.
#ifndef TASKHUB_CONTROL_SERVICES_H
#define TASKHUB_CONTROL_SERVICES_H

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "store/records.h"

namespace taskhub::control {

// Who is asking, from SO_PEERCRED.
struct Caller {
    uid_t uid = 0;
    gid_t gid = 0;
    pid_t pid = 0;
    bool may_mutate = false;
    // "uid 1000 (alice)", or "uid 1000" when the user database has no name for it: recorded in
    // the events of the changes this caller asks for.
    std::string actor;
    // The largest answer line this caller is sent, in bytes; 0: no limit (root, the daemon's uid).
    // A larger answer is replaced by a too_large error; `logs` fits its content to it.
    size_t max_answer_size = 0;
};

struct TaskInfo {
    std::string id;
    std::string plugin;   // empty for a workflow task
    std::vector<std::string> depends_on;
    std::string params_json;
    std::string workflow; // a workflow task: the workflow it runs as a child run
    std::string run_as;   // the account its processes run as (config::TaskDef::run_as); empty: taskhubd's
};

struct WorkflowInfo {
    std::string name;
    std::string file;
    std::string description;
    std::string timezone;
    std::string version;
    std::string overlap;
    std::string file_overlap; // a workflow with a watch trigger: the overlap its file drops follow; else empty
    std::string on_failure;
    struct Trigger {
        std::string kind; // cron, reboot, every, at, file
        std::string text; // what it says, e.g. `every 90s jitter 5m`
        std::string cron; // cron and reboot: the expression; empty otherwise
        // file: what the watch does, "watching" or "waiting: DIR does not exist (watching
        // ANCESTOR)"; empty otherwise
        std::string state;
    };
    std::vector<Trigger> triggers;
    std::vector<int64_t> next_fire_ms;        // per trigger; 0 = none
    struct Pause {
        int64_t since_ms = 0;
        std::string by;
    };
    std::optional<Pause> paused;              // the schedule is paused (taskhubctl pause WORKFLOW)
    store::NameValues params;                 // declared params with their defaults
    size_t task_count = 0;
    std::vector<TaskInfo> tasks;              // `show` only (empty in `list`)
    std::optional<store::RunRecord> last_run; // without tasks
    int64_t deadline_s = 0;                   // `deadline`; 0 = none
    // `show WORKFLOW` only: its latest misses (kDeadlineMissesShown at most), newest first,
    // firings without a run included.
    std::vector<store::DeadlineMissRecord> deadline_misses;
};

// How many of a workflow's latest deadline misses `show WORKFLOW` lists.
inline constexpr int kDeadlineMissesShown = 10;

struct WorkflowProblem {
    std::string file;
    std::string message; // "file:line: ..."
};

// How the Prometheus metrics leave the daemon ([metrics] of taskhub.toml), for `status`.
struct MetricsExportInfo {
    std::string textfile;            // the configured file; empty: no textfile
    int64_t textfile_written_ms = 0; // its last successful write; 0: none yet
    std::string textfile_error;      // why writing it fails now; "" while it works
    int64_t textfile_error_since_ms = 0;
    std::string listen;              // the configured address; empty: no listener
    bool listen_serving = false;
    std::string listen_error;        // why it does not serve; "" while it does
    uint64_t scrapes = 0;            // /metrics answered since start
};

// Notifications (daemon/notify): the outbox's totals and how delivery goes.
struct NotifyStatusInfo {
    size_t pending = 0;          // waiting for delivery now
    int64_t sent = 0;            // delivered (all time: the outbox's count)
    int64_t failed = 0;          // given up after their retries (all time)
    int64_t dropped = 0;         // not queued, [notifications] max_pending was reached (all time)
    uint64_t failed_attempts = 0; // failed delivery attempts since taskhubd started
    std::string last_error;      // the latest failed attempt, "" when none since the start
    int64_t last_error_ms = 0;
    std::string mbox;            // when no MTA is installed: where mail goes instead; "" otherwise
};

// How tasks are contained (docs/operations.md, "Containment").
struct ContainmentInfo {
    bool cgroup = false;                  // a cgroup per attempt; false: process groups
    std::string base;                     // cgroup: the daemon's subtree in cgroupfs
    std::vector<std::string> controllers; // cgroup: the controllers attempts get
    std::string reason;                   // process-group: why
};

// `notify test`: the outcome for one target.
struct NotifyTestResult {
    std::string target;
    bool ok = false;
    std::string detail;
};

struct StatusInfo {
    std::string version;
    std::string abi;      // the plugin ABI the daemon speaks: "1.7" (TH_ABI_VERSION_MAJOR.MINOR)
    std::string timezone; // the daemon's zone (taskhub.toml's timezone, else the system zone): "Europe/Berlin"
    int64_t started_ms = 0;
    int pid = 0;
    std::string config_file;
    std::string state_dir;
    size_t workflows = 0;
    size_t workflow_errors = 0; // files that failed to load
    size_t plugins = 0;
    size_t plugins_refused = 0;
    size_t plugins_unhealthy = 0;
    size_t active_runs = 0;
    size_t queued_runs = 0;
    size_t running_tasks = 0;
    size_t waiting_tasks = 0;
    size_t worker_threads = 0;
    size_t worker_threads_max = 0;
    uint64_t runs_started = 0;
    bool shutting_down = false;
    // Why the state database cannot be written at the moment (disk full, read-only, ...) and
    // what to do, or "" while it can. Meanwhile no new run starts and changes are refused.
    std::string store_problem;
    MetricsExportInfo metrics;
    NotifyStatusInfo notifications;
    ContainmentInfo containment;
};

// The outcome of a change a client asked for (pause, resume, cancel, retry).
struct ChangeOutcome {
    bool ok = false;
    std::string code;  // protocol error code when !ok: not_found, conflict
    std::string error; // when !ok: what is wrong, naming the run or task
};

struct TriggerOutcome {
    bool ok = false;
    std::string run_id;
    model::RunState state = model::RunState::Queued;
    std::string error;
    std::string code; // error code when !ok: not_found, bad_request, conflict, unavailable
};

struct LogChunk {
    bool found = false;
    std::string error;
    std::string path;
    int attempt = 0;
    std::string content;
    bool truncated = false;   // content starts after the start of what the file holds
    // Positions count bytes of the attempt's whole output, including bytes max_log_size dropped
    // from the file (see engine/task_output.h): next_offset is the position after content.
    uint64_t next_offset = 0;
    uint64_t dropped = 0;     // bytes max_log_size dropped from the start of the file so far
    bool active = false;      // the attempt still runs: more output may come
};

// Which runs `runs` lists: newest first, at most limit.
struct RunQuery {
    std::optional<std::string> workflow;
    std::optional<std::string> state;  // a run state, or "lost" (recovery found lost attempts)
    std::optional<int64_t> since_ms;   // created at or after
    std::optional<int64_t> until_ms;   // created before
    size_t limit = 50;
    bool top_level_only = false;       // leave out child runs
};

// One planned firing of a workflow's time trigger (triggers::upcoming()).
struct UpcomingFiring {
    size_t trigger = 0;        // index of the trigger in the workflow file's order
    std::string trigger_text;  // what the trigger says: `cron "30 2 * * *"`, `every 90s`, ...
    int64_t scheduled_ms = 0;  // the instant the trigger names
    int64_t due_ms = 0;        // scheduled plus the workflow's stable jitter: when it fires
    std::string local;         // scheduled in the workflow's zone: "2026-03-29T03:00:00+02:00"
};

struct UpcomingOutcome {
    bool found = false;
    std::string error; // when !found: "no workflow named 'x'", with a suggestion or the load error
    std::string workflow;
    std::string timezone;
    std::vector<UpcomingFiring> firings; // in order of due time
    std::string note; // when firings is empty: why (no time triggers, or none fires again)
};

// `backfill`: make up for the firings of a workflow's time triggers in a range (docs/scheduling.md,
// "Backfill").
struct BackfillRequest {
    std::string workflow;
    // The range's ends as the client gave them (triggers::parseRangeTime: an instant with its
    // offset, a wall time or a date in the workflow's zone); both ends are included.
    std::string from;
    std::string to;
    int max_active = 1; // backfill runs of the workflow running at once (overlap = allow only)
    bool dry_run = false;
    // The most instants this caller may create in one backfill (besides
    // triggers::kMaxBackfillInstants): the answer lists each one and must fit its max_answer_size.
    size_t max_instants = 0; // 0: no bound of its own
};

// One instant of the range, oldest first.
struct BackfillInstant {
    std::string run_id;       // "<workflow>@<compact UTC instant>", as the scheduler names it
    int64_t scheduled_ms = 0;
    std::string local;        // in the workflow's zone: "2026-03-29T03:00:00+02:00"
    std::string trigger;      // the kind of the (first) trigger naming it: cron, every, at
    size_t trigger_index = 0;
    std::string dst;          // triggers::dstNoteName: "", gap, fold_first, fold_second
    std::string dst_text;     // for people ("DST gap: stands for 02:30, which the jump skipped")
    // Recorded before this backfill (a run or a skipped firing with its id): left alone.
    bool recorded = false;
    // recorded: that record's state; created: the new run's state (queued or running); a dry run:
    // empty for the instants it would create.
    std::string state;
};

struct BackfillOutcome {
    bool ok = false;
    std::string code;  // when !ok: not_found, bad_request, conflict, unavailable
    std::string error; // when !ok: one line naming what is wrong and what would be right
    std::string workflow;
    std::string timezone;
    std::string overlap;
    int64_t from_ms = 0;
    int64_t to_ms = 0;
    int max_active = 1;
    bool dry_run = false;
    std::vector<BackfillInstant> instants;
    size_t created = 0;  // runs created (a dry run: that would be)
    size_t recorded = 0; // instants left alone
    std::vector<std::string> left_out; // time triggers without fixed instants: "#1 every 15m"
};

// A loaded plugin and its health (`plugins`, `plugin show`).
struct PluginStatus {
    std::string name;
    std::string version;
    std::string description;
    std::string file;
    int abi_major = 0;
    int abi_minor = 0;
    std::vector<std::string> capabilities; // "cancel", "health_check", "blocking_execute", ...
    std::string thread_safety;             // "serial" | "safe"
    std::string isolation;                 // "in_process" | "process"
    std::string state;                     // "healthy" | "degraded" | "unhealthy"
    std::string message;                   // the last check's message, or why the state changed
    int64_t since_ms = 0;                  // when the current state began
    int64_t last_check_ms = 0;             // 0: not checked yet
    int failures = 0;                      // consecutive failed checks
    uint64_t checks = 0;
    size_t running = 0;                    // attempts running now
    int max_concurrency = 0;               // 0 = unlimited
    int64_t health_interval_ms = 0;
    int64_t health_timeout_ms = 0;
    int unhealthy_after = 0;
    int healthy_after = 0;
    std::string on_unhealthy; // "hold" | "fail"
    struct Transition {
        int64_t at_ms = 0;
        std::string from;
        std::string to;
        std::string message;
    };
    std::vector<Transition> history; // `plugin show` only: the latest transitions, oldest first
};

struct RefusedPluginInfo {
    std::string file;
    std::string name; // when known
    std::string reason;
};

struct ReloadOutcome {
    size_t loaded = 0;
    size_t failed = 0;
    std::vector<std::string> problems;
};

class Services {
public:
    virtual ~Services() = default;
    virtual StatusInfo status() = 0;
    virtual std::vector<WorkflowInfo> workflows() = 0;
    virtual std::vector<WorkflowProblem> workflowProblems() = 0;
    virtual std::optional<WorkflowInfo> workflow(const std::string& name) = 0;
    virtual std::vector<PluginStatus> plugins() = 0; // by name, without history
    virtual std::vector<RefusedPluginInfo> refusedPlugins() = 0;
    // One plugin with its latest `history` transitions (from the store: they outlive restarts).
    virtual std::optional<PluginStatus> plugin(const std::string& name, int history) = 0;
    // params override the workflow's declared defaults; an undeclared name is a bad_request.
    virtual TriggerOutcome trigger(const std::string& workflow, const store::NameValues& params,
                                   const Caller& caller) = 0;
    // The changes below are made at once (the run's records are written before they return);
    // the caller answers its client once they are durable (whenDurable). They apply to the run's
    // child runs too. An unknown run or task is not_found; a run in the wrong state, conflict.
    // task_id empty: the whole run.
    virtual ChangeOutcome cancel(const std::string& run_id, const std::string& task_id,
                                 const Caller& caller) = 0;
    virtual ChangeOutcome pause(const std::string& run_id, bool freeze, const Caller& caller) = 0;
    virtual ChangeOutcome resume(const std::string& run_id, const Caller& caller) = 0;
    // A workflow's schedule: while paused its firings are recorded as skipped; resume runs what
    // its catch-up rules say of the firings since. not_found for an unknown workflow, conflict
    // when it is already paused / not paused.
    virtual ChangeOutcome pauseWorkflow(const std::string& workflow, const Caller& caller) = 0;
    virtual ChangeOutcome resumeWorkflow(const std::string& workflow, const Caller& caller) = 0;
    // task_id empty: every failed and cancelled task; downstream: also the tasks below them.
    virtual ChangeOutcome retry(const std::string& run_id, const std::string& task_id, bool downstream,
                                const Caller& caller) = 0;
    // Calls fn once the run has ended; false when there is no such run.
    virtual bool whenRunEnds(const std::string& run_id, std::function<void()> fn) = 0;
    virtual std::vector<store::RunRecord> runs(const RunQuery& query) = 0;
    virtual std::optional<store::RunRecord> run(const std::string& id) = 0; // with tasks
    // Deadlines: the recorded miss of a firing (by its run id), if it missed; the deadline of
    // a loaded workflow in seconds, 0 when it has none.
    virtual std::optional<store::DeadlineMissRecord> deadlineMiss(const std::string& run_id) = 0;
    virtual int64_t deadlineSeconds(const std::string& workflow) = 0;
    // The runs started by the workflow tasks of run_id (every attempt), oldest first, with tasks.
    virtual std::vector<store::RunRecord> children(const std::string& run_id) = 0;
    // Why each ready task of an active run has not started (task id -> reason); empty for a
    // finished run or when nothing waits.
    virtual std::map<std::string, std::string> waitingReasons(const std::string& run_id) = 0;
    virtual std::vector<store::EventRecord> events(const std::string& run_id) = 0;
    // attempt 0 = the latest attempt. Without offset, at most max_bytes from the end of the log;
    // with it, at most max_bytes from that position of the attempt's output on (from the
    // truncation marker when max_log_size dropped that position).
    virtual LogChunk taskLog(const std::string& run_id, const std::string& task_id, int attempt,
                             size_t max_bytes, std::optional<uint64_t> offset) = 0;
    // Reads the workflows directory again; done gets the outcome once the result is applied
    // (later, on the event loop: reading a large file takes a while).
    virtual void reload(const Caller& caller, std::function<void(const ReloadOutcome&)> done) = 0;
    // The next n firings of a loaded workflow's time triggers strictly after now.
    virtual UpcomingOutcome upcoming(const std::string& workflow, size_t n) = 0;
    // Creates (or, dry_run, lists) the runs of a workflow's time firings scheduled in a past
    // range that have no record yet, as queued backfill runs (engine::Engine::trigger); the
    // caller answers once they are durable. Refused with a code and a precise error for an
    // unknown workflow (not_found), a bad range, too many instants, a future end, a workflow
    // without time triggers or a max_active its overlap policy cannot honour (bad_request), a
    // paused workflow (conflict), a daemon that is stopping (unavailable).
    virtual BackfillOutcome backfill(const BackfillRequest& req, const Caller& caller) = 0;
    // The notifications of a run (or a deadline's firing id), oldest first.
    virtual std::vector<store::NotificationRecord> notifications(const std::string& run_id) = 0;
    // Sends a sample notification to each target of the workflow; done gets one result per target
    // (later, on the loop). false with *err (not_found code in *code) when nothing can be sent.
    virtual bool notifyTest(const std::string& workflow, std::function<void(std::vector<NotifyTestResult>)> done,
                            std::string* code, std::string* err) = 0;
    // A mark in the stream of state changes; take it before making changes.
    virtual uint64_t writeMark() = 0;
    // Calls fn(ok) once every state change made so far is durable; ok is false when a change made
    // after `since` (a writeMark()) was lost, or at once while the state database cannot be
    // written (StatusInfo::store_problem: the changes are kept and written later, but a client
    // should not wait for that). Answers to clients are given only then.
    virtual void whenDurable(uint64_t since, std::function<void(bool ok)> fn) = 0;
    // The daemon's metrics as OpenMetrics text, ending in "# EOF\n" (docs/operations.md, "Metrics").
    virtual std::string metrics() = 0;
};

} // namespace taskhub::control

#endif // TASKHUB_CONTROL_SERVICES_H

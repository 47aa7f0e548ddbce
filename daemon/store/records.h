// Plain records of runs, tasks and events as the store keeps them and the control channel shows
// them. No SQLite here: this header is shared by store, engine and control.
#ifndef TASKHUB_STORE_RECORDS_H
#define TASKHUB_STORE_RECORDS_H

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cgroup/resources.h"
#include "model/name_values.h"
#include "model/notify_event.h"
#include "model/states.h"

namespace taskhub::store {

// States, trigger sources, skip causes and task kinds are daemon/model's types; the store
// writes and reads their names (model::name, model::parse), the control channel shows them.
using model::NameValues;

struct TaskRecord {
    std::string task_id;
    std::string plugin;
    model::TaskState state = model::TaskState::Pending;
    int attempt = 0;                 // attempts started so far
    std::optional<int> exit_code;
    std::string message;
    std::optional<int64_t> started_ms; // epoch milliseconds
    std::optional<int64_t> ended_ms;
    NameValues outputs;              // published by the latest attempt (::set-output, host call)
    // Typed outputs of the latest attempt (::set-output-json, set_output_json): name -> compact
    // JSON text of a non-string value (array, object, number, bool, null). A name is in outputs
    // or here, never both. Stored with outputs in one JSON object column (typed values as JSON
    // values, plain ones as strings) and split again when read.
    NameValues json_outputs;
    model::TaskKind kind = model::TaskKind::Plugin; // Workflow: its plugin reads "workflow:NAME"
    std::string child_run;           // a workflow task: the id of its latest child run
    // The process the latest attempt runs as, when its plugin reported one (the shell plugin
    // does): pid, process group and start time (clock ticks after boot, /proc/PID/stat field
    // 22), so that recovery after a crash finds exactly that process and never a reused pid.
    std::optional<int64_t> pid;
    std::optional<int64_t> pgid;
    std::optional<int64_t> proc_start;
    // The latest attempt's external handle, when its plugin reported one (ABI 1.6 report_handle:
    // for a Slurm job, its id), so that after a restart the plugin can adopt the attempt.
    std::string handle;
    // What the latest attempt cost (cgroup/resources.h), when it was measured; earlier attempts'
    // are in their "usage" events (usageDetail()). Leftovers: processes found in its cgroup after
    // its main process exited, and what was done with them; unset when none were found.
    std::optional<cgroup::Usage> usage;
    std::optional<cgroup::LeftoverReport> leftovers;
    // A fan-out task (`foreach`) that was expanded: the list it was expanded from, as a JSON
    // array; item i is instance i ("ID[i]", or "ID[KEY]" with foreach_key). Empty otherwise.
    std::string items;
};

// The detail of a "usage" event, one per measured attempt, as a JSON object text:
// {"attempt":N,"source":"cgroup"|"rusage","cpu_user_us":U,"cpu_system_us":S,"memory_peak":B|null,
// "oom_kills":K|null,"io_read_bytes":R|null,"io_write_bytes":W|null}; and back (nullopt when the
// text is not such an object).
std::string usageDetail(int attempt, const cgroup::Usage& usage);
std::optional<std::pair<int, cgroup::Usage>> parseUsageDetail(const std::string& detail);

struct RunRecord {
    std::string id;
    std::string workflow;
    model::TriggerSource trigger = model::TriggerSource::Manual;
    model::RunState state = model::RunState::Queued;
    std::string message;
    // Why a firing was recorded as skipped (None otherwise); a Paused one may become the real
    // run when its workflow is resumed (catch-up).
    model::SkipCause skip_cause = model::SkipCause::None;
    std::string version;             // workflow definition hash
    std::optional<int64_t> scheduled_ms;
    int64_t created_ms = 0;
    std::optional<int64_t> started_ms;
    std::optional<int64_t> ended_ms;
    NameValues params;               // the run's params: workflow defaults overridden by the trigger
    std::string parent_run;          // a child run: the run and task that started it
    std::string parent_task;
    int depth = 0;                   // 0 for a top-level run
    int lost = 0;                    // attempts that recovery after a crash found lost
    // Failures the run absorbed and that stand (a task with on_failure = "continue" that ended
    // failed; see engine Core::absorbFailure). A retry that runs such a task again takes its
    // failure back. A run with absorbed failures may still have succeeded.
    int failures_absorbed = 0;
    std::vector<TaskRecord> tasks;   // filled when asked for
};

// A firing of a workflow with a deadline that had no succeeded run by its due instant (scheduled
// + deadline; triggers/deadline.h). One per firing: recording it again changes nothing.
struct DeadlineMissRecord {
    std::string workflow;
    std::string run_id;       // the firing's run id (workflow@instant), whether or not a run exists
    int64_t scheduled_ms = 0; // the firing's scheduled instant (epoch ms)
    int64_t due_ms = 0;       // scheduled + deadline
    int64_t deadline_s = 0;   // the deadline then, in seconds
    int64_t detected_ms = 0;  // when the miss was found (after a daemon outage: after the restart)
    std::optional<model::RunState> run_state; // the run's state when found; nullopt: no run
    std::string reason;       // for people: "not run (taskhubd was not running)", "still running", ...
};

struct EventRecord {
    int64_t ts_ms = 0;
    std::string run_id;
    std::string task_id;             // empty for run-level events
    std::string kind;                // ready, start, end, skipped, cancelled, retry, run_*, ...
    std::string detail;
    int64_t seq = 0;                 // order of recording across all runs (set by the store)
};

// One notification in the outbox (daemon/notify): what it is about, where it goes, how far its
// delivery got. Exactly one per (run, event, target) -- per ending of the run for its outcome, so
// that a retried run that ends again notifies again: its id is derived from them.
struct NotificationRecord {
    std::string id;                  // "<run_id>/<event>/<8 hex>" (notify::notificationId)
    std::string run_id;              // or a firing id "<workflow>@<instant>" (deadline_missed)
    std::string workflow;
    model::NotifyEvent event = model::NotifyEvent::Failure;
    model::NotifyKind kind = model::NotifyKind::Command;
    std::string target;              // for people: "mail: ops@example.org", "webhook: https://host/path"
                                     // (a webhook URL without credentials and query)
    std::string destination;         // where it goes: the command, the addresses, the whole URL
    model::NotifyState state = model::NotifyState::Pending;
    int attempts = 0;                // delivery attempts made
    int64_t next_attempt_ms = 0;     // pending: when the next attempt is due
    std::string last_error;
    int64_t created_ms = 0;
    std::optional<int64_t> sent_ms;
    std::string payload;             // the run's facts as JSON: what every target sends
    std::string run_as;              // command: the account it runs as ("" = taskhubd's own)
};

} // namespace taskhub::store

#endif // TASKHUB_STORE_RECORDS_H

// What the control channel may ask of the daemon. The composition root (app/) implements it on
// top of the engine, the store, the scheduler and the loaded configuration; the control module
// sees only this interface and plain records.
//
// Threading: every call happens on the event-loop thread.
#ifndef TASKHUB_CONTROL_SERVICES_H
#define TASKHUB_CONTROL_SERVICES_H

#include <sys/types.h>

#include <cstdint>
#include <functional>
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
};

struct TaskInfo {
    std::string id;
    std::string plugin;
    std::vector<std::string> depends_on;
    std::string params_json;
};

struct WorkflowInfo {
    std::string name;
    std::string file;
    std::string description;
    std::string timezone;
    std::string version;
    std::string overlap;
    std::string on_failure;
    std::vector<std::string> triggers;        // cron expressions
    std::vector<int64_t> next_fire_ms;        // per trigger; 0 = none
    std::vector<TaskInfo> tasks;
    std::optional<store::RunRecord> last_run; // without tasks
};

struct WorkflowProblem {
    std::string file;
    std::string message; // "file:line: ..."
};

struct StatusInfo {
    std::string version;
    int64_t started_ms = 0;
    int pid = 0;
    std::string config_file;
    std::string state_dir;
    size_t workflows = 0;
    size_t workflow_errors = 0; // files that failed to load
    size_t plugins = 0;
    size_t plugins_refused = 0;
    size_t active_runs = 0;
    size_t queued_runs = 0;
    size_t running_tasks = 0;
    size_t waiting_tasks = 0;
    size_t worker_threads = 0;
    size_t worker_threads_max = 0;
    uint64_t runs_started = 0;
    bool shutting_down = false;
};

struct TriggerOutcome {
    bool ok = false;
    std::string run_id;
    std::string state;
    std::string error;
    std::string code; // error code when !ok: not_found, conflict, unavailable
};

struct LogChunk {
    bool found = false;
    std::string error;
    std::string path;
    int attempt = 0;
    std::string content;
    bool truncated = false;
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
    virtual TriggerOutcome trigger(const std::string& workflow, const Caller& caller) = 0;
    virtual bool cancel(const std::string& run_id, const Caller& caller, std::string* err) = 0;
    // Calls fn once the run has ended; false when there is no such run.
    virtual bool whenRunEnds(const std::string& run_id, std::function<void()> fn) = 0;
    virtual std::vector<store::RunRecord> runs(const std::optional<std::string>& workflow,
                                               const std::optional<std::string>& state,
                                               size_t limit) = 0;
    virtual std::optional<store::RunRecord> run(const std::string& id) = 0; // with tasks
    virtual std::vector<store::EventRecord> events(const std::string& run_id) = 0;
    // attempt 0 = the latest attempt. At most max_bytes from the end of the log are returned.
    virtual LogChunk taskLog(const std::string& run_id, const std::string& task_id, int attempt,
                             size_t max_bytes) = 0;
    virtual ReloadOutcome reload(const Caller& caller) = 0;
    // A mark in the stream of state changes; take it before making changes.
    virtual uint64_t writeMark() = 0;
    // Calls fn(ok) once every state change made so far is durable; ok is false when a change made
    // after `since` (a writeMark()) was lost. Answers to clients are given only then.
    virtual void whenDurable(uint64_t since, std::function<void(bool ok)> fn) = 0;
};

} // namespace taskhub::control

#endif // TASKHUB_CONTROL_SERVICES_H

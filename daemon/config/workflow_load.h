// Internal to the config module: what the files that load one workflow file share. The document
// and its top-level keys are read in workflow.cc (loadOne()); the sections it hands over live in
//   workflow_triggers.cc  [[trigger]]: cron, every, at, start_at, jitter, watch and its keys
//   workflow_policy.cc    [policy]: overlap, max_active_runs, catchup, on_failure, timeout
//   workflow_tasks.cc     [[task]]: plugin and workflow tasks, their keys, templates, run_as
//   workflow_graph.cc     the checks across tasks (dependencies, references) and across files
//                         (workflow tasks: missing children, params, cycles)
#ifndef TASKHUB_CONFIG_WORKFLOW_LOAD_H
#define TASKHUB_CONFIG_WORKFLOW_LOAD_H

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "config/notify_target.h"
#include "config/toml_support.h"
#include "config/workflow.h"
#include "expr/template.h"

namespace taskhub::config::detail {

namespace fs = std::filesystem;

// A reference to a param, an output or a task state, where it was written.
struct RefUse {
    size_t line = 0;
    std::string where; // "task 'b': 'command'", the message prefix
    std::string shown; // as written: "${params.x}" in a template, "params.x" in a condition
    expr::Ref ref;
};

// memory_max, cpu_max, tasks_max, io_weight and leftovers as a workflow or a task sets them
// itself, with the line of each key.
struct ResourceKeys {
    cgroup::Limits limits;
    std::optional<cgroup::Leftovers> leftovers;
    std::map<std::string, size_t> lines; // key -> line
};

// What the checks after loading a file need to know about a task beyond its TaskDef.
struct TaskExtra {
    std::vector<std::string> depends_on;           // as written; Workflow::graph keeps them as indexes
    size_t workflow_line = 0;                      // of the `workflow` key
    size_t run_as_line = 0;                        // of the task's own `run_as` key
    std::map<std::string, size_t> child_param_lines; // key of `params` -> its line
    ResourceKeys resources;                        // the task's own resource keys
    std::vector<RefUse> refs;
};

// A workflow task (workflow = "x") of a file: what the cross-file checks need beyond its TaskDef.
struct WorkflowTaskLines {
    size_t task = 0;          // index into Workflow::tasks
    size_t workflow_line = 0; // of the `workflow` key
    std::map<std::string, size_t> child_param_lines; // key of `params` -> its line
};

// The outcome of loading one file, with what the cross-file checks need. Kept between changes
// (WorkflowDirectory), so it holds nothing per task but for workflow tasks.
struct FileLoad {
    fs::path file;
    std::string name;
    std::shared_ptr<Workflow> workflow; // null when the file has problems
    std::vector<Diagnostic> problems;
    std::vector<WorkflowTaskLines> workflow_tasks; // in task order
};

// A task whose parameters the plugin still has to validate(): asked for all tasks of a file at
// once (PluginCatalog::validateAll) once every task is read.
struct PendingValidation {
    const Table* table; // the task's table in the parsed file
    size_t task;        // index into Workflow::tasks
    std::string label;
};

template <class Enum>
std::optional<Enum> getChoice(const Value& v, const std::string& what,
                              const std::vector<std::pair<const char*, Enum>>& choices,
                              Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    std::string allowed;
    for (const auto& [name, e] : choices) {
        if (*s == name) return e;
        allowed += (allowed.empty() ? "" : " | ") + std::string(name);
    }
    r.add(v, what + " must be " + allowed + ", found \"" + *s + "\"");
    return std::nullopt;
}

// The same for an enum with a name table (model/names.h): one of its names.
template <class Enum>
std::optional<Enum> getChoice(const Value& v, const std::string& what, Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    if (auto e = model::parse<Enum>(*s)) return e;
    std::string allowed;
    for (const auto& [e, name] : model::NameTable<Enum>::entries) {
        allowed += (allowed.empty() ? "" : " | ") + std::string(name);
    }
    r.add(v, what + " must be " + allowed + ", found \"" + *s + "\"");
    return std::nullopt;
}

// workflow_triggers.cc

// A duration in whole seconds, at least `min`.
std::optional<std::chrono::seconds> getSeconds(const Value& v, const std::string& what, std::chrono::seconds min,
                                               Reporter& r);

// Reads one [[trigger]] table into wf.triggers (nothing is added when it has problems).
void loadTrigger(const Value& v, Workflow& wf, Reporter& r);

// workflow_policy.cc

// Reads the [policy] table into wf.
void loadPolicy(const Value& v, Workflow& wf, Reporter& r);

// workflow_tasks.cc

// Reads one [[task]] table (the index-th) into wf.tasks and extras; queues its plugin parameters
// in pending for validatePending(). Plugin and workflow names come from names, so that the tasks
// of a file share one copy of each.
void loadTask(const Value& v, size_t index, Workflow& wf, std::vector<TaskExtra>& extras,
              const PluginCatalog& plugins, SharedPool<std::string>& names, std::vector<PendingValidation>& pending,
              const WorkflowLimits& limits, Reporter& r);
void validatePending(const std::vector<PendingValidation>& pending, const Workflow& wf, const PluginCatalog& plugins,
                     Reporter& r);
void applyRunAs(Workflow& wf, size_t wf_line, const std::vector<TaskExtra>& extras,
                const WorkflowDefaults& defaults, const PluginCatalog& plugins, Reporter& r);
void warnRootWatch(Workflow& wf);

// workflow_resources.cc

// The resource keys, accepted at the top of a workflow and in a plugin task.
const std::vector<std::string>& resourceKeys();
bool isResourceKey(const std::string& key);
// Reads one resource key into out (a problem is reported when its value is bad).
void loadResourceKey(const std::string& key, const Value& v, const std::string& what, ResourceKeys& out,
                     Reporter& r);
// Sets wf.limits/.leftovers and each plugin task's effective limits/leftovers (its own keys, else
// the workflow's), and refuses each limit defaults.containment cannot apply, at its key's line.
// A plugin task whose plugin cannot be limited (PluginCatalog::limitsUnsupported) is refused when
// it has limits: at its own key's line, or at the workflow's key's line when it inherits them.
void applyResources(Workflow& wf, const ResourceKeys& workflow_keys, const std::vector<TaskExtra>& extras,
                    const WorkflowDefaults& defaults, const PluginCatalog& plugins, Reporter& r);

// workflow_notify.cc

// Reads a `notify` array of tables ([[notify]], a workflow's or taskhub.toml's) into *out: false
// with problems reported when it has any. An array of only `on = []` tables leaves *out empty:
// notifications are off.
bool loadNotify(const Value& v, std::vector<NotifyTarget>* out, Reporter& r);
// Reads [notifications] into n.
void loadNotificationSettings(const Value& v, NotificationSettings& n, Reporter& r);
// The keys a [[notify]] table and [notifications] accept (their unknown-key checks use them).
const std::set<std::string>& notifyKeys();
const std::set<std::string>& notificationSettingsKeys();
// "taskhub@<hostname>", or "taskhub" when the host name is not usable in an address.
std::string defaultMailFrom();

// workflow_fanout.cc

// True for foreach, foreach_key, max_parallel, max_failures and on_empty.
bool isFanOutKey(const std::string& key);
// Reads one of them into fan (a foreach reference also goes into extra.refs, to be checked).
void loadFanOutKey(const std::string& key, const Value& kv, const std::string& label, FanOutDef& fan,
                   TaskExtra& extra, const WorkflowLimits& limits, Reporter& r);
// After all of a task's keys: the shape keys need foreach, foreach with an upstream output needs a
// rule that waits for it; sets task.fan.
void finishFanOut(const Table& t, const std::string& label, FanOutDef fan, TaskDef& task, Reporter& r);

// workflow_graph.cc

// Checks the task graph of wf (tasks: the file's [[task]] array; dependencies name existing
// tasks, no cycles) when the file has no problems so far, and sets wf->graph; returns whether the
// graph is valid.
bool checkGraph(Workflow* wf, const std::vector<TaskExtra>& extras, const Value* tasks, Reporter& r);
void checkRefs(const Workflow& wf, const std::vector<TaskExtra>& extras, bool graph_ok, Reporter& r);
void checkWorkflowRefs(std::vector<FileLoad>& files, const fs::path& dir,
                       const std::set<std::string>* all_names = nullptr);

} // namespace taskhub::config::detail

#endif // TASKHUB_CONFIG_WORKFLOW_LOAD_H

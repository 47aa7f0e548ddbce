// Workflow definitions: one TOML file per workflow, validated in full into an immutable
// snapshot. The format is specified in docs/workflow-format.md.
#ifndef TASKHUB_CONFIG_WORKFLOW_H
#define TASKHUB_CONFIG_WORKFLOW_H

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cgroup/resources.h"
#include "config/diagnostic.h"
#include "config/notify_target.h"
#include "config/shared_value.h"
#include "config/workflow_limits.h"
#include "cron/cron.h"
#include "dag/graph.h"

namespace date {
class time_zone;
}

namespace taskhub::config {

// A trigger of a workflow ([[trigger]]): a time trigger (exactly one of cron, every or at, plus
// jitter) or a file-drop trigger (watch, with pattern, recursive, settle and after).
struct TriggerDef {
    enum class Kind {
        Cron,   // cron = "30 2 * * *"
        Reboot, // cron = "@reboot": once per machine boot
        Every,  // every = "90s": at start_at + k * every (anchor: start_at, else the daemon's start)
        At,     // at = "2026-12-24T18:00:00+01:00": once
        File,   // watch = "/srv/incoming": once per version of each file dropped there
    };
    // File: what happens to the file once its run has succeeded.
    enum class After { Keep, Delete, Move };
    Kind kind = Kind::Cron;
    size_t line = 0;
    std::string cron_text;                            // Cron, Reboot: the expression as written
    std::optional<cron::CronExpr> cron;               // Cron, Reboot
    std::chrono::seconds every{0};                    // Every: at least 1s
    std::optional<std::chrono::sys_seconds> start_at; // Every
    std::chrono::sys_seconds at{};                    // At
    // Each firing is delayed by the same offset in [0, jitter], picked from the workflow name and
    // the trigger's position (stable across restarts and machines), to spread load.
    std::chrono::seconds jitter{0};
    std::chrono::seconds jitter_offset{0};

    // File: the watched directory (absolute, lexically normal), a glob on the file name
    // (fnmatch(3) without flags), whether subdirectories are watched too, how long a file must
    // stay unchanged before it fires, and what becomes of it after a successful run (Move: into
    // after_dir, which must exist when the run ends).
    std::filesystem::path watch;
    std::string pattern = "*";
    bool recursive = false;
    std::chrono::milliseconds settle{0};
    After after = After::Keep;
    std::filesystem::path after_dir;

    // What the trigger says, for people: `cron "30 2 * * *"`, `every 90s`,
    // `at 2026-12-24T17:00:00Z`, plus ` jitter 5m` when it has one; `watch /srv/in pattern *.csv`
    // plus ` recursive`, ` settle 5s` and ` after delete` / ` after move:/srv/done` when set.
    std::string describe() const;
};

// "cron", "reboot", "every", "at", "file": a trigger's kind, as runs record it (their trigger field).
const char* toString(TriggerDef::Kind k);

// True for the triggers whose firings have a scheduled instant a deadline is measured from:
// cron, every and at (not @reboot, whose instant is the boot, nor file drops).
bool hasDeadline(TriggerDef::Kind k);

// The params every run of a file-drop trigger carries (a workflow with a `watch` trigger may not
// declare them itself): the file's absolute path, its name and its size in bytes.
inline constexpr const char* kFileParams[] = {"file", "file_name", "file_size"};

enum class Catchup { None, Latest, All };
const char* toString(Catchup c);

// When a task may run, given how its upstream tasks ended: dag::TriggerRule (semantics in
// dag/graph.h, names "all_success", ... from dag::toString). Do not declare a config::toString
// for it: with the alias, an unqualified call would be ambiguous.
using TriggerRule = dag::TriggerRule;

// Where a task's `run_as` account came from (docs/workflow-format.md, "run_as"): none (the task
// runs as taskhubd's own user), taskhub.toml's default_run_as, the workflow's run_as, or its own.
enum class RunAsSource : uint8_t { None, Default, Workflow, Task };
const char* toString(RunAsSource s); // "none" | "default_run_as" | "workflow" | "task"

// A task's own `on_failure`: Fail (the default) lets its failure count as today, under the
// workflow's [policy] on_failure; Continue absorbs it: the task stays failed and its downstream
// tasks follow their trigger rules, but the failure neither fails the run nor triggers fail_fast
// (the run's failures_absorbed counts it). A cancellation is never absorbed.
enum class TaskOnFailure : uint8_t { Fail, Continue };
const char* toString(TaskOnFailure o); // "fail" | "continue"

// A task's fan-out (`foreach`): one instance of the task per item of a list, decided when the
// task becomes ready (docs/workflow-format.md, "Fan-out").
struct FanOutDef {
    enum class OnEmpty : uint8_t { Succeed, Skip };
    // `foreach` as written: one reference ("${tasks.list.outputs.files}", "${params.regions}"),
    // or, for a literal array, empty with `literal` holding the array as JSON text.
    std::string source;
    std::string literal;
    std::string key;           // foreach_key: a template over ${item} and ${index}; empty: the index
    uint32_t max_parallel = 0; // instances running at once; 0 = no limit of its own
    uint32_t max_failures = 0; // failed instances the fan-out tolerates (a count, or a percentage)
    bool max_failures_percent = false;
    OnEmpty on_empty = OnEmpty::Succeed;
    size_t line = 0;
    bool empty() const { return source.empty() && literal.empty(); }
    // How many of `count` instances may fail with the fan-out still succeeding.
    uint32_t allowedFailures(uint32_t count) const {
        return max_failures_percent ? static_cast<uint32_t>(uint64_t{count} * max_failures / 100) : max_failures;
    }
};

// At most `max` bytes of text that may be hostile, for a message: bytes that are not printable
// ASCII (and '"', '\\') shown as \xNN, "..." when cut.
std::string shownText(std::string_view text, size_t max = 60);
// The instance keys of a fan-out over `items` (each a compact JSON text) under foreach_key `key`
// (a template over ${item}, ${item.PATH} and ${index}); nullopt with *err when a key cannot be
// made, is unusable in an instance id (1-64 of [A-Za-z0-9_.-]) or repeats, e.g.
// "foreach_key \"${item}\" gives \"x\" for items 0 and 2; instance keys must be unique".
std::optional<std::vector<std::string>> instanceKeys(const std::string& key, const std::vector<std::string>& items,
                                                     std::string* err);
// What ${item} inserts: a string item's text, any other item as its compact JSON.
std::string itemText(const std::string& item_json);

// One task of a loaded workflow. Compact, because a workflow may have 100,000 of them: what most
// tasks leave empty or share with other tasks (the plugin's name, env, limits, ...) is a Shared
// handle of 8 bytes that reads like the value itself (config/shared_value.h); the dependencies
// are in Workflow::graph (dependsOn() names them); the parameters stay one JSON text.
struct TaskDef {
    uint32_t line = 0;
    int retries = 0;
    std::string id;
    SharedText plugin;   // an executor task; empty for a workflow task
    SharedText workflow; // a workflow task: runs this workflow as a child run; empty otherwise
    std::string params_json = "{}"; // every key the engine does not own, as a JSON object
    // A workflow task's `params` table: the child run's params, values as written (they may
    // contain ${...} templates, expanded when the task starts).
    Shared<std::vector<std::pair<std::string, std::string>>> child_params;
    std::chrono::milliseconds retry_delay{0};
    double retry_backoff = 1.0;               // each further delay is the previous one times this
    std::chrono::milliseconds retry_max_delay{0}; // cap on the delay; 0 = none
    Shared<std::vector<int>> retry_on_exit_codes; // empty: retry any failure; else only these codes
    std::chrono::milliseconds timeout{0}; // 0 = none
    Shared<std::vector<std::pair<std::string, std::string>>> env;
    int priority = 0;                     // higher starts first when a limit binds
    TriggerRule trigger_rule = TriggerRule::AllSuccess;
    // An attempt a crash of taskhubd interrupted (it may or may not have run) is not run again:
    // the task fails as lost instead of being retried.
    bool at_most_once = false;
    TaskOnFailure on_failure = TaskOnFailure::Fail;
    // True when params_json, env values or child_params contain a ${...} template.
    bool has_templates = false;
    RunAsSource run_as_source = RunAsSource::None;
    // log_to_journal as the task sets it; unset: the workflow's (Workflow::log_to_journal).
    std::optional<bool> log_to_journal;
    cgroup::Leftovers leftovers = cgroup::Leftovers::Kill;
    SharedText when; // condition text; empty = always (see expr/condition.h)
    // The keys of params_json that are shell text with templates (the plugin's shellParams()):
    // the engine expands them with shell escaping.
    Shared<std::vector<std::string>> shell_params;
    // The account ("user" or "user:group") the task's processes run as; empty: taskhubd's own
    // user. Checked against the password and group databases when the file was loaded, and
    // resolved again when each attempt starts. Only ever set on tasks whose plugin honours it.
    SharedText run_as;
    // memory_max, cpu_max, tasks_max, io_weight and leftovers in effect for this task: its own
    // keys, else its workflow's (Workflow::limits, Workflow::leftovers). Applied through the
    // attempt's cgroup (cgroup/cgroup.h); a limit the machine cannot apply refuses the file.
    Shared<cgroup::Limits> limits;
    // foreach and its keys; empty for a task that runs once.
    Shared<FanOutDef> fan;
};

enum class Overlap { Skip, QueueOne, QueueAll, Replace, Allow };
enum class OnFailure { FailFast, Continue };

const char* toString(Overlap o);
const char* toString(OnFailure o);

// The bounds of a workflow's `priority` (default 0).
inline constexpr int kMinWorkflowPriority = -1000;
inline constexpr int kMaxWorkflowPriority = 1000;

// kMaxTasksPerWorkflow, the most tasks a workflow may have whatever the settings: workflow_limits.h.

struct Workflow {
    std::string name; // the file stem
    std::filesystem::path file;
    std::string description;
    std::string timezone; // IANA name actually used
    const date::time_zone* zone = nullptr;
    std::vector<TriggerDef> triggers;
    cron::DstPolicy dst;
    // [policy] overlap and catchup as they apply to time triggers and manual runs: as written,
    // else skip and latest (a late run of a periodic job stands for the ones before it).
    Overlap overlap = Overlap::Skip;
    int max_active_runs = 0; // overlap = allow: active top-level runs at most; 0 = unlimited
    Catchup catchup = Catchup::Latest;
    // The same for file drops: as written in [policy] when set there, else queue_all and all.
    // Each dropped file is its own piece of work, so no default may discard one: files dropped
    // while a run is active wait their turn, and every file found at start (or when a watch
    // trigger is added) within catchup_window runs, oldest first.
    Overlap file_overlap = Overlap::QueueAll;
    Catchup file_catchup = Catchup::All;
    std::chrono::seconds catchup_window{std::chrono::hours(24)};
    OnFailure on_failure = OnFailure::FailFast;
    std::chrono::milliseconds timeout{0}; // whole run; 0 = none
    // `deadline = "45m"`: a firing of a time trigger (cron, every, at) that has no succeeded run
    // this long after its scheduled instant missed its deadline (triggers/deadline.h). 0 = none.
    // Only loaded with at least one cron, every or at trigger.
    std::chrono::seconds deadline{0};
    // Declared params with their defaults, in file order. A run may only set declared params.
    std::vector<std::pair<std::string, std::string>> params;
    int max_parallel_tasks = 0;           // running tasks of this workflow, all runs; 0 = unlimited
    // Orders ready tasks of different runs competing for the same limit: higher starts first,
    // then the task's own priority, then first come, first served (engine/ready_queues.h).
    int priority = 0;
    // History kept of this workflow's top-level runs; unset: taskhub.toml's [history] decides.
    std::optional<int> keep_runs;
    std::optional<int> keep_days;
    std::vector<TaskDef> tasks;
    dag::Graph graph;    // node i is tasks[i]
    std::string version; // content hash of the file, recorded with each run
    std::string run_as;  // the workflow-level run_as as written; empty: none
    // Task output lines also go to the journal (common/log.h forwardTaskLine()), for the tasks
    // that do not set log_to_journal themselves.
    bool log_to_journal = false;
    // [[notify]]: when notify_set, this workflow's own targets (empty: `on = []`, notifications
    // off); otherwise taskhub.toml's [[notify]] applies.
    std::vector<NotifyTarget> notify;
    bool notify_set = false;
    // The workflow-level memory_max, cpu_max, tasks_max, io_weight and leftovers as written
    // (each task's effective values are in TaskDef).
    cgroup::Limits limits;
    cgroup::Leftovers leftovers = cgroup::Leftovers::Kill;
    // What the loader noticed but does not refuse (e.g. a watched directory others can write
    // while tasks run as root), for `taskhubd --check` and `taskhubctl validate`.
    std::vector<Diagnostic> warnings;
};

// The ids of the tasks task depends on (its depends_on), from wf.graph, in the order written.
std::vector<std::string_view> dependsOn(const Workflow& wf, size_t task);

// True when wf has a trigger that hasDeadline() (its deadline applies to that trigger's firings).
bool hasDeadlineTrigger(const Workflow& wf);

// What the loader needs to know about executor plugins, so that this module stays free of
// plugin loading. Implemented by the plugin host.
class PluginCatalog {
public:
    struct Problem {
        std::string key; // the offending parameter, or empty
        std::string message;
    };
    virtual ~PluginCatalog() = default;
    // Empty when the plugin is loaded and usable; otherwise why not (e.g. "no plugin named
    // 'shel' is loaded (loaded: noop, shell)").
    virtual std::optional<std::string> unavailable(const std::string& plugin) const = 0;
    // Runs the plugin's validate() on a task's parameters.
    virtual std::optional<Problem> validate(const std::string& plugin,
                                            const std::string& params_json) const = 0;
    // One validate() call of a batch: the plugin and a task's parameters.
    struct ValidateCall {
        const std::string* plugin;
        const std::string* params_json;
    };
    // validate() for every call, answers in the same order. The loader asks for all the tasks of
    // a file at once, so that a catalog whose calls must run elsewhere (the daemon's loader
    // thread hands them to the event loop) pays one hand-over per file, not one per task.
    virtual std::vector<std::optional<Problem>> validateAll(const std::vector<ValidateCall>& calls) const {
        std::vector<std::optional<Problem>> out;
        out.reserve(calls.size());
        for (const auto& c : calls) out.push_back(validate(*c.plugin, *c.params_json));
        return out;
    }
    // The plugin's parameters whose string value is POSIX shell text (ABI 1.3 shell_params):
    // the loader refuses templates in shell contexts that cannot be made safe, and the engine
    // escapes the values of the others (expr/shell_context.h). Pure virtual on purpose: a catalog
    // that forgot it would let templates into shell text unescaped.
    virtual std::vector<std::string> shellParams(const std::string& plugin) const = 0;
    // Empty when the plugin's tasks can run as another user (`run_as`): it declares
    // TH_CAP_RUN_AS and runs inside taskhubd. Otherwise why not and what to do instead.
    virtual std::optional<std::string> runAsUnsupported(const std::string& plugin) const = 0;
    // Empty when limits (memory_max, cpu_max, tasks_max, io_weight) can apply to the plugin's
    // tasks: it declares TH_CAP_CGROUP, so its attempts run in cgroups of their own. Otherwise why
    // not. Default: they can (for catalogs that know no capabilities, e.g. test fakes).
    virtual std::optional<std::string> limitsUnsupported(const std::string& plugin) const {
        (void)plugin;
        return std::nullopt;
    }
};

struct WorkflowDefaults {
    using DirCheck = config::DirCheck;
    WorkflowDefaults(std::string zone = {}, FileReader reader = {}, DirCheck dir_check = {}, WorkflowLimits bounds = {})
        : timezone(std::move(zone)), read_file(std::move(reader)), dir_problem(std::move(dir_check)), limits(bounds) {}

    std::string timezone; // empty: the system zone
    // When set, reads each file instead of a plain read: a reason refuses the file (a problem at
    // line 0 naming it). taskhubd sets the trust rule of common/trust.h (open, then check the
    // descriptor and every directory above; the content is read from that descriptor) and checks
    // the size of the opened file against limits (fileSizeProblem()) before reading it.
    FileReader read_file;
    // When set, asked about the workflows directory before it is listed: a reason is a problem of
    // the directory, like one that cannot be read. taskhubd sets the trust rule for directories.
    DirCheck dir_problem;
    WorkflowLimits limits;
    // taskhub.toml's default_run_as ("user" or "user:group"; empty: none): the account of tasks
    // that set no run_as (nor their workflow) and whose plugin honours run_as.
    std::string default_run_as;
    // What the attempts' cgroups can apply: a limit (memory_max, cpu_max, tasks_max, io_weight)
    // whose controller is missing refuses its file (cgroup::unsupported()). taskhubd sets it from
    // its cgroup::Manager (process-group mode: no cgroups), taskhubd --check from
    // probedContainment() (daemon/app), taskhubctl validate from the machine's cgroup2 controllers
    // (ctl/offline_commands.cc). The default refuses every limit.
    cgroup::Support containment{false, {}, "cgroups unavailable", {}};
};

struct WorkflowLoad {
    std::shared_ptr<const Workflow> workflow; // null when there were problems
    std::vector<Diagnostic> problems;
};

// Loads and validates one workflow file completely, on its own: references to other workflows
// (`workflow = "x"` tasks) are only checked by loadWorkflowDir() and validateWorkflowFiles(),
// except a task that runs its own workflow. Never throws for bad input.
WorkflowLoad loadWorkflowFile(const std::filesystem::path& file, const WorkflowDefaults& defaults,
                              const PluginCatalog& plugins);

struct WorkflowSet {
    std::map<std::string, std::shared_ptr<const Workflow>> workflows;
    std::vector<Diagnostic> problems; // of the files that did not load
    std::vector<std::filesystem::path> failed_files;
};

// Loads every *.toml file in dir (non-recursively, in name order). One bad file never stops the
// others. A missing directory is one problem. After each file's own checks, workflow tasks are
// checked across files: the child workflow must exist and have loaded, the child must declare
// every key of the task's `params`, and workflows must not reference each other in a cycle. A
// file failing these checks does not load either, and neither does a file whose workflow tasks
// run it (each says why, at the referencing task's line).
WorkflowSet loadWorkflowDir(const std::filesystem::path& dir, const WorkflowDefaults& defaults,
                            const PluginCatalog& plugins);

// Checks files (for `taskhubctl validate`) exactly as loadWorkflowDir() would load them into
// workflows_dir: each file on its own, then its workflow references against the other files given
// and the workflows of workflows_dir, where a given file replaces the directory's file of the same
// name. Returns one result per file, in the order given; problems of the directory's own files are
// not reported, except that a reference to a file that does not load says so. A missing or
// unreadable workflows_dir gives an empty context (references to it are reported as unknown).
std::vector<WorkflowLoad> validateWorkflowFiles(const std::vector<std::filesystem::path>& files,
                                                const std::filesystem::path& workflows_dir,
                                                const WorkflowDefaults& defaults,
                                                const PluginCatalog& plugins);

// True when name can be a workflow name (the file stem): [A-Za-z0-9_.-]+, not starting with '.'.
bool isValidWorkflowName(const std::string& name);

// True when a directory entry of this name is a workflow file: it ends in ".toml" and does not
// start with '.' (editors' temporary and backup files, "x.toml~", ".x.toml.swp", "4913", do not).
bool isWorkflowFileName(const std::string& file_name);

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_WORKFLOW_H

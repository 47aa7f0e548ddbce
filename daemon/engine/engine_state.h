// The engine's shared state and the core class its rooms work on. Engine (engine.h) is the
// facade; Core holds the active runs and is implemented in one file per concern:
//   engine_state.cc   persistence helpers (events, run and task records), templates
//   run_lifecycle.cc  trigger, overlap and queued runs, admit, settle, end, child runs
//   ready_queues.h    ready tasks waiting for a slot: limits, priorities, parking (its own class)
//   dispatch.cc       taking ready tasks from the queues, dispatch and launch, attempt
//                     completion and retries, task timeouts, plugin health, waiting reasons
//   controls.cc       operator commands: cancel, pause, resume, retry
//   recovery.cc       recover after a crash (the only code that kills processes)
// It reaches plugins through PluginPort (plugin_port.h) and time through EngineClock (clock.h),
// so that tests run it on fake plugins and simulated time. Every method runs on the event-loop
// thread.
#ifndef TASKHUB_ENGINE_ENGINE_STATE_H
#define TASKHUB_ENGINE_ENGINE_STATE_H

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cgroup/cgroup.h"
#include "common/proc.h"
#include "config/workflow.h"
#include "dag/graph.h"
#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/observer.h"
#include "engine/ready_queues.h"
#include "engine/plugin_port.h"
#include "engine/task_output.h"
#include "expr/condition.h"
#include "expr/template.h"
#include "plugin_host/plugin_host.h"
#include "store/records.h"

namespace taskhub::engine {

namespace asio = boost::asio;
using plugin_host::AttemptResult;
using Clock = std::chrono::steady_clock; // EngineClock::TimePoint is its time_point

// A task's state inside the engine (TaskRun::st) is the domain's task state. Starting is a
// state of the record only: while its attempt's record is not yet durable the engine's own view
// of the task is Running, and its record says Starting.
using TS = model::TaskState;
using model::isFinal;

// Drops the process identity of a task's latest attempt (a new attempt, or one that ended).
inline void forgetProcess(store::TaskRecord& t) {
    t.pid.reset();
    t.pgid.reset();
    t.proc_start.reset();
    t.handle.clear();
}

inline dag::Outcome outcomeOf(TS s) {
    switch (s) {
    case TS::Succeeded: return dag::Outcome::Succeeded;
    case TS::Skipped: return dag::Outcome::Skipped;
    case TS::Cancelled: return dag::Outcome::Cancelled;
    default: return dag::Outcome::Failed;
    }
}

// A task whose failure its run absorbs (on_failure = "continue"): it stays failed and its
// downstream tasks follow their trigger rules, but neither the run's end state nor fail_fast
// counts it. A cancellation is never absorbed.
inline bool absorbsFailure(const config::TaskDef& def) { return def.on_failure == config::TaskOnFailure::Continue; }
// The failure_absorbed event's detail for such a task: "on_failure = continue: the run goes on
// (exit code 3)".
inline std::string absorbedText(const std::string& message) {
    return "on_failure = continue: the run goes on" + (message.empty() ? std::string() : " (" + message + ")");
}

// Rules meant to run after failures (clean-up, notification): a fail_fast stop lets them run.
inline bool runsAfterFailure(dag::TriggerRule r) {
    return r == dag::TriggerRule::AllDone || r == dag::TriggerRule::AllFailed ||
           r == dag::TriggerRule::OneFailed || r == dag::TriggerRule::Always;
}

inline std::string joinNames(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
}

// Who asked, for events and messages.
inline std::string actorOr(const std::string& actor) { return actor.empty() ? "an operator" : actor; }

// The ready queue a task waits in: its plugin's, or "" for workflow tasks (no plugin limits).
inline const std::string& queueKey(const config::TaskDef& def) {
    static const std::string workflow_tasks;
    return def.workflow.empty() ? def.plugin : workflow_tasks;
}

inline const std::string* findValue(const store::NameValues& values, const std::string& name) {
    for (const auto& [k, v] : values) {
        if (k == name) return &v;
    }
    return nullptr;
}

// An expanded fan-out task (`foreach`): its instances are TaskRuns of the same run, at
// run.tasks[first .. first + items.size()), made ready at most max_parallel at a time; the task
// itself runs no attempt and ends when its last instance has ended (endFanOut()).
struct FanOut {
    std::vector<std::string> items; // item i as compact JSON text
    uint32_t first = 0;
    uint32_t next = 0;   // instances before it were made ready (or had ended) already
    uint32_t active = 0; // instances ready, running or retrying
    uint32_t ended = 0, succeeded = 0, failed = 0, cancelled = 0;
    bool over = false;   // failures exceeded max_failures (a fail_fast stop was asked for)
    std::string first_failure; // "convert[3]: exit code 2"
    uint32_t count() const { return static_cast<uint32_t>(items.size()); }
};

inline constexpr uint32_t kNoFan = UINT32_MAX;

struct TaskRun {
    store::TaskRecord rec;
    TS st = TS::Pending;
    const config::TaskDef* def = nullptr;
    plugin_host::Plugin* plugin = nullptr;
    uint64_t token = 0;
    std::shared_ptr<TaskOutput> output; // while an attempt runs
    bool cancel_requested = false;
    std::string cancel_reason;
    std::string timed_out; // non-empty: the attempt was stopped by its timeout
    std::unique_ptr<Timer> timer;              // retry delay or attempt timeout
    Clock::time_point deadline{};              // the attempt's timeout, when it has one
    std::chrono::milliseconds frozen_left{0};  // what was left of it when frozen
    uint64_t ready_seq = 0;                    // the live ready-queue entry
    PluginQueue* queue = nullptr;              // where it waits and counts while running
    // Ready while its plugin is unhealthy (on_unhealthy = hold): the attempt's timeout runs
    // meanwhile. held_since is when the current wait began; waited sums earlier waits of
    // this attempt.
    Clock::time_point held_since{};
    std::chrono::milliseconds waited{0};
    // Dispatched, its "starting" record not yet durable: the plugin is called once it is.
    bool launching = false;
    // Its plugin was asked to hold the attempt's work while the run is paused (ABI 1.6 hold()).
    bool held = false;
    uint64_t start_mark = 0; // the store's write mark after the attempt's start was recorded
    // A fan-out instance: its fan-out task's index and its item's position; kNoFan otherwise.
    uint32_t fan_task = kNoFan;
    uint32_t item = 0;
    std::unique_ptr<FanOut> fan; // a fan-out task, once expanded
    bool isInstance() const { return fan_task != kNoFan; }
};

// An attempt waiting for its "starting" record to be committed (see flushLaunches()).
struct Launch {
    uint64_t serial = 0;
    uint32_t task = 0;
    int attempt = 0;
    plugin_host::AttemptSpec spec;
};

struct Run {
    uint64_t serial = 0;
    store::RunRecord rec;
    std::shared_ptr<const config::Workflow> wf;
    dag::Progress progress;
    // The workflow's tasks (index = graph node), then the instances of expanded fan-outs. A deque:
    // expanding appends without moving the tasks callers up the stack hold references to.
    std::deque<TaskRun> tasks;
    std::vector<std::optional<expr::Condition>> conditions; // parsed `when`, per task
    size_t unfinished = 0;
    std::optional<model::RunState> stop_state; // set when the run is being stopped: Failed or Cancelled
    std::string stop_reason;
    bool fail_fast_stop = false; // stopped by fail_fast: after-failure rules still run
    std::string first_failure; // the first failure that fails the run (absorbed ones do not)
    // The workflow's priority, or the parent run's when that is higher (a child run): what its
    // ready tasks are ordered by first (ReadyItem::run_priority).
    int priority = 0;
    bool paused = false;
    bool frozen = false;
    bool ending = false;
    // Left running at shutdown (Engine::shutdown): its only active attempts run elsewhere, and the
    // next start re-attaches to them (ABI 1.6). Not drained, not cancelled; starts nothing new.
    bool detached = false;
    std::string parent_id; // a child run: its parent run, task and the task's attempt
    uint32_t parent_task = 0;
    int parent_attempt = 0;
    std::vector<std::string> children; // active child runs
    std::vector<ReadyItem> held;       // ready while paused
    int* wf_running = nullptr;         // queues.workflowRunning(wf->name)
    int backfill_max_active = 0;       // > 0: a backfill's run (Engine::trigger)
    // The store's write mark after the run's record was written (adopt()): until it is durable,
    // its attempts wait for a durable start, so that nothing runs for a run a crash could forget.
    uint64_t created_mark = 0;
    std::unique_ptr<Timer> run_timer;
    std::vector<std::function<void(const store::RunRecord&)>> waiters;

    static std::vector<dag::TriggerRule> rulesOf(const config::Workflow& wf) {
        std::vector<dag::TriggerRule> rules;
        rules.reserve(wf.tasks.size());
        for (const auto& t : wf.tasks) rules.push_back(t.trigger_rule);
        return rules;
    }
    explicit Run(std::shared_ptr<const config::Workflow> w)
        : wf(std::move(w)), progress(wf->graph, rulesOf(*wf)) {}
};

using expr::refPathError; // "${tasks.list.outputs.files[12]}: index out of range (array of 3)"

// The engine's state and behaviour; Engine forwards to it. Its methods are implemented in
// the files named above each group.
struct Core {
    asio::io_context& io;
    store::Store& store;
    PluginPort& plugins;
    EngineClock& clock; // deadlines and timers
    EngineOptions opts;
    WorkflowLookup lookup_workflow;

    std::unordered_map<std::string, std::unique_ptr<Run>> runs; // active: queued, running, paused
    std::unordered_map<uint64_t, Run*> by_serial;
    uint64_t next_serial = 0;
    std::map<std::string, std::deque<std::string>> queued; // workflow -> queued run ids
    // workflow -> its backfill runs waiting to start, by scheduled instant (epoch s), oldest first
    std::map<std::string, std::map<int64_t, std::string>> backfill_queued;
    // workflow -> its active top-level runs (queued, running, paused) by serial, oldest first:
    // what the overlap policy looks at, without a walk over every active run per firing.
    std::unordered_map<std::string, std::map<uint64_t, Run*>> top_level;
    // Firings this process recorded as skipped because their workflow was paused, until their
    // record is committed: the store reads only committed records, and a catch-up right after
    // `resume` must still find them to turn them into the run.
    std::unordered_set<std::string> paused_uncommitted;
    ReadyQueues queues; // ready tasks waiting for a slot
    static constexpr size_t kLaunchChunk = 256;
    std::vector<Launch> launches; // dispatched since the last flushLaunches()
    uint64_t launch_since = 0;    // the store's write mark before the first of them
    std::string state_dir;        // TASKHUB_STATE_DIR of every attempt (recovery finds them by it)
    size_t ready_tasks = 0;
    uint64_t runs_started = 0;
    std::vector<EngineObserver*> observers; // Engine::addObserver
    bool stopping = false;
    std::function<void()> on_drained;
    // True when every active run has ended or is detached (the shutdown's drain is over).
    bool drained() const;
    // At shutdown: whether the run (with its child runs) has an active attempt, and every one of
    // them is of a plugin that can adopt it after a restart (TH_CAP_ADOPT).
    bool detachable(const Run& run, bool* any_active) const;
    void detach(Run& run);
    std::unique_ptr<Timer> grace_timer;
    std::mt19937_64 rng{std::random_device{}()};
    // Cgroups recovery found of ended attempts whose leftovers were kept: removed once empty.
    std::vector<std::unique_ptr<cgroup::AttemptCgroup>> kept_cgroups;

    Core(asio::io_context& io, store::Store& store, PluginPort& plugins, EngineClock& clock, EngineOptions options);
    ~Core();

    // engine_state.cc: persistence and templates
    void event(const std::string& run_id, const std::string& task_id, const std::string& kind,
               const std::string& detail = {});
    void saveRun(Run& run);
    void saveTask(Run& run, uint32_t t);
    void setState(Run& run, uint32_t t, TS st);
    Run* findRun(const std::string& id);
    // Resolves template and condition references in `run` (refPathError() below). A param or output that does not
    // exist is std::nullopt ("", as always). A path into an existing value that cannot be
    // followed (not JSON, a missing key, an index out of range) is std::nullopt too, and its
    // reason goes to *err, the first one only (e.g. "${tasks.list.outputs.files[12]}: index out
    // of range (array of 3)"): callers fail the task with it. Item and Index refs are
    // std::nullopt here.
    expr::Lookup lookupFor(const Run& run, std::string* err = nullptr) const;
    // The same, for a fan-out instance's templates: also ${item...} (a path reads into the item)
    // and ${index}.
    expr::Lookup lookupFor(const Run& run, uint32_t t, std::string* err = nullptr) const;
    // Observers (observer.h): a run's end, with its tasks' records.
    void notifyRunEnded(const store::RunRecord& rec, const std::vector<const store::TaskRecord*>& tasks);
    // text with its templates expanded by lookupFor(run, err), or lookupFor(run, t, err) (see
    // there for *err).
    std::string expand(const Run& run, const std::string& text, std::string* err = nullptr) const;
    std::string expand(const Run& run, uint32_t t, const std::string& text, std::string* err = nullptr) const;

    // run_lifecycle.cc: runs from trigger to end
    std::string newManualId(const std::string& workflow);
    static std::optional<std::string> resolveParams(const config::Workflow& wf,
                                                    const store::NameValues& given, store::NameValues* out);
    std::unique_ptr<Run> makeRun(std::shared_ptr<const config::Workflow> wf, std::string id,
                                 model::TriggerSource trigger, store::NameValues params);
    Run& adopt(std::unique_ptr<Run> run);
    TriggerResult trigger(const TriggerRequest& req);
    void armRunTimeout(Run& run, std::optional<std::chrono::milliseconds> after = std::nullopt);
    void startRun(Run& run);
    std::optional<TS> admitDecision(Run& run, uint32_t t, std::string* why);
    void admit(Run& run, uint32_t first);
    void markReady(Run& run, uint32_t t);
    std::string chainOf(const Run& run);
    void startChild(Run& run, uint32_t t);
    void settle(Run& run, uint32_t t, TS state, const std::string& message);
    void settleSkipped(Run& run, const std::vector<uint32_t>& skipped);
    // A failure the run absorbs (a task with on_failure = "continue" ended failed): counts it in
    // the run's failures_absorbed, saves the run, records a "failure_absorbed" event of task t
    // with `why` as its detail and tells the observers (the metrics). The one place the count
    // goes up; a retry that runs the task again takes it back (Core::retry).
    void absorbFailure(Run& run, uint32_t t, const std::string& why);
    // When a run is rebuilt (recovery, retry) from its tasks' records: the task's failure or
    // cancellation becomes the run's first failure unless it has one or the failure is absorbed.
    static void restoreFirstFailure(Run& run, const TaskRun& task);
    void finishTask(Run& run, uint32_t t, TS state, const std::string& message);
    void follow(Run& run, uint32_t t, dag::Outcome outcome);
    void stopRun(Run& run, model::RunState state, const std::string& reason, bool fail_fast = false);
    void cancelRun(Run& run, const std::string& reason);
    void maybeEndRun(Run& run);
    void endRun(Run& run);
    void childEnded(const Run& child);
    void startNextQueued(const std::string& workflow);
    void startBackfill(const std::string& workflow);
    // Whether the run is a backfill's run still waiting to start.
    static bool backfillWaiting(const Run& run) {
        return run.backfill_max_active > 0 && run.rec.state == model::RunState::Queued;
    }

    // fanout.cc: foreach
    // The items of task t's foreach, evaluated now; nullopt with *err naming the task, the key
    // and what is wrong.
    std::optional<std::vector<std::string>> fanItems(Run& run, uint32_t t, std::string* err);
    // Expands fan-out task t into its instances (none for an empty list). Returns the outcome
    // when the task ended here instead (an error, an empty list), with *why.
    std::optional<TS> expandFanOut(Run& run, uint32_t t, std::string* why);
    // Appends the instances of a fan-out over items (their ids from foreach_key); false with *err
    // when a key is unusable or repeats.
    bool makeInstances(Run& run, uint32_t t, std::vector<std::string> items, std::string* err);
    // Makes instances ready while max_parallel allows; ends the fan-out once all have ended.
    void startInstances(Run& run, uint32_t t);
    void instanceEnded(Run& run, uint32_t i, TS state);
    void endFanOut(Run& run, uint32_t t);
    // After a rebuild (recovery, retry): the counts from the instances' states.
    void recountFanOut(Run& run, uint32_t t);
    // Recreates the instances of the run's expanded fan-outs from their records (rows beyond the
    // workflow's tasks); false with *err when a recorded list no longer makes the same instances.
    bool restoreFanOuts(Run& run, const store::RunRecord& rec, std::string* err);
    // How a finished fan-out counts for its dependents' rules: succeeded and failed parts.
    std::pair<uint32_t, uint32_t> fanParts(const Run& run, uint32_t t) const;

    // dispatch.cc: dispatch, attempts, plugin health
    PluginQueue& queueOf(TaskRun& task);
    void enqueue(Run& run, uint32_t t);
    std::pair<Run*, uint32_t> live(const ReadyItem& item);
    static bool workflowLimitReached(const Run& run);
    void pump();
    bool failsWhenUnhealthy(const std::string& plugin) const;
    std::string unhealthyText(const std::string& plugin) const;
    void holdForPlugin(Run& run, uint32_t t);
    void releaseHold(TaskRun& task);
    void failUnstarted(Run& run, uint32_t t, const std::string& message);
    void pluginHealthChanged(const std::string& plugin);
    std::filesystem::path logFile(const Run& run, const TaskRun& task) const; // the attempt's log
    std::shared_ptr<TaskOutput> openOutput(const Run& run, const TaskRun& task, std::string* err);
    void armTaskTimeout(Run& run, uint32_t t, std::chrono::milliseconds after);
    void dispatch(Run& run, uint32_t t);
    bool needsDurableStart(const TaskRun& task) const;
    void flushLaunches();
    void launch(Launch& l, bool recorded);
    void onProcess(uint64_t serial, uint32_t t, int attempt, const plugin_host::ProcessIdentity& p);
    void onHandle(uint64_t serial, uint32_t t, int attempt, const std::string& handle);
    // What an attempt of the task is started (or adopted) with: its parameters with templates
    // expanded, and its run_as account as it is now. An error: the sentence the attempt fails with.
    std::optional<std::string> attemptInputs(Run& run, uint32_t t, std::string* params_json,
                                             std::optional<Identity>* identity);
    plugin_host::AttemptSpec attemptSpec(Run& run, uint32_t t, std::string params_json,
                                         std::optional<Identity> identity);
    void stopAttempt(Run& run, uint32_t t);
    void onAttemptDone(uint64_t serial, uint32_t t, int attempt, AttemptResult r);
    void endAttempt(Run& run, uint32_t t, AttemptResult r);
    void finishAttempt(Run& run, uint32_t t, AttemptResult r);
    std::map<std::string, std::string> waitingReasons(const std::string& id) const;

    // controls.cc: operator controls
    bool activeRun(const std::string& id, Run** out, std::string* err);
    std::optional<uint32_t> taskIndex(const Run& run, const std::string& task_id, std::string* err);
    bool cancel(const std::string& id, const std::string& task_id, const std::string& actor,
                std::string* err);
    void pauseTree(Run& run, bool freeze, const std::string& by);
    void resumeTree(Run& run, const std::string& by);
    bool pause(const std::string& id, bool freeze, const std::string& actor, std::string* err);
    bool resume(const std::string& id, const std::string& actor, std::string* err);
    bool retry(const std::string& id, const std::string& task_id, bool downstream, const std::string& actor,
               std::string* err);

    // recovery.cc: recovery after a crash
    // run id + "\n" + task id -> what stopLeftovers() found for the task's lost attempt.
    using LostWhat = std::map<std::string, std::string>;
    // During recover(): run id + "\n" + task id -> the highest attempt found running (its cgroup,
    // or its processes' environment) whose start had not been committed; already recorded as
    // lost. The task's next attempt takes the number after it.
    std::map<std::string, int> unrecorded_attempts;
    void noteUnrecorded(const store::RunRecord& run, const store::TaskRecord& task, int attempt,
                        const std::string& what, RecoveryReport* report);
    // Process-group mode: kills the processes of attempts whose start was not committed (a later
    // attempt than the store shows, in an unfinished run; tagged entries not in `matched`).
    std::set<uid_t> attemptOwners(const std::map<std::string, store::RunRecord>& unfinished) const;
    void stopUnrecorded(const std::map<std::string, store::RunRecord>& unfinished,
                        const std::multimap<std::string, FoundProcess>& tagged,
                        const std::set<std::string>& matched, std::vector<FoundProcess>* killed,
                        RecoveryReport* report);
    std::string stopLeftovers(const store::RunRecord& run, const store::TaskRecord& task, bool same_boot,
                              const std::multimap<std::string, FoundProcess>& tagged,
                              std::vector<FoundProcess>* killed);
    static std::string lostText(const LostWhat& lost_what, const std::string& run_id,
                                const std::string& task_id);
    // at_restart: found by recovery ("was lost when taskhubd stopped"); else reported by its
    // plugin while the daemon runs (TH_OUTCOME_LOST, a refused adoption).
    void recordLost(const store::RunRecord& run, const store::TaskRecord& t, const std::string& what,
                    const std::string& then, bool at_restart = true);
    int abandon(const store::RunRecord& rec, const std::string& why, const std::map<std::string,
                store::RunRecord>& unfinished, const LostWhat& lost_what, RecoveryReport* report);
    int rebuild(const store::RunRecord& rec, Run* parent, uint32_t parent_task, const std::map<std::string,
                store::RunRecord>& unfinished, const LostWhat& lost_what, std::vector<Run*>* rebuilt,
                RecoveryReport* report);
    void resumeRebuilt(Run& run);
    // ABI 1.6: attempts of plugins that can adopt (TH_CAP_ADOPT) which the previous process left
    // running; rebuild() keeps them running and recover() hands them back to their plugin with
    // adoptAttempt(), before anything new starts. Run serial, task index.
    std::vector<std::pair<uint64_t, uint32_t>> adoptions;
    // Whether the attempt the previous process left running can be adopted; if not and its
    // plugin declares TH_CAP_ADOPT, *why_not says why (for the lost event).
    bool adoptable(const TaskRun& task, std::string* why_not) const;
    void adoptAttempt(Run& run, uint32_t t);
    // Recovery by cgroup: kills, measures and removes the attempt cgroups the previous process
    // left; fills lost_what for the lost attempts it found (run id + "\n" + task id, also put
    // in *contained).
    void recoverCgroups(const std::map<std::string, store::RunRecord>& unfinished, LostWhat* lost_what,
                        std::set<std::string>* contained, RecoveryReport* report);
    bool leftoversKept(const std::string& workflow, const std::string& task_id) const;
    RecoveryReport recover(bool same_boot);
};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_ENGINE_STATE_H

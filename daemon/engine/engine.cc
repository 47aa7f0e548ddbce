#include "engine/engine.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <taskhub/suggest.hpp>

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <queue>
#include <random>
#include <set>
#include <unordered_map>

#include "common/failpoint.h"
#include "common/identity.h"
#include "common/proc.h"
#include "common/time_util.h"
#include "dag/graph.h"
#include "engine/retry_policy.h"
#include "engine/task_output.h"
#include "expr/condition.h"
#include "expr/template.h"
#include "plugin_host/plugin_host.h"
#include "store/store.h"

#include <taskhub/plugin_api.h>

namespace taskhub::engine {

using taskhub::FoundProcess;
using taskhub::processesWithEnvironment;
using taskhub::processStartTicks;
using taskhub::sameProcess;

static_assert(config::kMaxTasksPerWorkflow == static_cast<size_t>(store::Store::kMaxTasksPerRun),
              "the loader must refuse workflows the store cannot key");

namespace asio = boost::asio;
namespace fs = std::filesystem;
using plugin_host::AttemptResult;
using Clock = std::chrono::steady_clock;

namespace {

// A task's state inside the engine; its name is what the store and clients see.
enum class TS : uint8_t { Pending, Ready, Running, Frozen, Retrying, Succeeded, Failed, Cancelled, Skipped };

const char* stateName(TS s) {
    switch (s) {
    case TS::Pending: return "pending";
    case TS::Ready: return "ready";
    case TS::Running: return "running";
    case TS::Frozen: return "frozen";
    case TS::Retrying: return "retrying";
    case TS::Succeeded: return "succeeded";
    case TS::Failed: return "failed";
    case TS::Cancelled: return "cancelled";
    case TS::Skipped: return "skipped";
    }
    return "?";
}

bool isFinal(TS s) { return s >= TS::Succeeded; }

std::optional<TS> finalStateFromName(const std::string& s) {
    if (s == "succeeded") return TS::Succeeded;
    if (s == "failed") return TS::Failed;
    if (s == "cancelled") return TS::Cancelled;
    if (s == "skipped") return TS::Skipped;
    return std::nullopt;
}

// A stored task state of an attempt that may have been running when taskhubd stopped.
bool attemptWasActive(const std::string& state) {
    return state == "starting" || state == "running" || state == "frozen";
}

// Drops the process identity of a task's latest attempt (a new attempt, or one that ended).
void forgetProcess(store::TaskRecord& t) {
    t.pid.reset();
    t.pgid.reset();
    t.proc_start.reset();
}

dag::Outcome outcomeOf(TS s) {
    switch (s) {
    case TS::Succeeded: return dag::Outcome::Succeeded;
    case TS::Skipped: return dag::Outcome::Skipped;
    case TS::Cancelled: return dag::Outcome::Cancelled;
    default: return dag::Outcome::Failed;
    }
}

// Rules meant to run after failures (clean-up, notification): a fail_fast stop lets them run.
bool runsAfterFailure(dag::TriggerRule r) {
    return r == dag::TriggerRule::AllDone || r == dag::TriggerRule::AllFailed ||
           r == dag::TriggerRule::OneFailed || r == dag::TriggerRule::Always;
}

std::string joinNames(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out.empty() ? "none" : out;
}

// Who asked, for events and messages.
std::string actorOr(const std::string& actor) { return actor.empty() ? "an operator" : actor; }

// The ready queue a task waits in: its plugin's, or "" for workflow tasks (no plugin limits).
const std::string& queueKey(const config::TaskDef& def) {
    static const std::string workflow_tasks;
    return def.workflow.empty() ? def.plugin : workflow_tasks;
}

const std::string* findValue(const store::NameValues& values, const std::string& name) {
    for (const auto& [k, v] : values) {
        if (k == name) return &v;
    }
    return nullptr;
}

} // namespace

struct Engine::Impl {
    struct PluginQueue;
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
        std::unique_ptr<asio::steady_timer> timer; // retry delay or attempt timeout
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
    };

    // An attempt waiting for its "starting" record to be committed (see flushLaunches()).
    struct Launch {
        uint64_t serial = 0;
        uint32_t task = 0;
        int attempt = 0;
        plugin_host::AttemptSpec spec;
    };

    struct ReadyItem {
        int priority = 0;
        uint64_t seq = 0;
        uint64_t run = 0; // Run::serial
        uint32_t task = 0;
    };
    // Highest priority first, then first come, first served.
    struct ItemOrder {
        bool operator()(const ReadyItem& a, const ReadyItem& b) const {
            return a.priority != b.priority ? a.priority < b.priority : a.seq > b.seq;
        }
    };
    using ReadyHeap = std::priority_queue<ReadyItem, std::vector<ReadyItem>, ItemOrder>;

    struct Run {
        uint64_t serial = 0;
        store::RunRecord rec;
        std::shared_ptr<const config::Workflow> wf;
        dag::Progress progress;
        std::vector<TaskRun> tasks;
        std::vector<std::optional<expr::Condition>> conditions; // parsed `when`, per task
        size_t unfinished = 0;
        std::string stop_state;  // set when the run is being stopped: "failed" or "cancelled"
        std::string stop_reason;
        bool fail_fast_stop = false; // stopped by fail_fast: after-failure rules still run
        std::string first_failure;
        bool paused = false;
        bool frozen = false;
        bool ending = false;
        std::string parent_id; // a child run: its parent run, task and the task's attempt
        uint32_t parent_task = 0;
        int parent_attempt = 0;
        std::vector<std::string> children; // active child runs
        std::vector<ReadyItem> held;       // ready while paused
        int* wf_running = nullptr;         // workflow_running[wf->name]
        std::unique_ptr<asio::steady_timer> run_timer;
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

    asio::io_context& io;
    store::Store& store;
    plugin_host::PluginHost& plugins;
    EngineOptions opts;
    WorkflowLookup lookup_workflow;

    std::unordered_map<std::string, std::unique_ptr<Run>> runs; // active: queued, running, paused
    std::unordered_map<uint64_t, Run*> by_serial;
    uint64_t next_serial = 0;
    std::map<std::string, std::deque<std::string>> queued; // workflow -> queued run ids
    // Ready tasks waiting for a slot: by plugin; "" holds workflow tasks, which start child runs
    // and are held back by no plugin or global limit (a parent waiting on a slot its own child
    // needs could never finish).
    // A plugin's ready tasks with what decides whether one may start: how many of its attempts
    // run, its max_concurrency, its health. Nodes of a std::map never move, so tasks and runs keep
    // pointers to their queue and counter instead of looking names up per dispatch.
    struct PluginQueue {
        ReadyHeap heap;
        int running = 0;
        int limit = 0;          // max_concurrency; 0 = unlimited
        bool unhealthy = false; // as PluginHost::dispatchable() said at the last transition
    };
    std::map<std::string, PluginQueue> ready;
    static constexpr size_t kLaunchChunk = 256;
    std::vector<Launch> launches; // dispatched since the last flushLaunches()
    uint64_t launch_since = 0;    // the store's write mark before the first of them
    std::string state_dir;        // TASKHUB_STATE_DIR of every attempt (recovery finds them by it)
    // Held back by a workflow's max_parallel_tasks, by workflow name.
    struct Parked {
        int limit = 0;
        ReadyHeap heap;
    };
    std::map<std::string, Parked> parked;
    uint64_t next_seq = 0;
    size_t ready_tasks = 0;
    size_t unhealthy_plugins = 0; // queues marked unhealthy
    std::map<std::string, int> workflow_running;
    size_t running_tasks = 0;
    uint64_t runs_started = 0;
    bool stopping = false;
    std::function<void()> on_drained;
    std::unique_ptr<asio::steady_timer> grace_timer;
    std::mt19937_64 rng{std::random_device{}()};

    Impl(asio::io_context& i, store::Store& s, plugin_host::PluginHost& p, EngineOptions o)
        : io(i), store(s), plugins(p), opts(std::move(o)), state_dir(opts.state_dir.string()) {}

    // ---- persistence ----

    void event(const std::string& run_id, const std::string& task_id, const std::string& kind,
               const std::string& detail = {}) {
        store.addEvent(nowMillis(), run_id, task_id, kind, detail);
    }

    void saveRun(Run& run) { store.updateRun(run.rec); }

    void saveTask(Run& run, uint32_t t) {
        store.upsertTask(run.rec.id, static_cast<int>(t), run.tasks[t].rec);
    }

    void setState(Run& run, uint32_t t, TS st) {
        auto& task = run.tasks[t];
        if (task.st == TS::Ready) --ready_tasks;
        if (st == TS::Ready) ++ready_tasks;
        task.st = st;
        task.rec.state = stateName(st);
    }

    Run* findRun(const std::string& id) {
        auto it = runs.find(id);
        return it == runs.end() ? nullptr : it->second.get();
    }

    // ---- templates and conditions ----

    expr::Lookup lookupFor(const Run& run) const {
        return [&run](const expr::Ref& ref) -> std::optional<std::string> {
            if (ref.kind == expr::Ref::Param) {
                const std::string* v = findValue(run.rec.params, ref.name);
                return v ? std::optional<std::string>(*v) : std::nullopt;
            }
            auto idx = run.wf->graph.index(ref.task);
            if (!idx) return std::nullopt;
            const auto& task = run.tasks[*idx];
            if (ref.kind == expr::Ref::TaskState) return task.rec.state;
            const std::string* v = findValue(task.rec.outputs, ref.name);
            return v ? std::optional<std::string>(*v) : std::nullopt;
        };
    }

    std::string expand(const Run& run, const std::string& text) const {
        if (text.find("${") == std::string::npos) return text;
        std::string ignored; // validated at load; a bad template stays as written
        if (auto tpl = expr::Template::parse(text, &ignored)) return tpl->expand(lookupFor(run));
        return text;
    }

    // ---- creating runs ----

    std::string newManualId(const std::string& workflow) {
        for (;;) {
            char suffix[8];
            std::snprintf(suffix, sizeof suffix, "%04x", static_cast<unsigned>(rng() & 0xffff));
            auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
            std::string id = workflow + "@" + formatCompactUtc(now) + "-m" + suffix;
            if (!runs.count(id) && !store.runExists(id)) return id;
        }
    }

    // The run's params: the workflow's defaults, overridden by `given`. Returns an error for a
    // name the workflow does not declare.
    static std::optional<std::string> resolveParams(const config::Workflow& wf,
                                                    const store::NameValues& given,
                                                    store::NameValues* out) {
        *out = wf.params;
        for (const auto& [name, value] : given) {
            auto it = std::find_if(out->begin(), out->end(), [&](const auto& p) { return p.first == name; });
            if (it == out->end()) {
                std::vector<std::string> declared;
                for (const auto& p : wf.params) declared.push_back(p.first);
                std::string msg = "workflow '" + wf.name + "' has no param '" + name + "' (declared: " +
                                  joinNames(declared) + ")";
                if (auto s = sdk::closestKey(name, declared); !s.empty()) msg += "; did you mean '" + s + "'?";
                return msg;
            }
            it->second = value;
        }
        return std::nullopt;
    }

    std::unique_ptr<Run> makeRun(std::shared_ptr<const config::Workflow> wf, std::string id,
                                 std::string trigger, store::NameValues params) {
        auto run = std::make_unique<Run>(wf);
        run->serial = ++next_serial;
        run->rec.id = std::move(id);
        run->rec.workflow = wf->name;
        run->rec.trigger = std::move(trigger);
        run->rec.version = wf->version;
        run->rec.created_ms = nowMillis();
        run->rec.params = std::move(params);
        run->tasks.resize(wf->tasks.size());
        run->conditions.resize(wf->tasks.size());
        run->unfinished = wf->tasks.size();
        for (uint32_t i = 0; i < wf->tasks.size(); ++i) {
            auto& t = run->tasks[i];
            t.def = &wf->tasks[i];
            t.rec.task_id = t.def->id;
            t.rec.plugin = t.def->workflow.empty() ? t.def->plugin : "workflow:" + t.def->workflow;
        }
        return run;
    }

    Run& adopt(std::unique_ptr<Run> run) {
        Run& r = *run;
        r.wf_running = &workflow_running[r.wf->name];
        by_serial[r.serial] = &r;
        runs.emplace(r.rec.id, std::move(run));
        return r;
    }

    TriggerResult trigger(std::shared_ptr<const config::Workflow> wf, TriggerKind kind,
                          std::optional<std::chrono::sys_seconds> scheduled,
                          const store::NameValues& given, const std::string& actor, const std::string& label,
                          const std::string& forced_skip, const std::string& file_run_id) {
        TriggerResult out;
        if (stopping) {
            out.error = "taskhubd is shutting down; no new runs are started";
            return out;
        }
        if (auto problem = store.writeProblem()) {
            out.error = "no new runs are started while the state database cannot be written: " + *problem;
            return out;
        }
        store::NameValues params;
        if (auto err = resolveParams(*wf, given, &params)) {
            out.error = *err;
            return out;
        }
        std::string id;
        bool revive = false;
        if ((kind == TriggerKind::Scheduled && scheduled) || kind == TriggerKind::FileDrop) {
            id = kind == TriggerKind::FileDrop ? file_run_id : wf->name + "@" + formatCompactUtc(*scheduled);
            if (runs.count(id) || store.runExists(id)) {
                // A firing recorded as skipped while the workflow was paused may still run: the
                // catch-up after `resume` turns that record into the run.
                auto old = runs.count(id) ? std::nullopt : store.run(id, false);
                revive = forced_skip.empty() && old && old->state == "skipped" &&
                         old->message.rfind(store::kPausedFiringMessage, 0) == 0;
                if (!revive) {
                    out.error = "the firing " + id + " is already recorded";
                    out.duplicate = true;
                    return out;
                }
            }
        } else {
            id = newManualId(wf->name);
        }

        auto run = makeRun(wf, id, kind == TriggerKind::Manual ? "manual" : label.empty() ? "cron" : label,
                           std::move(params));
        if (scheduled) run->rec.scheduled_ms = scheduled->time_since_epoch().count() * 1000;

        // Overlap policy: what to do while earlier top-level runs of this workflow are active.
        std::vector<Run*> active;
        for (auto& [rid, r] : runs) {
            if (r->rec.workflow == wf->name && r->parent_id.empty()) active.push_back(r.get());
        }
        std::sort(active.begin(), active.end(), [](Run* a, Run* b) { return a->serial < b->serial; });
        std::string start = "run";
        std::string skip_reason = forced_skip; // decided by the caller: a paused workflow
        if (skip_reason.empty() && wf->overlap == config::Overlap::Allow && wf->max_active_runs > 0 &&
                   active.size() >= static_cast<size_t>(wf->max_active_runs)) {
            skip_reason = "skipped: " + std::to_string(active.size()) + " runs are active, max_active_runs = " +
                          std::to_string(wf->max_active_runs) + " (overlap = allow)";
        } else if (skip_reason.empty() && !active.empty()) {
            const std::string previous = active.back()->rec.id;
            switch (wf->overlap) {
            case config::Overlap::Skip:
                skip_reason = "skipped: run " + previous + " is still active (overlap = skip)";
                break;
            case config::Overlap::QueueOne:
                if (!queued[wf->name].empty()) {
                    skip_reason = "skipped: run " + queued[wf->name].back() +
                                  " is already queued (overlap = queue_one)";
                } else {
                    start = "queue";
                }
                break;
            case config::Overlap::QueueAll: start = "queue"; break;
            case config::Overlap::Replace: start = "replace"; break;
            case config::Overlap::Allow: break;
            }
        }

        out.ok = true;
        out.run_id = id;
        // "manual by uid 1000 (ada)"; "cron", "every: catch-up of ..." (a scheduled run's actor
        // says why it fires when not on time).
        const std::string by = actor.empty()                      ? run->rec.trigger
                               : kind != TriggerKind::Manual    ? run->rec.trigger + ": " + actor
                                                                : run->rec.trigger + " by " + actor;
        if (!skip_reason.empty()) {
            run->rec.state = "skipped";
            run->rec.message = skip_reason;
            run->rec.ended_ms = run->rec.created_ms;
            revive ? store.reviveRun(run->rec) : store.insertRun(run->rec);
            for (uint32_t i = 0; i < run->tasks.size(); ++i) {
                run->tasks[i].rec.state = "skipped";
                run->tasks[i].rec.message = "the run was skipped";
                saveTask(*run, i);
            }
            event(id, "", "run_skipped", skip_reason);
            spdlog::info("ENGINE_RUN_SKIPPED {} {}", id, skip_reason);
            out.state = "skipped";
            return out;
        }

        run->rec.state = "queued";
        revive ? store.reviveRun(run->rec) : store.insertRun(run->rec);
        for (uint32_t i = 0; i < run->tasks.size(); ++i) saveTask(*run, i);
        event(id, "", "run_created", by);
        Run& r = adopt(std::move(run));
        if (start == "queue") {
            queued[wf->name].push_back(id);
            event(id, "", "run_queued", "waiting for " + active.back()->rec.id + " (overlap = " +
                                            config::toString(wf->overlap) + ")");
            out.state = "queued";
            return out;
        }
        if (start == "replace") {
            for (Run* old : active) {
                if (old->stop_state.empty()) cancelRun(*old, "replaced by run " + id + " (overlap = replace)");
            }
        }
        startRun(r);
        out.state = r.rec.state;
        return out;
    }

    // after: when the run times out (default: the workflow's timeout from now).
    void armRunTimeout(Run& run, std::optional<std::chrono::milliseconds> after = std::nullopt) {
        if (run.wf->timeout.count() <= 0) return;
        run.run_timer = std::make_unique<asio::steady_timer>(io, after.value_or(run.wf->timeout));
        uint64_t serial = run.serial;
        run.run_timer->async_wait([this, serial](const boost::system::error_code& ec) {
            if (ec) return;
            auto it = by_serial.find(serial);
            if (it == by_serial.end()) return;
            stopRun(*it->second, "failed", "run timed out after " + formatDuration(it->second->wf->timeout));
        });
    }

    void startRun(Run& run) {
        ++runs_started;
        run.rec.state = "running";
        run.rec.started_ms = nowMillis();
        saveRun(run);
        event(run.rec.id, "", "run_start", "version " + run.rec.version);
        spdlog::info("ENGINE_RUN_STARTED {} ({} tasks)", run.rec.id, run.tasks.size());
        armRunTimeout(run);
        const uint64_t serial = run.serial;
        for (uint32_t t : run.progress.start()) {
            admit(run, t);
            if (!by_serial.count(serial)) return;
        }
        pump();
        if (by_serial.count(serial)) maybeEndRun(run);
    }

    // ---- dispatching ----

    // A task whose trigger rule was just met: ready to start, unless the run is stopping or its
    // `when` condition says no. Returns the outcome when the task was finished here instead.
    std::optional<TS> admitDecision(Run& run, uint32_t t, std::string* why) {
        auto& task = run.tasks[t];
        if (!run.stop_state.empty() && !(run.fail_fast_stop && runsAfterFailure(task.def->trigger_rule))) {
            *why = run.stop_reason;
            return TS::Cancelled;
        }
        if (!task.def->when.empty()) {
            auto& cond = run.conditions[t];
            if (!cond) {
                std::string ignored; // validated at load
                cond = expr::Condition::parse(task.def->when, &ignored);
            }
            if (cond && !cond->evaluate(lookupFor(run))) {
                *why = "when condition is false: " + task.def->when;
                return TS::Skipped;
            }
        }
        return std::nullopt;
    }

    // Marks t ready (or finishes it when it may not run), and follows the consequences through
    // the graph without recursion, so that a long chain of cancellations or skips cannot
    // overflow the stack.
    void admit(Run& run, uint32_t first) {
        // The vectors hold consequences only (a task finished here instead of made ready): the
        // usual case, one task made ready, allocates nothing.
        std::vector<std::pair<uint32_t, dag::Outcome>> work;
        std::vector<uint32_t> candidates;
        std::vector<uint32_t> now_ready, now_skipped;
        bool first_done = false;
        for (;;) {
            while (!first_done || !candidates.empty()) {
                uint32_t t = first;
                if (first_done) {
                    t = candidates.back();
                    candidates.pop_back();
                }
                first_done = true;
                if (run.tasks[t].st != TS::Pending) continue; // already ready, running or ended
                std::string why;
                if (auto outcome = admitDecision(run, t, &why)) {
                    settle(run, t, *outcome, why);
                    work.push_back({t, outcomeOf(*outcome)});
                    continue;
                }
                markReady(run, t);
            }
            if (work.empty()) return;
            auto [n, outcome] = work.back();
            work.pop_back();
            now_ready.clear();
            now_skipped.clear();
            run.progress.finish(n, outcome, &now_ready, &now_skipped);
            settleSkipped(run, now_skipped);
            // Reverse, so that candidates are taken in graph order.
            candidates.assign(now_ready.rbegin(), now_ready.rend());
        }
    }

    void markReady(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        setState(run, t, TS::Ready);
        task.rec.message.clear();
        task.held_since = {};
        task.waited = {};
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "ready");
        enqueue(run, t);
    }

    PluginQueue& queueNamed(const std::string& key) {
        auto [it, added] = ready.try_emplace(key);
        if (added && !key.empty()) it->second.limit = pluginLimit(key);
        return it->second;
    }

    PluginQueue& queueOf(TaskRun& task) {
        if (!task.queue) task.queue = &queueNamed(queueKey(*task.def));
        return *task.queue;
    }

    void enqueue(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        ReadyItem item{task.def->priority, ++next_seq, run.serial, t};
        task.ready_seq = item.seq;
        auto& q = queueOf(task);
        q.heap.push(item);
        if (q.unhealthy) holdForPlugin(run, t);
    }

    // ---- plugin health ----

    // As PluginHost::dispatchable() said at its last transition.
    bool isUnhealthy(const std::string& plugin) const {
        if (unhealthy_plugins == 0) return false;
        auto it = ready.find(plugin);
        return it != ready.end() && it->second.unhealthy;
    }

    bool failsWhenUnhealthy(const std::string& plugin) const {
        const auto* h = plugins.health(plugin);
        return h && h->settings.on_unhealthy == config::OnUnhealthy::Fail;
    }

    std::string unhealthyText(const std::string& plugin) const {
        const auto* h = plugins.health(plugin);
        std::string out = "plugin '" + plugin + "' is unhealthy";
        if (!h) return out;
        out += " since " + formatIsoMillis(h->since_ms);
        if (!h->message.empty()) out += ": " + h->message;
        return out;
    }

    // A ready task starts waiting for its unhealthy plugin (on_unhealthy = hold); its timeout
    // goes on counting, and ends the wait as a failure.
    void holdForPlugin(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        if (failsWhenUnhealthy(task.def->plugin) || task.held_since != Clock::time_point{}) return;
        task.held_since = Clock::now();
        event(run.rec.id, task.rec.task_id, "waiting", unhealthyText(task.def->plugin));
        if (task.def->timeout.count() <= 0) return;
        const auto left = std::max(task.def->timeout - task.waited, std::chrono::milliseconds(0));
        task.timer = std::make_unique<asio::steady_timer>(io, left);
        const uint64_t serial = run.serial;
        const uint64_t seq = task.ready_seq;
        task.timer->async_wait([this, serial, t, seq](const boost::system::error_code& ec) {
            if (ec) return;
            auto it = by_serial.find(serial);
            if (it == by_serial.end()) return;
            Run& r = *it->second;
            auto& tk = r.tasks[t];
            if (tk.st != TS::Ready || tk.ready_seq != seq) return;
            tk.timer.reset();
            failUnstarted(r, t, "timed out after " + formatDuration(tk.def->timeout) + " waiting for " +
                                    unhealthyText(tk.def->plugin));
        });
    }

    // The plugin can take tasks again: the wait so far counts against the attempt's timeout.
    void releaseHold(TaskRun& task) {
        if (task.held_since == Clock::time_point{}) return;
        task.waited += std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - task.held_since);
        task.held_since = {};
        task.timer.reset();
    }

    // Fails a ready task that never started (no attempt is recorded for it).
    void failUnstarted(Run& run, uint32_t t, const std::string& message) {
        auto& task = run.tasks[t];
        releaseHold(task);
        task.rec.ended_ms = nowMillis();
        const uint64_t serial = run.serial;
        finishTask(run, t, TS::Failed, message);
        if (by_serial.count(serial)) maybeEndRun(run);
    }

    void pluginHealthChanged(const std::string& plugin) {
        const bool up = plugins.dispatchable(plugin);
        auto& q = queueNamed(plugin);
        if (q.unhealthy != !up) {
            q.unhealthy = !up;
            if (up) --unhealthy_plugins;
            else ++unhealthy_plugins;
        }
        std::vector<std::pair<Run*, uint32_t>> affected;
        for (auto& [id, run] : runs) {
            for (uint32_t t = 0; t < run->tasks.size(); ++t) {
                const auto& task = run->tasks[t];
                if (task.st == TS::Ready && task.def->workflow.empty() && task.def->plugin == plugin) {
                    affected.emplace_back(run.get(), t);
                }
            }
        }
        for (auto [run, t] : affected) {
            if (up) {
                releaseHold(run->tasks[t]);
            } else {
                holdForPlugin(*run, t);
            }
        }
        pump();
    }

    // The run and task of a queue entry, or null when the entry is stale (the task was
    // cancelled, or started, or queued again since).
    std::pair<Run*, uint32_t> live(const ReadyItem& item) {
        auto it = by_serial.find(item.run);
        if (it == by_serial.end()) return {nullptr, 0};
        auto& task = it->second->tasks[item.task];
        if (task.st != TS::Ready || task.ready_seq != item.seq) return {nullptr, 0};
        return {it->second, item.task};
    }

    void dropStale(ReadyHeap& heap) {
        while (!heap.empty() && !live(heap.top()).first) heap.pop();
    }

    bool globalLimitReached() const {
        return opts.max_running_tasks > 0 && running_tasks >= static_cast<size_t>(opts.max_running_tasks);
    }

    int pluginLimit(const std::string& plugin) const {
        auto lim = opts.plugin_max_concurrency.find(plugin);
        return lim == opts.plugin_max_concurrency.end() ? 0 : lim->second;
    }

    static bool atLimit(const PluginQueue& q) { return q.limit > 0 && q.running >= q.limit; }

    bool pluginLimitReached(const std::string& plugin) const {
        auto it = ready.find(plugin);
        return it != ready.end() && atLimit(it->second);
    }

    static bool workflowLimitReached(const Run& run) {
        return run.wf->max_parallel_tasks > 0 && *run.wf_running >= run.wf->max_parallel_tasks;
    }

    // Starts ready tasks while the limits allow, always the best waiting one first: highest
    // priority, then the oldest. Cost per start is the number of plugins, not of waiting tasks.
    void pump() {
        for (;;) {
            unpark();
            ReadyHeap* best = nullptr;
            const std::string* unhealthy = nullptr; // its tasks fail at once (on_unhealthy = fail)
            for (auto& [plugin, q] : ready) {
                auto& heap = q.heap;
                dropStale(heap);
                if (heap.empty()) continue;
                if (q.unhealthy) {
                    if (!failsWhenUnhealthy(plugin)) continue; // held until it recovers
                    best = &heap;
                    unhealthy = &plugin;
                    break;
                }
                if (!plugin.empty() && (globalLimitReached() || atLimit(q))) continue;
                if (!best || ItemOrder{}(best->top(), heap.top())) best = &heap;
            }
            if (!best) {
                flushLaunches();
                return;
            }
            ReadyItem item = best->top();
            best->pop();
            Run& run = *by_serial.at(item.run);
            if (run.paused) {
                run.held.push_back(item);
                continue;
            }
            if (unhealthy) {
                failUnstarted(run, item.task, unhealthyText(*unhealthy) + " (on_unhealthy = fail)");
                continue;
            }
            if (workflowLimitReached(run)) {
                auto& p = parked[run.wf->name];
                p.limit = run.wf->max_parallel_tasks;
                p.heap.push(item);
                continue;
            }
            dispatch(run, item.task);
        }
    }

    // A task of this workflow stopped running: one parked task may compete for a slot again.
    // Parked tasks of workflows with room compete for a slot again (as many as there is room;
    // dispatch checks the limit once more). Called at the start of every pump(), so that a slot
    // is offered again even when the task it was offered to went to a paused run or was
    // cancelled meanwhile.
    void unpark() {
        for (auto& [name, p] : parked) {
            if (p.heap.empty()) continue;
            auto cur = workflow_running.find(name);
            int room = p.limit - (cur == workflow_running.end() ? 0 : cur->second);
            while (room > 0 && !p.heap.empty()) {
                ReadyItem item = p.heap.top();
                p.heap.pop();
                auto [run, t] = live(item);
                if (!run) continue;
                queueOf(run->tasks[t]).heap.push(item);
                --room;
            }
        }
    }

    std::shared_ptr<TaskOutput> openOutput(const Run& run, const TaskRun& task, std::string* err) {
        fs::path file = opts.log_dir / run.rec.id / (task.rec.task_id + "." + std::to_string(task.rec.attempt) + ".log");
        return TaskOutput::open(io, std::move(file), err, opts.log_cap);
    }

    void armTaskTimeout(Run& run, uint32_t t, std::chrono::milliseconds after) {
        auto& task = run.tasks[t];
        task.deadline = Clock::now() + after;
        task.timer = std::make_unique<asio::steady_timer>(io, after);
        uint64_t serial = run.serial;
        int attempt = task.rec.attempt;
        task.timer->async_wait([this, serial, t, attempt](const boost::system::error_code& ec) {
            if (ec) return;
            auto it = by_serial.find(serial);
            if (it == by_serial.end()) return;
            Run& r = *it->second;
            auto& tk = r.tasks[t];
            if (tk.st != TS::Running || tk.rec.attempt != attempt) return;
            tk.timed_out = "timed out after " + formatDuration(tk.def->timeout);
            event(r.rec.id, tk.rec.task_id, "timeout", tk.timed_out);
            stopAttempt(r, t);
        });
    }

    void dispatch(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        task.rec.attempt += 1;
        task.rec.started_ms = nowMillis();
        task.rec.ended_ms.reset();
        task.rec.exit_code.reset();
        task.rec.message.clear();
        task.rec.outputs.clear();
        task.cancel_requested = false;
        task.cancel_reason.clear();
        task.timed_out.clear();
        ++*run.wf_running;
        if (!task.def->workflow.empty()) {
            startChild(run, t);
            return;
        }
        setState(run, t, TS::Running);
        // Recorded as starting, and the plugin called only once that is durable: after a crash
        // the attempt is known to have maybe run (see recover()).
        task.rec.state = "starting";
        forgetProcess(task.rec);
        if (launches.empty()) launch_since = store.writeMark();
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "start", "attempt " + std::to_string(task.rec.attempt));
        task.plugin = plugins.find(task.def->plugin);
        if (!task.plugin) {
            endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                             *plugins.unavailable(task.def->plugin), {}});
            return;
        }
        // Shell-text params get each value escaped for the shell context it lands in; a value no
        // shell or environment can carry (a NUL byte) fails the attempt instead of being cut short.
        std::string params_json = task.def->params_json;
        if (task.def->has_templates) {
            std::string err;
            auto expanded = expr::expandJsonStrings(task.def->params_json, lookupFor(run), task.def->shell_params, &err);
            if (!expanded) {
                endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt, err, {}});
                return;
            }
            params_json = std::move(*expanded);
        }
        for (const auto& [k, v] : run.rec.params) {
            if (v.find('\0') == std::string::npos) continue;
            endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                             "param '" + k + "' holds a NUL byte, which cannot be passed in the "
                                             "environment (TASKHUB_PARAM_" + k + "); the task was not started", {}});
            return;
        }
        // The account is looked up again for each attempt: the databases may have changed since
        // the file was loaded, and the attempt must run as the account as it is now.
        std::optional<Identity> identity;
        if (!task.def->run_as.empty()) {
            std::string err;
            identity = resolveIdentity(task.def->run_as, &err);
            if (!identity) {
                endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                                 "cannot run as \"" + task.def->run_as + "\" (run_as, from " +
                                                     config::toString(task.def->run_as_source) + "): " + err +
                                                     "; it resolved when the workflow was loaded",
                                                 {}});
                return;
            }
        }
        // A plugin that never writes output (TH_CAP_NO_LOG) costs no pipe.
        if (!(task.plugin->info().capabilities & TH_CAP_NO_LOG)) {
            std::string err;
            task.output = openOutput(run, task, &err);
            if (!task.output) {
                endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt, err, {}});
                return;
            }
        }
        ++running_tasks;
        ++queueOf(task).running;

        plugin_host::AttemptSpec spec;
        spec.workflow = run.rec.workflow;
        spec.run_id = run.rec.id;
        spec.task_id = task.rec.task_id;
        spec.attempt = static_cast<uint32_t>(task.rec.attempt);
        spec.params_json = std::move(params_json);
        spec.env = {"TASKHUB_WORKFLOW=" + run.rec.workflow, "TASKHUB_RUN_ID=" + run.rec.id,
                    "TASKHUB_TASK_ID=" + task.rec.task_id,
                    "TASKHUB_ATTEMPT=" + std::to_string(task.rec.attempt)};
        for (const auto& [k, v] : run.rec.params) spec.env.push_back("TASKHUB_PARAM_" + k + "=" + v);
        for (const auto& [k, v] : task.def->env) {
            spec.env.push_back(k + "=" + (task.def->has_templates ? expand(run, v) : v));
        }
        spec.log_fd = task.output ? task.output->writeFd() : -1;
        spec.timeout_ms = static_cast<uint64_t>(task.def->timeout.count());
        spec.run_as = std::move(identity);
        if (!state_dir.empty()) spec.env.push_back("TASKHUB_STATE_DIR=" + state_dir);
        const uint64_t serial = run.serial;
        const int attempt = task.rec.attempt;
        spec.on_process = [this, serial, t, attempt](const plugin_host::ProcessIdentity& p) {
            onProcess(serial, t, attempt, p);
        };

        releaseHold(task);
        if (task.def->timeout.count() > 0) {
            armTaskTimeout(run, t, std::max(task.def->timeout - task.waited, std::chrono::milliseconds(1)));
        }
        task.waited = {};
        task.launching = true;
        launches.push_back(Launch{serial, t, attempt, std::move(spec)});
        // In chunks, so that the writer commits the first attempts' records while the loop
        // dispatches the next ones.
        if (launches.size() >= kLaunchChunk) flushLaunches();
    }

    // Calls the plugins of the attempts dispatched since the last call once their "starting"
    // records are committed (one wait for all of them: the store commits them in one batch).
    void flushLaunches() {
        if (launches.empty()) return;
        auto batch = std::make_shared<std::vector<Launch>>(std::move(launches));
        launches.clear();
        store.whenDurable(launch_since, [this, batch](bool ok) {
            for (auto& l : *batch) launch(l, ok);
            pump();
        });
    }

    void launch(Launch& l, bool recorded) {
        auto it = by_serial.find(l.serial);
        if (it == by_serial.end()) return;
        Run& run = *it->second;
        auto& task = run.tasks[l.task];
        if (!task.launching || task.rec.attempt != l.attempt) return;
        task.launching = false;
        TASKHUB_FAILPOINT("task_starting_committed");
        if (!recorded) {
            onAttemptDone(l.serial, l.task, l.attempt,
                          AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                        "not started: the state store could not record the attempt (" +
                                            store.lastError() + ")",
                                        {}});
            return;
        }
        const uint64_t serial = l.serial;
        const uint32_t t = l.task;
        const int attempt = l.attempt;
        task.token = task.plugin->start(l.spec, [this, serial, t, attempt](AttemptResult r) {
            onAttemptDone(serial, t, attempt, std::move(r));
        });
        if (task.output) task.output->start();
        if (task.st == TS::Running && task.rec.state == "starting") {
            task.rec.state = "running";
            saveTask(run, t);
        }
    }

    // The plugin reported the process an attempt runs as: recorded, so that a restart after a
    // crash can stop exactly that process group.
    void onProcess(uint64_t serial, uint32_t t, int attempt, const plugin_host::ProcessIdentity& p) {
        auto it = by_serial.find(serial);
        if (it == by_serial.end()) return;
        auto& task = it->second->tasks[t];
        if ((task.st != TS::Running && task.st != TS::Frozen) || task.rec.attempt != attempt) return;
        task.rec.pid = p.pid;
        task.rec.pgid = p.pgid;
        task.rec.proc_start = p.start_ticks;
        if (task.rec.state == "starting") task.rec.state = stateName(task.st);
        saveTask(*it->second, t);
    }

    // The chain of workflows from the top-level run down to `run`, e.g. "a -> b -> c".
    std::string chainOf(const Run& run) {
        std::vector<std::string> names{run.rec.workflow};
        for (const Run* r = &run; !r->parent_id.empty();) {
            r = findRun(r->parent_id);
            if (!r) break;
            names.push_back(r->rec.workflow);
        }
        std::string out;
        for (auto it = names.rbegin(); it != names.rend(); ++it) out += (out.empty() ? "" : " -> ") + *it;
        return out;
    }

    // A workflow task: starts its workflow as a child run. No thread waits for it; the task
    // ends when the child run ends (endRun).
    void startChild(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        setState(run, t, TS::Running);
        const auto fail = [&](const std::string& message) {
            saveTask(run, t);
            event(run.rec.id, task.rec.task_id, "start", "attempt " + std::to_string(task.rec.attempt));
            endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt, message, {}});
        };
        auto child_wf = lookup_workflow ? lookup_workflow(task.def->workflow) : nullptr;
        if (!child_wf) {
            fail("workflow '" + task.def->workflow + "' is not loaded (see `taskhubctl list`)");
            return;
        }
        if (run.rec.depth + 1 > opts.max_nesting_depth) {
            fail("nesting depth exceeds limit (" + std::to_string(opts.max_nesting_depth) + "): " +
                 chainOf(run) + " -> " + child_wf->name);
            return;
        }
        store::NameValues given;
        for (const auto& [name, value] : task.def->child_params) given.emplace_back(name, expand(run, value));
        store::NameValues params;
        if (auto err = resolveParams(*child_wf, given, &params)) {
            fail(*err);
            return;
        }
        const std::string id = run.rec.id + "/" + task.rec.task_id + "." + std::to_string(task.rec.attempt);
        auto child = makeRun(child_wf, id, "parent", std::move(params));
        child->rec.parent_run = run.rec.id;
        child->rec.parent_task = task.rec.task_id;
        child->rec.depth = run.rec.depth + 1;
        child->parent_id = run.rec.id;
        child->parent_task = t;
        child->parent_attempt = task.rec.attempt;
        task.rec.child_run = id;
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "start",
              "attempt " + std::to_string(task.rec.attempt) + ": child run " + id);
        child->rec.state = "queued";
        store.insertRun(child->rec);
        for (uint32_t i = 0; i < child->tasks.size(); ++i) saveTask(*child, i);
        event(id, "", "run_created", "parent " + run.rec.id + " task " + task.rec.task_id);
        run.children.push_back(id);
        Run& c = adopt(std::move(child));
        if (task.def->timeout.count() > 0) armTaskTimeout(run, t, task.def->timeout);
        startRun(c);
    }

    // Stops a running attempt: a plugin's is cancelled (after letting a frozen one continue, so
    // that it can act on the signal), one still waiting for its starting record ends without its
    // plugin being called, a child run is cancelled with its subtree.
    void stopAttempt(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        if (!task.def->workflow.empty()) {
            if (Run* child = findRun(task.rec.child_run)) {
                cancelRun(*child, task.timed_out.empty() ? (task.cancel_reason.empty() ? run.stop_reason : task.cancel_reason)
                                                         : "the parent task " + task.rec.task_id + " " + task.timed_out);
            }
            return;
        }
        if (task.launching) {
            // Its plugin was never called: it ends now, without waiting for its record to be
            // committed (which may take long while the state database cannot be written).
            task.launching = false;
            const uint64_t serial = run.serial;
            const int attempt = task.rec.attempt;
            asio::post(io, [this, serial, t, attempt] {
                onAttemptDone(serial, t, attempt,
                              AttemptResult{AttemptResult::Outcome::Cancelled, std::nullopt, "stopped before it started", {}});
            });
            return;
        }
        if (task.st == TS::Frozen) {
            task.plugin->resume(task.token);
            setState(run, t, TS::Running);
            saveTask(run, t);
        }
        task.plugin->cancel(task.token);
    }

    void onAttemptDone(uint64_t serial, uint32_t t, int attempt, AttemptResult r) {
        auto it = by_serial.find(serial);
        if (it == by_serial.end()) return;
        Run& run = *it->second;
        auto& task = run.tasks[t];
        if ((task.st != TS::Running && task.st != TS::Frozen) || task.rec.attempt != attempt) return;
        --running_tasks;
        --queueOf(task).running;
        // The attempt's output is in the log, and its outputs known, before its end is recorded.
        if (task.output) {
            task.output->attemptEnded();
            task.output->addPluginOutputs(r.outputs);
            task.rec.outputs = task.output->outputs();
            if (!task.output->outputError().empty() && r.outcome == AttemptResult::Outcome::Succeeded) {
                r.outcome = AttemptResult::Outcome::Failed;
                r.message = task.output->outputError();
            }
            task.output.reset();
        } else {
            task.rec.outputs = std::move(r.outputs); // checked by the plugin host
        }
        endAttempt(run, t, std::move(r));
    }

    // Common end of an attempt (plugin or child run): frees its slot, records the result,
    // starts what can start now.
    void endAttempt(Run& run, uint32_t t, AttemptResult r) {
        auto& task = run.tasks[t];
        task.timer.reset();
        --*run.wf_running; // pump() offers the slot to parked tasks
        const uint64_t serial = run.serial;
        finishAttempt(run, t, std::move(r));
        pump();
        if (by_serial.count(serial)) maybeEndRun(run);
    }

    void finishAttempt(Run& run, uint32_t t, AttemptResult r) {
        auto& task = run.tasks[t];
        task.rec.ended_ms = nowMillis();
        task.rec.exit_code = r.exit_code;
        using O = AttemptResult::Outcome;
        if (r.outcome == O::Succeeded) {
            finishTask(run, t, TS::Succeeded, r.message);
            return;
        }
        std::string message = r.message;
        if (!task.timed_out.empty()) {
            message = task.timed_out + (r.message.empty() ? "" : " (" + r.message + ")");
        } else if (task.cancel_requested || (r.outcome == O::Cancelled && !run.stop_state.empty())) {
            std::string why = !task.cancel_reason.empty() ? task.cancel_reason
                              : !run.stop_reason.empty()  ? run.stop_reason
                                                          : r.message;
            finishTask(run, t, TS::Cancelled, why);
            return;
        }
        const auto& codes = task.def->retry_on_exit_codes;
        const bool code_retryable = codes.empty() || r.transient ||
                                    (r.exit_code && std::find(codes.begin(), codes.end(), *r.exit_code) != codes.end());
        if (run.stop_state.empty() && task.rec.attempt <= task.def->retries && code_retryable) {
            const auto delay = retryDelay(*task.def, task.rec.attempt);
            setState(run, t, TS::Retrying);
            task.rec.message = message;
            saveTask(run, t);
            event(run.rec.id, task.rec.task_id, "end",
                  "failed: " + message + "; retry " + std::to_string(task.rec.attempt) + " of " +
                      std::to_string(task.def->retries) + " in " + formatDuration(delay));
            task.timer = std::make_unique<asio::steady_timer>(io, delay);
            const uint64_t serial = run.serial;
            task.timer->async_wait([this, serial, t](const boost::system::error_code& ec) {
                if (ec) return;
                auto it = by_serial.find(serial);
                if (it == by_serial.end() || it->second->tasks[t].st != TS::Retrying) return;
                it->second->tasks[t].timer.reset();
                markReady(*it->second, t);
                pump();
            });
            return;
        }
        if (!codes.empty() && !code_retryable && task.rec.attempt <= task.def->retries) {
            message += " (not retried: exit code not in retry_on_exit_codes)";
        }
        finishTask(run, t, TS::Failed, message);
    }

    // Records a final state without following it through the graph (the caller does).
    void settle(Run& run, uint32_t t, TS state, const std::string& message) {
        auto& task = run.tasks[t];
        setState(run, t, state);
        task.rec.message = message;
        if (state == TS::Skipped || state == TS::Cancelled) task.timer.reset();
        if (!task.rec.ended_ms && state != TS::Skipped) task.rec.ended_ms = nowMillis();
        saveTask(run, t);
        const char* kind = state == TS::Succeeded || state == TS::Failed ? "end" : stateName(state);
        event(run.rec.id, task.rec.task_id, kind,
              std::string(stateName(state)) + (message.empty() ? "" : ": " + message));
        --run.unfinished;
        if (state == TS::Failed || (state == TS::Cancelled && run.stop_state.empty())) {
            if (state == TS::Failed)
                spdlog::warn("ENGINE_TASK_FAILED {} task {}: {}", run.rec.id, task.rec.task_id, message);
            if (run.first_failure.empty()) {
                run.first_failure = "task '" + task.rec.task_id + "' " +
                                    (state == TS::Failed ? "failed" : "was cancelled") +
                                    (message.empty() ? "" : ": " + message);
            }
        }
    }

    // Tasks dag::Progress reported skipped (it already followed the skips through the graph).
    void settleSkipped(Run& run, const std::vector<uint32_t>& skipped) {
        for (uint32_t s : skipped) {
            if (isFinal(run.tasks[s].st)) continue;
            settle(run, s, TS::Skipped, "its trigger_rule (" +
                                            std::string(dag::toString(run.tasks[s].def->trigger_rule)) +
                                            ") can no longer be met by its upstream tasks");
        }
    }

    void finishTask(Run& run, uint32_t t, TS state, const std::string& message) {
        settle(run, t, state, message);
        if (state == TS::Failed && run.wf->on_failure == config::OnFailure::FailFast && run.stop_state.empty()) {
            stopRun(run, "failed", "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
        }
        follow(run, t, outcomeOf(state));
    }

    // Follows a task's outcome through the graph: what became ready, what is skipped now.
    void follow(Run& run, uint32_t t, dag::Outcome outcome) {
        std::vector<uint32_t> now_ready, now_skipped;
        run.progress.finish(t, outcome, &now_ready, &now_skipped);
        settleSkipped(run, now_skipped);
        for (uint32_t r : now_ready) admit(run, r);
    }

    // Stops a run: nothing new starts (except, after a fail_fast stop, tasks whose rule is meant
    // to run after failures); running attempts and child runs are asked to stop; the run ends as
    // `state` once they have.
    void stopRun(Run& run, const std::string& state, const std::string& reason, bool fail_fast = false) {
        if (run.ending) return; // its end is already decided
        // Already stopping: only a fail_fast stop can still be made stricter (a cancel, the
        // shutdown grace, a parent's cancel or timeout also stop the after-failure tasks).
        if (!run.stop_state.empty() && (!run.fail_fast_stop || fail_fast)) return;
        run.stop_state = state;
        run.stop_reason = reason;
        run.fail_fast_stop = fail_fast;
        event(run.rec.id, "", "run_stopping", reason);
        const uint64_t serial = run.serial;
        for (uint32_t t = 0; t < run.tasks.size(); ++t) {
            if (!by_serial.count(serial)) return;
            auto& task = run.tasks[t];
            if (fail_fast && runsAfterFailure(task.def->trigger_rule)) continue;
            if (task.st == TS::Running || task.st == TS::Frozen) {
                task.cancel_requested = true;
                stopAttempt(run, t);
            } else if (!isFinal(task.st)) {
                // After fail_fast, a pending task is decided when its upstream ends (and is
                // cancelled then, unless its rule runs after failures).
                if (task.st == TS::Pending && fail_fast) continue;
                settle(run, t, TS::Cancelled, reason);
                if (fail_fast) follow(run, t, dag::Outcome::Cancelled);
            }
        }
        if (run.parent_id.empty()) {
            auto q = queued.find(run.rec.workflow);
            if (q != queued.end()) std::erase(q->second, run.rec.id);
        }
        if (by_serial.count(serial)) maybeEndRun(run);
    }

    void cancelRun(Run& run, const std::string& reason) {
        if (run.rec.state == "queued") run.rec.state = "running"; // so that it can end
        stopRun(run, "cancelled", reason);
    }

    void maybeEndRun(Run& run) {
        if (run.unfinished > 0 || run.ending || run.rec.state == "queued") return;
        // Deferred so that callers up the stack never touch a destroyed Run.
        run.ending = true;
        const uint64_t serial = run.serial;
        asio::post(io, [this, serial] {
            auto it = by_serial.find(serial);
            if (it != by_serial.end()) endRun(*it->second);
        });
    }

    void endRun(Run& run) {
        if (!run.stop_state.empty()) {
            run.rec.state = run.stop_state;
            run.rec.message = run.fail_fast_stop && !run.first_failure.empty() ? run.first_failure : run.stop_reason;
        } else if (!run.first_failure.empty()) {
            run.rec.state = "failed";
            run.rec.message = run.first_failure;
        } else {
            run.rec.state = "succeeded";
            run.rec.message.clear();
        }
        run.rec.ended_ms = nowMillis();
        run.run_timer.reset();
        saveRun(run);
        event(run.rec.id, "", "run_end", run.rec.state + (run.rec.message.empty() ? "" : ": " + run.rec.message));
        if (run.rec.state == "succeeded") {
            spdlog::info("ENGINE_RUN_SUCCEEDED {}", run.rec.id);
        } else {
            spdlog::warn("ENGINE_RUN_{} {} {}", run.rec.state == "failed" ? "FAILED" : "CANCELLED",
                         run.rec.id, run.rec.message);
        }
        auto owned = std::move(runs.at(run.rec.id));
        runs.erase(run.rec.id);
        by_serial.erase(owned->serial);
        for (auto& w : owned->waiters) w(owned->rec);
        if (!owned->parent_id.empty()) {
            childEnded(*owned);
        } else {
            startNextQueued(owned->rec.workflow);
        }
        if (stopping && runs.empty() && on_drained) {
            auto done = std::move(on_drained);
            on_drained = nullptr;
            grace_timer.reset();
            done();
        }
    }

    // A child run ended: its workflow task in the parent ends with it.
    void childEnded(const Run& child) {
        Run* parent = findRun(child.parent_id);
        if (!parent) return;
        std::erase(parent->children, child.rec.id);
        auto& task = parent->tasks[child.parent_task];
        if (task.st != TS::Running && task.st != TS::Frozen) return;
        if (task.rec.attempt != child.parent_attempt) return;
        AttemptResult r;
        if (child.rec.state == "succeeded") {
            r.outcome = AttemptResult::Outcome::Succeeded;
            r.message = "child run " + child.rec.id + " succeeded";
        } else {
            r.outcome = child.rec.state == "cancelled" ? AttemptResult::Outcome::Cancelled
                                                       : AttemptResult::Outcome::Failed;
            r.message = "child run " + child.rec.id + " " + child.rec.state +
                        (child.rec.message.empty() ? "" : ": " + child.rec.message);
        }
        endAttempt(*parent, child.parent_task, std::move(r));
    }

    // Starts the oldest queued run of a workflow once none of its runs is running any more.
    void startNextQueued(const std::string& workflow) {
        auto q = queued.find(workflow);
        if (q == queued.end()) return;
        for (const auto& [id, r] : runs) {
            if (r->rec.workflow == workflow && r->parent_id.empty() && r->rec.state != "queued") return;
        }
        while (!q->second.empty()) {
            std::string next = q->second.front();
            q->second.pop_front();
            Run* r = findRun(next);
            if (r && r->rec.state == "queued") {
                startRun(*r);
                return;
            }
        }
    }

    // ---- operator controls ----

    bool activeRun(const std::string& id, Run** out, std::string* err) {
        *out = findRun(id);
        if (*out) return true;
        auto rec = store.run(id, false);
        *err = rec ? "run " + id + " has already ended (" + rec->state + ")" : "no run with id " + id;
        return false;
    }

    std::optional<uint32_t> taskIndex(const Run& run, const std::string& task_id, std::string* err) {
        if (auto idx = run.wf->graph.index(task_id)) return *idx;
        std::vector<std::string> ids;
        for (const auto& t : run.wf->tasks) ids.push_back(t.id);
        *err = "run " + run.rec.id + " has no task '" + task_id + "'";
        if (auto s = sdk::closestKey(task_id, ids); !s.empty()) *err += "; did you mean '" + s + "'?";
        return std::nullopt;
    }

    bool cancel(const std::string& id, const std::string& task_id, const std::string& actor, std::string* err) {
        Run* run = nullptr;
        if (!activeRun(id, &run, err)) return false;
        if (run->ending || (!run->stop_state.empty() && !run->fail_fast_stop)) {
            *err = "run " + id + " is already ending";
            return false;
        }
        const std::string reason = "cancelled by " + actorOr(actor);
        if (task_id.empty()) {
            event(id, "", "cancel_requested", reason);
            cancelRun(*run, reason);
            return true;
        }
        auto t = taskIndex(*run, task_id, err);
        if (!t) return false;
        if (run->rec.state == "queued") {
            *err = "run " + id + " is queued and has started no task yet; cancel the whole run, or cancel the task once the run runs";
            return false;
        }
        auto& task = run->tasks[*t];
        if (isFinal(task.st)) {
            *err = "task " + task_id + " of run " + id + " has already ended (" + stateName(task.st) + ")";
            return false;
        }
        event(id, task_id, "cancel_requested", reason);
        if (task.st == TS::Running || task.st == TS::Frozen) {
            task.cancel_requested = true;
            task.cancel_reason = reason;
            stopAttempt(*run, *t);
            return true;
        }
        const uint64_t serial = run->serial;
        finishTask(*run, *t, TS::Cancelled, reason);
        pump();
        if (auto r = by_serial.find(serial); r != by_serial.end()) maybeEndRun(*r->second);
        return true;
    }

    void pauseTree(Run& run, bool freeze, const std::string& by) {
        run.paused = true;
        run.frozen = freeze;
        run.rec.state = "paused";
        saveRun(run);
        event(run.rec.id, "", "paused", (freeze ? "paused with --freeze by " : "paused by ") + by);
        if (freeze) {
            for (uint32_t t = 0; t < run.tasks.size(); ++t) {
                auto& task = run.tasks[t];
                if (task.st != TS::Running || !task.def->workflow.empty() || !task.plugin || task.launching) continue;
                // Already being stopped (cancel, timeout): let it act on the signal.
                if (task.cancel_requested || !task.timed_out.empty()) continue;
                if (!task.plugin->canSuspend()) {
                    event(run.rec.id, task.rec.task_id, "not_frozen",
                          "plugin '" + task.def->plugin + "' cannot suspend; the task keeps running");
                    continue;
                }
                task.plugin->suspend(task.token);
                if (task.timer) {
                    task.frozen_left = std::max(std::chrono::milliseconds(0),
                                                std::chrono::duration_cast<std::chrono::milliseconds>(task.deadline - Clock::now()));
                    task.timer.reset();
                }
                setState(run, t, TS::Frozen);
                saveTask(run, t);
                event(run.rec.id, task.rec.task_id, "frozen", "stopped by pause --freeze");
            }
        }
        for (const auto& child_id : run.children) {
            if (Run* child = findRun(child_id); child && !child->paused && child->stop_state.empty())
                pauseTree(*child, freeze, by);
        }
    }

    void resumeTree(Run& run, const std::string& by) {
        run.paused = false;
        run.frozen = false;
        run.rec.state = "running";
        saveRun(run);
        event(run.rec.id, "", "resumed", "resumed by " + by);
        for (uint32_t t = 0; t < run.tasks.size(); ++t) {
            auto& task = run.tasks[t];
            if (task.st != TS::Frozen) continue;
            task.plugin->resume(task.token);
            setState(run, t, TS::Running);
            saveTask(run, t);
            event(run.rec.id, task.rec.task_id, "thawed", "continued by resume");
            if (task.def->timeout.count() > 0 && task.timed_out.empty()) armTaskTimeout(run, t, task.frozen_left);
        }
        for (const auto& item : run.held) {
            auto [r, t] = live(item);
            if (r) queueOf(r->tasks[t]).heap.push(item);
        }
        run.held.clear();
        for (const auto& child_id : run.children) {
            if (Run* child = findRun(child_id); child && child->paused) resumeTree(*child, by);
        }
    }

    bool pause(const std::string& id, bool freeze, const std::string& actor, std::string* err) {
        Run* run = nullptr;
        if (!activeRun(id, &run, err)) return false;
        if (run->paused) {
            *err = "run " + id + " is already paused (resume it with `taskhubctl resume " + id + "`)";
            return false;
        }
        if (run->rec.state != "running" || run->ending || !run->stop_state.empty()) {
            *err = "run " + id + " is " + (run->ending || !run->stop_state.empty() ? std::string("ending") : run->rec.state) +
                   "; only a running run can be paused";
            return false;
        }
        pauseTree(*run, freeze, actorOr(actor));
        return true;
    }

    bool resume(const std::string& id, const std::string& actor, std::string* err) {
        Run* run = nullptr;
        if (!activeRun(id, &run, err)) return false;
        if (!run->paused) {
            *err = "run " + id + " is not paused (it is " + run->rec.state + ")";
            return false;
        }
        if (!run->parent_id.empty()) {
            if (Run* parent = findRun(run->parent_id); parent && parent->paused) {
                *err = "run " + id + " was paused with its parent " + parent->rec.id + "; resume the parent";
                return false;
            }
        }
        resumeTree(*run, actorOr(actor));
        pump();
        return true;
    }

    bool retry(const std::string& id, const std::string& task_id, bool downstream, const std::string& actor,
               std::string* err) {
        if (stopping) {
            *err = "taskhubd is shutting down; no runs are retried";
            return false;
        }
        if (findRun(id)) {
            *err = "run " + id + " is still active; retry works on runs that have ended (cancel it first, or wait)";
            return false;
        }
        auto rec = store.run(id, true);
        if (!rec) {
            *err = "no run with id " + id;
            return false;
        }
        if (!rec->parent_run.empty()) {
            *err = "run " + id + " is a child run of " + rec->parent_run + "; retry the top-level run (its task " +
                   rec->parent_task + " starts a new child run)";
            return false;
        }
        if (rec->state == "skipped") {
            *err = "run " + id + " was skipped and never ran; trigger a new run instead";
            return false;
        }
        auto wf = lookup_workflow ? lookup_workflow(rec->workflow) : nullptr;
        if (!wf) {
            *err = "workflow '" + rec->workflow + "' is not loaded, so run " + id + " cannot be retried";
            return false;
        }
        if (wf->version != rec->version || wf->tasks.size() != rec->tasks.size()) {
            *err = "workflow '" + rec->workflow + "' has changed since run " + id +
                   " (version " + rec->version + ", now " + wf->version +
                   "); a retry needs the definition the run was made with; trigger a new run instead";
            return false;
        }
        auto run = makeRun(wf, id, rec->trigger, rec->params);
        run->rec = *rec;
        run->rec.tasks.clear();
        std::vector<std::optional<dag::Outcome>> outcomes(wf->tasks.size());
        std::vector<char> again(wf->tasks.size(), 0);
        for (uint32_t i = 0; i < wf->tasks.size(); ++i) {
            auto& task = run->tasks[i];
            task.rec = rec->tasks[i];
            auto st = finalStateFromName(task.rec.state);
            task.st = st.value_or(TS::Cancelled);
            task.rec.state = stateName(task.st);
        }
        if (!task_id.empty()) {
            auto t = taskIndex(*run, task_id, err);
            if (!t) return false;
            if (run->tasks[*t].st != TS::Failed && run->tasks[*t].st != TS::Cancelled) {
                *err = "task " + task_id + " of run " + id + " " + stateName(run->tasks[*t].st) +
                       "; only failed or cancelled tasks can be retried";
                return false;
            }
            again[*t] = 1;
        } else {
            for (uint32_t i = 0; i < run->tasks.size(); ++i) {
                if (run->tasks[i].st == TS::Failed || run->tasks[i].st == TS::Cancelled) again[i] = 1;
            }
        }
        if (std::find(again.begin(), again.end(), 1) == again.end()) {
            *err = "run " + id + " has no failed or cancelled task to retry";
            return false;
        }
        // Downstream of what runs again: every task with --downstream, else the skipped ones
        // (their trigger rules are decided anew).
        std::vector<uint32_t> stack;
        for (uint32_t i = 0; i < again.size(); ++i) {
            if (again[i]) stack.push_back(i);
        }
        while (!stack.empty()) {
            uint32_t n = stack.back();
            stack.pop_back();
            for (uint32_t d : wf->graph.dependents(n)) {
                if (again[d]) continue;
                if (downstream || run->tasks[d].st == TS::Skipped || run->tasks[d].st == TS::Cancelled) {
                    again[d] = 1;
                    stack.push_back(d);
                }
            }
        }
        std::vector<std::string> names;
        run->unfinished = 0;
        for (uint32_t i = 0; i < run->tasks.size(); ++i) {
            auto& task = run->tasks[i];
            if (!again[i]) {
                outcomes[i] = outcomeOf(task.st);
                if ((task.st == TS::Failed || task.st == TS::Cancelled) && run->first_failure.empty()) {
                    run->first_failure = "task '" + task.rec.task_id + "' " + stateName(task.st) +
                                         (task.rec.message.empty() ? "" : ": " + task.rec.message);
                }
                continue;
            }
            names.push_back(task.rec.task_id);
            task.st = TS::Pending;
            task.rec.state = "pending";
            task.rec.message.clear();
            task.rec.started_ms.reset();
            task.rec.ended_ms.reset();
            task.rec.exit_code.reset();
            task.rec.outputs.clear();
            task.rec.child_run.clear();
            ++run->unfinished;
        }
        run->rec.state = "running";
        run->rec.message.clear();
        run->rec.ended_ms.reset();
        Run& r = adopt(std::move(run));
        saveRun(r);
        for (uint32_t i = 0; i < r.tasks.size(); ++i) {
            if (again[i]) saveTask(r, i);
        }
        event(id, "", "run_retry",
              "retry by " + actorOr(actor) + ": " + joinNames(names));
        spdlog::info("ENGINE_RUN_RETRIED {} tasks {}", id, joinNames(names));
        ++runs_started;
        armRunTimeout(r);
        std::vector<uint32_t> now_ready, now_skipped;
        r.progress.restore(outcomes, &now_ready, &now_skipped);
        settleSkipped(r, now_skipped);
        const uint64_t serial = r.serial;
        for (uint32_t t : now_ready) {
            if (!by_serial.count(serial)) break;
            admit(r, t);
        }
        pump();
        if (by_serial.count(serial)) maybeEndRun(r);
        return true;
    }

    // ---- recovery after a crash ----

    // What recovery found and did about one attempt the previous process left starting, running
    // or frozen: its recorded process (pid + start time, so a reused pid is never hit) and any
    // other process that still carries the attempt's TASKHUB_* variables are stopped with
    // SIGKILL. Returns the sentence for the `lost` event.
    // tagged: the live processes carrying this daemon's TASKHUB_STATE_DIR, by
    // "run\ntask\nattempt" (their TASKHUB_RUN_ID, TASKHUB_TASK_ID, TASKHUB_ATTEMPT).
    std::string stopLeftovers(const store::RunRecord& run, const store::TaskRecord& task, bool same_boot,
                              const std::multimap<std::string, FoundProcess>& tagged,
                              std::vector<FoundProcess>* killed) {
        std::string what;
        pid_t killed_group = 0;
        if (task.pid && *task.pid > 0) {
            const auto pid = static_cast<pid_t>(*task.pid);
            const auto group = task.pgid && *task.pgid > 0 ? static_cast<pid_t>(*task.pgid) : pid;
            if (same_boot && task.proc_start && *task.proc_start > 0 && sameProcess(pid, *task.proc_start)) {
                // The group is killed only when the verified process leads it (its id cannot have
                // been reused while the leader lives); the process itself in any case.
                if (group == pid) {
                    ::kill(-group, SIGKILL);
                    killed_group = group;
                }
                ::kill(pid, SIGKILL);
                killed->push_back({pid, *task.proc_start, {}});
                what = "its process " + std::to_string(pid) + (group == pid ? " (and its process group)" : "") +
                       " was still running and was killed (SIGKILL)";
            } else if (same_boot && task.proc_start && *task.proc_start > 0 && processStartTicks(pid)) {
                what = "its process " + std::to_string(pid) + " is gone (pid " + std::to_string(pid) +
                       " now belongs to another process, which was left alone)";
            } else {
                what = "its process " + std::to_string(pid) + " is gone";
            }
        } else {
            what = task.state == "starting" ? "taskhubd stopped while starting it; no process was recorded"
                                            : "no process was recorded for it";
        }
        size_t extra = 0;
        auto [from, to] = tagged.equal_range(run.id + "\n" + task.task_id + "\n" + std::to_string(task.attempt));
        for (auto it = from; it != to; ++it) {
            const FoundProcess& p = it->second;
            if (std::any_of(killed->begin(), killed->end(), [&](const FoundProcess& k) { return k.pid == p.pid; }))
                continue;
            if (!sameProcess(p.pid, p.start_ticks)) continue; // gone since the scan
            killed->push_back(p); // waited for below, like the rest
            if (killed_group > 0 && ::getpgid(p.pid) == killed_group) continue; // signalled with its group
            if (::getpgid(p.pid) == p.pid) ::kill(-p.pid, SIGKILL);
            ::kill(p.pid, SIGKILL);
            ++extra;
        }
        if (extra > 0) what += "; " + std::to_string(extra) + " other process(es) of the attempt were killed";
        return what;
    }

    // Ends an unfinished run that cannot continue, with its unfinished tasks and child runs.
    // Returns the attempts lost in it and its child runs.
    // run id + "\n" + task id -> what stopLeftovers() found for the task's lost attempt.
    using LostWhat = std::map<std::string, std::string>;

    static std::string lostText(const LostWhat& lost_what, const std::string& run_id, const std::string& task_id) {
        auto w = lost_what.find(run_id + "\n" + task_id);
        return w != lost_what.end() ? w->second : "no process was recorded for it";
    }

    // Records a lost attempt: its `lost` event (what happened to it, and to the task: `then`).
    void recordLost(const std::string& run_id, const store::TaskRecord& t, const std::string& what,
                    const std::string& then) {
        event(run_id, t.task_id, "lost",
              "attempt " + std::to_string(t.attempt) + " was lost when taskhubd stopped: " + what + "; " + then);
        spdlog::warn("ENGINE_ATTEMPT_LOST {} task {}: {}; {}", run_id, t.task_id, what, then);
    }

    int abandon(const store::RunRecord& rec, const std::string& why,
                const std::map<std::string, store::RunRecord>& unfinished, const LostWhat& lost_what,
                RecoveryReport* report) {
        store::RunRecord r = rec;
        const int64_t now = nowMillis();
        for (size_t i = 0; i < r.tasks.size(); ++i) {
            auto& t = r.tasks[i];
            if (finalStateFromName(t.state)) continue;
            const bool was_running = attemptWasActive(t.state);
            const bool workflow_task = t.plugin.rfind("workflow:", 0) == 0;
            if (was_running && !workflow_task) {
                ++r.lost;
                ++report->lost;
                const std::string what = lostText(lost_what, r.id, t.task_id);
                recordLost(r.id, t, what, "failed: the run cannot continue");
                t.message = "lost: " + what + "; " + why;
            } else {
                t.message = why;
            }
            t.state = was_running ? "failed" : "cancelled";
            if (!t.ended_ms) t.ended_ms = now;
            forgetProcess(t);
            store.upsertTask(r.id, static_cast<int>(i), t);
            event(r.id, t.task_id, was_running ? "end" : "cancelled", t.state + ": " + t.message);
            if (!t.child_run.empty()) {
                if (auto c = unfinished.find(t.child_run); c != unfinished.end()) {
                    r.lost += abandon(c->second, "its parent run " + r.id + " could not continue", unfinished,
                                      lost_what, report);
                }
            }
        }
        r.state = "failed";
        r.message = why;
        r.ended_ms = now;
        store.updateRun(r);
        event(r.id, "", "recovered", "failed: " + why);
        event(r.id, "", "run_end", "failed: " + why);
        spdlog::warn("ENGINE_RUN_ABANDONED {} {}", r.id, why);
        ++report->abandoned;
        return r.lost - rec.lost;
    }

    // Rebuilds an unfinished run (and its child runs) as it was when the previous process died:
    // final tasks keep their outcome; tasks that were pending, ready or retrying wait again;
    // each attempt that was starting, running or frozen is lost: retried if the task has retries
    // left and is not at_most_once, else failed. A workflow task whose child run is unfinished
    // keeps running with that child, which is rebuilt the same way. Appends the runs rebuilt
    // (parent first) to *rebuilt; the caller admits them. A run's lost count includes the attempts
    // lost in its child runs (`runs --state lost` finds the top-level run). Returns the attempts
    // lost in this run and its child runs.
    int rebuild(const store::RunRecord& rec, Run* parent, uint32_t parent_task,
                 const std::map<std::string, store::RunRecord>& unfinished,
                 const LostWhat& lost_what, std::vector<Run*>* rebuilt,
                 RecoveryReport* report) {
        auto wf = lookup_workflow ? lookup_workflow(rec.workflow) : nullptr;
        std::string why;
        if (!wf) {
            why = "taskhubd restarted and workflow '" + rec.workflow + "' is no longer loaded, so run " + rec.id +
                  " cannot continue";
        } else if (wf->version != rec.version || wf->tasks.size() != rec.tasks.size()) {
            why = "taskhubd restarted and workflow '" + rec.workflow + "' has changed since run " + rec.id +
                  " started (version " + rec.version + ", now " + wf->version + "), so it cannot continue";
        }
        if (!why.empty()) return abandon(rec, why, unfinished, lost_what, report);
        auto run = makeRun(wf, rec.id, rec.trigger, rec.params);
        run->rec = rec;
        run->rec.tasks.clear();
        if (parent) {
            run->parent_id = parent->rec.id;
            run->parent_task = parent_task;
            run->parent_attempt = parent->tasks[parent_task].rec.attempt;
        }
        Run& r = adopt(std::move(run));
        rebuilt->push_back(&r);
        const int64_t now = nowMillis();
        std::vector<std::string> notes;
        r.unfinished = 0;
        for (uint32_t i = 0; i < r.tasks.size(); ++i) {
            auto& task = r.tasks[i];
            task.rec = rec.tasks[i];
            if (auto st = finalStateFromName(task.rec.state)) {
                task.st = *st;
                continue;
            }
            ++r.unfinished;
            const bool was_running = attemptWasActive(task.rec.state);
            task.st = TS::Pending;
            if (!was_running) {
                task.rec.state = "pending";
                continue;
            }
            if (!task.def->workflow.empty()) {
                auto child = unfinished.find(task.rec.child_run);
                if (child != unfinished.end()) {
                    setState(r, i, TS::Running);
                    ++*r.wf_running;
                    r.children.push_back(child->first);
                    if (task.def->timeout.count() > 0) {
                        const auto elapsed = std::chrono::milliseconds(now - task.rec.started_ms.value_or(now));
                        armTaskTimeout(r, i, std::max(task.def->timeout - elapsed, std::chrono::milliseconds(1)));
                    }
                    r.rec.lost += rebuild(child->second, &r, i, unfinished, lost_what, rebuilt, report);
                    notes.push_back(task.rec.task_id + ": continues with child run " + child->first);
                    continue;
                }
                if (!task.rec.child_run.empty()) {
                    // The child ended but its end did not reach the parent before the crash.
                    if (auto c = store.run(task.rec.child_run, false); c && store::isFinalRunState(c->state)) {
                        task.st = c->state == "succeeded" ? TS::Succeeded
                                  : c->state == "cancelled" ? TS::Cancelled
                                                            : TS::Failed;
                        task.rec.state = stateName(task.st);
                        task.rec.message = "child run " + c->id + " " + c->state +
                                           (c->message.empty() ? "" : ": " + c->message);
                        task.rec.ended_ms = c->ended_ms.value_or(now);
                        --r.unfinished;
                        store.upsertTask(r.rec.id, static_cast<int>(i), task.rec);
                        event(r.rec.id, task.rec.task_id, "end", std::string(stateName(task.st)) + ": " +
                                                                    task.rec.message + " (recorded at recovery)");
                        continue;
                    }
                }
            }
            // A lost attempt.
            ++r.rec.lost;
            ++report->lost;
            const std::string what = lostText(lost_what, rec.id, task.rec.task_id);
            forgetProcess(task.rec);
            task.rec.ended_ms = now;
            if (task.def->at_most_once) {
                task.st = TS::Failed;
                task.rec.message = "lost: " + what + "; not run again (at_most_once = true)";
                notes.push_back(task.rec.task_id + ": failed (at_most_once)");
            } else if (task.rec.attempt <= task.def->retries) {
                task.rec.message = "lost: " + what;
                notes.push_back(task.rec.task_id + ": retried");
            } else {
                task.st = TS::Failed;
                task.rec.message = "lost: " + what + "; no retries left (retries = " +
                                   std::to_string(task.def->retries) + ")";
                notes.push_back(task.rec.task_id + ": failed (no retries left)");
            }
            task.rec.state = stateName(task.st);
            if (task.st == TS::Failed) --r.unfinished;
            if (task.st == TS::Failed) {
                recordLost(r.rec.id, task.rec, what, "failed");
                event(r.rec.id, task.rec.task_id, "end", "failed: " + task.rec.message);
            } else {
                recordLost(r.rec.id, task.rec, what,
                           "retry " + std::to_string(task.rec.attempt) + " of " + std::to_string(task.def->retries));
            }
        }
        for (uint32_t i = 0; i < r.tasks.size(); ++i) {
            if (r.tasks[i].rec.state != rec.tasks[i].state || r.tasks[i].rec.message != rec.tasks[i].message)
                saveTask(r, i);
        }
        if (r.rec.state == "paused") r.paused = true;
        saveRun(r);
        event(r.rec.id, "", "recovered",
              "taskhubd restarted; the run continues where it stopped" +
                  (notes.empty() ? std::string() : ": " + joinNames(notes)));
        ++report->resumed;
        return r.rec.lost - rec.lost;
    }

    // Starts what a rebuilt run can do now: queued runs wait their turn; the others restore their
    // progress from the tasks that ended and admit what is ready.
    void resumeRebuilt(Run& run) {
        if (run.rec.state == "queued") {
            if (run.parent_id.empty()) queued[run.rec.workflow].push_back(run.rec.id);
            return;
        }
        if (run.wf->timeout.count() > 0) {
            const auto elapsed = std::chrono::milliseconds(nowMillis() - run.rec.started_ms.value_or(nowMillis()));
            armRunTimeout(run, std::max(run.wf->timeout - elapsed, std::chrono::milliseconds(1)));
        }
        std::vector<std::optional<dag::Outcome>> outcomes(run.tasks.size());
        std::vector<uint32_t> lost_failed;
        for (uint32_t i = 0; i < run.tasks.size(); ++i) {
            auto& task = run.tasks[i];
            if (!isFinal(task.st)) continue;
            outcomes[i] = outcomeOf(task.st);
            if ((task.st == TS::Failed || task.st == TS::Cancelled) && run.first_failure.empty()) {
                run.first_failure = "task '" + task.rec.task_id + "' " + stateName(task.st) +
                                    (task.rec.message.empty() ? "" : ": " + task.rec.message);
            }
        }
        const uint64_t serial = run.serial;
        std::vector<uint32_t> now_ready, now_skipped;
        run.progress.restore(outcomes, &now_ready, &now_skipped);
        settleSkipped(run, now_skipped);
        if (run.wf->on_failure == config::OnFailure::FailFast && !run.first_failure.empty()) {
            stopRun(run, "failed", "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
        }
        for (uint32_t t : now_ready) {
            if (!by_serial.count(serial)) return;
            admit(run, t);
        }
        if (by_serial.count(serial)) maybeEndRun(run);
    }

    RecoveryReport recover(bool same_boot) {
        RecoveryReport report;
        std::map<std::string, store::RunRecord> unfinished;
        std::vector<std::string> order; // oldest first
        for (const auto& r : store.unfinishedRuns()) {
            if (auto full = store.run(r.id, true)) {
                order.push_back(r.id);
                unfinished.emplace(r.id, std::move(*full));
            }
        }
        report.runs = unfinished.size();
        if (unfinished.empty()) return report;

        // First stop every process the previous process left behind, so that no lost attempt
        // still runs when its retry starts.
        LostWhat lost_what;
        std::vector<FoundProcess> killed;
        std::multimap<std::string, FoundProcess> tagged;
        bool scanned = false;
        for (const auto& [id, rec] : unfinished) {
            for (const auto& t : rec.tasks) {
                if (!attemptWasActive(t.state)) continue;
                if (t.plugin.rfind("workflow:", 0) == 0) continue;
                if (!scanned && !state_dir.empty()) {
                    // One pass over /proc for all lost attempts.
                    for (auto& p : processesWithEnvironment("TASKHUB_STATE_DIR=" + state_dir,
                                                            {"TASKHUB_RUN_ID", "TASKHUB_TASK_ID", "TASKHUB_ATTEMPT"})) {
                        std::string key = p.values[0] + "\n" + p.values[1] + "\n" + p.values[2];
                        tagged.emplace(std::move(key), std::move(p));
                    }
                }
                scanned = true;
                lost_what[id + "\n" + t.task_id] = stopLeftovers(rec, t, same_boot, tagged, &killed);
            }
        }
        report.killed = killed.size();
        // SIGKILL is not instant: wait (briefly) until they are gone.
        for (int i = 0; i < 200 && !killed.empty(); ++i) {
            std::erase_if(killed, [](const FoundProcess& p) { return !sameProcess(p.pid, p.start_ticks); });
            if (!killed.empty()) ::usleep(10'000);
        }
        for (const auto& p : killed) {
            spdlog::error("ENGINE_RECOVERY_KILL_PENDING process {} has not exited 2 s after SIGKILL", p.pid);
        }

        std::vector<Run*> rebuilt;
        for (const auto& id : order) {
            const auto& rec = unfinished.at(id);
            if (!rec.parent_run.empty()) {
                // Child runs are rebuilt with their parent; one whose parent has ended cannot continue.
                if (!unfinished.count(rec.parent_run)) {
                    abandon(rec, "its parent run " + rec.parent_run + " has ended", unfinished, lost_what, &report);
                }
                continue;
            }
            rebuild(rec, nullptr, 0, unfinished, lost_what, &rebuilt, &report);
        }
        std::vector<uint64_t> serials;
        for (Run* r : rebuilt) serials.push_back(r->serial);
        for (uint64_t serial : serials) {
            if (auto it = by_serial.find(serial); it != by_serial.end()) resumeRebuilt(*it->second);
        }
        std::set<std::string> workflows;
        for (const auto& [wf, q] : queued) workflows.insert(wf);
        for (const auto& wf : workflows) startNextQueued(wf);
        pump();
        return report;
    }

    std::map<std::string, std::string> waitingReasons(const std::string& id) const {
        std::map<std::string, std::string> out;
        auto it = runs.find(id);
        if (it == runs.end()) return out;
        const Run& run = *it->second;
        for (const auto& task : run.tasks) {
            if (task.st != TS::Ready) continue;
            std::string why;
            if (run.paused) {
                why = "waiting: the run is paused";
            } else if (task.def->workflow.empty() && isUnhealthy(task.def->plugin)) {
                why = "waiting for plugin: " + unhealthyText(task.def->plugin);
            } else if (workflowLimitReached(run)) {
                why = "waiting: workflow '" + run.wf->name + "' is at max_parallel_tasks (" +
                      std::to_string(run.wf->max_parallel_tasks) + ")";
            } else if (task.def->workflow.empty() && pluginLimitReached(task.def->plugin)) {
                why = "waiting: plugin '" + task.def->plugin + "' is at max_concurrency (" +
                      std::to_string(pluginLimit(task.def->plugin)) + ")";
            } else if (task.def->workflow.empty() && globalLimitReached()) {
                why = "waiting: max_running_tasks (" + std::to_string(opts.max_running_tasks) + ") reached";
            } else {
                why = "waiting: starting";
            }
            out[task.rec.task_id] = why;
        }
        return out;
    }
};

Engine::Engine(asio::io_context& io, store::Store& store, plugin_host::PluginHost& plugins,
               EngineOptions options)
    : impl_(std::make_unique<Impl>(io, store, plugins, std::move(options))) {}

Engine::~Engine() = default;

void Engine::setWorkflowLookup(WorkflowLookup lookup) { impl_->lookup_workflow = std::move(lookup); }

RecoveryReport Engine::recover(bool same_boot) { return impl_->recover(same_boot); }

TriggerResult Engine::trigger(std::shared_ptr<const config::Workflow> wf, TriggerKind kind,
                              std::optional<std::chrono::sys_seconds> scheduled,
                              const store::NameValues& params, const std::string& actor, const std::string& label,
                              const std::string& skip_reason, const std::string& file_run_id) {
    return impl_->trigger(std::move(wf), kind, scheduled, params, actor, label, skip_reason, file_run_id);
}

bool Engine::cancel(const std::string& run_id, const std::string& task_id, const std::string& actor,
                    std::string* err) {
    return impl_->cancel(run_id, task_id, actor, err);
}

bool Engine::pause(const std::string& run_id, bool freeze, const std::string& actor, std::string* err) {
    return impl_->pause(run_id, freeze, actor, err);
}

bool Engine::resume(const std::string& run_id, const std::string& actor, std::string* err) {
    return impl_->resume(run_id, actor, err);
}

bool Engine::retry(const std::string& run_id, const std::string& task_id, bool downstream,
                   const std::string& actor, std::string* err) {
    return impl_->retry(run_id, task_id, downstream, actor, err);
}

void Engine::pluginHealthChanged(const std::string& plugin) { impl_->pluginHealthChanged(plugin); }

std::map<std::string, std::string> Engine::waitingReasons(const std::string& run_id) const {
    return impl_->waitingReasons(run_id);
}

bool Engine::whenEnded(const std::string& run_id, std::function<void(const store::RunRecord&)> fn) {
    auto it = impl_->runs.find(run_id);
    if (it != impl_->runs.end()) {
        it->second->waiters.push_back(std::move(fn));
        return true;
    }
    auto rec = impl_->store.run(run_id, true);
    if (!rec) return false;
    fn(*rec);
    return true;
}

void Engine::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
    auto& im = *impl_;
    im.stopping = true;
    // Queued runs never start once shutdown begins.
    std::vector<std::string> queued_ids;
    for (auto& [wf, q] : im.queued) queued_ids.insert(queued_ids.end(), q.begin(), q.end());
    for (const auto& id : queued_ids) {
        if (auto* run = im.findRun(id)) im.cancelRun(*run, "cancelled: taskhubd is shutting down");
    }
    if (im.runs.empty()) {
        done();
        return;
    }
    im.on_drained = std::move(done);
    spdlog::info("ENGINE_DRAINING waiting up to {} for {} active run(s)", formatDuration(grace), im.runs.size());
    im.grace_timer = std::make_unique<asio::steady_timer>(im.io, grace);
    im.grace_timer->async_wait([&im](const boost::system::error_code& ec) {
        if (ec) return;
        std::vector<std::string> ids;
        for (auto& [id, r] : im.runs) {
            if (r->parent_id.empty()) ids.push_back(id); // children go with their parents
        }
        for (const auto& id : ids) {
            if (auto* run = im.findRun(id); run && !run->ending)
                im.cancelRun(*run, "cancelled: taskhubd shut down before the run finished");
        }
    });
}

EngineStats Engine::stats() const {
    EngineStats s;
    for (const auto& [id, r] : impl_->runs) {
        if (r->rec.state == "queued") ++s.queued_runs;
        else ++s.active_runs;
    }
    s.running_tasks = impl_->running_tasks;
    s.waiting_tasks = impl_->ready_tasks;
    s.runs_started = impl_->runs_started;
    return s;
}

} // namespace taskhub::engine

#include "engine/engine.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>


#include <random>
#include <set>

#include "common/time_util.h"
#include "dag/graph.h"
#include "engine/task_output.h"
#include "plugin_host/plugin_host.h"
#include "store/store.h"

namespace taskhub::engine {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using plugin_host::AttemptResult;

namespace {

bool isFinalTaskState(const std::string& s) {
    return s == "succeeded" || s == "failed" || s == "cancelled" || s == "skipped";
}

} // namespace

struct Engine::Impl {
    struct TaskRun {
        store::TaskRecord rec;
        const config::TaskDef* def = nullptr;
        plugin_host::Plugin* plugin = nullptr;
        uint64_t token = 0;
        std::shared_ptr<TaskOutput> output; // while an attempt runs
        bool cancel_requested = false;
        std::string timed_out; // non-empty: the attempt was stopped by its timeout
        std::unique_ptr<asio::steady_timer> timer; // retry delay or attempt timeout
    };

    struct Run {
        store::RunRecord rec;
        std::shared_ptr<const config::Workflow> wf;
        dag::Progress progress;
        std::vector<TaskRun> tasks;
        size_t unfinished = 0;
        std::string stop_state;  // set when the run is being stopped: "failed" or "cancelled"
        std::string stop_reason;
        std::string first_failure;
        std::unique_ptr<asio::steady_timer> run_timer;
        std::vector<std::function<void(const store::RunRecord&)>> waiters;

        Run(std::shared_ptr<const config::Workflow> w) : wf(std::move(w)), progress(wf->graph) {}
    };

    struct ReadyItem {
        std::string run_id;
        uint32_t task;
    };

    asio::io_context& io;
    store::Store& store;
    plugin_host::PluginHost& plugins;
    EngineOptions opts;

    std::map<std::string, std::unique_ptr<Run>> runs;          // active: queued or running
    std::map<std::string, std::deque<std::string>> queued;     // workflow -> queued run ids
    // Ready tasks waiting for a concurrency slot, FIFO per plugin.
    std::map<std::string, std::deque<ReadyItem>> ready;
    size_t ready_count = 0;
    std::map<std::string, int> plugin_running;
    size_t running_tasks = 0;
    uint64_t runs_started = 0;
    bool stopping = false;
    std::function<void()> on_drained;
    std::unique_ptr<asio::steady_timer> grace_timer;
    std::mt19937_64 rng{std::random_device{}()};

    Impl(asio::io_context& i, store::Store& s, plugin_host::PluginHost& p, EngineOptions o)
        : io(i), store(s), plugins(p), opts(std::move(o)) {}

    // ---- persistence ----

    void event(const std::string& run_id, const std::string& task_id, const std::string& kind,
               const std::string& detail = {}) {
        store.addEvent({nowMillis(), run_id, task_id, kind, detail});
    }

    void saveRun(Run& run) {
        store.updateRun(run.rec);
    }

    void saveTask(Run& run, uint32_t t) {
        store.upsertTask(run.rec.id, static_cast<int>(t), run.tasks[t].rec);
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

    TriggerResult trigger(std::shared_ptr<const config::Workflow> wf, TriggerKind kind,
                          std::optional<std::chrono::sys_seconds> scheduled) {
        TriggerResult out;
        if (stopping) {
            out.error = "taskhubd is shutting down; no new runs are started";
            return out;
        }
        std::string id;
        if (kind == TriggerKind::Cron && scheduled) {
            id = wf->name + "@" + formatCompactUtc(*scheduled);
            if (runs.count(id) || store.runExists(id)) {
                out.error = "the firing " + id + " is already recorded";
                out.duplicate = true;
                return out;
            }
        } else {
            id = newManualId(wf->name);
        }

        auto run = std::make_unique<Run>(wf);
        run->rec.id = id;
        run->rec.workflow = wf->name;
        run->rec.trigger = kind == TriggerKind::Cron ? "cron" : "manual";
        run->rec.version = wf->version;
        run->rec.created_ms = nowMillis();
        if (scheduled) run->rec.scheduled_ms = scheduled->time_since_epoch().count() * 1000;
        run->tasks.resize(wf->tasks.size());
        run->unfinished = wf->tasks.size();
        for (uint32_t i = 0; i < wf->tasks.size(); ++i) {
            auto& t = run->tasks[i];
            t.def = &wf->tasks[i];
            t.rec.task_id = t.def->id;
            t.rec.plugin = t.def->plugin;
        }

        // Overlap policy: what to do while earlier runs of this workflow are still active.
        std::vector<Run*> active;
        for (auto& [rid, r] : runs) {
            if (r->rec.workflow == wf->name) active.push_back(r.get());
        }
        std::string start = "run";
        std::string skip_reason;
        if (!active.empty()) {
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
        if (!skip_reason.empty()) {
            run->rec.state = "skipped";
            run->rec.message = skip_reason;
            run->rec.ended_ms = run->rec.created_ms;
            store.insertRun(run->rec);
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
        store.insertRun(run->rec);
        for (uint32_t i = 0; i < run->tasks.size(); ++i) saveTask(*run, i);
        event(id, "", "run_created", run->rec.trigger);
        Run& r = *run;
        runs.emplace(id, std::move(run));
        if (start == "queue") {
            queued[wf->name].push_back(id);
            event(id, "", "run_queued", "waiting for " + active.back()->rec.id + " (overlap = " +
                                            config::toString(wf->overlap) + ")");
            out.state = "queued";
            return out;
        }
        if (start == "replace") {
            for (Run* old : active) {
                std::string err;
                cancel(old->rec.id, "replaced by run " + id + " (overlap = replace)", &err);
            }
        }
        startRun(r);
        out.state = r.rec.state;
        return out;
    }

    void startRun(Run& run) {
        ++runs_started;
        // The run's log directory, once; a failure shows up as each task's "cannot open task log".
        std::error_code mkdir_error;
        fs::create_directories(opts.log_dir / run.rec.id, mkdir_error);
        run.rec.state = "running";
        run.rec.started_ms = nowMillis();
        saveRun(run);
        event(run.rec.id, "", "run_start", "version " + run.rec.version);
        spdlog::info("ENGINE_RUN_STARTED {} ({} tasks)", run.rec.id, run.tasks.size());
        if (run.wf->timeout.count() > 0) {
            run.run_timer = std::make_unique<asio::steady_timer>(io, run.wf->timeout);
            std::string id = run.rec.id;
            run.run_timer->async_wait([this, id](const boost::system::error_code& ec) {
                if (ec) return;
                auto it = runs.find(id);
                if (it == runs.end()) return;
                stopRun(*it->second, "failed",
                        "run timed out after " + formatDuration(it->second->wf->timeout));
            });
        }
        for (uint32_t t : run.progress.start()) markReady(run, t);
        pump();
        maybeEndRun(run); // a workflow whose tasks all end at once
    }

    // ---- dispatching ----

    void markReady(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        task.rec.state = "ready";
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "ready");
        ready[task.rec.plugin].push_back({run.rec.id, t});
        ++ready_count;
    }

    bool globalLimitReached() const {
        return opts.max_running_tasks > 0 && running_tasks >= static_cast<size_t>(opts.max_running_tasks);
    }

    bool pluginLimitReached(const std::string& plugin) const {
        auto lim = opts.plugin_max_concurrency.find(plugin);
        if (lim == opts.plugin_max_concurrency.end() || lim->second <= 0) return false;
        auto cur = plugin_running.find(plugin);
        return cur != plugin_running.end() && cur->second >= lim->second;
    }

    // Starts ready tasks while the limits allow: one per plugin per round, so that a plugin at
    // its max_concurrency never holds back another plugin's tasks. Cost is per dispatch, not per
    // waiting task.
    void pump() {
        bool progress = true;
        while (progress && ready_count > 0) {
            progress = false;
            for (auto& [plugin, queue] : ready) {
                if (globalLimitReached()) return;
                if (queue.empty() || pluginLimitReached(plugin)) continue;
                ReadyItem item = std::move(queue.front());
                queue.pop_front();
                --ready_count;
                progress = true;
                auto r = runs.find(item.run_id);
                if (r == runs.end() || r->second->tasks[item.task].rec.state != "ready") continue;
                dispatch(*r->second, item.task);
            }
        }
    }

    std::shared_ptr<TaskOutput> openOutput(const Run& run, const TaskRun& task, std::string* err) {
        fs::path file = opts.log_dir / run.rec.id / (task.rec.task_id + "." + std::to_string(task.rec.attempt) + ".log");
        return TaskOutput::open(io, std::move(file), err);
    }

    void dispatch(Run& run, uint32_t t) {
        auto& task = run.tasks[t];
        task.plugin = plugins.find(task.rec.plugin);
        task.rec.attempt += 1;
        task.rec.started_ms = nowMillis();
        task.rec.ended_ms.reset();
        task.rec.exit_code.reset();
        task.rec.message.clear();
        task.cancel_requested = false;
        task.timed_out.clear();
        if (!task.plugin) {
            finishAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                                *plugins.unavailable(task.rec.plugin)});
            maybeEndRun(run);
            return;
        }
        std::string err;
        task.output = openOutput(run, task, &err);
        if (!task.output) {
            finishAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt, err});
            maybeEndRun(run);
            return;
        }
        task.rec.state = "running";
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "start", "attempt " + std::to_string(task.rec.attempt));
        ++running_tasks;
        ++plugin_running[task.rec.plugin];

        plugin_host::AttemptSpec spec;
        spec.workflow = run.rec.workflow;
        spec.run_id = run.rec.id;
        spec.task_id = task.rec.task_id;
        spec.attempt = static_cast<uint32_t>(task.rec.attempt);
        spec.params_json = task.def->params_json;
        spec.env = {"TASKHUB_WORKFLOW=" + run.rec.workflow, "TASKHUB_RUN_ID=" + run.rec.id,
                    "TASKHUB_TASK_ID=" + task.rec.task_id,
                    "TASKHUB_ATTEMPT=" + std::to_string(task.rec.attempt)};
        for (const auto& [k, v] : task.def->env) spec.env.push_back(k + "=" + v);
        spec.log_fd = task.output->writeFd();
        spec.timeout_ms = static_cast<uint64_t>(task.def->timeout.count());

        if (task.def->timeout.count() > 0) {
            task.timer = std::make_unique<asio::steady_timer>(io, task.def->timeout);
            std::string id = run.rec.id;
            int attempt = task.rec.attempt;
            task.timer->async_wait([this, id, t, attempt](const boost::system::error_code& ec) {
                if (ec) return;
                auto it = runs.find(id);
                if (it == runs.end()) return;
                auto& tk = it->second->tasks[t];
                if (tk.rec.state != "running" || tk.rec.attempt != attempt) return;
                tk.timed_out = "timed out after " + formatDuration(tk.def->timeout);
                event(id, tk.rec.task_id, "timeout", tk.timed_out);
                tk.plugin->cancel(tk.token);
            });
        }
        std::string id = run.rec.id;
        int attempt = task.rec.attempt;
        task.token = task.plugin->start(spec, [this, id, t, attempt](AttemptResult r) {
            onAttemptDone(id, t, attempt, std::move(r));
        });
        task.output->start();
    }

    void onAttemptDone(const std::string& id, uint32_t t, int attempt, AttemptResult r) {
        auto it = runs.find(id);
        if (it == runs.end()) return;
        Run& run = *it->second;
        auto& task = run.tasks[t];
        if (task.rec.state != "running" || task.rec.attempt != attempt) return;
        --running_tasks;
        --plugin_running[task.rec.plugin];
        // The attempt's output is in the log before its end is recorded.
        task.output->attemptEnded();
        task.output.reset();
        task.timer.reset();
        finishAttempt(run, t, std::move(r));
        pump();
        maybeEndRun(run);
    }

    void finishAttempt(Run& run, uint32_t t, AttemptResult r) {
        auto& task = run.tasks[t];
        task.rec.ended_ms = nowMillis();
        task.rec.exit_code = r.exit_code;
        using O = AttemptResult::Outcome;
        if (r.outcome == O::Succeeded) {
            finishTask(run, t, "succeeded", r.message);
            return;
        }
        std::string message = r.message;
        if (!task.timed_out.empty()) {
            message = task.timed_out + (r.message.empty() ? "" : " (" + r.message + ")");
        } else if (task.cancel_requested || (r.outcome == O::Cancelled && !run.stop_state.empty())) {
            finishTask(run, t, "cancelled", run.stop_reason.empty() ? r.message : run.stop_reason);
            return;
        }
        if (run.stop_state.empty() && task.rec.attempt <= task.def->retries) {
            task.rec.state = "retrying";
            task.rec.message = message;
            saveTask(run, t);
            event(run.rec.id, task.rec.task_id, "end",
                  "failed: " + message + "; retry " + std::to_string(task.rec.attempt) + " of " +
                      std::to_string(task.def->retries) + " in " + formatDuration(task.def->retry_delay));
            task.timer = std::make_unique<asio::steady_timer>(io, task.def->retry_delay);
            std::string id = run.rec.id;
            task.timer->async_wait([this, id, t](const boost::system::error_code& ec) {
                if (ec) return;
                auto it = runs.find(id);
                if (it == runs.end() || it->second->tasks[t].rec.state != "retrying") return;
                it->second->tasks[t].timer.reset();
                markReady(*it->second, t);
                pump();
            });
            return;
        }
        finishTask(run, t, "failed", message);
    }

    void finishTask(Run& run, uint32_t t, const std::string& state, const std::string& message) {
        auto& task = run.tasks[t];
        task.rec.state = state;
        task.rec.message = message;
        if (!task.rec.ended_ms) task.rec.ended_ms = nowMillis();
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, state == "succeeded" || state == "failed" ? "end" : state,
              state + (message.empty() ? "" : ": " + message));
        --run.unfinished;
        if (state == "failed") {
            spdlog::warn("ENGINE_TASK_FAILED {} task {}: {}", run.rec.id, task.rec.task_id, message);
            if (run.first_failure.empty()) {
                run.first_failure = "task '" + task.rec.task_id + "' failed" +
                                    (message.empty() ? "" : ": " + message);
            }
            if (run.wf->on_failure == config::OnFailure::FailFast && run.stop_state.empty()) {
                stopRun(run, "failed", "cancelled: " + run.first_failure + " (on_failure = fail_fast)");
                return;
            }
        }
        if (run.stop_state.empty()) propagate(run, t, state == "succeeded");
    }

    void propagate(Run& run, uint32_t t, bool succeeded) {
        std::vector<uint32_t> now_ready, now_skipped;
        run.progress.finish(t, succeeded ? dag::Outcome::Succeeded : dag::Outcome::Failed, &now_ready,
                            &now_skipped);
        for (uint32_t s : now_skipped) {
            auto& task = run.tasks[s];
            if (isFinalTaskState(task.rec.state)) continue;
            task.rec.state = "skipped";
            task.rec.message = "an upstream task did not succeed";
            saveTask(run, s);
            event(run.rec.id, task.rec.task_id, "skipped", task.rec.message);
            --run.unfinished;
        }
        for (uint32_t r : now_ready) markReady(run, r);
    }

    // Stops a run: nothing new starts; running attempts are asked to stop; the run ends as
    // `state` once they have.
    void stopRun(Run& run, const std::string& state, const std::string& reason) {
        if (!run.stop_state.empty()) return;
        run.stop_state = state;
        run.stop_reason = reason;
        event(run.rec.id, "", "run_stopping", reason);
        for (uint32_t t = 0; t < run.tasks.size(); ++t) {
            auto& task = run.tasks[t];
            const auto& s = task.rec.state;
            if (s == "running") {
                task.cancel_requested = true;
                task.plugin->cancel(task.token);
            } else if (!isFinalTaskState(s)) {
                task.timer.reset();
                task.rec.state = "cancelled";
                task.rec.message = reason;
                saveTask(run, t);
                event(run.rec.id, task.rec.task_id, "cancelled", reason);
                --run.unfinished;
            }
        }
        auto q = queued.find(run.rec.workflow);
        if (q != queued.end()) std::erase(q->second, run.rec.id);
        maybeEndRun(run);
    }

    void maybeEndRun(Run& run) {
        if (run.unfinished > 0 || run.rec.state != "running") return;
        // Deferred so that callers up the stack never touch a destroyed Run.
        std::string id = run.rec.id;
        run.rec.state = "ending";
        asio::post(io, [this, id] {
            auto it = runs.find(id);
            if (it != runs.end()) endRun(*it->second);
        });
    }

    void endRun(Run& run) {
        if (!run.stop_state.empty()) {
            run.rec.state = run.stop_state;
            run.rec.message = run.stop_state == "failed" && !run.first_failure.empty() &&
                                      run.stop_reason.find("fail_fast") != std::string::npos
                                  ? run.first_failure
                                  : run.stop_reason;
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
        for (auto& w : owned->waiters) w(owned->rec);
        startNextQueued(owned->rec.workflow);
        if (stopping && runs.empty() && on_drained) {
            auto done = std::move(on_drained);
            on_drained = nullptr;
            grace_timer.reset();
            done();
        }
    }

    // Starts the oldest queued run of a workflow once none of its runs is running any more.
    void startNextQueued(const std::string& workflow) {
        auto q = queued.find(workflow);
        if (q == queued.end()) return;
        for (const auto& [id, r] : runs) {
            if (r->rec.workflow == workflow && r->rec.state != "queued") return;
        }
        while (!q->second.empty()) {
            std::string next = q->second.front();
            q->second.pop_front();
            auto it = runs.find(next);
            if (it != runs.end() && it->second->rec.state == "queued") {
                startRun(*it->second);
                return;
            }
        }
    }

    bool cancel(const std::string& id, const std::string& reason, std::string* err) {
        auto it = runs.find(id);
        if (it == runs.end()) {
            auto rec = store.run(id, false);
            *err = rec ? "run " + id + " has already ended (" + rec->state + ")" : "no run with id " + id;
            return false;
        }
        Run& run = *it->second;
        if (run.rec.state == "ending" || !run.stop_state.empty()) {
            *err = "run " + id + " is already ending";
            return false;
        }
        if (run.rec.state == "queued") run.rec.state = "running"; // so that it can end
        stopRun(run, "cancelled", reason);
        return true;
    }
};

Engine::Engine(asio::io_context& io, store::Store& store, plugin_host::PluginHost& plugins,
               EngineOptions options)
    : impl_(std::make_unique<Impl>(io, store, plugins, std::move(options))) {}

Engine::~Engine() = default;

size_t Engine::recoverInterrupted() {
    auto& store = impl_->store;
    auto runs = store.unfinishedRuns();
    for (auto& r : runs) {
        auto full = store.run(r.id, true);
        const std::string why = "interrupted: taskhubd stopped while this run was " + r.state +
                                "; this version does not resume runs";
        for (size_t i = 0; i < full->tasks.size(); ++i) {
            auto& t = full->tasks[i];
            if (isFinalTaskState(t.state)) continue;
            t.state = t.state == "running" ? "failed" : "cancelled";
            t.message = "interrupted by a taskhubd restart";
            if (!t.ended_ms) t.ended_ms = nowMillis();
            store.upsertTask(r.id, static_cast<int>(i), t);
        }
        r.state = "failed";
        r.message = why;
        r.ended_ms = nowMillis();
        store.updateRun(r);
        store.addEvent({nowMillis(), r.id, "", "recovered", why});
        spdlog::warn("ENGINE_RUN_INTERRUPTED {} {}", r.id, why);
    }
    store.commit();
    return runs.size();
}

TriggerResult Engine::trigger(std::shared_ptr<const config::Workflow> wf, TriggerKind kind,
                              std::optional<std::chrono::sys_seconds> scheduled) {
    return impl_->trigger(std::move(wf), kind, scheduled);
}

bool Engine::cancel(const std::string& run_id, const std::string& reason, std::string* err) {
    return impl_->cancel(run_id, reason, err);
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
        std::string err;
        im.cancel(id, "cancelled: taskhubd is shutting down", &err);
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
        for (auto& [id, r] : im.runs) ids.push_back(id);
        for (const auto& id : ids) {
            std::string err;
            im.cancel(id, "cancelled: taskhubd shut down before the run finished", &err);
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
    s.waiting_tasks = impl_->ready_count;
    s.runs_started = impl_->runs_started;
    return s;
}


} // namespace taskhub::engine

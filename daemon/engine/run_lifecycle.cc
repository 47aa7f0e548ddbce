// A run from its trigger to its end: overlap and queued runs, admitting tasks whose trigger rule
// is met, settling their outcomes through the graph, stopping and ending runs, child runs.
#include "engine/engine_state.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <taskhub/suggest.hpp>

#include <algorithm>
#include <cstdio>

#include "common/log.h"
#include "common/time_util.h"
#include "store/store.h"

namespace taskhub::engine {

namespace {

// What the store writes of a new run's tasks: their ids, plugins and kinds, in workflow order.
store::Store::TaskList taskListOf(const Run& run) {
    store::Store::TaskList list;
    list.reserve(run.tasks.size());
    for (const auto& t : run.tasks) list.add(t.rec.task_id, t.rec.plugin, t.rec.kind);
    return list;
}

} // namespace

std::string Core::newManualId(const std::string& workflow) {
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
std::optional<std::string> Core::resolveParams(const config::Workflow& wf,
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

std::unique_ptr<Run> Core::makeRun(std::shared_ptr<const config::Workflow> wf,
                                   std::string id,
                                   model::TriggerSource trigger,
                                   store::NameValues params) {
    auto run = std::make_unique<Run>(wf);
    run->serial = ++next_serial;
    run->rec.id = std::move(id);
    run->rec.workflow = wf->name;
    run->rec.trigger = trigger;
    run->rec.version = wf->version;
    run->rec.created_ms = nowMillis();
    run->rec.params = std::move(params);
    run->priority = wf->priority;
    run->tasks.resize(wf->tasks.size());
    run->conditions.resize(wf->tasks.size());
    run->unfinished = wf->tasks.size();
    for (uint32_t i = 0; i < wf->tasks.size(); ++i) {
        auto& t = run->tasks[i];
        t.def = &wf->tasks[i];
        t.rec.task_id = t.def->id;
        t.rec.kind = t.def->workflow.empty() ? model::TaskKind::Plugin : model::TaskKind::Workflow;
        // The text shown for a workflow task's plugin; the engine goes by kind.
        t.rec.plugin = t.def->workflow.empty() ? t.def->plugin : "workflow:" + t.def->workflow;
    }
    return run;
}

Run& Core::adopt(std::unique_ptr<Run> run) {
    Run& r = *run;
    // Adopted right after its record was written: its first attempts wait until that is durable.
    r.created_mark = store.writeMark();
    r.wf_running = &queues.workflowRunning(r.wf->name);
    by_serial[r.serial] = &r;
    if (r.parent_id.empty()) top_level[r.rec.workflow][r.serial] = &r;
    runs.emplace(r.rec.id, std::move(run));
    return r;
}

TriggerResult Core::trigger(const TriggerRequest& req) {
    using model::TriggerSource;
    const std::shared_ptr<const config::Workflow>& wf = req.workflow;
    const std::optional<std::chrono::sys_seconds>& scheduled = req.scheduled;
    // A firing the caller records as skipped (a paused workflow's), with its message.
    const std::string forced_skip = req.skip == model::SkipCause::None ? std::string()
                                    : !req.skip_reason.empty()         ? req.skip_reason
                                                                       : std::string(model::kPausedFiringMessage);
    const bool timed = req.source == TriggerSource::Cron || req.source == TriggerSource::Every ||
                       req.source == TriggerSource::At || req.source == TriggerSource::Reboot;
    TriggerResult out;
    if (req.source == TriggerSource::Parent) {
        out.error = "a child run is started by its parent's workflow task, not triggered";
        return out;
    }
    if (req.backfill_max_active > 0 && !(timed && scheduled && req.source != TriggerSource::Reboot)) {
        out.error = "a backfill's run stands for a firing of a cron, every or at trigger, with its scheduled instant";
        return out;
    }
    if (stopping) {
        out.error = "taskhubd is shutting down; no new runs are started";
        return out;
    }
    if (auto problem = store.writeProblem()) {
        out.error = "no new runs are started while the state database cannot be written: " + *problem;
        return out;
    }
    store::NameValues params;
    if (auto err = resolveParams(*wf, req.params, &params)) {
        out.error = *err;
        return out;
    }
    std::string id;
    bool revive = false;
    if ((timed && scheduled) || req.source == TriggerSource::File) {
        id = req.source == TriggerSource::File ? req.file_run_id : wf->name + "@" + formatCompactUtc(*scheduled);
        if (runs.count(id) || store.runExists(id)) {
            // A firing recorded as skipped while the workflow was paused may still run: the
            // catch-up after `resume` turns that record into the run.
            // Until this process's own record of it is committed, the store cannot read it.
            const bool active = runs.count(id) > 0;
            auto old = active ? std::nullopt : store.run(id, false);
            const bool paused_firing = old ? old->state == model::RunState::Skipped &&
                                                 old->skip_cause == model::SkipCause::Paused
                                           : !active && paused_uncommitted.count(id) > 0;
            revive = forced_skip.empty() && paused_firing && req.backfill_max_active == 0;
            if (revive) paused_uncommitted.erase(id);
            if (!revive) {
                out.error = "the firing " + id + " is already recorded";
                out.duplicate = true;
                return out;
            }
        }
    } else {
        id = newManualId(wf->name);
    }

    auto run = makeRun(wf, id, req.source, std::move(params));
    if (scheduled) run->rec.scheduled_ms = scheduled->time_since_epoch().count() * 1000;

    // Overlap policy: what to do while earlier top-level runs of this workflow are active (a
    // backfill's runs waiting to start do not count: they start when the workflow admits them).
    std::vector<Run*> active;
    if (const auto tl = top_level.find(wf->name); tl != top_level.end()) {
        for (const auto& [serial, r] : tl->second) {
            if (!backfillWaiting(*r)) active.push_back(r);
        }
    }
    Run* const newest = active.empty() ? nullptr : active.back();
    std::vector<Run*> replaced; // overlap = replace: the runs the new one cancels
    std::string start = "run";
    std::string skip_reason = forced_skip; // decided by the caller: a paused workflow
    if (!forced_skip.empty()) run->rec.skip_cause = req.skip;
    const config::Overlap overlap = req.source == TriggerSource::File ? wf->file_overlap : wf->overlap;
    if (req.backfill_max_active > 0) {
        start = "backfill";
    } else if (skip_reason.empty() && overlap == config::Overlap::Allow && wf->max_active_runs > 0 &&
               active.size() >= static_cast<size_t>(wf->max_active_runs)) {
        run->rec.skip_cause = model::SkipCause::ActiveLimit;
        skip_reason = "skipped: " + std::to_string(active.size()) + " runs are active, max_active_runs = " +
                      std::to_string(wf->max_active_runs) + " (overlap = allow)";
    } else if (skip_reason.empty() && !active.empty()) {
        const std::string previous = newest->rec.id;
        switch (overlap) {
        case config::Overlap::Skip:
            run->rec.skip_cause = model::SkipCause::Overlap;
            skip_reason = "skipped: run " + previous + " is still active (overlap = skip)";
            break;
        case config::Overlap::QueueOne:
            if (!queued[wf->name].empty()) {
                run->rec.skip_cause = model::SkipCause::Overlap;
                skip_reason = "skipped: run " + queued[wf->name].back() +
                              " is already queued (overlap = queue_one)";
            } else {
                start = "queue";
            }
            break;
        case config::Overlap::QueueAll: start = "queue"; break;
        case config::Overlap::Replace:
            start = "replace";
            replaced = active;
            break;
        case config::Overlap::Allow: break;
        }
    }

    out.ok = true;
    out.run_id = id;
    // "manual by uid 1000 (ada)"; "cron", "every: catch-up of ..." (the note says why a firing
    // fires when not on time).
    const std::string by = model::nameString(run->rec.trigger) + (req.actor.empty() ? "" : " by " + req.actor) +
                           (req.note.empty() ? "" : ": " + req.note);
    if (!skip_reason.empty()) {
        run->rec.state = model::RunState::Skipped;
        run->rec.message = skip_reason;
        run->rec.ended_ms = run->rec.created_ms;
        // Its tasks have no rows: the store reads them as skipped from the run's task list.
        revive ? store.reviveRun(run->rec, taskListOf(*run)) : store.insertRun(run->rec, taskListOf(*run));
        event(id, "", "run_skipped", skip_reason);
        if (run->rec.skip_cause == model::SkipCause::Paused) {
            // Registered after the record's writes: called once they are committed.
            paused_uncommitted.insert(id);
            store.whenDurable(store.writeMark(), [this, id](bool) { paused_uncommitted.erase(id); });
        }
        {
            logging::Context log_ctx({.workflow = run->rec.workflow, .run_id = id});
            spdlog::info("ENGINE_RUN_SKIPPED {} {}", id, skip_reason);
        }
        for (auto* o : observers) o->runCreated(run->rec);
        out.state = model::RunState::Skipped;
        return out;
    }

    run->rec.state = model::RunState::Queued;
    // A task's row is written when it first leaves pending; until then the run's task list is
    // all the store needs.
    revive ? store.reviveRun(run->rec, taskListOf(*run)) : store.insertRun(run->rec, taskListOf(*run));
    event(id, "", "run_created", by);
    if (req.backfill_max_active > 0) {
        run->backfill_max_active = req.backfill_max_active;
        // Read by recovery: the run stays a backfill's run across a restart.
        event(id, "", "backfill", "max_active=" + std::to_string(req.backfill_max_active));
    }
    Run& r = adopt(std::move(run));
    for (auto* o : observers) o->runCreated(r.rec);
    if (start == "backfill") {
        backfill_queued[wf->name][scheduled->time_since_epoch().count()] = id;
        startBackfill(wf->name);
        out.state = r.rec.state;
        return out;
    }
    if (start == "queue") {
        queued[wf->name].push_back(id);
        event(id, "", "run_queued", "waiting for " + newest->rec.id + " (overlap = " +
                                        config::toString(overlap) + ")");
        out.state = model::RunState::Queued;
        return out;
    }
    if (start == "replace") {
        for (Run* old : replaced) {
            if (!old->stop_state) cancelRun(*old, "replaced by run " + id + " (overlap = replace)");
        }
    }
    startRun(r);
    out.state = r.rec.state;
    return out;
}

// after: when the run times out (default: the workflow's timeout from now).
void Core::armRunTimeout(Run& run, std::optional<std::chrono::milliseconds> after) {
    if (run.wf->timeout.count() <= 0) return;
    uint64_t serial = run.serial;
    run.run_timer = clock.after(after.value_or(run.wf->timeout), [this, serial] {
        auto it = by_serial.find(serial);
        if (it == by_serial.end()) return;
        stopRun(*it->second, model::RunState::Failed, "run timed out after " + formatDuration(it->second->wf->timeout));
    });
}

void Core::startRun(Run& run) {
    ++runs_started;
    run.rec.state = model::RunState::Running;
    run.rec.started_ms = nowMillis();
    saveRun(run);
    event(run.rec.id, "", "run_start", "version " + run.rec.version);
    {
        logging::Context log_ctx({.workflow = run.rec.workflow, .run_id = run.rec.id});
        spdlog::info("ENGINE_RUN_STARTED {} ({} tasks)", run.rec.id, run.tasks.size());
    }
    for (auto* o : observers) o->runStarted(run.rec);
    armRunTimeout(run);
    const uint64_t serial = run.serial;
    for (uint32_t t : run.progress.start()) {
        admit(run, t);
        if (!by_serial.count(serial)) return;
    }
    pump();
    if (by_serial.count(serial)) maybeEndRun(run);
}

// A task whose trigger rule was just met: ready to start, unless the run is stopping or its
// `when` condition says no. Returns the outcome when the task was finished here instead.
std::optional<TS> Core::admitDecision(Run& run, uint32_t t, std::string* why) {
    auto& task = run.tasks[t];
    if (run.stop_state && !(run.fail_fast_stop && runsAfterFailure(task.def->trigger_rule))) {
        *why = run.stop_reason;
        return TS::Cancelled;
    }
    if (!task.def->when.empty()) {
        auto& cond = run.conditions[t];
        if (!cond) {
            std::string ignored; // validated at load
            cond = expr::Condition::parse(task.def->when, &ignored);
        }
        std::string path_err;
        const bool met = cond && cond->evaluate(lookupFor(run, &path_err));
        if (!path_err.empty()) {
            *why = "when condition " + task.def->when + ": " + path_err;
            return TS::Failed;
        }
        if (cond && !met) {
            *why = "when condition is false: " + task.def->when;
            return TS::Skipped;
        }
    }
    if (!task.def->fan.get().empty()) return expandFanOut(run, t, why);
    return std::nullopt;
}

// Marks t ready (or finishes it when it may not run), and follows the consequences through
// the graph without recursion, so that a long chain of cancellations or skips cannot
// overflow the stack.
void Core::admit(Run& run, uint32_t first) {
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
                if (*outcome == TS::Failed && run.wf->on_failure == config::OnFailure::FailFast && !run.stop_state) {
                    // A fan-out whose list was unusable failed here.
                    stopRun(run, model::RunState::Failed, "cancelled: " + run.first_failure + " (on_failure = fail_fast)",
                            true);
                }
                work.push_back({t, outcomeOf(*outcome)});
                continue;
            }
            if (run.tasks[t].fan) {
                startInstances(run, t);
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

void Core::markReady(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    setState(run, t, TS::Ready);
    task.rec.message.clear();
    task.held_since = {};
    task.waited = {};
    saveTask(run, t);
    event(run.rec.id, task.rec.task_id, "ready");
    enqueue(run, t);
}

// The chain of workflows from the top-level run down to `run`, e.g. "a -> b -> c".
std::string Core::chainOf(const Run& run) {
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
void Core::startChild(Run& run, uint32_t t) {
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
    for (const auto& [name, value] : task.def->child_params) {
        std::string path_err;
        given.emplace_back(name, expand(run, t, value, &path_err));
        if (!path_err.empty()) {
            fail("params." + name + ": " + path_err);
            return;
        }
    }
    store::NameValues params;
    if (auto err = resolveParams(*child_wf, given, &params)) {
        fail(*err);
        return;
    }
    const std::string id = run.rec.id + "/" + task.rec.task_id + "." + std::to_string(task.rec.attempt);
    auto child = makeRun(child_wf, id, model::TriggerSource::Parent, std::move(params));
    child->rec.parent_run = run.rec.id;
    child->rec.parent_task = task.rec.task_id;
    child->rec.depth = run.rec.depth + 1;
    child->parent_id = run.rec.id;
    child->parent_task = t;
    child->parent_attempt = task.rec.attempt;
    child->priority = std::max(child->priority, run.priority);
    task.rec.child_run = id;
    saveTask(run, t);
    event(run.rec.id, task.rec.task_id, "start",
          "attempt " + std::to_string(task.rec.attempt) + ": child run " + id);
    child->rec.state = model::RunState::Queued;
    store.insertRun(child->rec, taskListOf(*child));
    event(id, "", "run_created", "parent " + run.rec.id + " task " + task.rec.task_id);
    run.children.push_back(id);
    Run& c = adopt(std::move(child));
    if (task.def->timeout.count() > 0) armTaskTimeout(run, t, task.def->timeout);
    startRun(c);
}

// Records a final state without following it through the graph (the caller does).
void Core::settle(Run& run, uint32_t t, TS state, const std::string& message) {
    auto& task = run.tasks[t];
    setState(run, t, state);
    task.rec.message = message;
    if (state == TS::Skipped || state == TS::Cancelled) task.timer.reset();
    if (!task.rec.ended_ms && state != TS::Skipped) task.rec.ended_ms = nowMillis();
    saveTask(run, t);
    const std::string kind = state == TS::Succeeded || state == TS::Failed ? "end" : model::nameString(state);
    event(run.rec.id, task.rec.task_id, kind, model::nameString(state) + (message.empty() ? "" : ": " + message));
    --run.unfinished;
    if (state == TS::Failed || (state == TS::Cancelled && !run.stop_state)) {
        if (state == TS::Failed && !task.isInstance()) {
            logging::Context log_ctx({.workflow = run.rec.workflow, .run_id = run.rec.id, .task = task.rec.task_id,
                                      .attempt = task.rec.attempt});
            spdlog::warn("ENGINE_TASK_FAILED {} task {}: {}", run.rec.id, task.rec.task_id, message);
            if (absorbsFailure(*task.def)) {
                absorbFailure(run, t, absorbedText(message));
                return;
            }
        }
        // An instance's failure is its fan-out's to judge (max_failures).
        if (run.first_failure.empty() && !task.isInstance()) {
            run.first_failure = "task '" + task.rec.task_id + "' " +
                                (state == TS::Failed ? "failed" : "was cancelled") +
                                (message.empty() ? "" : ": " + message);
        }
    }
}

void Core::absorbFailure(Run& run, uint32_t t, const std::string& why) {
    const auto& task = run.tasks[t];
    ++run.rec.failures_absorbed;
    saveRun(run);
    event(run.rec.id, task.rec.task_id, "failure_absorbed", why);
    for (auto* o : observers) o->failureAbsorbed(run.rec, task.rec);
}

void Core::restoreFirstFailure(Run& run, const TaskRun& task) {
    if (!run.first_failure.empty()) return;
    if (task.st != TS::Cancelled && (task.st != TS::Failed || absorbsFailure(*task.def))) return;
    run.first_failure = "task '" + task.rec.task_id + "' " + model::nameString(task.st) +
                        (task.rec.message.empty() ? "" : ": " + task.rec.message);
}

// Tasks dag::Progress reported skipped (it already followed the skips through the graph).
void Core::settleSkipped(Run& run, const std::vector<uint32_t>& skipped) {
    for (uint32_t s : skipped) {
        if (isFinal(run.tasks[s].st)) continue;
        settle(run, s, TS::Skipped, "its trigger_rule (" +
                                        std::string(dag::toString(run.tasks[s].def->trigger_rule)) +
                                        ") can no longer be met by its upstream tasks");
    }
}

void Core::finishTask(Run& run, uint32_t t, TS state, const std::string& message) {
    settle(run, t, state, message);
    if (run.tasks[t].isInstance()) {
        instanceEnded(run, t, state);
        return;
    }
    if (state == TS::Failed && run.wf->on_failure == config::OnFailure::FailFast && !run.stop_state &&
        !absorbsFailure(*run.tasks[t].def)) {
        stopRun(run, model::RunState::Failed, "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
    }
    follow(run, t, outcomeOf(state));
}

// Follows a task's outcome through the graph: what became ready, what is skipped now.
void Core::follow(Run& run, uint32_t t, dag::Outcome outcome) {
    std::vector<uint32_t> now_ready, now_skipped;
    run.progress.finish(t, outcome, &now_ready, &now_skipped);
    settleSkipped(run, now_skipped);
    for (uint32_t r : now_ready) admit(run, r);
}

// Stops a run: nothing new starts (except, after a fail_fast stop, tasks whose rule is meant
// to run after failures); running attempts and child runs are asked to stop; the run ends as
// `state` once they have.
void Core::stopRun(Run& run, model::RunState state, const std::string& reason, bool fail_fast) {
    if (run.ending) return; // its end is already decided
    // Already stopping: only a fail_fast stop can still be made stricter (a cancel, the
    // shutdown grace, a parent's cancel or timeout also stop the after-failure tasks).
    if (run.stop_state && (!run.fail_fast_stop || fail_fast)) return;
    run.stop_state = state;
    run.stop_reason = reason;
    run.fail_fast_stop = fail_fast;
    event(run.rec.id, "", "run_stopping", reason);
    const uint64_t serial = run.serial;
    for (uint32_t t = 0; t < run.tasks.size(); ++t) {
        if (!by_serial.count(serial)) return;
        auto& task = run.tasks[t];
        if (fail_fast && runsAfterFailure(task.def->trigger_rule)) continue;
        if (task.fan) continue; // an expanded fan-out ends with its instances
        if (task.isInstance() && (task.st == TS::Pending || task.st == TS::Ready || task.st == TS::Retrying)) {
            settle(run, t, TS::Cancelled, reason);
            instanceEnded(run, t, TS::Cancelled);
            continue;
        }
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
        if (run.backfill_max_active > 0 && run.rec.scheduled_ms) {
            auto b = backfill_queued.find(run.rec.workflow);
            if (b != backfill_queued.end()) b->second.erase(*run.rec.scheduled_ms / 1000);
        }
    }
    if (by_serial.count(serial)) maybeEndRun(run);
}

void Core::cancelRun(Run& run, const std::string& reason) {
    if (run.rec.state == model::RunState::Queued) run.rec.state = model::RunState::Running; // so that it can end
    stopRun(run, model::RunState::Cancelled, reason);
}

void Core::maybeEndRun(Run& run) {
    if (run.unfinished > 0 || run.ending || run.rec.state == model::RunState::Queued) return;
    // Deferred so that callers up the stack never touch a destroyed Run.
    run.ending = true;
    const uint64_t serial = run.serial;
    asio::post(io, [this, serial] {
        auto it = by_serial.find(serial);
        if (it != by_serial.end()) endRun(*it->second);
    });
}

void Core::endRun(Run& run) {
    if (run.stop_state) {
        run.rec.state = *run.stop_state;
        run.rec.message = run.fail_fast_stop && !run.first_failure.empty() ? run.first_failure : run.stop_reason;
    } else if (!run.first_failure.empty()) {
        run.rec.state = model::RunState::Failed;
        run.rec.message = run.first_failure;
    } else {
        run.rec.state = model::RunState::Succeeded;
        run.rec.message.clear();
    }
    run.rec.ended_ms = nowMillis();
    run.run_timer.reset();
    std::vector<const store::TaskRecord*> tasks;
    if (!observers.empty()) {
        tasks.reserve(run.tasks.size());
        for (const auto& t : run.tasks) tasks.push_back(&t.rec);
        for (auto* o : observers) o->runEnding(run.rec, tasks);
    }
    saveRun(run);
    event(run.rec.id, "", "run_end", model::nameString(run.rec.state) + (run.rec.message.empty() ? "" : ": " + run.rec.message));
    if (logging::Context log_ctx({.workflow = run.rec.workflow, .run_id = run.rec.id});
        run.rec.state == model::RunState::Succeeded) {
        spdlog::info("ENGINE_RUN_SUCCEEDED {}", run.rec.id);
    } else {
        spdlog::warn("ENGINE_RUN_{} {} {}", run.rec.state == model::RunState::Failed ? "FAILED" : "CANCELLED",
                     run.rec.id, run.rec.message);
    }
    if (!observers.empty()) notifyRunEnded(run.rec, tasks);
    auto owned = std::move(runs.at(run.rec.id));
    runs.erase(run.rec.id);
    if (owned->parent_id.empty()) {
        auto tl = top_level.find(owned->rec.workflow);
        tl->second.erase(owned->serial);
        if (tl->second.empty()) top_level.erase(tl);
    }
    by_serial.erase(owned->serial);
    for (auto& w : owned->waiters) w(owned->rec);
    if (!owned->parent_id.empty()) {
        childEnded(*owned);
    } else {
        startNextQueued(owned->rec.workflow);
    }
    if (stopping && drained() && on_drained) {
        auto done = std::move(on_drained);
        on_drained = nullptr;
        grace_timer.reset();
        done();
    }
}

// A child run ended: its workflow task in the parent ends with it.
void Core::childEnded(const Run& child) {
    Run* parent = findRun(child.parent_id);
    if (!parent) return;
    std::erase(parent->children, child.rec.id);
    auto& task = parent->tasks[child.parent_task];
    if (task.st != TS::Running && task.st != TS::Frozen) return;
    if (task.rec.attempt != child.parent_attempt) return;
    AttemptResult r;
    if (child.rec.state == model::RunState::Succeeded) {
        r.outcome = AttemptResult::Outcome::Succeeded;
        r.message = "child run " + child.rec.id + " succeeded";
    } else {
        r.outcome = child.rec.state == model::RunState::Cancelled ? AttemptResult::Outcome::Cancelled
                                                   : AttemptResult::Outcome::Failed;
        r.message = "child run " + child.rec.id + " " + model::nameString(child.rec.state) +
                    (child.rec.message.empty() ? "" : ": " + child.rec.message);
    }
    endAttempt(*parent, child.parent_task, std::move(r));
}

// Starts the oldest queued run of a workflow once none of its runs is running any more; then,
// when no such run waits, what the workflow admits of its backfill runs.
void Core::startNextQueued(const std::string& workflow) {
    auto q = queued.find(workflow);
    if (q != queued.end()) {
        if (auto tl = top_level.find(workflow); tl != top_level.end()) {
            for (const auto& [serial, r] : tl->second) {
                if (r->rec.state != model::RunState::Queued) return;
            }
        }
        while (!q->second.empty()) {
            std::string next = q->second.front();
            q->second.pop_front();
            Run* r = findRun(next);
            if (r && r->rec.state == model::RunState::Queued) {
                startRun(*r);
                return;
            }
        }
    }
    startBackfill(workflow);
}

// Starts a workflow's waiting backfill runs, oldest scheduled instant first, while it admits
// them (Engine::trigger says when).
void Core::startBackfill(const std::string& workflow) {
    auto b = backfill_queued.find(workflow);
    if (b == backfill_queued.end() || stopping) return;
    if (auto q = queued.find(workflow); q != queued.end() && !q->second.empty()) return; // they go first
    while (!b->second.empty()) {
        Run* r = findRun(b->second.begin()->second);
        if (!r || !backfillWaiting(*r)) {
            b->second.erase(b->second.begin());
            continue;
        }
        size_t running = 0;
        if (auto tl = top_level.find(workflow); tl != top_level.end()) {
            for (const auto& [serial, other] : tl->second) running += other->rec.state != model::RunState::Queued;
        }
        size_t limit = 1;
        if (r->wf->overlap == config::Overlap::Allow) {
            limit = static_cast<size_t>(r->backfill_max_active);
            if (r->wf->max_active_runs > 0) limit = std::min(limit, static_cast<size_t>(r->wf->max_active_runs));
        }
        if (running >= limit) return;
        b->second.erase(b->second.begin());
        startRun(*r);
        b = backfill_queued.find(workflow); // startRun may end runs and start others
        if (b == backfill_queued.end()) return;
    }
    backfill_queued.erase(b);
}

bool Core::drained() const {
    return std::all_of(runs.begin(), runs.end(), [](const auto& r) { return r.second->detached; });
}

bool Core::detachable(const Run& run, bool* any_active) const {
    for (const auto& task : run.tasks) {
        if (task.st != TS::Running && task.st != TS::Frozen) continue;
        if (task.fan) continue; // its instances are what runs
        if (!task.def->workflow.empty()) {
            auto it = runs.find(task.rec.child_run);
            if (it == runs.end() || !detachable(*it->second, any_active)) return false;
            continue;
        }
        if (task.launching || !task.plugin || !task.plugin->canAdopt()) return false;
        *any_active = true;
    }
    return true;
}

void Core::detach(Run& run) {
    run.detached = true;
    run.paused = true; // in memory only: what becomes ready waits for the next start
    event(run.rec.id, "", "detached",
          "taskhubd is shutting down; the run's remote attempts go on and are re-attached when it starts again");
    for (auto& task : run.tasks) {
        if (!task.def->workflow.empty() && (task.st == TS::Running || task.st == TS::Frozen)) {
            if (auto it = runs.find(task.rec.child_run); it != runs.end()) detach(*it->second);
        }
    }
}

} // namespace taskhub::engine

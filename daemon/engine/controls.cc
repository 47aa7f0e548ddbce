// Operator commands on runs: cancel, pause (and freeze), resume, retry.
#include "engine/engine_state.h"

#include <spdlog/spdlog.h>

#include <taskhub/suggest.hpp>

#include <algorithm>

#include "common/log.h"
#include "common/time_util.h"
#include "store/store.h"

namespace taskhub::engine {

bool Core::activeRun(const std::string& id, Run** out, std::string* err) {
    *out = findRun(id);
    if (*out) return true;
    auto rec = store.run(id, false);
    *err = rec ? "run " + id + " has already ended (" + model::nameString(rec->state) + ")" : "no run with id " + id;
    return false;
}

std::optional<uint32_t> Core::taskIndex(const Run& run, const std::string& task_id, std::string* err) {
    if (auto idx = run.wf->graph.index(task_id)) return *idx;
    // A fan-out instance: "convert[7]", "convert[eu]".
    if (auto open = task_id.find('['); open != std::string::npos && task_id.back() == ']') {
        if (auto idx = run.wf->graph.index(std::string_view(task_id).substr(0, open))) {
            const auto& fan = run.tasks[*idx].fan;
            if (!fan) {
                *err = "task '" + task_id.substr(0, open) + "' of run " + run.rec.id + " has no instances (yet)";
                return std::nullopt;
            }
            for (uint32_t i = 0; i < fan->count(); ++i) {
                if (run.tasks[fan->first + i].rec.task_id == task_id) return fan->first + i;
            }
            *err = "fan-out task '" + task_id.substr(0, open) + "' of run " + run.rec.id + " has no instance " + task_id +
                   " (it has " + std::to_string(fan->count()) + ": " + run.tasks[fan->first].rec.task_id +
                   (fan->count() > 1 ? " ... " + run.tasks[fan->first + fan->count() - 1].rec.task_id : "") + ")";
            return std::nullopt;
        }
    }
    std::vector<std::string> ids;
    for (const auto& t : run.wf->tasks) ids.push_back(t.id);
    *err = "run " + run.rec.id + " has no task '" + task_id + "'";
    if (auto s = sdk::closestKey(task_id, ids); !s.empty()) *err += "; did you mean '" + s + "'?";
    return std::nullopt;
}

bool Core::cancel(const std::string& id, const std::string& task_id, const std::string& actor,
                  std::string* err) {
    Run* run = nullptr;
    if (!activeRun(id, &run, err)) return false;
    if (run->ending || (run->stop_state && !run->fail_fast_stop)) {
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
    if (run->rec.state == model::RunState::Queued) {
        *err = "run " + id + " is queued and has started no task yet; cancel the whole run, or cancel the task once the run runs";
        return false;
    }
    auto& task = run->tasks[*t];
    if (isFinal(task.st)) {
        *err = "task " + task_id + " of run " + id + " has already ended (" + model::nameString(task.st) + ")";
        return false;
    }
    event(id, task_id, "cancel_requested", reason);
    if (task.fan) {
        // A fan-out: every instance that has not ended.
        task.cancel_requested = true;
        task.cancel_reason = reason;
        const uint64_t serial = run->serial;
        for (uint32_t i = task.fan->first; i < task.fan->first + task.fan->count(); ++i) {
            auto& in = run->tasks[i];
            if (isFinal(in.st)) continue;
            if (in.st == TS::Running || in.st == TS::Frozen) {
                in.cancel_requested = true;
                in.cancel_reason = reason;
                stopAttempt(*run, i);
            } else {
                finishTask(*run, i, TS::Cancelled, reason);
            }
        }
        pump();
        if (auto r = by_serial.find(serial); r != by_serial.end()) maybeEndRun(*r->second);
        return true;
    }
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

void Core::pauseTree(Run& run, bool freeze, const std::string& by) {
    run.paused = true;
    run.frozen = freeze;
    run.rec.state = model::RunState::Paused;
    saveRun(run);
    event(run.rec.id, "", "paused", (freeze ? "paused with --freeze by " : "paused by ") + by);
    if (!freeze) {
        // Work that runs elsewhere and has not started yet (a queued batch job) waits too.
        for (uint32_t t = 0; t < run.tasks.size(); ++t) {
            auto& task = run.tasks[t];
            if (task.st != TS::Running || !task.def->workflow.empty() || !task.plugin || task.launching) continue;
            if (task.cancel_requested || !task.timed_out.empty() || !task.plugin->canHold()) continue;
            task.plugin->hold(task.token);
            task.held = true;
            event(run.rec.id, task.rec.task_id, "held",
                  "plugin '" + task.def->plugin + "' asked to hold the attempt's work while the run is paused");
        }
    }
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
                                            std::chrono::duration_cast<std::chrono::milliseconds>(task.deadline - clock.now()));
                task.timer.reset();
            }
            setState(run, t, TS::Frozen);
            saveTask(run, t);
            event(run.rec.id, task.rec.task_id, "frozen", "stopped by pause --freeze");
        }
    }
    for (const auto& child_id : run.children) {
        if (Run* child = findRun(child_id); child && !child->paused && !child->stop_state)
            pauseTree(*child, freeze, by);
    }
}

void Core::resumeTree(Run& run, const std::string& by) {
    run.paused = false;
    run.frozen = false;
    run.rec.state = model::RunState::Running;
    saveRun(run);
    event(run.rec.id, "", "resumed", "resumed by " + by);
    for (uint32_t t = 0; t < run.tasks.size(); ++t) {
        auto& task = run.tasks[t];
        if (task.held) {
            task.held = false;
            if (task.st == TS::Running && task.plugin) {
                task.plugin->release(task.token);
                event(run.rec.id, task.rec.task_id, "released", "plugin '" + task.def->plugin + "' asked to release it");
            }
        }
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

bool Core::pause(const std::string& id, bool freeze, const std::string& actor, std::string* err) {
    Run* run = nullptr;
    if (!activeRun(id, &run, err)) return false;
    if (run->paused) {
        *err = "run " + id + " is already paused (resume it with `taskhubctl resume " + id + "`)";
        return false;
    }
    if (run->rec.state != model::RunState::Running || run->ending || run->stop_state) {
        *err = "run " + id + " is " +
               (run->ending || run->stop_state ? std::string("ending") : model::nameString(run->rec.state)) +
               "; only a running run can be paused";
        return false;
    }
    pauseTree(*run, freeze, actorOr(actor));
    return true;
}

bool Core::resume(const std::string& id, const std::string& actor, std::string* err) {
    Run* run = nullptr;
    if (!activeRun(id, &run, err)) return false;
    if (!run->paused) {
        *err = "run " + id + " is not paused (it is " + model::nameString(run->rec.state) + ")";
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

bool Core::retry(const std::string& id, const std::string& task_id, bool downstream,
                 const std::string& actor,
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
    if (rec->state == model::RunState::Skipped) {
        *err = "run " + id + " was skipped and never ran; trigger a new run instead";
        return false;
    }
    auto wf = lookup_workflow ? lookup_workflow(rec->workflow) : nullptr;
    if (!wf) {
        *err = "workflow '" + rec->workflow + "' is not loaded, so run " + id + " cannot be retried";
        return false;
    }
    if (wf->version != rec->version || wf->tasks.size() > rec->tasks.size()) {
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
        task.st = isFinal(task.rec.state) ? task.rec.state : TS::Cancelled;
        task.rec.state = task.st;
    }
    if (!restoreFanOuts(*run, *rec, err)) {
        *err = "run " + id + " cannot be retried: " + *err;
        return false;
    }
    for (uint32_t i = wf->tasks.size(); i < run->tasks.size(); ++i) {
        auto& task = run->tasks[i];
        task.st = isFinal(task.rec.state) ? task.rec.state : TS::Cancelled;
        task.rec.state = task.st;
    }
    const size_t nstatic = wf->tasks.size();
    // A task to retry: one that failed or was cancelled, or a fan-out with instances that did
    // (it may have succeeded within max_failures).
    const auto retriable = [&run](uint32_t t) {
        const auto& task = run->tasks[t];
        if (task.st == TS::Failed || task.st == TS::Cancelled) return true;
        if (!task.fan) return false;
        for (uint32_t i = task.fan->first; i < task.fan->first + task.fan->count(); ++i) {
            if (run->tasks[i].st == TS::Failed || run->tasks[i].st == TS::Cancelled) return true;
        }
        return false;
    };
    if (!task_id.empty()) {
        auto t = taskIndex(*run, task_id, err);
        if (!t) return false;
        if (*t >= wf->tasks.size()) {
            const std::string& fan_id = wf->tasks[run->tasks[*t].fan_task].id;
            *err = "retry the fan-out task instead: `retry " + id + " --task " + fan_id + "` runs its failed and "
                   "cancelled instances again";
            return false;
        }
        if (!retriable(*t)) {
            *err = "task " + task_id + " of run " + id + " " + model::nameString(run->tasks[*t].st) +
                   (run->tasks[*t].fan ? " with every instance succeeded; only failed or cancelled tasks (and fan-outs "
                                         "with failed or cancelled instances) can be retried"
                                       : "; only failed or cancelled tasks can be retried");
            return false;
        }
        again[*t] = 1;
    } else {
        for (uint32_t i = 0; i < nstatic; ++i) {
            if (retriable(i)) again[i] = 1;
        }
    }
    // The fan-outs chosen for their own failures (not downstream of another): only their failed
    // and cancelled instances run again.
    const std::vector<char> chosen = again;
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
    // A fan-out retried for itself runs its failed and cancelled instances again; one downstream
    // of a retried task runs all of them again. Either way over the list it was expanded from.
    again.resize(run->tasks.size(), 0);
    for (uint32_t t = 0; t < nstatic; ++t) {
        if (!again[t] || !run->tasks[t].fan) continue;
        const auto& fan = *run->tasks[t].fan;
        for (uint32_t i = fan.first; i < fan.first + fan.count(); ++i) {
            if (!chosen[t] || run->tasks[i].st != TS::Succeeded) again[i] = 1;
        }
    }
    std::vector<std::string> names;
    run->unfinished = 0;
    for (uint32_t i = 0; i < run->tasks.size(); ++i) {
        auto& task = run->tasks[i];
        if (!again[i]) {
            if (i >= nstatic) continue;
            outcomes[i] = outcomeOf(task.st);
            restoreFirstFailure(*run, task);
            continue;
        }
        if (i < nstatic) names.push_back(task.rec.task_id);
        // An absorbed failure run again is taken back: it counts again if the task fails again.
        if (task.st == TS::Failed && absorbsFailure(*task.def) && !task.isInstance() &&
            run->rec.failures_absorbed > 0)
            --run->rec.failures_absorbed;
        task.st = TS::Pending;
        task.rec.state = TS::Pending;
        task.rec.message.clear();
        task.rec.started_ms.reset();
        task.rec.ended_ms.reset();
        task.rec.exit_code.reset();
        task.rec.outputs.clear();
        task.rec.json_outputs.clear();
        task.rec.child_run.clear();
        ++run->unfinished;
    }
    run->rec.state = model::RunState::Running;
    run->rec.message.clear();
    run->rec.ended_ms.reset();
    Run& r = adopt(std::move(run));
    for (uint32_t t = 0; t < nstatic; ++t) {
        if (!r.tasks[t].fan) continue;
        recountFanOut(r, t);
        if (!again[t]) {
            const auto [ok, failed] = fanParts(r, t);
            r.progress.setParts(t, ok, failed);
        }
    }
    saveRun(r);
    for (uint32_t i = 0; i < r.tasks.size(); ++i) {
        if (again[i]) saveTask(r, i);
    }
    event(id, "", "run_retry",
          "retry by " + actorOr(actor) + ": " + joinNames(names));
    {
        logging::Context log_ctx({.workflow = r.rec.workflow, .run_id = id});
        spdlog::info("ENGINE_RUN_RETRIED {} tasks {}", id, joinNames(names));
    }
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

} // namespace taskhub::engine

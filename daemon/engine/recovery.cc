// Recovery after a crash: runs the previous process left unfinished are rebuilt or abandoned,
// and their lost attempts retried or failed. The only code in the engine that kills processes.
#include "engine/engine_state.h"

#include <spdlog/spdlog.h>

#include <signal.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <taskhub/plugin_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <charconv>
#include <set>
#include <utility>

#include "common/identity.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/time_util.h"
#include "store/store.h"

namespace taskhub::engine {

using taskhub::FoundProcess;
using taskhub::processesWithEnvironment;
using taskhub::processStartTicks;
using taskhub::sameProcess;

// What recovery found and did about one attempt the previous process left starting, running
// or frozen: its recorded process (pid + start time, so a reused pid is never hit) and any
// other process that still carries the attempt's TASKHUB_* variables are stopped with
// SIGKILL. Returns the sentence for the `lost` event.
// tagged: the live processes carrying this daemon's TASKHUB_STATE_DIR, by
// "run\ntask\nattempt" (their TASKHUB_RUN_ID, TASKHUB_TASK_ID, TASKHUB_ATTEMPT).
std::string Core::stopLeftovers(const store::RunRecord& run, const store::TaskRecord& task,
                                bool same_boot,
                          const std::multimap<std::string,
                                FoundProcess>& tagged,
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
        what = task.state == TS::Starting ? "taskhubd stopped while starting it; no process was recorded"
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

std::string Core::lostText(const LostWhat& lost_what, const std::string& run_id, const std::string& task_id) {
    auto w = lost_what.find(run_id + "\n" + task_id);
    return w != lost_what.end() ? w->second : "no process was recorded for it";
}

// Records a lost attempt: its `lost` event (what happened to it, and to the task: `then`).
void Core::recordLost(const store::RunRecord& run, const store::TaskRecord& t, const std::string& what,
                      const std::string& then, bool at_restart) {
    event(run.id, t.task_id, "lost",
          "attempt " + std::to_string(t.attempt) + " was lost" + (at_restart ? " when taskhubd stopped" : "") + ": " +
              what + "; " + then);
    {
        logging::Context log_ctx({.workflow = run.workflow, .run_id = run.id, .task = t.task_id, .attempt = t.attempt});
        spdlog::warn("ENGINE_ATTEMPT_LOST {} task {}: {}; {}", run.id, t.task_id, what, then);
    }
    for (auto* o : observers) o->attemptLost(run, t);
}

// Ends an unfinished run that cannot continue, with its unfinished tasks and child runs.
// Returns the attempts lost in it and its child runs.
int Core::abandon(const store::RunRecord& rec,
                  const std::string& why,
            const std::map<std::string,
                  store::RunRecord>& unfinished,
                  const LostWhat& lost_what,
            RecoveryReport* report) {
    store::RunRecord r = rec;
    const int64_t now = nowMillis();
    for (size_t i = 0; i < r.tasks.size(); ++i) {
        auto& t = r.tasks[i];
        if (unrecorded_attempts.count(r.id + "\n" + t.task_id)) ++r.lost; // recorded by noteUnrecorded()
        if (isFinal(t.state)) continue;
        const bool was_running = model::attemptIsActive(t.state);
        const bool workflow_task = t.kind == model::TaskKind::Workflow;
        if (was_running && !workflow_task) {
            ++r.lost;
            ++report->lost;
            const std::string what = lostText(lost_what, r.id, t.task_id);
            recordLost(r, t, what, "failed: the run cannot continue");
            t.message = "lost: " + what + "; " + why;
        } else {
            t.message = why;
        }
        t.state = was_running ? TS::Failed : TS::Cancelled;
        if (!t.ended_ms) t.ended_ms = now;
        forgetProcess(t);
        store.upsertTask(r.id, static_cast<int>(i), t);
        event(r.id, t.task_id, was_running ? "end" : "cancelled", model::nameString(t.state) + ": " + t.message);
        if (!t.child_run.empty()) {
            if (auto c = unfinished.find(t.child_run); c != unfinished.end()) {
                r.lost += abandon(c->second, "its parent run " + r.id + " could not continue", unfinished,
                                  lost_what, report);
            }
        }
    }
    r.state = model::RunState::Failed;
    r.message = why;
    r.ended_ms = now;
    if (!observers.empty()) {
        std::vector<const store::TaskRecord*> tasks;
        for (const auto& t : r.tasks) tasks.push_back(&t);
        store::RunRecord ending = r;
        ending.tasks.clear();
        for (auto* o : observers) o->runEnding(ending, tasks);
    }
    store.updateRun(r);
    event(r.id, "", "recovered", "failed: " + why);
    event(r.id, "", "run_end", "failed: " + why);
    {
        logging::Context log_ctx({.workflow = r.workflow, .run_id = r.id});
        spdlog::warn("ENGINE_RUN_ABANDONED {} {}", r.id, why);
    }
    if (!observers.empty()) {
        std::vector<const store::TaskRecord*> tasks;
        for (const auto& t : r.tasks) tasks.push_back(&t);
        store::RunRecord ended = r;
        ended.tasks.clear();
        notifyRunEnded(ended, tasks);
    }
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
int Core::rebuild(const store::RunRecord& rec, Run* parent,
                  uint32_t parent_task,
             const std::map<std::string,
                  store::RunRecord>& unfinished,
             const LostWhat& lost_what,
                  std::vector<Run*>* rebuilt,
             RecoveryReport* report) {
    auto wf = lookup_workflow ? lookup_workflow(rec.workflow) : nullptr;
    std::string why;
    if (!wf) {
        why = "taskhubd restarted and workflow '" + rec.workflow + "' is no longer loaded, so run " + rec.id +
              " cannot continue";
    } else if (wf->version != rec.version || wf->tasks.size() > rec.tasks.size()) {
        why = "taskhubd restarted and workflow '" + rec.workflow + "' has changed since run " + rec.id +
              " started (version " + rec.version + ", now " + wf->version + "), so it cannot continue";
    }
    if (!why.empty()) return abandon(rec, why, unfinished, lost_what, report);
    auto run = makeRun(wf, rec.id, rec.trigger, rec.params);
    run->rec = rec;
    run->rec.tasks.clear();
    const size_t nstatic = wf->tasks.size();
    for (uint32_t i = 0; i < nstatic; ++i) run->tasks[i].rec = rec.tasks[i];
    // Fan-outs continue with the instances of the list they were expanded from.
    if (std::string err; !restoreFanOuts(*run, rec, &err)) {
        return abandon(rec, "taskhubd restarted and run " + rec.id + " cannot continue: " + err, unfinished, lost_what,
                       report);
    }
    std::vector<TS> recorded(run->tasks.size());
    for (uint32_t i = 0; i < run->tasks.size(); ++i) recorded[i] = run->tasks[i].rec.state;
    if (parent) {
        run->parent_id = parent->rec.id;
        run->parent_task = parent_task;
        run->parent_attempt = parent->tasks[parent_task].rec.attempt;
        run->priority = std::max(run->priority, parent->priority);
    }
    Run& r = adopt(std::move(run));
    rebuilt->push_back(&r);
    const int64_t now = nowMillis();
    std::vector<std::string> notes;
    r.unfinished = 0;
    for (uint32_t i = 0; i < r.tasks.size(); ++i) {
        auto& task = r.tasks[i];
        if (task.fan && !isFinal(task.rec.state)) {
            // An expanded fan-out runs nothing itself: it continues once the run is resumed.
            task.st = TS::Pending;
            ++r.unfinished;
            continue;
        }
        if (auto u = unrecorded_attempts.find(rec.id + "\n" + task.rec.task_id);
            u != unrecorded_attempts.end() && u->second > task.rec.attempt) {
            task.rec.attempt = u->second; // recorded as lost by noteUnrecorded()
            ++r.rec.lost;
        }
        if (isFinal(task.rec.state)) {
            task.st = task.rec.state;
            continue;
        }
        ++r.unfinished;
        const bool was_running = model::attemptIsActive(task.rec.state);
        task.st = TS::Pending;
        if (!was_running) {
            task.rec.state = TS::Pending;
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
                if (auto c = store.run(task.rec.child_run, false); c && model::isFinal(c->state)) {
                    task.st = c->state == model::RunState::Succeeded   ? TS::Succeeded
                              : c->state == model::RunState::Cancelled ? TS::Cancelled
                                                                       : TS::Failed;
                    task.rec.state = task.st;
                    task.rec.message = "child run " + c->id + " " + model::nameString(c->state) +
                                       (c->message.empty() ? "" : ": " + c->message);
                    task.rec.ended_ms = c->ended_ms.value_or(now);
                    --r.unfinished;
                    store.upsertTask(r.rec.id, static_cast<int>(i), task.rec);
                    event(r.rec.id, task.rec.task_id, "end", model::nameString(task.st) + ": " +
                                                                task.rec.message + " (recorded at recovery)");
                    continue;
                }
            }
        }
        // An attempt that runs elsewhere, whose plugin can re-attach to it: it goes on running,
        // adopted by recover() before anything new starts.
        std::string why_not;
        if (adoptable(task, &why_not)) {
            setState(r, i, TS::Running);
            ++*r.wf_running;
            adoptions.emplace_back(r.serial, i);
            ++report->adopted;
            notes.push_back(task.rec.task_id + ": re-attached to plugin " + task.def->plugin);
            continue;
        }
        // A lost attempt.
        ++r.rec.lost;
        ++report->lost;
        std::string what = lostText(lost_what, rec.id, task.rec.task_id);
        if (!why_not.empty()) what += "; " + why_not;
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
        task.rec.state = task.st;
        if (task.st == TS::Failed) --r.unfinished;
        if (task.st == TS::Failed) {
            recordLost(r.rec, task.rec, what, "failed");
            event(r.rec.id, task.rec.task_id, "end", "failed: " + task.rec.message);
        } else {
            recordLost(r.rec, task.rec, what,
                       "retry " + std::to_string(task.rec.attempt) + " of " + std::to_string(task.def->retries));
        }
    }
    for (uint32_t i = 0; i < r.tasks.size(); ++i) {
        if (i >= nstatic) {
            if (!isFinal(recorded[i])) saveTask(r, i); // an instance the loop above may have changed
            continue;
        }
        if (r.tasks[i].rec.state != rec.tasks[i].state || r.tasks[i].rec.message != rec.tasks[i].message ||
            r.tasks[i].rec.attempt != rec.tasks[i].attempt)
            saveTask(r, i);
        // Failed here (lost, or its child run's end found): absorbed as at any other failure.
        if (r.tasks[i].st == TS::Failed && rec.tasks[i].state != TS::Failed && absorbsFailure(*r.tasks[i].def))
            absorbFailure(r, i, absorbedText(r.tasks[i].rec.message));
    }
    if (r.rec.state == model::RunState::Paused) r.paused = true;
    saveRun(r);
    event(r.rec.id, "", "recovered",
          "taskhubd restarted; the run continues where it stopped" +
              (notes.empty() ? std::string() : ": " + joinNames(notes)));
    ++report->resumed;
    return r.rec.lost - rec.lost;
}

// Starts what a rebuilt run can do now: queued runs wait their turn; the others restore their
// progress from the tasks that ended and admit what is ready.
void Core::resumeRebuilt(Run& run) {
    if (run.rec.state == model::RunState::Queued) {
        if (!run.parent_id.empty()) return;
        // A backfill's run says so in its events (Engine::trigger): it goes back to the
        // workflow's backfill queue, with the parallelism it was created with.
        for (const auto& e : store.events(run.rec.id)) {
            int n = 0;
            const std::string_view d = e.detail;
            if (e.kind != "backfill" || !d.starts_with("max_active=")) continue;
            auto [end, ec] = std::from_chars(d.data() + 11, d.data() + d.size(), n);
            if (ec == std::errc() && end == d.data() + d.size() && n > 0 && run.rec.scheduled_ms) {
                run.backfill_max_active = n;
                backfill_queued[run.rec.workflow][*run.rec.scheduled_ms / 1000] = run.rec.id;
                return;
            }
        }
        queued[run.rec.workflow].push_back(run.rec.id);
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
        if (task.fan) {
            recountFanOut(run, i);
            if (isFinal(task.st)) {
                const auto [ok, failed] = fanParts(run, i);
                run.progress.setParts(i, ok, failed);
            }
        }
        if (!isFinal(task.st) || task.isInstance()) continue;
        outcomes[i] = outcomeOf(task.st);
        restoreFirstFailure(run, task);
    }
    const uint64_t serial = run.serial;
    std::vector<uint32_t> now_ready, now_skipped;
    run.progress.restore(outcomes, &now_ready, &now_skipped);
    settleSkipped(run, now_skipped);
    if (run.wf->on_failure == config::OnFailure::FailFast && !run.first_failure.empty()) {
        stopRun(run, model::RunState::Failed, "cancelled: " + run.first_failure + " (on_failure = fail_fast)", true);
    }
    for (uint32_t t : now_ready) {
        if (!by_serial.count(serial)) return;
        admit(run, t);
    }
    if (by_serial.count(serial)) maybeEndRun(run);
}

namespace {

// Kills what is in a cgroup and waits (briefly: recovery runs before the event loop) until it is
// empty. Returns how many processes it held.
size_t killAndEmpty(cgroup::AttemptCgroup& cg) {
    const size_t held = cg.pids().size();
    if (held == 0 && !cg.populated()) return 0;
    if (std::string err; !cg.kill(&err)) {
        spdlog::error("CONTAINMENT_KILL_FAILED recovery: cgroup {}: {}", cg.path().string(), err);
    }
    for (int i = 0; i < 200 && cg.populated(); ++i) ::usleep(10'000);
    if (cg.populated()) {
        spdlog::error("ENGINE_RECOVERY_KILL_PENDING cgroup {} still holds {} process(es) 2 s after cgroup.kill",
                      cg.path().string(), cg.pids().size());
    }
    return held;
}

std::string cpuText(const cgroup::Usage& u) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "CPU %.2f s user, %.2f s system", static_cast<double>(u.cpu_user_us) / 1e6,
                  static_cast<double>(u.cpu_system_us) / 1e6);
    return buf;
}

} // namespace

// Recovery by cgroup (docs/reliability.md): every attempt cgroup the previous process left is
// one of
// - an attempt the store shows starting, running or frozen: lost; what is in it is killed,
//   measured, and the cgroup removed (the attempt is then recorded lost by rebuild/abandon);
// - an attempt whose starting record was never committed (the store shows an earlier attempt
//   of the task in an unfinished run): the same, and a `lost` event says so;
// - an ended attempt that kept its leftovers (leftovers = "keep", as recorded with the attempt, else as
//   its task says now): left alone, removed once empty;
// - anything else (an unknown name, an ended run): killed and removed, with a log line.
void Core::recoverCgroups(const std::map<std::string, store::RunRecord>& unfinished, LostWhat* lost_what,
                          std::set<std::string>* contained, RecoveryReport* report) {
    for (auto& cg : opts.cgroups->existingAttempts()) {
        const cgroup::AttemptKey& key = cg->key();
        const std::string name = cg->path().filename().string();
        std::optional<store::RunRecord> ended;
        const store::RunRecord* rec = nullptr;
        if (auto it = unfinished.find(key.run_id); it != unfinished.end()) {
            rec = &it->second;
        } else if ((ended = store.run(key.run_id, true))) {
            rec = &*ended;
        }
        const store::TaskRecord* task = nullptr;
        if (rec) {
            for (const auto& t : rec->tasks) {
                if (t.task_id == key.task_id && t.kind == model::TaskKind::Plugin) task = &t;
            }
        }
        const bool run_active = unfinished.count(key.run_id) > 0;
        const int attempt = static_cast<int>(key.attempt);
        if (task && run_active && task->attempt == attempt && model::attemptIsActive(task->state)) {
            const size_t held = killAndEmpty(*cg);
            report->killed += held;
            const cgroup::Usage usage = cg->usage();
            std::string what = held > 0 ? "its cgroup " + name + " still held " + std::to_string(held) +
                                              " process(es), which were killed (cgroup.kill)"
                                        : "its cgroup " + name + " was empty (its processes had exited)";
            what += "; it had used " + cpuText(usage);
            (*lost_what)[key.run_id + "\n" + key.task_id] = what;
            contained->insert(key.run_id + "\n" + key.task_id);
        } else if (task && run_active && task->attempt < attempt) {
            const size_t held = killAndEmpty(*cg);
            report->killed += held;
            noteUnrecorded(*rec, *task, attempt,
                           "its cgroup " + name + " held " + std::to_string(held) +
                               " process(es), which were killed (cgroup.kill); it had used " + cpuText(cg->usage()),
                           report);
        } else if (task && (task->attempt > attempt || (task->attempt == attempt && !model::attemptIsActive(task->state))) &&
                   cg->populated() &&
                   // As recorded with the attempt; for an earlier attempt, as the task says now.
                   (task->attempt == attempt && task->leftovers
                        ? task->leftovers->action == cgroup::Leftovers::Keep
                        : leftoversKept(rec->workflow, key.task_id))) {
            spdlog::info("CONTAINMENT_RECOVERY_KEPT cgroup {}: attempt {} of task {} of run {} ended with leftovers = "
                         "\"keep\"; its {} process(es) are left alone and the cgroup is removed when they have exited",
                         cg->path().string(), attempt, key.task_id, key.run_id, cg->pids().size());
            ++report->cgroups_kept;
            cgroup::AttemptCgroup& ref = *cg;
            kept_cgroups.push_back(std::move(cg));
            opts.cgroups->whenEmpty(ref, [this, &ref] {
                asio::post(io, [this, &ref] {
                    auto it = std::find_if(kept_cgroups.begin(), kept_cgroups.end(),
                                           [&](const auto& k) { return k.get() == &ref; });
                    if (it == kept_cgroups.end()) return;
                    opts.cgroups->cancelWaits(ref);
                    if (std::string err; !ref.remove(&err)) {
                        spdlog::warn("CONTAINMENT_REMOVE_FAILED kept cgroup {}: {}", ref.path().string(), err);
                    }
                    kept_cgroups.erase(it);
                });
            });
            continue;
        } else {
            const size_t held = killAndEmpty(*cg);
            report->killed += held;
            spdlog::warn("CONTAINMENT_RECOVERY_STRAY cgroup {} belongs to no attempt the previous process left running "
                         "({}); its {} process(es) were killed and the cgroup removed",
                         cg->path().string(),
                         !rec    ? "no run " + key.run_id + " is recorded"
                         : !task ? "run " + key.run_id + " has no task " + key.task_id
                                 : "attempt " + std::to_string(attempt) + " of task " + key.task_id + " of run " +
                                       key.run_id + " has ended",
                         held);
        }
        opts.cgroups->cancelWaits(*cg);
        if (std::string err; !cg->remove(&err)) {
            spdlog::warn("CONTAINMENT_REMOVE_FAILED recovery: {}", err);
        } else {
            ++report->cgroups_removed;
        }
    }
    if (report->cgroups_removed > 0 || report->cgroups_kept > 0) {
        spdlog::warn("CONTAINMENT_RECOVERED {} attempt cgroup(s) of the previous process emptied and removed, {} "
                     "kept (leftovers = \"keep\")",
                     report->cgroups_removed, report->cgroups_kept);
    }
}

// An attempt that ran, or was being started, while its start was not yet committed (starts that
// need not be durable ride the next group commit): found by its cgroup or its processes after
// the crash. It is recorded as lost, and the task runs again with the next attempt number; it
// costs no retry, since the store never knew it had started (at-least-once).
void Core::noteUnrecorded(const store::RunRecord& run, const store::TaskRecord& task, int attempt,
                          const std::string& what, RecoveryReport* report) {
    int& highest = unrecorded_attempts[run.id + "\n" + task.task_id];
    if (attempt <= highest) return; // a second process of the same attempt: recorded once
    highest = attempt;
    store::TaskRecord lost = task;
    lost.attempt = attempt;
    ++report->lost;
    recordLost(run, lost, "taskhubd stopped before its start was committed; " + what,
               "the task runs again as attempt " + std::to_string(attempt + 1));
}

void Core::stopUnrecorded(const std::map<std::string, store::RunRecord>& unfinished,
                          const std::multimap<std::string, FoundProcess>& tagged, const std::set<std::string>& matched,
                          std::vector<FoundProcess>* killed, RecoveryReport* report) {
    for (const auto& [key, p] : tagged) {
        if (matched.count(key)) continue;
        // Only a later attempt than the store shows, in an unfinished run: its start was not
        // committed. Processes of ended attempts are their leftovers, which process-group mode
        // leaves alone while the daemon runs, and so after a restart too.
        auto r = unfinished.find(p.values[0]);
        if (r == unfinished.end()) continue;
        char* end = nullptr;
        const long attempt = std::strtol(p.values[2].c_str(), &end, 10);
        if (!end || *end != '\0') continue;
        const store::TaskRecord* task = nullptr;
        for (const auto& t : r->second.tasks) {
            if (t.task_id == p.values[1] && t.kind == model::TaskKind::Plugin) task = &t;
        }
        // No dispatch makes this many attempts between two commits: not an attempt of ours.
        constexpr long kMaxUnrecorded = 1000;
        if (!task || task->attempt >= attempt || attempt > task->attempt + kMaxUnrecorded) continue;
        if (!sameProcess(p.pid, p.start_ticks)) continue; // gone since the scan
        const bool leader = ::getpgid(p.pid) == p.pid;
        if (leader) ::kill(-p.pid, SIGKILL);
        ::kill(p.pid, SIGKILL);
        killed->push_back(p);
        noteUnrecorded(r->second, *task, static_cast<int>(attempt),
                       "its process " + std::to_string(p.pid) + (leader ? " (and its process group)" : "") +
                           " was killed (SIGKILL)",
                       report);
    }
}

// The accounts the attempts of these runs run as: taskhubd's own, and every task's run_as (as
// its workflow says now; a run whose workflow changed cannot continue, but its attempts ran as
// the old definition said: taskhubd's own account covers the usual case).
std::set<uid_t> Core::attemptOwners(const std::map<std::string, store::RunRecord>& unfinished) const {
    std::set<uid_t> owners{::geteuid()};
    std::set<std::string> workflows;
    for (const auto& [id, rec] : unfinished) workflows.insert(rec.workflow);
    for (const auto& name : workflows) {
        auto wf = lookup_workflow ? lookup_workflow(name) : nullptr;
        if (!wf) continue;
        for (const auto& def : wf->tasks) {
            if (def.run_as.empty()) continue;
            std::string err;
            if (auto id = resolveIdentity(std::string_view(def.run_as), &err)) owners.insert(id->uid);
        }
    }
    return owners;
}

bool Core::adoptable(const TaskRun& task, std::string* why_not) const {
    if (!task.def->workflow.empty()) return false;
    plugin_host::Plugin* p = plugins.find(task.def->plugin);
    if (!p || !(p->info().capabilities & TH_CAP_ADOPT)) return false;
    if (!p->canAdopt()) {
        *why_not = "plugin " + task.def->plugin + " can adopt attempts (TH_CAP_ADOPT), but not while it runs in a "
                   "taskhub-runner process (isolation = \"process\")";
        return false;
    }
    return true;
}

// Whether the task's current definition keeps leftovers.
bool Core::leftoversKept(const std::string& workflow, const std::string& task_id) const {
    auto wf = lookup_workflow ? lookup_workflow(workflow) : nullptr;
    if (!wf) return false;
    for (const auto& t : wf->tasks) {
        if (t.id == task_id) return t.leftovers == cgroup::Leftovers::Keep;
    }
    return false;
}

RecoveryReport Core::recover(bool same_boot) {
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

    // First stop every process the previous process left behind, so that no lost attempt
    // still runs when its retry starts. With cgroups, each attempt's cgroup holds all of them.
    LostWhat lost_what;
    std::set<std::string> contained;
    unrecorded_attempts.clear();
    if (opts.cgroups) recoverCgroups(unfinished, &lost_what, &contained, &report);
    if (unfinished.empty()) return report;
    std::vector<FoundProcess> killed;
    std::multimap<std::string, FoundProcess> tagged;
    // Process-group mode: one pass over /proc finds every process of the previous process's
    // attempts by its environment, those that left their process group and those whose attempt's
    // start never reached the disk included. With cgroups nothing can be outside its cgroup.
    // Anyone can give a process those variables: only processes of the accounts the attempts
    // run as count.
    if (!opts.cgroups && !state_dir.empty()) {
        const std::set<uid_t> owners = attemptOwners(unfinished);
        for (auto& p : processesWithEnvironment("TASKHUB_STATE_DIR=" + state_dir,
                                                {"TASKHUB_RUN_ID", "TASKHUB_TASK_ID", "TASKHUB_ATTEMPT"})) {
            if (!owners.count(p.uid)) continue;
            std::string key = p.values[0] + "\n" + p.values[1] + "\n" + p.values[2];
            tagged.emplace(std::move(key), std::move(p));
        }
    }
    std::set<std::string> matched; // tagged keys of recorded active attempts
    for (const auto& [id, rec] : unfinished) {
        for (const auto& t : rec.tasks) {
            if (!model::attemptIsActive(t.state)) continue;
            if (t.kind == model::TaskKind::Workflow) continue;
            if (contained.count(id + "\n" + t.task_id)) continue;
            matched.insert(id + "\n" + t.task_id + "\n" + std::to_string(t.attempt));
            lost_what[id + "\n" + t.task_id] = stopLeftovers(rec, t, same_boot, tagged, &killed);
        }
    }
    stopUnrecorded(unfinished, tagged, matched, &killed, &report);
    report.killed += killed.size();
    // SIGKILL is not instant: wait (briefly) until they are gone.
    for (int i = 0; i < 200 && !killed.empty(); ++i) {
        std::erase_if(killed, [](const FoundProcess& p) { return !sameProcess(p.pid, p.start_ticks); });
        if (!killed.empty()) ::usleep(10'000);
    }
    for (const auto& p : killed) {
        spdlog::error("ENGINE_RECOVERY_KILL_PENDING process {} has not exited 2 s after SIGKILL", p.pid);
    }

    std::vector<Run*> rebuilt;
    adoptions.clear();
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
    // Attempts that run elsewhere are handed back to their plugins before anything new starts.
    for (auto [serial, t] : std::exchange(adoptions, {})) {
        if (auto it = by_serial.find(serial); it != by_serial.end()) adoptAttempt(*it->second, t);
    }
    std::vector<uint64_t> serials;
    for (Run* r : rebuilt) serials.push_back(r->serial);
    for (uint64_t serial : serials) {
        if (auto it = by_serial.find(serial); it != by_serial.end()) resumeRebuilt(*it->second);
    }
    std::set<std::string> workflows;
    for (const auto& [wf, q] : queued) workflows.insert(wf);
    for (const auto& [wf, b] : backfill_queued) workflows.insert(wf);
    for (const auto& wf : workflows) startNextQueued(wf);
    pump();
    return report;
}

} // namespace taskhub::engine

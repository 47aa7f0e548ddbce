// Starting attempts and their ends: taking ready tasks from the queues (ready_queues.h) as the
// limits allow, dispatch, launch (at once, or once the "starting" record is durable where the
// attempt must not repeat unseen), attempt completion and
// retries, task timeouts, stopping an attempt, plugin health, and why ready tasks wait.
#include "engine/engine_state.h"

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include <taskhub/plugin_api.h>

#include <algorithm>
#include <filesystem>

#include "common/failpoint.h"
#include "common/identity.h"
#include "common/log.h"
#include "common/time_util.h"
#include "engine/retry_policy.h"
#include "store/store.h"

namespace taskhub::engine {

namespace fs = std::filesystem;

PluginQueue& Core::queueOf(TaskRun& task) {
    if (!task.queue) task.queue = &queues.queue(queueKey(*task.def));
    return *task.queue;
}

void Core::enqueue(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    auto& q = queueOf(task);
    task.ready_seq = queues.push(q, run.priority, task.def->priority, run.serial, t).seq;
    if (q.unhealthy) holdForPlugin(run, t);
}

// The run and task of a queue entry, or null when the entry is stale (the task was
// cancelled, or started, or queued again since).
std::pair<Run*, uint32_t> Core::live(const ReadyItem& item) {
    auto it = by_serial.find(item.run);
    if (it == by_serial.end()) return {nullptr, 0};
    auto& task = it->second->tasks[item.task];
    if (task.st != TS::Ready || task.ready_seq != item.seq) return {nullptr, 0};
    return {it->second, item.task};
}

bool Core::workflowLimitReached(const Run& run) {
    return ReadyQueues::workflowLimitReached(run.wf->max_parallel_tasks, *run.wf_running);
}

// Starts ready tasks while the limits allow, always the best waiting one first: highest
// workflow priority, then the highest task priority, then the oldest. Cost per start is the
// number of plugins, not of waiting tasks.
// Parked tasks compete for a slot again at the start of every round, so that a slot is offered
// again even when the task it was offered to went to a paused run or was cancelled meanwhile.
void Core::pump() {
    const auto is_live = [this](const ReadyItem& item) { return live(item).first != nullptr; };
    const auto queue_of_live = [this](const ReadyItem& item) -> PluginQueue* {
        auto [run, t] = live(item);
        return run ? &queueOf(run->tasks[t]) : nullptr;
    };
    const auto fails = [this](const std::string& plugin) { return failsWhenUnhealthy(plugin); };
    for (;;) {
        queues.unpark(queue_of_live);
        auto next = queues.next(is_live, fails);
        if (!next) {
            flushLaunches();
            return;
        }
        const ReadyItem item = next->item;
        Run& run = *by_serial.at(item.run);
        if (run.paused) {
            run.held.push_back(item);
            continue;
        }
        if (next->unhealthy) {
            failUnstarted(run, item.task, unhealthyText(*next->unhealthy) + " (on_unhealthy = fail)");
            continue;
        }
        if (workflowLimitReached(run)) {
            queues.park(run.wf->name, run.wf->max_parallel_tasks, item);
            continue;
        }
        dispatch(run, item.task);
    }
}

bool Core::failsWhenUnhealthy(const std::string& plugin) const {
    const auto* h = plugins.health(plugin);
    return h && h->settings.on_unhealthy == config::OnUnhealthy::Fail;
}

std::string Core::unhealthyText(const std::string& plugin) const {
    const auto* h = plugins.health(plugin);
    std::string out = "plugin '" + plugin + "' is unhealthy";
    if (!h) return out;
    out += " since " + formatIsoMillis(h->since_ms);
    if (!h->message.empty()) out += ": " + h->message;
    return out;
}

// A ready task starts waiting for its unhealthy plugin (on_unhealthy = hold); its timeout
// goes on counting, and ends the wait as a failure.
void Core::holdForPlugin(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    if (failsWhenUnhealthy(task.def->plugin) || task.held_since != Clock::time_point{}) return;
    task.held_since = clock.now();
    event(run.rec.id, task.rec.task_id, "waiting", unhealthyText(task.def->plugin));
    if (task.def->timeout.count() <= 0) return;
    const auto left = std::max(task.def->timeout - task.waited, std::chrono::milliseconds(0));
    const uint64_t serial = run.serial;
    const uint64_t seq = task.ready_seq;
    task.timer = clock.after(left, [this, serial, t, seq] {
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
void Core::releaseHold(TaskRun& task) {
    if (task.held_since == Clock::time_point{}) return;
    task.waited += std::chrono::duration_cast<std::chrono::milliseconds>(clock.now() - task.held_since);
    task.held_since = {};
    task.timer.reset();
}

// Fails a ready task that never started (no attempt is recorded for it).
void Core::failUnstarted(Run& run, uint32_t t, const std::string& message) {
    auto& task = run.tasks[t];
    releaseHold(task);
    task.rec.ended_ms = nowMillis();
    const uint64_t serial = run.serial;
    finishTask(run, t, TS::Failed, message);
    if (by_serial.count(serial)) maybeEndRun(run);
}

void Core::pluginHealthChanged(const std::string& plugin) {
    const bool up = plugins.dispatchable(plugin);
    queues.setUnhealthy(plugin, !up);
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

fs::path Core::logFile(const Run& run, const TaskRun& task) const {
    return opts.log_dir / run.rec.id / (task.rec.task_id + "." + std::to_string(task.rec.attempt) + ".log");
}

std::shared_ptr<TaskOutput> Core::openOutput(const Run& run, const TaskRun& task, std::string* err) {
    fs::path file = logFile(run, task);
    std::optional<JournalForward> journal;
    if (task.def->log_to_journal.value_or(run.wf->log_to_journal) && logging::journalActive())
        journal = JournalForward{run.rec.workflow, run.rec.id, task.rec.task_id, task.rec.attempt};
    return TaskOutput::open(io, std::move(file), err, opts.log_cap, std::move(journal));
}

void Core::armTaskTimeout(Run& run, uint32_t t, std::chrono::milliseconds after) {
    auto& task = run.tasks[t];
    task.deadline = clock.now() + after;
    uint64_t serial = run.serial;
    int attempt = task.rec.attempt;
    task.timer = clock.after(after, [this, serial, t, attempt] {
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

void Core::dispatch(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    task.rec.attempt += 1;
    task.rec.started_ms = nowMillis();
    task.rec.ended_ms.reset();
    task.rec.exit_code.reset();
    task.rec.message.clear();
    task.rec.outputs.clear();
    task.rec.json_outputs.clear();
    task.rec.usage.reset(); // the previous attempt's stays in its "usage" event
    task.rec.leftovers.reset();
    task.cancel_requested = false;
    task.cancel_reason.clear();
    task.timed_out.clear();
    task.held = false;
    ++*run.wf_running;
    if (!task.def->workflow.empty()) {
        startChild(run, t);
        return;
    }
    setState(run, t, TS::Running);
    task.plugin = plugins.find(task.def->plugin);
    // An attempt that must not be repeated unseen, and the first attempts of a run whose own
    // record is not yet on disk, are recorded as starting, and their plugin called only once that
    // is durable (one commit for all of them): after a crash they are known to have maybe run, and
    // nothing has run for a run the store does not know. Every other attempt starts at once and
    // its record rides the next group commit; a restart finds one that ran unrecorded by its
    // cgroup or its processes' environment (recover()).
    const bool durable = needsDurableStart(task) || !store.isDurable(run.created_mark);
    task.rec.state = durable ? TS::Starting : TS::Running;
    forgetProcess(task.rec);
    if (durable && launches.empty()) launch_since = store.writeMark();
    saveTask(run, t);
    event(run.rec.id, task.rec.task_id, "start", "attempt " + std::to_string(task.rec.attempt));
    task.start_mark = store.writeMark();
    if (!task.plugin) {
        endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                         *plugins.unavailable(task.def->plugin), {}});
        return;
    }
    std::string params_json;
    std::optional<Identity> identity;
    if (auto err = attemptInputs(run, t, &params_json, &identity)) {
        endAttempt(run, t, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt, *err, {}});
        return;
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
    queues.started(queueOf(task));

    plugin_host::AttemptSpec spec = attemptSpec(run, t, std::move(params_json), std::move(identity));
    const uint64_t serial = run.serial;
    const int attempt = task.rec.attempt;
    if (!durable) {
        spec.after_start_durable = [this, mark = task.start_mark](std::function<void()> fn) {
            if (store.isDurable(mark)) {
                fn();
                return;
            }
            store.afterDurable([fn = std::move(fn)](bool) { fn(); });
        };
    }

    releaseHold(task);
    if (task.def->timeout.count() > 0) {
        armTaskTimeout(run, t, std::max(task.def->timeout - task.waited, std::chrono::milliseconds(1)));
    }
    task.waited = {};
    task.launching = true;
    if (!durable) {
        Launch now{serial, t, attempt, std::move(spec)};
        launch(now, true);
        return;
    }
    launches.push_back(Launch{serial, t, attempt, std::move(spec)});
    // In chunks, so that the writer commits the first attempts' records while the loop
    // dispatches the next ones.
    if (launches.size() >= kLaunchChunk) flushLaunches();
}

std::optional<std::string> Core::attemptInputs(Run& run, uint32_t t, std::string* params_json,
                                               std::optional<Identity>* identity) {
    auto& task = run.tasks[t];
    // Shell-text params get each value escaped for the shell context it lands in; a value no
    // shell or environment can carry (a NUL byte) fails the attempt instead of being cut short.
    *params_json = task.def->params_json;
    if (task.def->has_templates) {
        // A path into an output, param or item that cannot be followed fails the attempt.
        std::string err, path_err;
        auto expanded = expr::expandJsonStrings(task.def->params_json, lookupFor(run, t, &path_err),
                                                task.def->shell_params, &err);
        if (!expanded) return err;
        for (const auto& [k, v] : task.def->env) {
            if (path_err.empty()) expand(run, t, v, &path_err);
        }
        if (!path_err.empty()) return path_err + "; the task was not started";
        *params_json = std::move(*expanded);
    }
    for (const auto& [k, v] : run.rec.params) {
        if (v.find('\0') == std::string::npos) continue;
        return "param '" + k + "' holds a NUL byte, which cannot be passed in the environment (TASKHUB_PARAM_" + k +
               "); the task was not started";
    }
    // The account is looked up again for each attempt: the databases may have changed since
    // the file was loaded, and the attempt must run as the account as it is now.
    if (!task.def->run_as.empty()) {
        std::string err;
        *identity = resolveIdentity(task.def->run_as, &err);
        if (!*identity) {
            return "cannot run as \"" + task.def->run_as + "\" (run_as, from " +
                   config::toString(task.def->run_as_source) + "): " + err + "; it resolved when the workflow was loaded";
        }
    }
    return std::nullopt;
}

plugin_host::AttemptSpec Core::attemptSpec(Run& run, uint32_t t, std::string params_json,
                                           std::optional<Identity> identity) {
    auto& task = run.tasks[t];
    plugin_host::AttemptSpec spec;
    spec.workflow = run.rec.workflow;
    spec.run_id = run.rec.id;
    spec.task_id = task.rec.task_id;
    spec.attempt = static_cast<uint32_t>(task.rec.attempt);
    spec.params_json = std::move(params_json);
    spec.env = {"TASKHUB_WORKFLOW=" + run.rec.workflow, "TASKHUB_RUN_ID=" + run.rec.id,
                "TASKHUB_TASK_ID=" + task.rec.task_id,
                "TASKHUB_ATTEMPT=" + std::to_string(task.rec.attempt)};
    if (task.isInstance()) spec.env.push_back("TASKHUB_ITEM_INDEX=" + std::to_string(task.item));
    for (const auto& [k, v] : run.rec.params) spec.env.push_back("TASKHUB_PARAM_" + k + "=" + v);
    for (const auto& [k, v] : task.def->env) {
        spec.env.push_back(k + "=" + (task.def->has_templates ? expand(run, t, v) : v));
    }
    spec.log_fd = task.output ? task.output->writeFd() : -1;
    spec.timeout_ms = static_cast<uint64_t>(task.def->timeout.count());
    spec.run_as = std::move(identity);
    spec.limits = task.def->limits;
    spec.leftovers = task.def->leftovers;
    if (!state_dir.empty()) spec.env.push_back("TASKHUB_STATE_DIR=" + state_dir);
    const uint64_t serial = run.serial;
    const int attempt = task.rec.attempt;
    spec.on_process = [this, serial, t, attempt](const plugin_host::ProcessIdentity& p) {
        onProcess(serial, t, attempt, p);
    };
    spec.on_handle = [this, serial, t, attempt](const std::string& handle) { onHandle(serial, t, attempt, handle); };
    return spec;
}

// at_most_once, a plugin that declares TH_CAP_DURABLE_START, and every attempt while the state
// database cannot be written (nothing starts then that could not be recorded).
bool Core::needsDurableStart(const TaskRun& task) const {
    if (task.def->at_most_once) return true;
    if (task.plugin && (task.plugin->info().capabilities & TH_CAP_DURABLE_START)) return true;
    return store.writeProblem().has_value();
}

// Calls the plugins of the attempts dispatched since the last call once their "starting"
// records are committed (one wait for all of them: the store commits them in one batch).
void Core::flushLaunches() {
    if (launches.empty()) return;
    auto batch = std::make_shared<std::vector<Launch>>(std::move(launches));
    launches.clear();
    store.whenDurable(launch_since, [this, batch](bool ok) {
        for (auto& l : *batch) launch(l, ok);
        pump();
    });
}

void Core::launch(Launch& l, bool recorded) {
    auto it = by_serial.find(l.serial);
    if (it == by_serial.end()) return;
    Run& run = *it->second;
    auto& task = run.tasks[l.task];
    if (!task.launching || task.rec.attempt != l.attempt) return;
    task.launching = false;
    if (task.rec.state == TS::Starting) TASKHUB_FAILPOINT("task_starting_committed");
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
    if (!store.isDurable(task.start_mark)) TASKHUB_FAILPOINT("task_started_uncommitted");
    if (task.st == TS::Running && task.rec.state == TS::Starting) {
        task.rec.state = TS::Running;
        saveTask(run, t);
    }
}

// Hands an attempt the previous process left running back to its plugin (ABI 1.6 adopt()), with
// the handle recorded for it. Its log starts afresh (the plugin delivers the attempt's output from
// its beginning where it can), and its timeout counts from the attempt's start. When the plugin
// refuses, or the attempt's inputs no longer resolve, the attempt is lost (finishAttempt()).
void Core::adoptAttempt(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    task.plugin = plugins.find(task.def->plugin);
    queues.started(queueOf(task));
    const uint64_t serial = run.serial;
    const int attempt = task.rec.attempt;
    auto lose = [this, serial, t, attempt](std::string why) {
        asio::post(io, [this, serial, t, attempt, why = std::move(why)] {
            AttemptResult r{AttemptResult::Outcome::Failed, std::nullopt, why, {}};
            r.lost = true;
            onAttemptDone(serial, t, attempt, std::move(r));
        });
    };
    std::string params_json;
    std::optional<Identity> identity;
    if (auto err = attemptInputs(run, t, &params_json, &identity)) return lose("it could not be adopted: " + *err);
    if (!(task.plugin->info().capabilities & TH_CAP_NO_LOG)) {
        std::error_code ec;
        fs::remove(logFile(run, task), ec);
        std::string err;
        task.output = openOutput(run, task, &err);
        if (!task.output) return lose("it could not be adopted: " + err);
    }
    plugin_host::AttemptSpec spec = attemptSpec(run, t, std::move(params_json), std::move(identity));
    if (task.def->timeout.count() > 0) {
        const auto elapsed = std::chrono::milliseconds(nowMillis() - task.rec.started_ms.value_or(nowMillis()));
        armTaskTimeout(run, t, std::max(task.def->timeout - elapsed, std::chrono::milliseconds(1)));
    }
    std::optional<std::string> handle;
    if (!task.rec.handle.empty()) handle = task.rec.handle;
    event(run.rec.id, task.rec.task_id, "adopted",
          "attempt " + std::to_string(attempt) + " re-attached to plugin " + task.def->plugin +
              " after taskhubd restarted (" + (handle ? "handle " + *handle : std::string("no handle was recorded")) +
              ")");
    {
        logging::Context log_ctx({.workflow = run.rec.workflow, .run_id = run.rec.id, .task = task.rec.task_id,
                                  .attempt = attempt});
        spdlog::info("ENGINE_ATTEMPT_ADOPTED {} task {} attempt {}: handed back to plugin {} ({})", run.rec.id,
                     task.rec.task_id, attempt, task.def->plugin, handle ? "handle " + *handle : "no handle");
    }
    auto token = task.plugin->adopt(spec, handle, [this, serial, t, attempt](AttemptResult r) {
        onAttemptDone(serial, t, attempt, std::move(r));
    });
    if (!token) return lose("plugin " + task.def->plugin + " cannot adopt attempts");
    task.token = *token;
    if (task.output) task.output->start();
    if (task.rec.state != TS::Running) {
        task.rec.state = TS::Running;
        saveTask(run, t);
    }
}

// The plugin reported the process an attempt runs as: recorded, so that a restart after a
// crash can stop exactly that process group.
void Core::onProcess(uint64_t serial, uint32_t t, int attempt, const plugin_host::ProcessIdentity& p) {
    auto it = by_serial.find(serial);
    if (it == by_serial.end()) return;
    auto& task = it->second->tasks[t];
    if ((task.st != TS::Running && task.st != TS::Frozen) || task.rec.attempt != attempt) return;
    task.rec.pid = p.pid;
    task.rec.pgid = p.pgid;
    task.rec.proc_start = p.start_ticks;
    if (task.rec.state == TS::Starting) task.rec.state = task.st;
    saveTask(*it->second, t);
}

// The plugin reported the attempt's external handle (ABI 1.6): recorded with the attempt (in
// the next commit), so that a restart can hand it back to the plugin's adopt().
void Core::onHandle(uint64_t serial, uint32_t t, int attempt, const std::string& handle) {
    auto it = by_serial.find(serial);
    if (it == by_serial.end()) return;
    auto& task = it->second->tasks[t];
    if ((task.st != TS::Running && task.st != TS::Frozen) || task.rec.attempt != attempt) return;
    if (task.rec.handle == handle) return;
    task.rec.handle = handle;
    if (task.rec.state == TS::Starting) task.rec.state = task.st;
    saveTask(*it->second, t);
    event(it->second->rec.id, task.rec.task_id, "handle",
          "attempt " + std::to_string(attempt) + ": " + task.plugin->info().name + " handle " + handle);
}

// Stops a running attempt: a plugin's is cancelled (after letting a frozen one continue, so
// that it can act on the signal), one still waiting for its starting record ends without its
// plugin being called, a child run is cancelled with its subtree.
void Core::stopAttempt(Run& run, uint32_t t) {
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

void Core::onAttemptDone(uint64_t serial, uint32_t t, int attempt, AttemptResult r) {
    auto it = by_serial.find(serial);
    if (it == by_serial.end()) return;
    Run& run = *it->second;
    auto& task = run.tasks[t];
    if ((task.st != TS::Running && task.st != TS::Frozen) || task.rec.attempt != attempt) return;
    queues.ended(queueOf(task));
    // The attempt's output is in the log, and its outputs known, before its end is recorded.
    if (task.output) {
        task.output->attemptEnded();
        task.output->addPluginOutputs(r.outputs, r.json_outputs);
        task.rec.outputs = task.output->outputs();
        task.rec.json_outputs = task.output->jsonOutputs();
        if (!task.output->outputError().empty() && r.outcome == AttemptResult::Outcome::Succeeded) {
            r.outcome = AttemptResult::Outcome::Failed;
            r.message = task.output->outputError();
        }
        task.output.reset();
    } else {
        task.rec.outputs = std::move(r.outputs); // checked by the plugin host
        task.rec.json_outputs = std::move(r.json_outputs);
    }
    endAttempt(run, t, std::move(r));
}

// Common end of an attempt (plugin or child run): frees its slot, records the result,
// starts what can start now.
void Core::endAttempt(Run& run, uint32_t t, AttemptResult r) {
    auto& task = run.tasks[t];
    task.timer.reset();
    --*run.wf_running; // pump() offers the slot to parked tasks
    const uint64_t serial = run.serial;
    finishAttempt(run, t, std::move(r));
    for (auto* o : observers) o->attemptEnded(run.rec, task.rec);
    pump();
    if (by_serial.count(serial)) maybeEndRun(run);
}

namespace {

// "2 processes left after the main process exited: killed" (the "leftovers" event).
std::string leftoversText(const cgroup::LeftoverReport& l) {
    return std::to_string(l.found) + (l.found == 1 ? " process" : " processes") +
           " left after the main process exited: " +
           (l.action == cgroup::Leftovers::Keep ? "kept (leftovers = keep)" : "killed");
}

} // namespace

void Core::finishAttempt(Run& run, uint32_t t, AttemptResult r) {
    auto& task = run.tasks[t];
    task.rec.ended_ms = nowMillis();
    task.rec.exit_code = r.exit_code;
    // What the attempt cost and left behind: on the task's row (the latest attempt), and in
    // events, so that earlier attempts' stay visible.
    task.rec.usage = r.usage;
    task.rec.leftovers = r.leftovers;
    if (r.usage) event(run.rec.id, task.rec.task_id, "usage", store::usageDetail(task.rec.attempt, *r.usage));
    if (r.leftovers && r.leftovers->found > 0) event(run.rec.id, task.rec.task_id, "leftovers", leftoversText(*r.leftovers));
    using O = AttemptResult::Outcome;
    if (r.outcome == O::Succeeded) {
        finishTask(run, t, TS::Succeeded, r.message);
        return;
    }
    std::string message = r.message;
    if (!task.timed_out.empty()) {
        message = task.timed_out + (r.message.empty() ? "" : " (" + r.message + ")");
    } else if (task.cancel_requested || (r.outcome == O::Cancelled && run.stop_state)) {
        std::string why = !task.cancel_reason.empty() ? task.cancel_reason
                          : !run.stop_reason.empty()  ? run.stop_reason
                                                      : r.message;
        finishTask(run, t, TS::Cancelled, why);
        return;
    }
    if (r.lost) {
        // The plugin lost the attempt's work (ABI 1.6): a lost attempt, as recovery records one.
        ++run.rec.lost;
        saveRun(run);
        const bool again = !run.stop_state && !task.def->at_most_once && task.rec.attempt <= task.def->retries;
        recordLost(run.rec, task.rec, r.message,
                   task.def->at_most_once ? "failed (at_most_once = true)"
                   : again ? "retry " + std::to_string(task.rec.attempt) + " of " + std::to_string(task.def->retries)
                           : "failed",
                   false);
        message = "lost: " + r.message;
        if (task.def->at_most_once) {
            finishTask(run, t, TS::Failed, message + "; not run again (at_most_once = true)");
            return;
        }
        if (!again && !run.stop_state) message += "; no retries left (retries = " + std::to_string(task.def->retries) + ")";
        r.transient = true;
    }
    const auto& codes = task.def->retry_on_exit_codes;
    const bool code_retryable = codes.empty() || r.transient ||
                                (r.exit_code && std::find(codes.begin(), codes.end(), *r.exit_code) != codes.end());
    if (!run.stop_state && task.rec.attempt <= task.def->retries && code_retryable) {
        const auto delay = retryDelay(*task.def, task.rec.attempt);
        setState(run, t, TS::Retrying);
        task.rec.message = message;
        saveTask(run, t);
        event(run.rec.id, task.rec.task_id, "end",
              "failed: " + message + "; retry " + std::to_string(task.rec.attempt) + " of " +
                  std::to_string(task.def->retries) + " in " + formatDuration(delay));
        const uint64_t serial = run.serial;
        task.timer = clock.after(delay, [this, serial, t] {
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

std::map<std::string, std::string> Core::waitingReasons(const std::string& id) const {
    std::map<std::string, std::string> out;
    auto it = runs.find(id);
    if (it == runs.end()) return out;
    const Run& run = *it->second;
    for (const auto& task : run.tasks) {
        if (task.st != TS::Ready) continue;
        std::string why;
        if (run.paused) {
            why = "waiting: the run is paused";
        } else if (task.def->workflow.empty() && queues.isUnhealthy(task.def->plugin)) {
            why = "waiting for plugin: " + unhealthyText(task.def->plugin);
        } else {
            why = queues.waitingReason(queueKey(*task.def), run.wf->name, run.wf->max_parallel_tasks, *run.wf_running);
        }
        out[task.rec.task_id] = why;
    }
    return out;
}

} // namespace taskhub::engine

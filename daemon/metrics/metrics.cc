#include "metrics/metrics.h"

#include <algorithm>
#include <iterator>

#include "model/names.h"

namespace taskhub::metrics {

namespace {

using model::RunState;
using model::TriggerSource;

// The final states a run is counted in (runs_finished_total's state label).
constexpr RunState kFinalStates[] = {RunState::Succeeded, RunState::Failed, RunState::Cancelled, RunState::Skipped};

bool timeTrigger(TriggerSource s) {
    return s == TriggerSource::Cron || s == TriggerSource::Every || s == TriggerSource::At ||
           s == TriggerSource::Reboot;
}

double seconds(int64_t ms) { return static_cast<double>(ms) / 1000.0; }

} // namespace

const std::vector<double>& Metrics::runDurationBounds() {
    static const std::vector<double> b = {1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400};
    return b;
}

const std::vector<double>& Metrics::taskDurationBounds() {
    static const std::vector<double> b = {0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600};
    return b;
}

const std::vector<double>& Metrics::triggerLatenessBounds() {
    static const std::vector<double> b = {0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 3600};
    return b;
}

Metrics::Metrics(DaemonInfo info)
    : info_(std::move(info)),
      runs_started_(registry_.counter("taskhub_runs_started", "Runs started (top-level and child runs)",
                                      {"workflow"})),
      runs_finished_(registry_.counter("taskhub_runs_finished",
                                       "Runs that reached a final state: succeeded, failed, cancelled, or skipped "
                                       "(a firing recorded without running)",
                                       {"workflow", "state"})),
      last_success_(registry_.gauge("taskhub_last_success_timestamp_seconds",
                                    "When the workflow's latest successful run ended (seconds since the epoch)",
                                    {"workflow"}, "seconds")),
      last_failure_(registry_.gauge("taskhub_last_failure_timestamp_seconds",
                                    "When the workflow's latest failed run ended (seconds since the epoch)",
                                    {"workflow"}, "seconds")),
      run_duration_(registry_.histogram("taskhub_run_duration_seconds",
                                        "Run duration from start to end, of runs that started", {"workflow"},
                                        runDurationBounds(), "seconds")),
      task_duration_(registry_.histogram("taskhub_task_attempt_duration_seconds",
                                         "Task attempt duration from start to end (plugin \"workflow\": workflow "
                                         "tasks, which run a child run)",
                                         {"workflow", "plugin"}, taskDurationBounds(), "seconds")),
      task_retries_(registry_.counter("taskhub_task_retries",
                                      "Task attempts that ended with another attempt to follow (state retrying)",
                                      {"workflow"})),
      attempts_lost_(registry_.counter("taskhub_task_attempts_lost",
                                       "Task attempts found lost by recovery after a crash of taskhubd",
                                       {"workflow"})),
      failures_absorbed_(registry_.counter("taskhub_task_failures_absorbed",
                                           "Task failures a run absorbed (on_failure = \"continue\"): the task "
                                           "failed, the run went on",
                                           {"workflow"})),
      task_cpu_(registry_.counter("taskhub_task_cpu_seconds",
                                  "CPU time of ended task attempts, user and system, as measured in their cgroups "
                                  "(or, in process-group mode, the main process's rusage)",
                                  {"workflow", "mode"})),
      task_oom_kills_(registry_.counter("taskhub_task_oom_kills",
                                        "Processes of task attempts killed by the kernel's OOM killer in their "
                                        "cgroups (memory controller only)",
                                        {"workflow"})),
      trigger_lateness_(registry_.histogram("taskhub_trigger_lateness_seconds",
                                            "Time from a time trigger's scheduled instant to the creation of its run "
                                            "(jitter and catch-up included)",
                                            {"trigger"}, triggerLatenessBounds(), "seconds")) {
    registry_.addCollector([this](Writer& w) { renderLive(w); });
}

void Metrics::setWorkflows(const std::set<std::string>& names) {
    std::set<std::string> added;
    std::set_difference(names.begin(), names.end(), workflows_.begin(), workflows_.end(),
                        std::inserter(added, added.end()));
    workflows_ = names;
    registry_.retainLabelValues("workflow",
                                [this](std::string_view w) { return workflows_.count(std::string(w)) > 0; });
    for (const auto& w : added) {
        if (!history_) break;
        const LastEnded last = history_(w);
        if (last.succeeded_ms) moveForward(last_success_, w, *last.succeeded_ms);
        if (last.failed_ms) moveForward(last_failure_, w, *last.failed_ms);
    }
    for (const auto& w : workflows_) {
        for (auto* f : workflow_counters_) f->at({w});
        runs_started_.at({w});
        for (RunState s : kFinalStates) runs_finished_.at({w, std::string(model::name(s))});
        task_retries_.at({w});
        attempts_lost_.at({w});
        failures_absorbed_.at({w});
        task_cpu_.at({w, "user"});
        task_cpu_.at({w, "system"});
        task_oom_kills_.at({w});
    }
}

ScalarFamily& Metrics::workflowCounter(std::string name, std::string help) {
    auto& f = registry_.counter(std::move(name), std::move(help), {"workflow"});
    workflow_counters_.push_back(&f);
    for (const auto& w : workflows_) f.at({w});
    return f;
}

void Metrics::countWorkflow(ScalarFamily& family, const std::string& workflow, double by) {
    if (loaded(workflow)) family.inc({workflow}, by);
}

void Metrics::setPlugins(const std::set<std::string>& names) { plugins_ = names; }

void Metrics::moveForward(ScalarFamily& f, const std::string& workflow, int64_t ms) {
    double& v = f.at({workflow});
    v = std::max(v, seconds(ms));
}

void Metrics::runCreated(const store::RunRecord& run) {
    if (timeTrigger(run.trigger) && run.scheduled_ms) {
        trigger_lateness_.observe({std::string(model::name(run.trigger))},
                                  seconds(std::max<int64_t>(0, run.created_ms - *run.scheduled_ms)));
    }
    if (run.state == RunState::Skipped && loaded(run.workflow)) {
        runs_finished_.inc({run.workflow, std::string(model::name(RunState::Skipped))});
    }
}

void Metrics::runStarted(const store::RunRecord& run) {
    if (loaded(run.workflow)) runs_started_.inc({run.workflow});
}

void Metrics::runEnded(const store::RunRecord& run, const std::vector<const store::TaskRecord*>&) {
    if (!loaded(run.workflow) || !model::isFinal(run.state)) return;
    runs_finished_.inc({run.workflow, std::string(model::name(run.state))});
    if (run.ended_ms) {
        if (run.state == RunState::Succeeded) moveForward(last_success_, run.workflow, *run.ended_ms);
        if (run.state == RunState::Failed) moveForward(last_failure_, run.workflow, *run.ended_ms);
        if (run.started_ms) run_duration_.observe({run.workflow}, seconds(std::max<int64_t>(0, *run.ended_ms - *run.started_ms)));
    }
}

void Metrics::attemptEnded(const store::RunRecord& run, const store::TaskRecord& task) {
    if (!loaded(run.workflow)) return;
    if (task.state == model::TaskState::Retrying) task_retries_.inc({run.workflow});
    if (const auto& u = task.usage) {
        task_cpu_.inc({run.workflow, "user"}, static_cast<double>(u->cpu_user_us) / 1e6);
        task_cpu_.inc({run.workflow, "system"}, static_cast<double>(u->cpu_system_us) / 1e6);
        if (u->oom_kills && *u->oom_kills > 0) task_oom_kills_.inc({run.workflow}, static_cast<double>(*u->oom_kills));
    }
    const std::string plugin = task.kind == model::TaskKind::Workflow ? "workflow" : task.plugin;
    if (plugin != "workflow" && plugins_.count(plugin) == 0) return;
    if (task.started_ms && task.ended_ms) {
        task_duration_.observe({run.workflow, plugin}, seconds(std::max<int64_t>(0, *task.ended_ms - *task.started_ms)));
    }
}

void Metrics::attemptLost(const store::RunRecord& run, const store::TaskRecord&) {
    if (loaded(run.workflow)) attempts_lost_.inc({run.workflow});
}

void Metrics::failureAbsorbed(const store::RunRecord& run, const store::TaskRecord&) {
    if (loaded(run.workflow)) failures_absorbed_.inc({run.workflow});
}

void Metrics::renderLive(Writer& w) const {
    const LiveState s = live_ ? live_() : LiveState{};
    const auto gauge = [&w](const char* name, const char* help, double v) {
        w.family(name, Type::Gauge, help);
        w.sample(name, {}, v);
    };
    gauge("taskhub_runs_active", "Runs active now (running or paused, child runs included)",
          static_cast<double>(s.active_runs));
    gauge("taskhub_runs_queued", "Runs waiting for their overlap policy to let them start",
          static_cast<double>(s.queued_runs));
    gauge("taskhub_tasks_running", "Task attempts running now", static_cast<double>(s.running_tasks));
    gauge("taskhub_tasks_waiting", "Tasks ready to start but held back by a concurrency limit or an unhealthy plugin",
          static_cast<double>(s.waiting_tasks));

    w.family("taskhub_plugin_healthy", Type::Gauge, "1 while the plugin receives work (healthy or degraded), 0 while unhealthy");
    for (const auto& p : s.plugins) w.sample("taskhub_plugin_healthy", {{"plugin", p.name}}, p.dispatchable ? 1 : 0);
    w.family("taskhub_plugin_state", Type::Gauge, "The plugin's health state: 1 for the current one, 0 for the others");
    for (const auto& p : s.plugins) {
        for (const char* st : kPluginStates) {
            w.sample("taskhub_plugin_state", {{"plugin", p.name}, {"state", st}}, p.state == st ? 1 : 0);
        }
    }

    gauge("taskhub_store_write_problem",
          "1 while the state database cannot be written (disk full, read-only, I/O error), else 0",
          s.store_write_problem ? 1 : 0);
    gauge("taskhub_workflows_loaded", "Workflows loaded", static_cast<double>(s.workflows_loaded));
    gauge("taskhub_workflow_load_errors", "Workflow files that failed to load", static_cast<double>(s.workflow_errors));

    w.family("taskhub_build_info", Type::Gauge, "taskhubd's version and plugin ABI version; always 1");
    w.sample("taskhub_build_info", {{"version", info_.version}, {"abi", info_.abi}}, 1);
    w.family("taskhub_start_time_seconds", Type::Gauge, "When taskhubd started (seconds since the epoch)", "seconds");
    w.sample("taskhub_start_time_seconds", {}, seconds(info_.started_ms));
}

std::string Metrics::render() const { return registry_.render(); }

void Metrics::render(std::string* out) const {
    out->clear();
    Writer w(out);
    registry_.renderInto(w);
    w.finish();
}

} // namespace taskhub::metrics

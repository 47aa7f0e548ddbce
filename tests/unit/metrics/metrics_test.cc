// The daemon's metrics as the engine's observer sees runs and attempts: counts per state, last
// success and failure times, durations, retries, lost attempts, trigger lateness, live gauges,
// and the bound on workflow and plugin label values.
#include <catch2/catch.hpp>

#include "metrics/metrics.h"

#include <memory>

using namespace taskhub;
using namespace taskhub::metrics;
using model::RunState;
using model::TaskState;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

store::RunRecord run(const std::string& workflow, RunState state, int64_t started_ms, int64_t ended_ms) {
    store::RunRecord r;
    r.id = workflow;
    r.id.append("@x");
    r.workflow = workflow;
    r.state = state;
    r.created_ms = started_ms;
    r.started_ms = started_ms;
    r.ended_ms = ended_ms;
    return r;
}

store::TaskRecord attempt(const std::string& plugin, TaskState state, int64_t started_ms, int64_t ended_ms) {
    store::TaskRecord t;
    t.task_id = std::string(1, 't'); // (assigning a literal trips a false -Wrestrict in GCC 12)
    t.plugin = plugin;
    t.state = state;
    t.started_ms = started_ms;
    t.ended_ms = ended_ms;
    return t;
}

std::unique_ptr<Metrics> make(LiveState live = {}) {
    auto m = std::make_unique<Metrics>(DaemonInfo{"1.2.3", "1.3", 1765062000000});
    m->setLiveSource([live] { return live; });
    return m;
}

} // namespace

TEST_CASE("runs are counted per workflow and final state; last success and failure move forward", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    std::vector<std::string> asked;
    m.setHistory([&asked](const std::string& w) {
        asked.push_back(w);
        return w == "backup" ? LastEnded{1000000, 2000000} : LastEnded{};
    });
    m.setWorkflows({"backup", "report"});
    m.setWorkflows({"backup", "report"}); // history is read once per workflow
    CHECK(asked == std::vector<std::string>{"backup", "report"});
    m.runStarted(run("backup", RunState::Running, 3000000, 0));
    m.runEnded(run("backup", RunState::Succeeded, 3000000, 3090000), {});
    m.runStarted(run("backup", RunState::Running, 4000000, 0));
    m.runEnded(run("backup", RunState::Failed, 4000000, 4000500), {});
    m.runEnded(run("backup", RunState::Cancelled, 4000000, 4000600), {});
    // An older success reported late does not move the time back.
    m.runEnded(run("backup", RunState::Succeeded, 1, 500), {});
    auto skipped = run("report", RunState::Skipped, 0, 0);
    skipped.started_ms.reset();
    m.runCreated(skipped);

    const std::string text = m.render();
    CHECK(contains(text, "taskhub_runs_started_total{workflow=\"backup\"} 2\n"));
    CHECK(contains(text, "taskhub_runs_started_total{workflow=\"report\"} 0\n"));
    CHECK(contains(text, "taskhub_runs_finished_total{workflow=\"backup\",state=\"succeeded\"} 2\n"));
    CHECK(contains(text, "taskhub_runs_finished_total{workflow=\"backup\",state=\"failed\"} 1\n"));
    CHECK(contains(text, "taskhub_runs_finished_total{workflow=\"backup\",state=\"cancelled\"} 1\n"));
    CHECK(contains(text, "taskhub_runs_finished_total{workflow=\"report\",state=\"skipped\"} 1\n"));
    CHECK(contains(text, "taskhub_last_success_timestamp_seconds{workflow=\"backup\"} 3090\n"));
    CHECK(contains(text, "taskhub_last_failure_timestamp_seconds{workflow=\"backup\"} 4000.5\n"));
    CHECK_FALSE(contains(text, "taskhub_last_success_timestamp_seconds{workflow=\"report\"}"));
    // Durations: 90 s, 0.5 s, 0.6 s and 0.499 s.
    CHECK(contains(text, "taskhub_run_duration_seconds_bucket{workflow=\"backup\",le=\"1.0\"} 3\n"));
    CHECK(contains(text, "taskhub_run_duration_seconds_bucket{workflow=\"backup\",le=\"60.0\"} 3\n"));
    CHECK(contains(text, "taskhub_run_duration_seconds_bucket{workflow=\"backup\",le=\"300.0\"} 4\n"));
    CHECK(contains(text, "taskhub_run_duration_seconds_count{workflow=\"backup\"} 4\n"));
    CHECK(contains(text, "# UNIT taskhub_run_duration_seconds seconds\n"));
    CHECK(text.size() >= 6);
    CHECK(text.substr(text.size() - 6) == "# EOF\n");
}

TEST_CASE("attempts: durations per workflow and plugin, retries, lost; workflow tasks as plugin workflow", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    m.setWorkflows({"w"});
    m.setPlugins({"shell"});
    const auto r = run("w", RunState::Running, 0, 0);
    m.attemptEnded(r, attempt("shell", TaskState::Retrying, 1000, 1200));
    m.attemptEnded(r, attempt("shell", TaskState::Succeeded, 2000, 9000));
    auto child = attempt("workflow:sub", TaskState::Succeeded, 0, 20000);
    child.kind = model::TaskKind::Workflow;
    m.attemptEnded(r, child);
    m.attemptEnded(r, attempt("not_loaded", TaskState::Failed, 0, 1)); // no series for an unknown plugin
    m.attemptLost(r, attempt("shell", TaskState::Retrying, 0, 0));

    const std::string text = m.render();
    CHECK(contains(text, "taskhub_task_attempt_duration_seconds_count{workflow=\"w\",plugin=\"shell\"} 2\n"));
    CHECK(contains(text, "taskhub_task_attempt_duration_seconds_bucket{workflow=\"w\",plugin=\"shell\",le=\"0.5\"} 1\n"));
    CHECK(contains(text, "taskhub_task_attempt_duration_seconds_sum{workflow=\"w\",plugin=\"shell\"} 7.2\n"));
    CHECK(contains(text, "taskhub_task_attempt_duration_seconds_count{workflow=\"w\",plugin=\"workflow\"} 1\n"));
    CHECK_FALSE(contains(text, "not_loaded"));
    CHECK_FALSE(contains(text, "workflow:sub"));
    CHECK(contains(text, "taskhub_task_retries_total{workflow=\"w\"} 1\n"));
    CHECK(contains(text, "taskhub_task_attempts_lost_total{workflow=\"w\"} 1\n"));
}

TEST_CASE("absorbed task failures are counted per loaded workflow, from 0", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    m.setWorkflows({"w", "quiet"});
    m.failureAbsorbed(run("w", RunState::Running, 0, 0), attempt("shell", TaskState::Failed, 0, 1));
    m.failureAbsorbed(run("w", RunState::Running, 0, 0), attempt("shell", TaskState::Failed, 0, 1));
    m.failureAbsorbed(run("gone", RunState::Running, 0, 0), attempt("shell", TaskState::Failed, 0, 1));
    const std::string text = m.render();
    CHECK(contains(text, "# TYPE taskhub_task_failures_absorbed counter\n"));
    CHECK(contains(text, "taskhub_task_failures_absorbed_total{workflow=\"w\"} 2\n"));
    CHECK(contains(text, "taskhub_task_failures_absorbed_total{workflow=\"quiet\"} 0\n"));
    CHECK_FALSE(contains(text, "workflow=\"gone\""));
}

TEST_CASE("trigger lateness is observed for time triggers only, by trigger kind", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    m.setWorkflows({"w"});
    auto r = run("w", RunState::Running, 0, 0);
    r.trigger = model::TriggerSource::Cron;
    r.scheduled_ms = 10000;
    r.created_ms = 10040;
    m.runCreated(r);
    r.trigger = model::TriggerSource::Manual;
    r.scheduled_ms.reset();
    m.runCreated(r);
    r.trigger = model::TriggerSource::Every;
    r.scheduled_ms = 10000;
    r.created_ms = 9000; // a clock step backwards counts as on time
    m.runCreated(r);
    const std::string text = m.render();
    CHECK(contains(text, "taskhub_trigger_lateness_seconds_bucket{trigger=\"cron\",le=\"0.01\"} 0\n"));
    CHECK(contains(text, "taskhub_trigger_lateness_seconds_bucket{trigger=\"cron\",le=\"0.05\"} 1\n"));
    CHECK(contains(text, "taskhub_trigger_lateness_seconds_sum{trigger=\"cron\"} 0.04\n"));
    CHECK(contains(text, "taskhub_trigger_lateness_seconds_count{trigger=\"every\"} 1\n"));
    CHECK(contains(text, "taskhub_trigger_lateness_seconds_sum{trigger=\"every\"} 0\n"));
    CHECK_FALSE(contains(text, "trigger=\"manual\""));
}

TEST_CASE("only loaded workflows have series; a workflow removed by a reload loses them", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    auto& other = m.registry().counter("taskhub_deadline_misses", "from the deadline module", {"workflow"});
    m.setWorkflows({"a", "b"});
    other.inc({"b"});
    m.runStarted(run("b", RunState::Running, 0, 0));
    m.runEnded(run("b", RunState::Succeeded, 0, 1000), {});
    m.runStarted(run("never_loaded", RunState::Running, 0, 0));
    m.runEnded(run("never_loaded", RunState::Failed, 0, 5), {});
    CHECK(contains(m.render(), "taskhub_runs_started_total{workflow=\"b\"} 1\n"));
    CHECK_FALSE(contains(m.render(), "never_loaded"));

    m.setWorkflows({"a"});
    const std::string text = m.render();
    CHECK_FALSE(contains(text, "workflow=\"b\""));
    CHECK(contains(text, "taskhub_runs_started_total{workflow=\"a\"} 0\n"));
    CHECK(other.seriesCount() == 0);
}

TEST_CASE("live gauges, plugin health, store problem and build info are read at render", "[metrics]") {
    LiveState live;
    live.active_runs = 2;
    live.queued_runs = 1;
    live.running_tasks = 3;
    live.waiting_tasks = 4;
    live.plugins = {{"noop", "healthy", true}, {"shell", "unhealthy", false}};
    live.store_write_problem = true;
    live.workflows_loaded = 7;
    live.workflow_errors = 1;
    auto mp = make(live);
    auto& m = *mp;
    const std::string text = m.render();
    CHECK(contains(text, "taskhub_runs_active 2\n"));
    CHECK(contains(text, "taskhub_runs_queued 1\n"));
    CHECK(contains(text, "taskhub_tasks_running 3\n"));
    CHECK(contains(text, "taskhub_tasks_waiting 4\n"));
    CHECK(contains(text, "taskhub_plugin_healthy{plugin=\"noop\"} 1\n"));
    CHECK(contains(text, "taskhub_plugin_healthy{plugin=\"shell\"} 0\n"));
    CHECK(contains(text, "taskhub_plugin_state{plugin=\"shell\",state=\"unhealthy\"} 1\n"));
    CHECK(contains(text, "taskhub_plugin_state{plugin=\"shell\",state=\"healthy\"} 0\n"));
    CHECK(contains(text, "taskhub_store_write_problem 1\n"));
    CHECK(contains(text, "taskhub_workflows_loaded 7\n"));
    CHECK(contains(text, "taskhub_workflow_load_errors 1\n"));
    CHECK(contains(text, "taskhub_build_info{version=\"1.2.3\",abi=\"1.3\"} 1\n"));
    CHECK(contains(text, "taskhub_start_time_seconds 1765062000\n"));
}

TEST_CASE("render into a kept buffer gives the same text", "[metrics]") {
    auto mp = make();
    mp->setWorkflows({"w"});
    std::string buf = "old content";
    mp->render(&buf);
    CHECK(buf == mp->render());
}

TEST_CASE("another module's per-workflow counter follows the loaded workflows", "[metrics]") {
    auto mp = make();
    auto& m = *mp;
    m.setWorkflows({"a"});
    auto& misses = m.workflowCounter("taskhub_deadline_misses", "Deadlines missed");
    m.setWorkflows({"a", "b"});
    m.countWorkflow(misses, "b");
    m.countWorkflow(misses, "b");
    m.countWorkflow(misses, "unknown");
    std::string text = m.render();
    CHECK(contains(text, "# TYPE taskhub_deadline_misses counter\n"));
    CHECK(contains(text, "taskhub_deadline_misses_total{workflow=\"a\"} 0\n"));
    CHECK(contains(text, "taskhub_deadline_misses_total{workflow=\"b\"} 2\n"));
    CHECK_FALSE(contains(text, "unknown"));
    m.setWorkflows({"a"});
    CHECK_FALSE(contains(m.render(), "workflow=\"b\""));
}

TEST_CASE("attempts: CPU seconds per workflow and mode, OOM kills; unmeasured attempts add nothing", "[metrics][usage]") {
    auto mp = make();
    auto& m = *mp;
    m.setWorkflows({"w", "idle"});
    m.setPlugins({"shell"});
    const auto r = run("w", RunState::Running, 0, 0);
    auto measured = attempt("shell", TaskState::Retrying, 1000, 1200);
    measured.usage = cgroup::Usage{cgroup::Usage::Source::Cgroup, 400'000, 120'000, 1 << 20, 2, 0, 0};
    m.attemptEnded(r, measured);
    auto second = attempt("shell", TaskState::Succeeded, 2000, 3000);
    second.usage = cgroup::Usage{cgroup::Usage::Source::Rusage, 100'000, 5'000, std::nullopt, std::nullopt,
                                 std::nullopt, std::nullopt};
    m.attemptEnded(r, second);
    m.attemptEnded(r, attempt("shell", TaskState::Failed, 0, 1)); // not measured
    // Another workflow's attempts count in its own series; an unloaded one's nowhere.
    auto other = attempt("shell", TaskState::Succeeded, 0, 1);
    other.usage = cgroup::Usage{cgroup::Usage::Source::Cgroup, 1'000'000, 0, std::nullopt, 9, 0, 0};
    m.attemptEnded(run("gone", RunState::Running, 0, 0), other);

    const std::string text = m.render();
    CHECK(contains(text, "# TYPE taskhub_task_cpu_seconds counter\n"));
    CHECK(contains(text, "taskhub_task_cpu_seconds_total{workflow=\"w\",mode=\"user\"} 0.5\n"));
    CHECK(contains(text, "taskhub_task_cpu_seconds_total{workflow=\"w\",mode=\"system\"} 0.125\n"));
    CHECK(contains(text, "taskhub_task_oom_kills_total{workflow=\"w\"} 2\n"));
    // Loaded workflows start at 0.
    CHECK(contains(text, "taskhub_task_cpu_seconds_total{workflow=\"idle\",mode=\"user\"} 0\n"));
    CHECK(contains(text, "taskhub_task_oom_kills_total{workflow=\"idle\"} 0\n"));
    CHECK_FALSE(contains(text, "gone"));
}

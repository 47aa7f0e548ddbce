// The daemon's Prometheus metrics (docs/operations.md, "Metrics"): what the engine reports
// through its observer seam (engine/observer.h) counted as it happens, plus a few gauges read
// from the live modules at render time. Nothing here reads history per scrape: a workflow's
// last success and failure times are read from history once, when the workflow is first
// loaded (setHistory), and then kept current by runEnded.
//
// Cardinality: the only label values are workflow names (only workflows loaded now: see
// setWorkflows; a workflow removed by a reload loses its series), plugin names (loaded plugins,
// plus "workflow" for workflow tasks), run states, trigger kinds, plugin health states and what
// other modules' collectors add, and the CPU modes user and system. Never run ids, params or
// messages.
//
// Other modules' numbers (notification outcomes, deadline misses) are rendered through
// registry(): they add counters of their own there, or a collector that writes whole families,
// without this module depending on them. Names reserved for them:
//   taskhub_notifications_total{event,target,result}   (notify; target = command|mail|webhook)
//   taskhub_deadline_misses_total{workflow}            (deadline)
//
// Threading: everything, render() included, on the event-loop thread.
#ifndef TASKHUB_METRICS_METRICS_H
#define TASKHUB_METRICS_METRICS_H

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "engine/observer.h"
#include "metrics/registry.h"

namespace taskhub::metrics {

// What the daemon is and since when (taskhub_build_info, taskhub_start_time_seconds).
struct DaemonInfo {
    std::string version; // TASKHUB_VERSION
    std::string abi;     // the plugin ABI, "major.minor"
    int64_t started_ms = 0;
};

// One loaded plugin's health, as `status` and `plugins` show it.
struct PluginHealthSample {
    std::string name;
    std::string state;         // healthy, degraded or unhealthy (plugin_host::toString)
    bool dispatchable = false; // receives work now (PluginHost::dispatchable)
};

// The live numbers read at each render, from the engine, the plugin host and the store.
struct LiveState {
    size_t active_runs = 0;
    size_t queued_runs = 0;
    size_t running_tasks = 0;
    size_t waiting_tasks = 0;
    std::vector<PluginHealthSample> plugins;
    bool store_write_problem = false; // Store::writeProblem() is set
    size_t workflows_loaded = 0;
    size_t workflow_errors = 0;       // workflow files that failed to load
};

// The plugin health states taskhub_plugin_state has a series for, per plugin.
inline constexpr const char* kPluginStates[] = {"healthy", "degraded", "unhealthy"};

// When a workflow's latest succeeded and failed runs ended (epoch ms), from history.
struct LastEnded {
    std::optional<int64_t> succeeded_ms;
    std::optional<int64_t> failed_ms;
};

class Metrics final : public engine::EngineObserver {
public:
    explicit Metrics(DaemonInfo info);

    // Where render() reads the live numbers (called at each render; until set, all are 0).
    void setLiveSource(std::function<LiveState()> live) { live_ = std::move(live); }
    // Where a newly loaded workflow's last success and failure times come from (the store);
    // called once per workflow as setWorkflows() first sees it. Set before the first setWorkflows().
    void setHistory(std::function<LastEnded(const std::string& workflow)> history) { history_ = std::move(history); }

    // The workflows loaded now (start-up and after every reload or file change): series of
    // workflows not in the set are dropped, in every family of the registry (other modules'
    // too), and events of runs of other workflows are not counted. New workflows get their
    // counters at 0, so that rate() and increase() see their first run, and their last success
    // and failure times from history (setHistory).
    void setWorkflows(const std::set<std::string>& names);
    // The loaded plugins (fixed after start): the plugin label of task attempt durations takes
    // these values and "workflow"; attempts of other plugin names are not observed.
    void setPlugins(const std::set<std::string>& names);

    // Where other modules add their families (see the header comment for reserved names).
    // A family of theirs with a "workflow" label loses the series of removed workflows too.
    Registry& registry() { return registry_; }
    // A counter family with the one label "workflow" for another module (e.g. the deadline
    // module's taskhub_deadline_misses), kept like this module's own: a series at 0 for every
    // loaded workflow, none for others. Count into it with countWorkflow().
    ScalarFamily& workflowCounter(std::string name, std::string help);
    // Adds `by` to the workflow's series of a workflowCounter() family, if the workflow is loaded.
    void countWorkflow(ScalarFamily& family, const std::string& workflow, double by = 1);
    bool workflowLoaded(const std::string& workflow) const { return workflows_.count(workflow) > 0; }

    // The whole OpenMetrics exposition, ending in "# EOF\n".
    std::string render() const;
    // The same into *out (cleared first): a caller that renders periodically keeps one buffer
    // and its capacity instead of a fresh allocation (and its page faults) per render.
    void render(std::string* out) const;

    // engine::EngineObserver
    void runCreated(const store::RunRecord& run) override;
    void runStarted(const store::RunRecord& run) override;
    void runEnded(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) override;
    void attemptEnded(const store::RunRecord& run, const store::TaskRecord& task) override;
    void attemptLost(const store::RunRecord& run, const store::TaskRecord& task) override;
    void failureAbsorbed(const store::RunRecord& run, const store::TaskRecord& task) override;

    // Bucket bounds (seconds), for the docs and tests.
    static const std::vector<double>& runDurationBounds();
    static const std::vector<double>& taskDurationBounds();
    static const std::vector<double>& triggerLatenessBounds();

private:
    bool loaded(const std::string& workflow) const { return workflowLoaded(workflow); }
    void moveForward(ScalarFamily& f, const std::string& workflow, int64_t ms);
    void renderLive(Writer& w) const;

    DaemonInfo info_;
    std::function<LiveState()> live_;
    std::function<LastEnded(const std::string&)> history_;
    std::set<std::string> workflows_;
    std::set<std::string> plugins_;
    Registry registry_;
    ScalarFamily& runs_started_;
    ScalarFamily& runs_finished_;
    ScalarFamily& last_success_;
    ScalarFamily& last_failure_;
    HistogramFamily& run_duration_;
    HistogramFamily& task_duration_;
    ScalarFamily& task_retries_;
    ScalarFamily& attempts_lost_;
    ScalarFamily& failures_absorbed_; // {workflow}
    ScalarFamily& task_cpu_;       // {workflow, mode = user | system}
    ScalarFamily& task_oom_kills_; // {workflow}
    HistogramFamily& trigger_lateness_;
    std::vector<ScalarFamily*> workflow_counters_; // workflowCounter()'s
};

} // namespace taskhub::metrics

#endif // TASKHUB_METRICS_METRICS_H

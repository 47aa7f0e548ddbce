// control::Services implemented over the engine, store, scheduler and workflow snapshot.
#ifndef TASKHUB_APP_DAEMON_SERVICES_H
#define TASKHUB_APP_DAEMON_SERVICES_H

#include <functional>
#include <map>
#include <memory>

#include "config/daemon_config.h"
#include "config/workflow.h"
#include "control/services.h"

namespace taskhub::engine {
class Engine;
}
namespace taskhub::store {
class Store;
}
namespace taskhub::triggers {
class Scheduler;
}
namespace taskhub::plugin_host {
class PluginHost;
class Plugin;
}
namespace taskhub::pool {
class WorkerPool;
}

namespace taskhub::app {

struct Modules {
    const config::DaemonConfig* config = nullptr;
    store::Store* store = nullptr;
    pool::WorkerPool* pool = nullptr;
    plugin_host::PluginHost* plugins = nullptr;
    engine::Engine* engine = nullptr;
    triggers::Scheduler* scheduler = nullptr;
};

class DaemonServices final : public control::Services {
public:
    explicit DaemonServices(Modules m);

    // Loads (or re-loads) the workflows directory and hands the result to the scheduler. A file
    // that fails to load keeps its last good version, if any.
    control::ReloadOutcome loadWorkflows();
    const std::map<std::string, std::shared_ptr<const config::Workflow>>& workflowMap() const {
        return workflows_;
    }
    void setShuttingDown() { shutting_down_ = true; }

    control::StatusInfo status() override;
    std::vector<control::WorkflowInfo> workflows() override;
    std::vector<control::WorkflowProblem> workflowProblems() override;
    std::optional<control::WorkflowInfo> workflow(const std::string& name) override;
    std::vector<control::PluginStatus> plugins() override;
    std::vector<control::RefusedPluginInfo> refusedPlugins() override;
    std::optional<control::PluginStatus> plugin(const std::string& name, int history) override;
    control::TriggerOutcome trigger(const std::string& workflow, const store::NameValues& params,
                                    const control::Caller& caller) override;
    control::ChangeOutcome cancel(const std::string& run_id, const std::string& task_id,
                                  const control::Caller& caller) override;
    control::ChangeOutcome pause(const std::string& run_id, bool freeze, const control::Caller& caller) override;
    control::ChangeOutcome resume(const std::string& run_id, const control::Caller& caller) override;
    control::ChangeOutcome pauseWorkflow(const std::string& workflow, const control::Caller& caller) override;
    control::ChangeOutcome resumeWorkflow(const std::string& workflow, const control::Caller& caller) override;
    control::ChangeOutcome retry(const std::string& run_id, const std::string& task_id, bool downstream,
                                 const control::Caller& caller) override;
    bool whenRunEnds(const std::string& run_id, std::function<void()> fn) override;
    std::vector<store::RunRecord> runs(const std::optional<std::string>& workflow,
                                       const std::optional<std::string>& state, size_t limit,
                                       bool top_level_only) override;
    std::optional<store::RunRecord> run(const std::string& id) override;
    std::vector<store::RunRecord> children(const std::string& run_id) override;
    std::map<std::string, std::string> waitingReasons(const std::string& run_id) override;
    std::vector<store::EventRecord> events(const std::string& run_id) override;
    control::LogChunk taskLog(const std::string& run_id, const std::string& task_id, int attempt,
                              size_t max_bytes) override;
    control::ReloadOutcome reload(const control::Caller& caller) override;
    control::UpcomingOutcome upcoming(const std::string& workflow, size_t n) override;
    uint64_t writeMark() override;
    void whenDurable(uint64_t since, std::function<void(bool ok)> fn) override;

private:
    control::WorkflowInfo info(const config::Workflow& wf, bool detail);
    // "no workflow named 'x'", with the closest loaded name or the load error of its file.
    std::string unknownWorkflow(const std::string& name) const;
    // not_found when run_id (or, when given, its task task_id) does not exist; ok otherwise.
    control::ChangeOutcome checkTarget(const std::string& run_id, const std::string& task_id);

    control::PluginStatus pluginStatus(const plugin_host::Plugin& p) const;
    Modules m_;
    int64_t started_ms_;
    bool shutting_down_ = false;
    std::map<std::string, std::shared_ptr<const config::Workflow>> workflows_;
    std::vector<control::WorkflowProblem> problems_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_DAEMON_SERVICES_H

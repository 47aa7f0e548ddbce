// control::Services implemented over the engine, store, scheduler and workflow snapshot.
#ifndef TASKHUB_APP_DAEMON_SERVICES_H
#define TASKHUB_APP_DAEMON_SERVICES_H

#include <functional>
#include <map>
#include <memory>

#include "config/daemon_config.h"
#include "config/workflow.h"
#include "config/workflow_directory.h"
#include "control/services.h"

namespace taskhub::engine {
class Engine;
}
namespace taskhub::store {
class Store;
}
namespace taskhub::triggers {
class Scheduler;
class FileWatch;
class DeadlineWatch;
}
namespace taskhub::plugin_host {
class PluginHost;
class Plugin;
}
namespace taskhub::pool {
class WorkerPool;
}
namespace taskhub::metrics {
class Metrics;
}
namespace taskhub::metrics_export {
class TextfileWriter;
class HttpListener;
}
namespace taskhub::notify {
class Notifier;
}
namespace taskhub::cgroup {
class Manager;
}

namespace taskhub::app {

class WorkflowLoader;

struct Modules {
    const config::DaemonConfig* config = nullptr;
    store::Store* store = nullptr;
    pool::WorkerPool* pool = nullptr;
    plugin_host::PluginHost* plugins = nullptr;
    engine::Engine* engine = nullptr;
    triggers::Scheduler* scheduler = nullptr;
    triggers::FileWatch* file_watch = nullptr; // file-drop triggers
    metrics::Metrics* metrics = nullptr;       // told the loaded workflows; renders `metrics`
    triggers::DeadlineWatch* deadlines = nullptr; // workflow deadlines
    notify::Notifier* notifier = nullptr;      // notifications; may be null (no status, no test)
    // [metrics] textfile and listen; null when not configured (status shows their health).
    const metrics_export::TextfileWriter* metrics_textfile = nullptr;
    const metrics_export::HttpListener* metrics_listener = nullptr;
    // Containment (cgroup/cgroup.h): the Manager, null in process-group mode; and what it offers
    // (from Manager::support(), or cgroups = false with why_not saying why not).
    cgroup::Manager* cgroups = nullptr;
    cgroup::Support containment;
};

// Reads a file the daemon trusts (the config file, workflow files): opened first, then it and every
// directory above it checked on descriptors (common/trust.h), the content read from that descriptor.
// A file larger than limits.max_file_size is refused before it is read.
config::FileReader trustedReader(config::WorkflowLimits limits = {});
// Why a directory the daemon trusts (workflows_dir) is refused, if it is (common/trust.h).
std::optional<std::string> trustedDirectoryProblem(const std::filesystem::path& dir);

// How workflow files are loaded: the configured time zone, the trust rule of common/trust.h
// for workflows_dir and each file (root or the daemon's user may write them, nobody else), and
// what containment offers (limits it cannot apply refuse the workflow).
config::WorkflowDefaults workflowDefaults(const config::DaemonConfig& cfg, const cgroup::Support& containment);

// What containment would offer, found without changing anything (taskhubd --check): the
// machine's probe() under the configured containment.
cgroup::Support probedContainment(const config::DaemonConfig& cfg);

class DaemonServices final : public control::Services {
public:
    explicit DaemonServices(Modules m);

    // Loads (or re-loads) the workflows directory and hands the result to the scheduler and the
    // file watch. A file
    // that fails to load keeps its last good version, if any.
    control::ReloadOutcome loadWorkflows();
    // Once set (after start-up's loadWorkflows()), reloads and changes are read and checked on
    // the loader's thread and applied on the loop when ready (see app/workflow_loader.h).
    void setWorkflowLoader(WorkflowLoader* loader) { loader_ = loader; }
    // loadWorkflows() through the loader when there is one; done (may be empty) gets the
    // outcome, on the loop, once the result is applied.
    void reloadWorkflows(std::function<void(const control::ReloadOutcome&)> done);
    // While held, loaded workflows are not handed to the scheduler and the file watch (so that
    // nothing fires); releasing hands over the latest set. Start-up holds them until recovery
    // has reconciled the runs a crash left behind.
    void holdTriggers();
    void releaseTriggers();
    // Applies changes to the named files of the workflows directory (from the directory watch):
    // only those files and the workflows that run them are checked again. Logs each change.
    void applyWorkflowChanges(const std::vector<std::string>& file_names);
    const std::map<std::string, std::shared_ptr<const config::Workflow>>& workflowMap() const {
        return directory_.running();
    }
    void setShuttingDown() { shutting_down_ = true; }
    // The [metrics] textfile writer and listener (null when off), for status().
    void setMetricsExport(const metrics_export::TextfileWriter* textfile, const metrics_export::HttpListener* listener) {
        m_.metrics_textfile = textfile;
        m_.metrics_listener = listener;
    }

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
    std::vector<store::RunRecord> runs(const control::RunQuery& query) override;
    std::optional<store::RunRecord> run(const std::string& id) override;
    std::optional<store::DeadlineMissRecord> deadlineMiss(const std::string& run_id) override;
    int64_t deadlineSeconds(const std::string& workflow) override;
    std::vector<store::RunRecord> children(const std::string& run_id) override;
    std::map<std::string, std::string> waitingReasons(const std::string& run_id) override;
    std::vector<store::EventRecord> events(const std::string& run_id) override;
    control::LogChunk taskLog(const std::string& run_id, const std::string& task_id, int attempt,
                              size_t max_bytes, std::optional<uint64_t> offset) override;
    void reload(const control::Caller& caller, std::function<void(const control::ReloadOutcome&)> done) override;
    control::UpcomingOutcome upcoming(const std::string& workflow, size_t n) override;
    control::BackfillOutcome backfill(const control::BackfillRequest& req,
                                      const control::Caller& caller) override; // app/backfill.cc
    std::vector<store::NotificationRecord> notifications(const std::string& run_id) override;
    bool notifyTest(const std::string& workflow, std::function<void(std::vector<control::NotifyTestResult>)> done,
                    std::string* code, std::string* err) override;
    uint64_t writeMark() override;
    void whenDurable(uint64_t since, std::function<void(bool ok)> fn) override;
    std::string metrics() override;

private:
    control::WorkflowInfo info(const config::Workflow& wf, bool detail);
    // "no workflow named 'x'", with the closest loaded name or the load error of its file.
    std::string unknownWorkflow(const std::string& name) const;
    // not_found when run_id (or, when given, its task task_id) does not exist; ok otherwise.
    control::ChangeOutcome checkTarget(const std::string& run_id, const std::string& task_id);

    control::PluginStatus pluginStatus(const plugin_host::Plugin& p) const;
    // Logs what changed, refreshes the problems shown and hands the running set on when it
    // changed, or always after a full reload (which replaces every definition: the system zone
    // may have changed).
    void settle(const std::vector<config::WorkflowDirectory::Change>& changes, bool full);
    // settle() after a full reload, with its log lines and outcome.
    control::ReloadOutcome settleReload(const std::vector<config::WorkflowDirectory::Change>& changes);
    // Hands the running set to the triggers: the one place they learn of a change.
    void applyWorkflowSet();
    const std::map<std::string, std::shared_ptr<const config::Workflow>>& running() const {
        return directory_.running();
    }

    Modules m_;
    int64_t started_ms_;
    bool shutting_down_ = false;
    bool triggers_held_ = false;
    bool apply_pending_ = false; // a set arrived while held
    config::WorkflowDirectory directory_;
    WorkflowLoader* loader_ = nullptr;
    std::vector<control::WorkflowProblem> problems_;
    // Workflows whose file was removed: name -> "its file F was removed at T", for the errors of
    // commands that name them (run, pause, next, ...).
    std::map<std::string, std::string> retired_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_DAEMON_SERVICES_H

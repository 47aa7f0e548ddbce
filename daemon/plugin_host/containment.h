// The host's containment of a plugin's attempts in cgroups (docs/architecture.md, "Containment"):
// ContainedPlugin wraps every plugin that declares TH_CAP_CGROUP when the daemon runs with a
// cgroup::Manager. Each attempt gets a cgroup of its own before the plugin is called, which the
// plugin starts the attempt's processes in (th_task.cgroup_fd); the host, not the plugin,
// freezes it (pause --freeze), kills what is left in it after the plugin completed, measures it
// and removes it. The engine sees an ordinary Plugin whose attempts end only once their cgroup is
// empty (unless the task says leftovers = "keep").
//
// Threading: event-loop thread only, like the Manager. The wrapped plugin's done callbacks run
// there too (Plugin's contract).
//
// Lifetime: the Manager must outlive the ContainedPlugin.
#ifndef TASKHUB_PLUGIN_HOST_CONTAINMENT_H
#define TASKHUB_PLUGIN_HOST_CONTAINMENT_H

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "cgroup/cgroup.h"
#include "plugin_host/plugin_host.h"

namespace taskhub::plugin_host {

class ContainedPlugin final : public Plugin {
public:
    struct Options {
        cgroup::Manager* manager = nullptr; // required
        // The plugin runs in a taskhub-runner (isolation = "process"): its attempts' cgroups go
        // below the runner's (Manager::createAttempt's runner_plugin).
        bool isolated = false;
        // The backstop: when a cancelled attempt's plugin has not completed this long after
        // cancel(), the host writes cgroup.kill itself. Longer than the plugin's own grace
        // (the shell plugin's kill_grace, 5 s unless configured).
        std::chrono::milliseconds kill_after{15'000};
        // How long a freeze may take before CONTAINMENT_FREEZE_SLOW is logged.
        std::chrono::milliseconds freeze_timeout{5'000};
        // How long an attempt may wait for its killed cgroup to empty before
        // CONTAINMENT_NOT_EMPTY is logged (it goes on waiting).
        std::chrono::milliseconds empty_warning{10'000};
    };

    ContainedPlugin(boost::asio::io_context& io, std::unique_ptr<Plugin> inner, Options options);
    ~ContainedPlugin() override;
    ContainedPlugin(const ContainedPlugin&) = delete;
    ContainedPlugin& operator=(const ContainedPlugin&) = delete;

    const PluginInfo& info() const override { return inner_->info(); }
    std::optional<config::PluginCatalog::Problem> validate(const std::string& params) const override {
        return inner_->validate(params);
    }
    // Creates the attempt's cgroup and starts the plugin in it. When the cgroup cannot be
    // created the attempt fails ("not started: ..."), never runs uncontained.
    uint64_t start(const AttemptSpec& spec, Done done) override;
    // The plugin's cancel (the shell plugin signals the whole cgroup), after thawing a frozen
    // attempt so that it can act on SIGTERM; cgroup.kill after kill_after when the plugin has not
    // completed by then. After the plugin completed, whatever is left is killed whatever the
    // task's leftovers say.
    void cancel(uint64_t token) override;
    // Always true: freezing is the host's (cgroup.freeze), not the plugin's.
    bool canSuspend() const override { return true; }
    bool canHold() const override { return inner_->canHold(); }
    void hold(uint64_t token) override;
    void release(uint64_t token) override;
    void suspend(uint64_t token) override;
    void resume(uint64_t token) override;
    // Attempts not yet handed back to the engine (including those waiting for their cgroup to
    // empty).
    size_t running() const override { return attempts_.size(); }
    void checkHealth(std::chrono::milliseconds timeout, HealthDone done) override {
        inner_->checkHealth(timeout, std::move(done));
    }
    void setLivenessListener(LivenessListener l) override { inner_->setLivenessListener(std::move(l)); }
    std::vector<ThreadInPlugin> threadsInside() const override { return inner_->threadsInside(); }
    // A held plugin is kept to the end of the process; so is this wrapper around it (its attempts'
    // cgroups stay for Manager::shutdown() and the next start's recovery).
    bool abandonIfHeld() override { return inner_->abandonIfHeld(); }

    // The wrapped plugin (for its own diagnostics, e.g. a runner's pid).
    Plugin& inner() { return *inner_; }
    // Cgroups of ended attempts whose leftovers were kept and still hold processes; each is
    // removed when it empties.
    size_t kept() const { return kept_.size(); }

private:
    struct Attempt;
    void onPluginDone(uint64_t token, AttemptResult r);
    void finish(uint64_t token);
    void backstop(uint64_t token);
    Attempt* find(uint64_t token);
    void forget(std::unique_ptr<cgroup::AttemptCgroup> cg);

    boost::asio::io_context& io_;
    std::unique_ptr<Plugin> inner_;
    Options opts_;
    uint64_t next_token_ = 0;
    std::map<uint64_t, std::unique_ptr<Attempt>> attempts_;
    uint64_t next_kept_ = 0;
    std::map<uint64_t, std::unique_ptr<cgroup::AttemptCgroup>> kept_;
    // Callbacks posted or registered by this object check it is still alive.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

} // namespace taskhub::plugin_host

#endif // TASKHUB_PLUGIN_HOST_CONTAINMENT_H

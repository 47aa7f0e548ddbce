// Engine, the facade: its public methods forward to the core (engine_state.h), whose rooms are
// run_lifecycle.cc, ready_queues.cc, dispatch.cc, controls.cc and recovery.cc.
#include "engine/engine.h"

#include <spdlog/spdlog.h>

#include "common/time_util.h"
#include "engine/engine_state.h"
#include "store/store.h"

namespace taskhub::engine {

static_assert(config::kMaxTasksPerWorkflow == static_cast<size_t>(store::Store::kMaxTasksPerRun),
              "the loader must refuse workflows the store cannot key");

Engine::Engine(asio::io_context& io, store::Store& store, plugin_host::PluginHost& plugins,
               EngineOptions options)
    : own_plugins_(std::make_unique<PluginHostPort>(plugins)),
      own_clock_(std::make_unique<AsioClock>(io)),
      core_(std::make_unique<Core>(io, store, *own_plugins_, *own_clock_, std::move(options))) {}

Engine::Engine(asio::io_context& io, store::Store& store, PluginPort& plugins, EngineClock& clock,
               EngineOptions options)
    : core_(std::make_unique<Core>(io, store, plugins, clock, std::move(options))) {}

Engine::~Engine() = default;

void Engine::setWorkflowLookup(WorkflowLookup lookup) { core_->lookup_workflow = std::move(lookup); }

RecoveryReport Engine::recover(bool same_boot) { return core_->recover(same_boot); }

TriggerResult Engine::trigger(const TriggerRequest& req) { return core_->trigger(req); }

bool Engine::cancel(const std::string& run_id, const std::string& task_id, const std::string& actor,
                    std::string* err) {
    return core_->cancel(run_id, task_id, actor, err);
}

bool Engine::pause(const std::string& run_id, bool freeze, const std::string& actor, std::string* err) {
    return core_->pause(run_id, freeze, actor, err);
}

bool Engine::resume(const std::string& run_id, const std::string& actor, std::string* err) {
    return core_->resume(run_id, actor, err);
}

bool Engine::retry(const std::string& run_id, const std::string& task_id, bool downstream,
                   const std::string& actor, std::string* err) {
    return core_->retry(run_id, task_id, downstream, actor, err);
}

void Engine::pluginHealthChanged(const std::string& plugin) { core_->pluginHealthChanged(plugin); }

std::map<std::string, std::string> Engine::waitingReasons(const std::string& run_id) const {
    return core_->waitingReasons(run_id);
}

bool Engine::whenEnded(const std::string& run_id, std::function<void(const store::RunRecord&)> fn) {
    auto it = core_->runs.find(run_id);
    if (it != core_->runs.end()) {
        it->second->waiters.push_back(std::move(fn));
        return true;
    }
    auto rec = core_->store.run(run_id, true);
    if (!rec) return false;
    fn(*rec);
    return true;
}

void Engine::shutdown(std::chrono::milliseconds grace, std::function<void()> done) {
    auto& im = *core_;
    im.stopping = true;
    // Queued runs never start once shutdown begins.
    std::vector<std::string> queued_ids;
    for (auto& [wf, q] : im.queued) queued_ids.insert(queued_ids.end(), q.begin(), q.end());
    for (const auto& id : queued_ids) {
        if (auto* run = im.findRun(id)) im.cancelRun(*run, "cancelled: taskhubd is shutting down");
    }
    // Runs whose only active attempts run elsewhere and can be re-attached after the restart (a
    // Slurm job) are left running: cancelling them would throw away hours of a cluster's work.
    size_t detached = 0;
    for (auto& [id, r] : im.runs) {
        bool any = false;
        if (r->parent_id.empty() && im.detachable(*r, &any) && any) {
            im.detach(*r);
            ++detached;
        }
    }
    // A backfill's waiting runs stay queued in the store: the next start continues the backfill.
    for (auto& [wf, waiting] : im.backfill_queued) {
        for (auto& [at, id] : waiting) {
            if (auto* run = im.findRun(id); run && im.backfillWaiting(*run)) run->detached = true;
        }
    }
    if (im.drained()) {
        if (detached > 0) spdlog::info("ENGINE_DETACHED {} run(s) left to their remote attempts", detached);
        done();
        return;
    }
    im.on_drained = std::move(done);
    size_t active = 0;
    for (auto& [id, r] : im.runs) active += r->detached ? 0 : 1;
    spdlog::info("ENGINE_DRAINING waiting up to {} for {} active run(s){}", formatDuration(grace), active,
                 detached > 0 ? "; " + std::to_string(detached) + " run(s) left to their remote attempts" : "");
    im.grace_timer = im.clock.after(grace, [&im] {
        std::vector<std::string> ids;
        for (auto& [id, r] : im.runs) {
            if (r->parent_id.empty() && !r->detached) ids.push_back(id); // children go with their parents
        }
        for (const auto& id : ids) {
            if (auto* run = im.findRun(id); run && !run->ending)
                im.cancelRun(*run, "cancelled: taskhubd shut down before the run finished");
        }
    });
}

void Engine::addObserver(EngineObserver* observer) { core_->observers.push_back(observer); }

void Engine::removeObserver(EngineObserver* observer) { std::erase(core_->observers, observer); }

EngineStats Engine::stats() const {
    EngineStats s;
    for (const auto& [id, r] : core_->runs) {
        if (r->rec.state == model::RunState::Queued) ++s.queued_runs;
        else ++s.active_runs;
    }
    s.running_tasks = core_->queues.running();
    s.waiting_tasks = core_->ready_tasks;
    s.runs_started = core_->runs_started;
    return s;
}

} // namespace taskhub::engine

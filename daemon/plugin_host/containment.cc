#include "plugin_host/containment.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "common/time_util.h"

namespace taskhub::plugin_host {

namespace asio = boost::asio;

struct ContainedPlugin::Attempt {
    cgroup::AttemptKey key;
    std::unique_ptr<cgroup::AttemptCgroup> cg;
    cgroup::Limits limits;
    cgroup::Leftovers leftovers = cgroup::Leftovers::Kill;
    std::function<void(std::function<void()>)> after_start_durable; // AttemptSpec's
    Done done;
    uint64_t inner = 0;     // the wrapped plugin's token
    bool stopping = false;  // cancel() was called: nothing of the attempt may stay
    bool frozen = false;    // cgroup.freeze is 1
    bool completed = false; // the plugin completed; the host is emptying the cgroup
    AttemptResult result;   // the plugin's, once completed
    std::unique_ptr<asio::steady_timer> backstop; // cgroup.kill after kill_after
    std::unique_ptr<asio::steady_timer> slow;     // CONTAINMENT_NOT_EMPTY

    std::string name() const {
        return "run " + key.run_id + " task " + key.task_id + " attempt " + std::to_string(key.attempt);
    }
};

ContainedPlugin::ContainedPlugin(asio::io_context& io, std::unique_ptr<Plugin> inner, Options options)
    : io_(io), inner_(std::move(inner)), opts_(options) {}

ContainedPlugin::~ContainedPlugin() {
    // Nothing may call back into this object once it is gone. The cgroups themselves stay:
    // Manager::shutdown() removes the empty ones, and recovery at the next start finds the rest.
    *alive_ = false;
    for (auto& [token, a] : attempts_) opts_.manager->cancelWaits(*a->cg);
    for (auto& [id, cg] : kept_) opts_.manager->cancelWaits(*cg);
}

ContainedPlugin::Attempt* ContainedPlugin::find(uint64_t token) {
    auto it = attempts_.find(token);
    return it == attempts_.end() ? nullptr : it->second.get();
}

uint64_t ContainedPlugin::start(const AttemptSpec& spec, Done done) {
    const uint64_t token = ++next_token_;
    auto a = std::make_unique<Attempt>();
    a->key = {spec.run_id, spec.task_id, spec.attempt};
    std::string err;
    a->cg = opts_.manager->createAttempt(a->key, spec.limits, opts_.isolated ? info().name : std::string(), &err);
    if (!a->cg) {
        spdlog::error("CONTAINMENT_CREATE_FAILED plugin {} {}: {}; the attempt fails rather than run uncontained",
                      info().name, a->name(), err);
        asio::post(io_, [done = std::move(done), err] {
            done(AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                               "not started: the attempt's cgroup could not be created: " + err, {}});
        });
        return token;
    }
    a->limits = spec.limits;
    a->leftovers = spec.leftovers;
    a->after_start_durable = spec.after_start_durable;
    a->done = std::move(done);
    AttemptSpec contained = spec;
    contained.cgroup_fd = a->cg->fd();
    // Relative to the mount, without a leading '/' (a runner refuses anything that is not below
    // its --cgroup-mount).
    contained.cgroup_path = a->cg->relativePath();
    contained.cgroup_path.erase(0, contained.cgroup_path.find_first_not_of('/'));
    Attempt& ref = *a;
    attempts_.emplace(token, std::move(a));
    std::weak_ptr<bool> alive = alive_;
    ref.inner = inner_->start(contained, [this, alive, token](AttemptResult r) {
        if (alive.expired()) return;
        onPluginDone(token, std::move(r));
    });
    return token;
}

void ContainedPlugin::cancel(uint64_t token) {
    Attempt* a = find(token);
    if (!a || a->completed) return; // after completion the host kills what is left anyway
    a->stopping = true;
    if (a->frozen) resume(token); // a frozen process cannot act on SIGTERM
    inner_->cancel(a->inner);
    if (a->backstop) return;
    a->backstop = std::make_unique<asio::steady_timer>(io_, opts_.kill_after);
    std::weak_ptr<bool> alive = alive_;
    a->backstop->async_wait([this, alive, token](const boost::system::error_code& ec) {
        if (ec || alive.expired()) return;
        backstop(token);
    });
}

void ContainedPlugin::backstop(uint64_t token) {
    Attempt* a = find(token);
    if (!a || a->completed) return;
    spdlog::warn("CONTAINMENT_BACKSTOP plugin {} has not ended {} {} after it was cancelled; killing its "
                 "cgroup {} ({} process(es))",
                 info().name, a->name(), formatDuration(opts_.kill_after), a->cg->path().string(),
                 a->cg->pids().size());
    if (std::string err; !a->cg->kill(&err)) {
        spdlog::error("CONTAINMENT_KILL_FAILED {} of plugin {}: {}", a->name(), info().name, err);
    }
}

void ContainedPlugin::hold(uint64_t token) {
    if (Attempt* a = find(token); a && !a->completed) inner_->hold(a->inner);
}

void ContainedPlugin::release(uint64_t token) {
    if (Attempt* a = find(token); a && !a->completed) inner_->release(a->inner);
}

void ContainedPlugin::suspend(uint64_t token) {
    Attempt* a = find(token);
    if (!a || a->completed || a->frozen) return;
    if (std::string err; !a->cg->freeze(true, &err)) {
        spdlog::warn("CONTAINMENT_FREEZE_FAILED cannot freeze {} of plugin {}: {}; it keeps running", a->name(),
                     info().name, err);
        return;
    }
    a->frozen = true;
    std::weak_ptr<bool> alive = alive_;
    opts_.manager->whenFrozen(*a->cg, opts_.freeze_timeout, [this, alive, token](bool frozen) {
        if (frozen || alive.expired()) return;
        Attempt* at = find(token);
        if (!at || !at->frozen) return;
        spdlog::warn("CONTAINMENT_FREEZE_SLOW {} of plugin {} is not frozen {} after cgroup.freeze was written "
                     "(cgroup.events frozen 0: a process in uninterruptible sleep?); the kernel completes the "
                     "freeze when it can",
                     at->name(), info().name, formatDuration(opts_.freeze_timeout));
    });
}

void ContainedPlugin::resume(uint64_t token) {
    Attempt* a = find(token);
    if (!a || !a->frozen) return;
    if (std::string err; !a->cg->freeze(false, &err)) {
        spdlog::error("CONTAINMENT_FREEZE_FAILED cannot thaw {} of plugin {}: {}", a->name(), info().name, err);
        return;
    }
    a->frozen = false;
}

// The plugin completed: its main process has exited. What is left in the cgroup is killed (the
// attempt was being stopped, or leftovers = "kill") and waited for, or kept.
void ContainedPlugin::onPluginDone(uint64_t token, AttemptResult r) {
    Attempt* a = find(token);
    if (!a) return;
    a->completed = true;
    a->backstop.reset();
    a->result = std::move(r);
    // A lost attempt (its runner died) leaves nothing behind either.
    if (a->result.transient) a->stopping = true;
    if (a->frozen) resume(token);
    // One read of cgroup.events in the usual case (nothing left); the processes are listed only
    // when there are some.
    if (!a->cg->populated()) {
        finish(token);
        return;
    }
    const size_t found = a->cg->pids().size();
    const bool kill = a->stopping || a->leftovers == cgroup::Leftovers::Kill;
    a->result.leftovers = cgroup::LeftoverReport{static_cast<int>(found), kill ? cgroup::Leftovers::Kill
                                                                            : cgroup::Leftovers::Keep};
    spdlog::info("CONTAINMENT_LEFTOVERS {} of plugin {}: {} process(es) left in its cgroup after its main process "
                 "exited; {}",
                 a->name(), info().name, found,
                 kill ? (a->stopping ? "killed (the attempt was stopped)" : "killed (leftovers = \"kill\")")
                      : "kept (leftovers = \"keep\"); the cgroup is removed when they have exited");
    if (!kill) {
        finish(token);
        return;
    }
    if (std::string err; !a->cg->kill(&err)) {
        spdlog::error("CONTAINMENT_KILL_FAILED {} of plugin {}: {}", a->name(), info().name, err);
    }
    std::weak_ptr<bool> alive = alive_;
    a->slow = std::make_unique<asio::steady_timer>(io_, opts_.empty_warning);
    a->slow->async_wait([this, alive, token](const boost::system::error_code& ec) {
        if (ec || alive.expired()) return;
        if (Attempt* at = find(token)) {
            spdlog::warn("CONTAINMENT_NOT_EMPTY {} of plugin {}: its cgroup {} still holds {} process(es) {} after "
                         "cgroup.kill; the attempt ends when it is empty",
                         at->name(), info().name, at->cg->path().string(), at->cg->pids().size(),
                         formatDuration(opts_.empty_warning));
        }
    });
    opts_.manager->whenEmpty(*a->cg, [this, alive, token] {
        if (alive.expired()) return;
        // Not inside the Manager's callback: finish() destroys the cgroup object it waited on.
        asio::post(io_, [this, alive, token] {
            if (!alive.expired()) finish(token);
        });
    });
}

// Measures the attempt, removes its cgroup (unless its leftovers are kept) and hands the result
// to the engine.
void ContainedPlugin::finish(uint64_t token) {
    auto it = attempts_.find(token);
    if (it == attempts_.end()) return;
    std::unique_ptr<Attempt> a = std::move(it->second);
    attempts_.erase(it);
    opts_.manager->cancelWaits(*a->cg);
    AttemptResult r = std::move(a->result);
    r.usage = a->cg->usage(); // the cgroup's account replaces the plugin's rusage
    if (r.outcome != AttemptResult::Outcome::Succeeded) {
        if (auto m = cgroup::memoryLimitMessage(a->limits, r.usage->oom_kills.value_or(0))) r.message = *m;
    }
    if (r.leftovers && r.leftovers->action == cgroup::Leftovers::Keep) {
        forget(std::move(a->cg));
    } else if (a->after_start_durable) {
        // The empty cgroup stays until the attempt's start is on disk: until then it is the only
        // trace a restart after a crash would find of an attempt that ran.
        std::shared_ptr<cgroup::AttemptCgroup> cg = std::move(a->cg);
        a->after_start_durable([cg, what = a->name(), plugin = info().name] {
            if (std::string err; !cg->remove(&err))
                spdlog::warn("CONTAINMENT_REMOVE_FAILED {} of plugin {}: {}", what, plugin, err);
        });
    } else if (std::string err; !a->cg->remove(&err)) {
        spdlog::warn("CONTAINMENT_REMOVE_FAILED {} of plugin {}: {}", a->name(), info().name, err);
    }
    a->done(std::move(r));
}

// A kept cgroup is removed once its last process has exited.
void ContainedPlugin::forget(std::unique_ptr<cgroup::AttemptCgroup> cg) {
    const uint64_t id = ++next_kept_;
    cgroup::AttemptCgroup& ref = *cg;
    kept_.emplace(id, std::move(cg));
    std::weak_ptr<bool> alive = alive_;
    opts_.manager->whenEmpty(ref, [this, alive, id] {
        if (alive.expired()) return;
        asio::post(io_, [this, alive, id] {
            if (alive.expired()) return;
            auto it = kept_.find(id);
            if (it == kept_.end()) return;
            opts_.manager->cancelWaits(*it->second);
            if (std::string err; !it->second->remove(&err)) {
                spdlog::warn("CONTAINMENT_REMOVE_FAILED kept cgroup {}: {}", it->second->path().string(), err);
            }
            kept_.erase(it);
        });
    });
}

} // namespace taskhub::plugin_host

// Health checks of loaded plugins: one timer per plugin on the event loop, a state machine per
// plugin (docs/operations.md, "Plugin health"), and the listener that records transitions.
//
// The rules, for a plugin with unhealthy_after = U and healthy_after = H:
//   - a check passes when it answers healthy or degraded, and fails when it answers unhealthy,
//     returns an error, throws, times out or cannot run;
//   - healthy/degraded: U consecutive failures make it unhealthy; a passing check sets the state
//     it answered (healthy <-> degraded at once); failures below U change nothing but the
//     message;
//   - unhealthy: H consecutive passes make it healthy or degraded (as the last check answered);
//   - a liveness report "down" (a process plugin's runner died) makes it unhealthy at once; "up"
//     (restarted) runs a check at once, and H passes are still needed; until then the message
//     still says why it is unhealthy, followed by the news ("runner pid 12 did not answer a
//     health check within 2s; killed it (SIGKILL); restarting in 1s; runner pid 13 started
//     (restart 1)"), so that tasks failed or held meanwhile name the fault;
//   - while unhealthy, checks come every min(health_interval, 5s), so recovery is noticed soon.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/time_util.h"
#include "plugin_host/plugin_host.h"

namespace taskhub::plugin_host {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {
constexpr size_t kRecentTransitions = 64;
constexpr std::chrono::milliseconds kUnhealthyInterval = 5s;
} // namespace

class PluginHost::Monitor {
public:
    Monitor(asio::io_context& io, HealthListener& listener) : io_(io), listener_(listener) {}

    ~Monitor() { stop(); }

    void add(Plugin& plugin, const config::HealthSettings& settings) {
        auto e = std::make_unique<Entry>(io_);
        e->plugin = &plugin;
        e->health.settings = settings;
        e->health.since_ms = nowMillis();
        e->health.message = "not checked yet";
        Entry* raw = e.get();
        entries_.emplace(plugin.info().name, std::move(e));
        plugin.setLivenessListener([this, raw, alive = alive_](bool up, const std::string& message) {
            if (*alive) onLiveness(*raw, up, message);
        });
        schedule(*raw, 0ms);
    }

    void stop() {
        *alive_ = false;
        for (auto& [name, e] : entries_) e->timer.cancel();
        entries_.clear();
    }

    const PluginHealth* find(const std::string& name) const {
        auto it = entries_.find(name);
        return it == entries_.end() ? nullptr : &it->second->health;
    }

private:
    struct Entry {
        explicit Entry(asio::io_context& io) : timer(io) {}
        Plugin* plugin = nullptr;
        PluginHealth health;
        asio::steady_timer timer;
        bool checking = false;
        uint64_t generation = 0; // bumped by liveness reports: answers of older checks are stale
        std::string down_reason; // the last "down" report's message, until the next "up"
    };

    void schedule(Entry& e, std::chrono::milliseconds delay) {
        e.timer.expires_after(delay);
        e.timer.async_wait([this, &e, alive = alive_](const boost::system::error_code& ec) {
            if (ec || !*alive) return;
            runCheck(e);
        });
    }

    std::chrono::milliseconds nextDelay(const Entry& e) const {
        const auto interval = e.health.settings.interval;
        return e.health.state == HealthState::Unhealthy ? std::min(interval, kUnhealthyInterval) : interval;
    }

    void runCheck(Entry& e) {
        if (e.checking) return; // the running one schedules the next
        e.checking = true;
        const uint64_t generation = e.generation;
        e.plugin->checkHealth(e.health.settings.timeout, [this, &e, generation, alive = alive_](HealthReport r) {
            if (!*alive) return;
            e.checking = false;
            if (generation == e.generation) apply(e, std::move(r));
            schedule(e, nextDelay(e));
        });
    }

    void apply(Entry& e, HealthReport r) {
        auto& h = e.health;
        h.last_check_ms = nowMillis();
        ++h.checks;
        const bool pass = r.state != HealthState::Unhealthy;
        if (pass) {
            ++h.passes;
            h.failures = 0;
        } else {
            ++h.failures;
            h.passes = 0;
        }
        // A failing check is a warning when something changed; a plugin that stays unhealthy does
        // not fill the journal with one line per check.
        const bool news = h.message != r.message || (!pass && h.failures == 1);
        if (!pass || news) {
            spdlog::log(!pass && news ? spdlog::level::warn : spdlog::level::debug,
                        "PLUGIN_HEALTH_CHECK plugin {}: {}{} (failures in a row: {})", e.plugin->info().name,
                        toString(r.state), r.message.empty() ? "" : ": " + r.message, h.failures);
        }
        HealthState target = h.state;
        if (h.state == HealthState::Unhealthy) {
            if (pass && h.passes >= h.settings.healthy_after) target = r.state;
        } else if (!pass) {
            if (h.failures >= h.settings.unhealthy_after) target = HealthState::Unhealthy;
        } else {
            target = r.state;
        }
        if (h.state == HealthState::Unhealthy && pass && target == HealthState::Unhealthy) {
            // Still unhealthy: the message keeps saying why (e.g. how the runner died), with the
            // progress of the recovery, not a passing check's "ok".
            const auto cut = h.message.find(" (recovering: ");
            h.message = h.message.substr(0, cut) + " (recovering: " + std::to_string(h.passes) + " of " +
                        std::to_string(h.settings.healthy_after) + " passed checks)";
        } else {
            h.message = r.message;
        }
        if (target != h.state) transition(e, target, describe(e, target, r.message));
    }

    std::string describe(const Entry& e, HealthState target, const std::string& message) const {
        const auto& h = e.health;
        std::string why;
        if (target == HealthState::Unhealthy) {
            why = std::to_string(h.failures) + " failed health check(s) in a row";
        } else if (h.state == HealthState::Unhealthy) {
            why = std::to_string(h.passes) + " passed health check(s) in a row";
        } else {
            why = "health check answered " + std::string(toString(target));
        }
        return message.empty() ? why : why + ": " + message;
    }

    void onLiveness(Entry& e, bool up, const std::string& message) {
        ++e.generation; // an answer from before this report says nothing about what is running now
        auto& h = e.health;
        if (up && h.state == HealthState::Unhealthy && !e.down_reason.empty()) {
            // The restart is news, not the reason: the reason (how the runner went down; checks
            // meanwhile could only say it was not running) stays until checks pass.
            h.message = e.down_reason + "; " + message;
        } else {
            h.message = message;
        }
        e.down_reason = up ? std::string() : message;
        if (!up) {
            h.failures = std::max(h.failures + 1, h.settings.unhealthy_after);
            h.passes = 0;
            if (h.state != HealthState::Unhealthy) transition(e, HealthState::Unhealthy, message);
            e.timer.cancel();
            schedule(e, nextDelay(e));
            return;
        }
        spdlog::info("PLUGIN_HEALTH plugin {}: {}; checking it now", e.plugin->info().name, h.message);
        e.timer.cancel();
        schedule(e, 0ms);
    }

    void transition(Entry& e, HealthState to, const std::string& message) {
        auto& h = e.health;
        HealthTransition t{nowMillis(), h.state, to, message};
        h.state = to;
        h.since_ms = t.at_ms;
        h.recent.push_back(t);
        if (h.recent.size() > kRecentTransitions) h.recent.pop_front();
        spdlog::log(to == HealthState::Unhealthy ? spdlog::level::err : spdlog::level::info,
                    "PLUGIN_HEALTH plugin {}: {} -> {}: {}", e.plugin->info().name, toString(t.from),
                    toString(t.to), message);
        if (listener_) listener_(e.plugin->info().name, t);
    }

    asio::io_context& io_;
    HealthListener& listener_;
    std::map<std::string, std::unique_ptr<Entry>> entries_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

void PluginHost::setHealthListener(HealthListener listener) { health_listener_ = std::move(listener); }

void PluginHost::startHealthChecks(const std::map<std::string, config::PluginSettings>& settings) {
    if (!io_) return;
    monitor_ = std::make_unique<Monitor>(*io_, health_listener_);
    for (auto& [name, plugin] : plugins_) {
        auto s = settings.find(name);
        monitor_->add(*plugin, s != settings.end() ? s->second.health : config::HealthSettings{});
    }
}

void PluginHost::stopHealthChecks() {
    if (monitor_) monitor_->stop();
}

const PluginHealth* PluginHost::health(const std::string& plugin) const {
    return monitor_ ? monitor_->find(plugin) : nullptr;
}

bool PluginHost::dispatchable(const std::string& plugin) const {
    const PluginHealth* h = health(plugin);
    return !h || h->state != HealthState::Unhealthy;
}

// Here, where Monitor is complete.
PluginHost::PluginHost(asio::io_context* io, pool::WorkerPool* pool) : io_(io), pool_(pool) {}

PluginHost::~PluginHost() {
    monitor_.reset(); // before the plugins it checks
    for (auto& [name, p] : plugins_) {
        // Kept, never destroyed: code still runs in it (see Plugin::abandonIfHeld()).
        if (p->abandonIfHeld()) (void)p.release();
    }
}

} // namespace taskhub::plugin_host

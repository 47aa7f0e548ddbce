// The health monitor's state machine against the health fixtures (tests/fixtures/fx_health.c),
// in process, on a real event loop: thresholds, degraded, recovery, timeouts, hung checks.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "plugin_host/plugin_host.h"
#include "test_support.h"

using namespace taskhub::plugin_host;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) { return std::string(FIXTURE_DIR) + "/" + name + ".so"; }

struct Harness {
    boost::asio::io_context io;
    PluginHost host{&io, nullptr};
    std::vector<std::pair<std::string, HealthTransition>> transitions;
    std::map<std::string, taskhub::config::PluginSettings> settings;

    Harness() {
        host.setHealthListener([this](const std::string& plugin, const HealthTransition& t) {
            transitions.emplace_back(plugin, t);
        });
    }

    void load(const std::string& name, taskhub::config::HealthSettings h, const std::string& config_json = "{}") {
        auto& s = settings[name];
        s.health = h;
        s.plugin_config_json = config_json;
        REQUIRE_FALSE(host.loadFile(fixture(name), settings));
    }

    const PluginHealth& health(const std::string& name) {
        const auto* h = host.health(name);
        REQUIRE(h);
        return *h;
    }

    // Runs the loop until pred() holds; fails after 10 s.
    void runUntil(const std::function<bool()>& pred) {
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!pred()) {
            REQUIRE(std::chrono::steady_clock::now() < deadline);
            io.run_one_for(5ms);
        }
    }
};

taskhub::config::HealthSettings fast(int unhealthy_after = 2, int healthy_after = 2) {
    taskhub::config::HealthSettings h;
    h.interval = 10ms;
    h.timeout = 1s;
    h.unhealthy_after = unhealthy_after;
    h.healthy_after = healthy_after;
    return h;
}

void writeFile(const fs::path& p, const std::string& text) {
    const fs::path tmp = p.string() + ".tmp";
    std::ofstream(tmp) << text;
    fs::rename(tmp, p);
}

} // namespace

TEST_CASE("unhealthy_after failures in a row make a plugin unhealthy; healthy_after passes bring it back",
          "[health]") {
    taskhub::testing::TempDir dir;
    const auto file = dir.path / "health";
    Harness h;
    h.load("fx_health_switch", fast(3, 2), "{\"health_file\": \"" + file.string() + "\"}");
    h.host.startHealthChecks(h.settings);

    h.runUntil([&] { return h.health("fx_health_switch").checks >= 1; });
    CHECK(h.health("fx_health_switch").state == HealthState::Healthy);
    CHECK(h.health("fx_health_switch").message == "fixture: ok");

    writeFile(file, "unhealthy queue full\n");
    // Below the threshold only the counters and the message change.
    h.runUntil([&] { return h.health("fx_health_switch").failures == 2; });
    CHECK(h.health("fx_health_switch").state == HealthState::Healthy);
    CHECK(h.health("fx_health_switch").message == "queue full");
    CHECK(h.host.dispatchable("fx_health_switch"));
    CHECK(h.transitions.empty());

    h.runUntil([&] { return h.health("fx_health_switch").state == HealthState::Unhealthy; });
    CHECK(h.health("fx_health_switch").failures == 3);
    CHECK_FALSE(h.host.dispatchable("fx_health_switch"));
    REQUIRE(h.transitions.size() == 1);
    CHECK(h.transitions[0].first == "fx_health_switch");
    CHECK(h.transitions[0].second.from == HealthState::Healthy);
    CHECK(h.transitions[0].second.to == HealthState::Unhealthy);
    CHECK(h.transitions[0].second.message == "3 failed health check(s) in a row: queue full");

    // Degraded passes: recovery still takes healthy_after of them, and ends degraded.
    writeFile(file, "degraded half the disks\n");
    h.runUntil([&] { return h.health("fx_health_switch").passes == 1; });
    CHECK(h.health("fx_health_switch").state == HealthState::Unhealthy);
    // Until it has recovered, the message still says why it is unhealthy.
    CHECK(h.health("fx_health_switch").message == "queue full (recovering: 1 of 2 passed checks)");
    h.runUntil([&] { return h.health("fx_health_switch").state != HealthState::Unhealthy; });
    CHECK(h.health("fx_health_switch").state == HealthState::Degraded);
    CHECK(h.host.dispatchable("fx_health_switch"));
    REQUIRE(h.transitions.size() == 2);
    CHECK(h.transitions[1].second.message == "2 passed health check(s) in a row: half the disks");

    // Healthy <-> degraded follows each answer at once.
    writeFile(file, "ok\n");
    h.runUntil([&] { return h.health("fx_health_switch").state == HealthState::Healthy; });
    REQUIRE(h.transitions.size() == 3);
    CHECK(h.transitions[2].second.from == HealthState::Degraded);
    CHECK(h.transitions[2].second.message == "health check answered healthy: fixture: ok");
    CHECK(h.health("fx_health_switch").recent.size() == 3);
    CHECK(h.health("fx_health_switch").since_ms == h.transitions[2].second.at_ms);
}

TEST_CASE("a flapping plugin below the threshold never becomes unhealthy", "[health]") {
    Harness h;
    h.load("fx_health_flaps", fast(2, 2));
    h.host.startHealthChecks(h.settings);
    h.runUntil([&] { return h.health("fx_health_flaps").checks >= 10; });
    CHECK(h.health("fx_health_flaps").state == HealthState::Healthy);
    CHECK(h.transitions.empty());
}

TEST_CASE("a check that hangs times out, counts as failed, and blocks nothing", "[health]") {
    Harness h;
    auto s = fast(2, 2);
    s.timeout = 50ms;
    h.load("fx_health_hangs", s);
    h.load("fx_health_fails", fast(1, 1));
    h.host.startHealthChecks(h.settings);
    h.runUntil([&] { return h.health("fx_health_hangs").state == HealthState::Unhealthy; });
    // The first check timed out; the next found it still running and did not start another.
    CHECK(h.transitions.size() >= 1);
    bool saw_hung = false;
    for (const auto& [name, t] : h.transitions) {
        if (name == "fx_health_hangs") {
            CHECK(t.message.find("2 failed health check(s) in a row: the health check started") == 0);
            CHECK(t.message.find("has not returned") != std::string::npos);
            saw_hung = true;
        }
    }
    CHECK(saw_hung);
    // Meanwhile the other plugin was checked as usual.
    h.runUntil([&] { return h.health("fx_health_fails").checks >= 3; });
    CHECK(h.health("fx_health_fails").state == HealthState::Unhealthy);
    CHECK(h.health("fx_health_fails").message == "fixture: disk /data is full");
    // The host is destroyed at the end of the test with the check still blocked: it must not wait.
}

TEST_CASE("a plugin without a health check is healthy and says why", "[health]") {
    Harness h;
    h.load("fx_good", fast());
    h.host.startHealthChecks(h.settings);
    h.runUntil([&] { return h.health("fx_good").checks >= 2; });
    CHECK(h.health("fx_good").state == HealthState::Healthy);
    CHECK(h.health("fx_good").message == "no health check (TH_CAP_HEALTH_CHECK not declared)");
    CHECK(h.host.health("nope") == nullptr);
    CHECK(h.host.dispatchable("nope"));
}

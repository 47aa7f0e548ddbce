// What each attempt cost (AttemptResult::usage) and left behind (AttemptResult::leftovers): the
// task's record carries the latest attempt's (also for the observers' attemptEnded), a "usage"
// event keeps each attempt's, and a "leftovers" event says how many processes were found and what
// was done with them.
#include <catch2/catch.hpp>

#include "engine/observer.h"
#include "sim_harness.h"

using namespace taskhub;
namespace sim = taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

namespace {

plugin_host::AttemptResult result(O outcome, cgroup::Usage usage, std::optional<cgroup::LeftoverReport> leftovers) {
    plugin_host::AttemptResult r;
    r.outcome = outcome;
    r.message = outcome == O::Succeeded ? "" : "exit code 1";
    if (outcome != O::Succeeded) r.exit_code = 1;
    r.usage = usage;
    r.leftovers = leftovers;
    return r;
}

struct SeenAttempts : engine::EngineObserver {
    std::vector<std::optional<cgroup::Usage>> usage;
    void attemptEnded(const store::RunRecord&, const store::TaskRecord& task) override { usage.push_back(task.usage); }
};

std::vector<std::string> eventsOf(const std::vector<store::EventRecord>& events, const std::string& kind) {
    std::vector<std::string> out;
    for (const auto& e : events) {
        if (e.kind == kind) out.push_back(e.detail);
    }
    return out;
}

} // namespace

TEST_CASE("usage: the latest attempt's on the task, each attempt's in a usage event, leftovers said",
          "[engine][usage]") {
    sim::SimHarness h;
    SeenAttempts seen;
    h.engine().addObserver(&seen);
    h.add("u", sim::fakeTask("a", "retries = 1\nretry_delay = \"1s\"\nleftovers = \"keep\""));
    h.load();
    auto id = h.trigger("u");
    h.settle();

    cgroup::Usage first{cgroup::Usage::Source::Cgroup, 400'000, 120'000, 12u << 20, 0, 4096, 0};
    h.plugin().finishWith("a", result(O::Failed, first, cgroup::LeftoverReport{2, cgroup::Leftovers::Keep}));
    h.settle();
    CHECK(sim::simTask(h.record(id), "a").usage == first);
    h.advance(std::chrono::seconds(1));

    cgroup::Usage second{cgroup::Usage::Source::Rusage, 10, 20, 2048, std::nullopt, std::nullopt, std::nullopt};
    h.plugin().finishWith("a", result(O::Succeeded, second, cgroup::LeftoverReport{1, cgroup::Leftovers::Kill}));
    h.settle();

    auto run = h.record(id);
    CHECK(run.state == model::RunState::Succeeded);
    const auto& task = sim::simTask(run, "a");
    REQUIRE(task.usage);
    CHECK(*task.usage == second);
    REQUIRE(task.leftovers);
    CHECK(task.leftovers->found == 1);
    CHECK(task.leftovers->action == cgroup::Leftovers::Kill);

    const auto events = h.events(id);
    const auto usage = eventsOf(events, "usage");
    REQUIRE(usage.size() == 2);
    auto one = store::parseUsageDetail(usage[0]);
    auto two = store::parseUsageDetail(usage[1]);
    REQUIRE(one);
    REQUIRE(two);
    CHECK(one->first == 1);
    CHECK(one->second == first);
    CHECK(two->first == 2);
    CHECK(two->second == second);
    CHECK(eventsOf(events, "leftovers") ==
          std::vector<std::string>{"2 processes left after the main process exited: kept (leftovers = keep)",
                                   "1 process left after the main process exited: killed"});

    // The observers see the attempt's usage with its end.
    REQUIRE(seen.usage.size() == 2);
    CHECK(seen.usage[0] == first);
    CHECK(seen.usage[1] == second);
    h.engine().removeObserver(&seen);
}

TEST_CASE("usage: an attempt nothing measured records none, and no leftovers event for zero found",
          "[engine][usage]") {
    sim::SimHarness h;
    h.add("n", sim::fakeTask("a"));
    h.load();
    auto id = h.trigger("n");
    h.settle();
    plugin_host::AttemptResult r;
    r.outcome = O::Succeeded;
    r.leftovers = cgroup::LeftoverReport{0, cgroup::Leftovers::Kill};
    h.plugin().finishWith("a", std::move(r));
    h.settle();
    auto run = h.record(id);
    CHECK_FALSE(sim::simTask(run, "a").usage);
    const auto events = h.events(id);
    CHECK(eventsOf(events, "usage").empty());
    CHECK(eventsOf(events, "leftovers").empty());
}

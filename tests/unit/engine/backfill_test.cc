// A backfill's runs in the engine (Engine::trigger with backfill_max_active): recorded queued,
// never skipped by the overlap policy, started oldest scheduled instant first only when the
// workflow admits a run, never counted by the overlap policy of later firings while they wait,
// and back in their queue after a restart. Fake plugin, simulated time.
#include <catch2/catch.hpp>

#include <map>
#include <string>

#include "common/time_util.h"
#include "engine/engine.h"
#include "sim_harness.h"

using namespace taskhub;
namespace sim = taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

namespace {

// policy: more lines of [policy].
std::string flow(const std::string& overlap, const std::string& policy = "") {
    return "[policy]\noverlap = \"" + overlap + "\"\n" + policy + "\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n";
}

std::chrono::sys_seconds instant(const char* iso) {
    std::string err;
    auto t = parseIsoInstant(iso, &err);
    REQUIRE(t);
    return *t;
}

// A firing of the workflow's cron trigger at iso: on time, or (max_active > 0) a backfill's.
engine::TriggerResult fire(sim::SimHarness& h, const std::string& wf, const char* iso, int max_active = 0) {
    auto r = h.engine().trigger({.workflow = h.workflow(wf),
                                 .source = model::TriggerSource::Cron,
                                 .scheduled = instant(iso),
                                 .actor = max_active ? "uid 0 (root)" : "",
                                 .note = max_active ? "backfill" : "",
                                 .backfill_max_active = max_active});
    INFO(r.error);
    REQUIRE(r.ok);
    h.settle();
    return r;
}

std::map<std::string, std::string> states(sim::SimHarness& h, std::initializer_list<std::string> ids) {
    std::map<std::string, std::string> out;
    for (const auto& id : ids) out[id] = model::name(h.record(id).state);
    return out;
}

} // namespace

TEST_CASE("backfill: overlap = skip runs backfill runs one at a time, oldest first, and skips firings meanwhile",
          "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("skip"));
    h.load();
    // Created newest first: they still start oldest first.
    auto b3 = fire(h, "w", "2026-03-03T01:30:00Z", 1).run_id;
    auto b1 = fire(h, "w", "2026-03-01T01:30:00Z", 1).run_id;
    auto b2 = fire(h, "w", "2026-03-02T01:30:00Z", 1).run_id;
    CHECK(b1 == "w@20260301T013000Z");
    CHECK(states(h, {b1, b2, b3}) ==
          std::map<std::string, std::string>{{b3, "running"}, {b1, "queued"}, {b2, "queued"}});
    // A firing while a backfill run runs: skipped, as with any running run.
    auto on_time = h.engine().trigger(
        {.workflow = h.workflow("w"), .source = model::TriggerSource::Cron, .scheduled = instant("2026-12-01T01:30:00Z")});
    REQUIRE(on_time.ok);
    CHECK(on_time.state == model::RunState::Skipped);
    CHECK(h.finishRunning() == 1);
    CHECK(states(h, {b1, b2, b3}) ==
          std::map<std::string, std::string>{{b3, "succeeded"}, {b1, "running"}, {b2, "queued"}});
    // A recorded instant is a duplicate for a backfill too.
    auto again = h.engine().trigger({.workflow = h.workflow("w"),
                                     .source = model::TriggerSource::Cron,
                                     .scheduled = instant("2026-03-03T01:30:00Z"),
                                     .backfill_max_active = 1});
    CHECK_FALSE(again.ok);
    CHECK(again.duplicate);
    CHECK(h.finishRunning() == 1);
    CHECK(h.finishRunning() == 1);
    CHECK(states(h, {b1, b2, b3}) ==
          std::map<std::string, std::string>{{b3, "succeeded"}, {b1, "succeeded"}, {b2, "succeeded"}});
    bool marked = false;
    for (const auto& e : h.events(b2)) marked |= e.kind == "backfill" && e.detail == "max_active=1";
    CHECK(marked);
}

TEST_CASE("backfill: waiting backfill runs do not count for a firing; replace cancels only the running one",
          "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("replace"));
    h.load();
    auto b1 = fire(h, "w", "2026-03-01T01:30:00Z", 1).run_id;
    auto b2 = fire(h, "w", "2026-03-02T01:30:00Z", 1).run_id;
    auto on_time = fire(h, "w", "2026-12-01T01:30:00Z").run_id;
    REQUIRE(h.plugin().attempts.front().cancelled); // b1's attempt was asked to stop
    h.plugin().finish("t", O::Cancelled, {}, b1);
    h.settle();
    CHECK(states(h, {b1, b2, on_time}) ==
          std::map<std::string, std::string>{{b1, "cancelled"}, {b2, "queued"}, {on_time, "running"}});
    // The next backfill run waits for the firing's run to end.
    CHECK(h.finishRunning() == 1);
    CHECK(states(h, {b2, on_time}) == std::map<std::string, std::string>{{b2, "running"}, {on_time, "succeeded"}});
    CHECK(h.finishRunning() == 1);
    CHECK(model::name(h.record(b2).state) == "succeeded");
}

TEST_CASE("backfill: a firing queued by queue_all starts before the next backfill run", "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("queue_all"));
    h.load();
    auto b1 = fire(h, "w", "2026-03-01T01:30:00Z", 1).run_id;
    auto b2 = fire(h, "w", "2026-03-02T01:30:00Z", 1).run_id;
    auto on_time = fire(h, "w", "2026-12-01T01:30:00Z").run_id;
    CHECK(states(h, {b1, b2, on_time}) ==
          std::map<std::string, std::string>{{b1, "running"}, {b2, "queued"}, {on_time, "queued"}});
    CHECK(h.finishRunning() == 1);
    CHECK(states(h, {b2, on_time}) == std::map<std::string, std::string>{{b2, "queued"}, {on_time, "running"}});
    CHECK(h.finishRunning() == 1);
    CHECK(model::name(h.record(b2).state) == "running");
}

TEST_CASE("backfill: overlap = allow runs at most max_active at once, and never beyond max_active_runs",
          "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("allow"));
    h.add("capped", flow("allow", "max_active_runs = 2\n"));
    h.load();
    std::vector<std::string> ids;
    for (const char* t : {"2026-03-01T01:30:00Z", "2026-03-02T01:30:00Z", "2026-03-03T01:30:00Z",
                          "2026-03-04T01:30:00Z"}) {
        ids.push_back(fire(h, "w", t, 3).run_id);
    }
    CHECK(h.engine().stats().active_runs == 3);
    CHECK(model::name(h.record(ids[3]).state) == "queued");
    // A firing starts alongside (allow); the backfill waits until fewer than 3 runs run.
    auto on_time = fire(h, "w", "2026-12-01T01:30:00Z").run_id;
    CHECK(model::name(h.record(on_time).state) == "running");
    h.plugin().finish("t", O::Succeeded, {}, ids[0]);
    h.settle();
    CHECK(model::name(h.record(ids[3]).state) == "queued");
    h.plugin().finish("t", O::Succeeded, {}, on_time);
    h.settle();
    CHECK(model::name(h.record(ids[3]).state) == "running");

    auto c1 = fire(h, "capped", "2026-03-01T01:30:00Z", 5).run_id;
    auto c2 = fire(h, "capped", "2026-03-02T01:30:00Z", 5).run_id;
    auto c3 = fire(h, "capped", "2026-03-03T01:30:00Z", 5).run_id;
    CHECK(states(h, {c1, c2, c3}) ==
          std::map<std::string, std::string>{{c1, "running"}, {c2, "running"}, {c3, "queued"}});
}

TEST_CASE("backfill: after a restart the waiting runs are a backfill's again, in order", "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("skip"));
    h.load();
    auto manual = h.trigger("w"); // runs: the backfill waits
    auto b2 = fire(h, "w", "2026-03-02T01:30:00Z", 1).run_id;
    auto b1 = fire(h, "w", "2026-03-01T01:30:00Z", 1).run_id;
    CHECK(states(h, {b1, b2}) == std::map<std::string, std::string>{{b1, "queued"}, {b2, "queued"}});
    h.restart();
    h.engine().recover(false);
    h.settle();
    // The manual run's attempt was lost (it fails); then the oldest backfill run starts.
    CHECK(model::name(h.record(manual).state) == "failed");
    CHECK(states(h, {b1, b2}) == std::map<std::string, std::string>{{b1, "running"}, {b2, "queued"}});
    CHECK(h.finishRunning() == 1);
    CHECK(model::name(h.record(b2).state) == "running");
    CHECK(h.finishRunning() == 1);
    CHECK(model::name(h.record(b2).state) == "succeeded");
}

TEST_CASE("backfill: only a time firing with its instant can be a backfill's run", "[engine][backfill]") {
    sim::SimHarness h;
    h.add("w", flow("skip"));
    h.load();
    auto r = h.engine().trigger(
        {.workflow = h.workflow("w"), .source = model::TriggerSource::Manual, .backfill_max_active = 1});
    CHECK_FALSE(r.ok);
    CHECK(r.error == "a backfill's run stands for a firing of a cron, every or at trigger, with its scheduled instant");
}

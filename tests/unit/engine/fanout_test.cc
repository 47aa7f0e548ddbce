// Fan-out (`foreach`) on fake plugins and simulated time: expansion and instance ids, limits,
// max_failures, trigger rules over instances, empty and unusable lists, retry of failed
// instances, and a restart in the middle of a fan-out.
#include <catch2/catch.hpp>

#include <algorithm>

#include "model_text.h"
#include "sim_harness.h"

using namespace taskhub;
namespace sim = taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

namespace {

std::vector<std::string> ids(const store::RunRecord& run) {
    std::vector<std::string> out;
    for (const auto& t : run.tasks) out.push_back(t.task_id);
    return out;
}

const std::string* outputOf(const store::TaskRecord& t, const std::string& name) {
    for (const auto& [k, v] : t.outputs) {
        if (k == name) return &v;
    }
    return nullptr;
}

// The most attempts that ran at once, from a run's events.
int peakRunning(const std::vector<store::EventRecord>& events) {
    int running = 0, peak = 0;
    for (const auto& e : events) {
        if (e.kind == "start") peak = std::max(peak, ++running);
        if (e.kind == "end" || e.kind == "cancelled") running -= e.task_id.find('[') != std::string::npos ? 1 : 0;
    }
    return peak;
}

} // namespace

TEST_CASE("fan-out: one instance per item, at most max_parallel at once; downstream waits for all",
          "[engine][fanout]") {
    sim::SimHarness h;
    h.add("fan", sim::fakeTask("convert", "foreach = [\"a\", \"b\", \"c\", \"d\", \"e\"]\nmax_parallel = 2") +
                     sim::fakeTask("report", "depends_on = [\"convert\"]"));
    h.load();
    auto id = h.trigger("fan");
    CHECK(h.plugin().started() == std::vector<std::string>{"convert[0].1", "convert[1].1"});
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(ids(run) == std::vector<std::string>{"convert", "report", "convert[0]", "convert[1]", "convert[2]",
                                               "convert[3]", "convert[4]"});
    const auto& fan = sim::simTask(run, "convert");
    CHECK(fan.state == model::TaskState::Succeeded);
    CHECK(fan.message == "5 of 5 instances succeeded");
    REQUIRE(outputOf(fan, "count"));
    CHECK(*outputOf(fan, "count") == "5");
    CHECK(fan.items == R"(["a","b","c","d","e"])");
    CHECK(peakRunning(h.events(id)) == 2);
    // report starts only after the last instance.
    auto order = h.startOrder(id);
    CHECK(order.back() == "report");
}

TEST_CASE("fan-out: max_failures lets a fan-out succeed with that many failed instances", "[engine][fanout]") {
    for (int failing : {1, 2}) {
        INFO("failing " << failing);
        sim::SimHarness h;
        h.add("fan", "[policy]\non_failure = \"continue\"\n" +
                         sim::fakeTask("t", "foreach = [1, 2, 3, 4]\nmax_failures = 1") +
                         sim::fakeTask("after", "depends_on = [\"t\"]"));
        h.load();
        auto id = h.trigger("fan");
        for (int i = 0; i < failing; ++i) {
            h.plugin().finish("t[" + std::to_string(i) + "]", O::Failed, "boom");
            h.settle();
        }
        while (h.finishRunning() > 0) {
        }
        auto run = h.record(id);
        const auto& fan = sim::simTask(run, "t");
        if (failing == 1) {
            CHECK(run.state == "succeeded");
            CHECK(fan.state == model::TaskState::Succeeded);
            CHECK(fan.message == "3 of 4 instances succeeded, 1 did not (within max_failures = 1; first: t[0] failed: boom)");
            CHECK(sim::simTask(run, "after").state == model::TaskState::Succeeded);
        } else {
            CHECK(run.state == "failed");
            CHECK(fan.state == model::TaskState::Failed);
            CHECK(fan.message == "2 of 4 instances did not succeed (max_failures = 1); first: t[0] failed: boom");
            CHECK(sim::simTask(run, "after").state == model::TaskState::Skipped);
            CHECK(run.message.find("task 't' failed") != std::string::npos);
        }
    }
}

TEST_CASE("fan-out: a percentage max_failures counts from the number of instances", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("fan", sim::fakeTask("t", "foreach = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nmax_failures = \"20%\""));
    h.load();
    auto id = h.trigger("fan");
    h.plugin().finish("t[3]", O::Failed, "x");
    h.plugin().finish("t[7]", O::Failed, "y");
    h.settle();
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(sim::simTask(run, "t").message.find("within max_failures = 20%, 2 of 10") != std::string::npos);
}

TEST_CASE("fan-out: downstream trigger rules count every instance", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("rules", "[policy]\non_failure = \"continue\"\n" + sim::fakeTask("t", "foreach = [1, 2, 3]") +
                       sim::fakeTask("any_ok", "depends_on = [\"t\"]\ntrigger_rule = \"one_success\"") +
                       sim::fakeTask("all_bad", "depends_on = [\"t\"]\ntrigger_rule = \"all_failed\"") +
                       sim::fakeTask("handler", "depends_on = [\"t\"]\ntrigger_rule = \"one_failed\"") +
                       sim::fakeTask("all_ok", "depends_on = [\"t\"]"));
    h.load();
    auto id = h.trigger("rules");
    h.plugin().finish("t[0]", O::Succeeded);
    h.plugin().finish("t[1]", O::Failed, "no");
    h.plugin().finish("t[2]", O::Failed, "no");
    h.settle();
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(sim::simTask(run, "t").state == model::TaskState::Failed);
    CHECK(sim::simTask(run, "any_ok").state == model::TaskState::Succeeded);  // one instance succeeded
    CHECK(sim::simTask(run, "all_bad").state == model::TaskState::Skipped);   // not all failed
    CHECK(sim::simTask(run, "handler").state == model::TaskState::Succeeded);
    CHECK(sim::simTask(run, "all_ok").state == model::TaskState::Skipped);
}

TEST_CASE("fan-out: an empty list succeeds with no instances, or is skipped with on_empty", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("empty", "[params]\nl = []\n" + sim::fakeTask("a", "foreach = \"${params.l}\"") +
                       sim::fakeTask("b", "foreach = \"${params.l}\"\non_empty = \"skip\"") +
                       sim::fakeTask("after_a", "depends_on = [\"a\"]") + sim::fakeTask("after_b", "depends_on = [\"b\"]"));
    h.load();
    auto id = h.trigger("empty");
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(sim::simTask(run, "a").state == model::TaskState::Succeeded);
    CHECK(sim::simTask(run, "a").message == "foreach: the list is empty, so there are no instances");
    CHECK(*outputOf(sim::simTask(run, "a"), "count") == "0");
    CHECK(sim::simTask(run, "b").state == model::TaskState::Skipped);
    CHECK(sim::simTask(run, "after_a").state == model::TaskState::Succeeded);
    CHECK(sim::simTask(run, "after_b").state == model::TaskState::Skipped);
    CHECK(run.tasks.size() == 4);
}

TEST_CASE("fan-out: foreach_key names the instances; a list param feeds it", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("keyed", "[params]\nregions = [\"eu\", \"us\"]\n" +
                       sim::fakeTask("deploy", "foreach = \"${params.regions}\"\nforeach_key = \"${item}\""));
    h.load();
    auto id = h.trigger("keyed");
    CHECK(h.plugin().started() == std::vector<std::string>{"deploy[eu].1", "deploy[us].1"});
    while (h.finishRunning() > 0) {
    }
    CHECK(h.record(id).state == "succeeded");
}

TEST_CASE("fan-out: unusable lists and keys fail the task with a precise message, and nothing else", "[engine][fanout]") {
    engine::EngineOptions options;
    options.max_foreach_items = 3;
    sim::SimHarness h(options);
    h.add("bad", "[policy]\non_failure = \"continue\"\n[params]\nl = \"not a list\"\nobj = '{\"a\": 1}'\n"
                 "four = [1, 2, 3, 4]\ndup = [\"x\", \"y\", \"x\"]\nodd = [\"a b\"]\n" +
                     sim::fakeTask("notjson", "foreach = \"${params.l}\"") +
                     sim::fakeTask("object", "foreach = \"${params.obj}\"") +
                     sim::fakeTask("big", "foreach = \"${params.four}\"") +
                     sim::fakeTask("dupkey", "foreach = \"${params.dup}\"\nforeach_key = \"${item}\"") +
                     sim::fakeTask("badkey", "foreach = \"${params.odd}\"\nforeach_key = \"${item}\"") +
                     sim::fakeTask("fine", ""));
    h.load();
    auto id = h.trigger("bad");
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "failed");
    CHECK(sim::simTask(run, "fine").state == model::TaskState::Succeeded);
    auto msg = [&](const char* t) { return sim::simTask(run, t).message; };
    CHECK(msg("notjson") == "foreach = \"${params.l}\" is not a list: \"not a list\" (10 bytes) is not "
                            "JSON; a fan-out needs a JSON array such as [\"a\", \"b\"]");
    CHECK(msg("object") == "foreach = \"${params.obj}\" is a JSON object, not a list (\"{\\x22a\\x22: "
                           "1}\"); a fan-out needs a JSON array such as [\"a\", \"b\"]");
    CHECK(msg("big") == "foreach = \"${params.four}\" has 4 items; a fan-out may have at most 3 "
                        "(taskhub.toml max_foreach_items)");
    CHECK(msg("dupkey") == "foreach_key \"${item}\" gives \"x\" for items 0 and 2; instance keys must be unique");
    CHECK(msg("badkey") == "foreach_key \"${item}\" gives \"a b\" for item 0, which cannot be part of an "
                           "instance id (use 1-64 letters, digits, '_', '-' or '.')");
}

TEST_CASE("fan-out: retry runs only the failed instances again", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("fan", sim::fakeTask("t", "foreach = [1, 2, 3]") + sim::fakeTask("after", "depends_on = [\"t\"]"));
    h.load();
    auto id = h.trigger("fan");
    h.plugin().finish("t[1]", O::Failed, "flaky");
    h.settle();
    while (h.finishRunning() > 0) {
    }
    REQUIRE(h.record(id).state == "failed");
    const size_t before = h.plugin().attempts.size();
    std::string err;
    INFO(err);
    REQUIRE(h.engine().retry(id, "t", false, "test", &err));
    h.settle();
    std::vector<std::string> again;
    for (size_t i = before; i < h.plugin().attempts.size(); ++i)
        again.push_back(h.plugin().attempts[i].task_id + "." + std::to_string(h.plugin().attempts[i].attempt));
    CHECK(again == std::vector<std::string>{"t[1].2"});
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(sim::simTask(run, "after").state == model::TaskState::Succeeded);
    // An instance is retried through its fan-out.
    CHECK_FALSE(h.engine().retry(id, "t[1]", false, "test", &err));
}

TEST_CASE("fan-out: cancel of one instance, and of the whole fan-out", "[engine][fanout]") {
    sim::SimHarness h;
    h.add("fan", "[policy]\non_failure = \"continue\"\n" +
                     sim::fakeTask("t", "foreach = [1, 2, 3, 4]\nmax_parallel = 1\nmax_failures = 1"));
    h.load();
    auto id = h.trigger("fan");
    std::string err;
    REQUIRE(h.engine().cancel(id, "t[2]", "test", &err)); // pending: cancelled at once
    h.settle();
    CHECK_FALSE(h.engine().cancel(id, "t[9]", "test", &err));
    CHECK(err.find("has no instance t[9] (it has 4: t[0] ... t[3])") != std::string::npos);
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(sim::simTask(run, "t[2]").state == model::TaskState::Cancelled);

    auto id2 = h.trigger("fan");
    REQUIRE(h.engine().cancel(id2, "t", "test", &err));
    h.settle();
    h.finishRunning(O::Cancelled);
    auto run2 = h.record(id2);
    CHECK(sim::simTask(run2, "t").state == model::TaskState::Cancelled);
    CHECK(sim::simTask(run2, "t").message == "4 of 4 instances were cancelled: cancelled by test");
    for (const char* i : {"t[0]", "t[1]", "t[2]", "t[3]"}) CHECK(sim::simTask(run2, i).state == model::TaskState::Cancelled);
}

TEST_CASE("fan-out: after a restart the fan-out continues with the recorded list and finished instances kept",
          "[engine][fanout][recovery]") {
    sim::SimHarness h;
    h.add("fan", sim::fakeTask("t", "foreach = [\"a\", \"b\", \"c\", \"d\"]\nmax_parallel = 2\nretries = 1") +
                     sim::fakeTask("after", "depends_on = [\"t\"]"));
    h.load();
    auto id = h.trigger("fan");
    h.plugin().finish("t[0]", O::Succeeded);
    h.settle();
    // t[1] and t[2] run now; the daemon dies.
    h.restart();
    auto report = h.engine().recover(true);
    h.settle();
    CHECK(report.lost == 2);
    // The lost instances run again (attempt 2), the untouched one for the first time.
    CHECK(h.plugin().started() == std::vector<std::string>{"t[1].2", "t[2].2"});
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(sim::simTask(run, "t[0]").attempt == 1);
    CHECK(sim::simTask(run, "t[3]").attempt == 1);
    CHECK(sim::simTask(run, "t").message == "4 of 4 instances succeeded");
    int expanded = 0;
    for (const auto& e : h.events(id)) expanded += e.kind == "expanded";
    CHECK(expanded == 1);
}

TEST_CASE("fan-out: gathering many instances' many output names stays within its budget", "[engine][fanout]") {
    sim::SimHarness h;
    std::string items = "[";
    for (int i = 0; i < 200; ++i) items += (i ? ", " : "") + std::to_string(i);
    h.add("wide", sim::fakeTask("t", "foreach = " + items + "]"));
    h.load();
    auto id = h.trigger("wide");
    for (int i = 0; i < 200; ++i) {
        plugin_host::AttemptResult r;
        r.outcome = O::Succeeded;
        r.outputs.emplace_back("common", std::to_string(i));
        // 2,000 names of its own: gathered, each would be an array of 200 (mostly nulls).
        for (int j = 0; j < 2000; ++j) r.outputs.emplace_back("n" + std::to_string(i) + "_" + std::to_string(j), "");
        h.plugin().finishWith("t[" + std::to_string(i) + "]", std::move(r));
        h.settle();
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    const auto& fan = sim::simTask(run, "t");
    CHECK(fan.message.find("were not gathered: together over 16 MiB") != std::string::npos);
    size_t bytes = 0;
    bool common = false;
    for (const auto& [k, v] : fan.json_outputs) {
        bytes += v.size();
        common = common || k == "common";
    }
    CHECK(common);
    CHECK(bytes <= (size_t{16} << 20));
    CHECK(fan.json_outputs.size() < 20'000);
}

TEST_CASE("fan-out: retry of the whole run reruns failed and cancelled instances, also of a fan-out that "
          "succeeded within max_failures", "[engine][fanout]") {
    sim::SimHarness h;
    std::string items = "[";
    for (int i = 0; i < 60; ++i) items += (i ? ", " : "") + std::to_string(i);
    h.add("many", sim::fakeTask("t", "foreach = " + items + "]\nmax_parallel = 20\nmax_failures = 3") +
                      sim::fakeTask("after", "depends_on = [\"t\"]"));
    h.add("tolerant", sim::fakeTask("t", "foreach = [1, 2, 3]\nmax_failures = 1"));
    h.load();
    auto id = h.trigger("many");
    for (int i = 0; i < 4; ++i) h.plugin().finish("t[" + std::to_string(i) + "]", O::Failed, "bad");
    h.settle();
    h.finishRunning(O::Cancelled);
    auto run = h.record(id);
    REQUIRE(run.state == "failed");
    const size_t before = h.plugin().attempts.size();
    std::string err;
    REQUIRE(h.engine().retry(id, "", false, "test", &err));
    h.settle();
    while (h.finishRunning() > 0) {
    }
    run = h.record(id);
    CHECK(run.state == "succeeded");
    // 4 failed and 56 cancelled instances (none of them had succeeded) ran again, then `after`.
    CHECK(h.plugin().attempts.size() - before == 61);

    auto id2 = h.trigger("tolerant");
    h.plugin().finish("t[1]", O::Failed, "flaky");
    h.settle();
    while (h.finishRunning() > 0) {
    }
    REQUIRE(h.record(id2).state == "succeeded");
    CHECK(h.record(id2).failures_absorbed == 0); // tolerated by max_failures, not absorbed
    const size_t before2 = h.plugin().attempts.size();
    REQUIRE(h.engine().retry(id2, "", false, "test", &err));
    h.settle();
    CHECK(h.plugin().attempts.size() - before2 == 1);
    CHECK(h.plugin().attempts.back().task_id == "t[1]");
    while (h.finishRunning() > 0) {
    }
    CHECK(sim::simTask(h.record(id2), "t[1]").state == model::TaskState::Succeeded);
}

// Failures a run absorbs (a task's on_failure = "continue") and workflow priorities across runs,
// on fake plugins and simulated time (sim_harness.h): no test here waits on the wall clock.
#include <catch2/catch.hpp>

#include <algorithm>

#include "model_text.h"
#include "sim_harness.h"

using namespace std::chrono_literals;
using namespace taskhub;
using namespace taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

namespace {

size_t countEvents(const std::vector<store::EventRecord>& events, const std::string& kind) {
    return static_cast<size_t>(
        std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.kind == kind; }));
}

// Ends the latest attempt of task (in run, when given) and does what follows.
void endTask(SimHarness& h, const std::string& task, O outcome, const std::string& message = {},
         const std::string& run = {}) {
    h.plugin().finish(task, outcome, message, run);
    h.settle();
}

// try (absorbed) -> handle (one_failed), after (all_success), then done (all_done).
const std::string kTryElseHandle =
    fakeTask("try", "on_failure = \"continue\"") +
    fakeTask("handle", "depends_on = [\"try\"]\ntrigger_rule = \"one_failed\"") +
    fakeTask("after", "depends_on = [\"try\"]") +
    fakeTask("done", "depends_on = [\"handle\", \"after\"]\ntrigger_rule = \"all_done\"");

} // namespace

TEST_CASE("absorb: try, else handle: the handler runs and the run succeeds with one failure absorbed",
          "[engine][sim][absorb]") {
    SimHarness h;
    h.add("tryit", kTryElseHandle);
    h.load();
    auto id = h.trigger("tryit");
    endTask(h, "try", O::Failed, "boom");
    auto mid = h.record(id);
    CHECK(mid.state == "running");
    CHECK(mid.failures_absorbed == 1); // saved as it happens, not only at the end
    CHECK(h.plugin().started() == std::vector<std::string>{"try.1", "handle.1"});
    endTask(h, "handle", O::Succeeded);
    endTask(h, "done", O::Succeeded);
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.message.empty());
    CHECK(run.failures_absorbed == 1);
    CHECK(simTask(run, "try").state == "failed");
    CHECK(simTask(run, "try").message == "boom");
    CHECK(simTask(run, "handle").state == "succeeded");
    CHECK(simTask(run, "after").state == "skipped");
    CHECK(simTask(run, "done").state == "succeeded");
    const auto events = h.events(id);
    REQUIRE(countEvents(events, "failure_absorbed") == 1);
    for (const auto& e : events) {
        if (e.kind == "failure_absorbed") {
            CHECK(e.task_id == "try");
            CHECK(e.detail == "on_failure = continue: the run goes on (boom)");
        }
    }
}

TEST_CASE("absorb: a task that succeeds absorbs nothing; the handler is skipped", "[engine][sim][absorb]") {
    SimHarness h;
    h.add("tryit", kTryElseHandle);
    h.load();
    auto id = h.trigger("tryit");
    endTask(h, "try", O::Succeeded);
    endTask(h, "after", O::Succeeded);
    endTask(h, "done", O::Succeeded);
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 0);
    CHECK(simTask(run, "handle").state == "skipped");
}

TEST_CASE("absorb: fail_fast is not triggered by an absorbed failure; another task's failure still fails "
          "the run", "[engine][sim][absorb]") {
    SimHarness h;
    h.add("mixed", fakeTask("soft", "on_failure = \"continue\"") + fakeTask("hard") + fakeTask("other"));
    h.load();

    auto ok = h.trigger("mixed");
    endTask(h, "soft", O::Failed, "soft broke", ok);
    CHECK_FALSE(h.plugin().latest("hard", ok)->cancelled); // no fail_fast stop
    CHECK_FALSE(h.plugin().latest("other", ok)->cancelled);
    h.plugin().finish("hard", O::Succeeded, {}, ok);
    endTask(h, "other", O::Succeeded, {}, ok);
    CHECK(h.record(ok).state == "succeeded");
    CHECK(h.record(ok).failures_absorbed == 1);

    auto bad = h.trigger("mixed");
    endTask(h, "soft", O::Failed, "soft broke", bad);
    endTask(h, "hard", O::Failed, "hard broke", bad);
    CHECK(h.plugin().latest("other", bad)->cancelled); // fail_fast, by hard's failure
    endTask(h, "other", O::Cancelled, {}, bad);
    auto run = h.record(bad);
    CHECK(run.state == "failed");
    CHECK(run.message == "task 'hard' failed: hard broke");
    CHECK(run.failures_absorbed == 1);
}

TEST_CASE("absorb: retries are used up before a failure is absorbed; a timeout is a failure",
          "[engine][sim][absorb][retry]") {
    SimHarness h;
    h.add("flaky", fakeTask("t", "on_failure = \"continue\"\nretries = 1\nretry_delay = \"10s\"\ntimeout = \"5s\""));
    h.load();
    auto id = h.trigger("flaky");
    endTask(h, "t", O::Failed, "first");
    CHECK(h.record(id).failures_absorbed == 0);
    CHECK(simTask(h.record(id), "t").state == "retrying");
    h.advance(10s);
    REQUIRE(h.plugin().started() == std::vector<std::string>{"t.1", "t.2"});
    h.advance(5s); // the second attempt times out
    CHECK(h.plugin().latest("t")->cancelled);
    endTask(h, "t", O::Cancelled, "stopped");
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 1);
    CHECK(simTask(run, "t").state == "failed");
    CHECK(simTask(run, "t").message == "timed out after 5s (stopped)");
    CHECK(countEvents(h.events(id), "failure_absorbed") == 1);
}

TEST_CASE("absorb: a cancelled task is not absorbed: the run is failed", "[engine][sim][absorb][cancel]") {
    SimHarness h;
    h.add("cancelme", fakeTask("t", "on_failure = \"continue\"") + fakeTask("u"));
    h.load();
    auto id = h.trigger("cancelme");
    std::string err;
    REQUIRE(h.engine().cancel(id, "t", "test", &err));
    h.settle();
    endTask(h, "t", O::Cancelled, {}, id);
    endTask(h, "u", O::Succeeded, {}, id);
    auto run = h.record(id);
    CHECK(simTask(run, "t").state == "cancelled");
    CHECK(run.state == "failed");
    CHECK(run.failures_absorbed == 0);
}

TEST_CASE("absorb: retry runs the absorbed task again and takes its failure back", "[engine][sim][absorb][retry]") {
    SimHarness h;
    h.add("tryit", kTryElseHandle);
    h.load();
    auto id = h.trigger("tryit");
    endTask(h, "try", O::Failed, "boom");
    endTask(h, "handle", O::Succeeded);
    endTask(h, "done", O::Succeeded);
    REQUIRE(h.record(id).failures_absorbed == 1);

    std::string err;
    REQUIRE(h.engine().retry(id, "", false, "test", &err)); // the absorbed failed task is retriable
    h.settle();
    CHECK(h.record(id).failures_absorbed == 0);
    CHECK(h.plugin().started().back() == "try.2");
    endTask(h, "try", O::Failed, "boom again");
    CHECK(h.record(id).failures_absorbed == 1); // counted again: it failed again
    // handle and done had ended: a retry without --downstream keeps them; `after` is decided anew.
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(simTask(run, "after").state == "skipped");

    REQUIRE(h.engine().retry(id, "try", false, "test", &err));
    h.settle();
    endTask(h, "try", O::Succeeded);
    endTask(h, "after", O::Succeeded);
    run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 0);
}

TEST_CASE("absorb: a workflow task absorbs its child run's failure", "[engine][sim][absorb][nested]") {
    SimHarness h;
    h.add("kid", fakeTask("k"));
    h.add("parent", "[[task]]\nid = \"sub\"\nworkflow = \"kid\"\non_failure = \"continue\"\n\n" +
                        fakeTask("next", "depends_on = [\"sub\"]\ntrigger_rule = \"all_done\""));
    h.load();
    auto id = h.trigger("parent");
    endTask(h, "k", O::Failed, "kid broke");
    endTask(h, "next", O::Succeeded);
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 1);
    CHECK(simTask(run, "sub").state == "failed");
    auto child = h.record(simTask(run, "sub").child_run);
    CHECK(child.state == "failed"); // the child itself absorbed nothing
    CHECK(child.failures_absorbed == 0);
}

TEST_CASE("absorb: an attempt lost in a crash with no retries left is absorbed at recovery",
          "[engine][sim][absorb][recovery]") {
    SimHarness h;
    h.add("crashed", fakeTask("a", "on_failure = \"continue\"") +
                         fakeTask("b", "depends_on = [\"a\"]\ntrigger_rule = \"all_done\""));
    h.load();
    auto id = h.trigger("crashed");
    REQUIRE(h.record(id).tasks[0].state == "running");
    h.restart(); // taskhubd killed while a ran
    auto report = h.engine().recover(false);
    CHECK(report.lost == 1);
    h.settle();
    CHECK(h.record(id).failures_absorbed == 1);
    REQUIRE(h.plugin().started() == std::vector<std::string>{"b.1"});
    endTask(h, "b", O::Succeeded);
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 1);
    CHECK(simTask(run, "a").state == "failed");
}

TEST_CASE("absorb: a fan-out's failure is absorbed once, never an instance's; no fail_fast stop",
          "[engine][sim][absorb][fanout]") {
    SimHarness h;
    h.add("fan", fakeTask("t", "foreach = [1, 2, 3]\non_failure = \"continue\"") +
                     fakeTask("handle", "depends_on = [\"t\"]\ntrigger_rule = \"one_failed\""));
    h.load();
    auto id = h.trigger("fan");
    endTask(h, "t[0]", O::Failed, "boom"); // over max_failures (0): the fan-out has failed
    CHECK_FALSE(h.plugin().latest("t[1]")->cancelled);
    CHECK_FALSE(h.plugin().latest("t[2]")->cancelled);
    CHECK(h.record(id).failures_absorbed == 0); // an instance's failure is its fan-out's to judge
    endTask(h, "t[1]", O::Failed, "boom too");
    endTask(h, "t[2]", O::Succeeded);
    endTask(h, "handle", O::Succeeded);
    auto run = h.record(id);
    CHECK(simTask(run, "t").state == "failed");
    CHECK(run.state == "succeeded");
    CHECK(run.failures_absorbed == 1);
    CHECK(countEvents(h.events(id), "failure_absorbed") == 1);
}

// ---- workflow priority ----

TEST_CASE("priority: an urgent workflow's ready task overtakes a bulk workflow's earlier ones at "
          "max_running_tasks", "[engine][sim][priority]") {
    engine::EngineOptions options;
    options.max_running_tasks = 1;
    SimHarness h(options);
    h.add("bulk", fakeTask("b1") + fakeTask("b2") + fakeTask("b3"));
    h.add("urgent", "priority = 100\n" + fakeTask("u"));
    h.load();
    auto bulk = h.trigger("bulk");
    auto urgent = h.trigger("urgent");
    CHECK(h.plugin().started() == std::vector<std::string>{"b1.1"});
    CHECK(h.engine().waitingReasons(urgent).at("u") == "waiting: max_running_tasks (1) reached");
    endTask(h, "b1", O::Succeeded);
    CHECK(h.plugin().started() == std::vector<std::string>{"b1.1", "u.1"});
    h.finishRunning();
    h.finishRunning();
    h.finishRunning();
    CHECK(h.plugin().started() == std::vector<std::string>{"b1.1", "u.1", "b2.1", "b3.1"});
    CHECK(h.record(bulk).state == "succeeded");
    CHECK(h.record(urgent).state == "succeeded");
}

TEST_CASE("priority: at a plugin's max_concurrency, workflow priority first, then task priority, then "
          "first come", "[engine][sim][priority]") {
    engine::EngineOptions options;
    options.plugin_max_concurrency = {{"noop", 1}};
    SimHarness h(options);
    h.add("blocker", fakeTask("hold"));
    h.add("a", "priority = 5\n" + fakeTask("a_lo") + fakeTask("a_hi", "priority = 1"));
    h.add("b", "priority = 5\n" + fakeTask("b_hi", "priority = 1"));
    h.add("c", fakeTask("c_top", "priority = 1000"));
    h.add("d", "priority = -3\n" + fakeTask("d"));
    h.load();
    h.trigger("blocker");
    h.trigger("d");
    h.trigger("c");
    h.trigger("a");
    h.trigger("b");
    REQUIRE(h.plugin().started() == std::vector<std::string>{"hold.1"});
    for (int i = 0; i < 6; ++i) REQUIRE(h.finishRunning() == 1);
    CHECK(h.plugin().started() ==
          std::vector<std::string>{"hold.1", "a_hi.1", "b_hi.1", "a_lo.1", "c_top.1", "d.1"});
}

TEST_CASE("priority: a child run's tasks take its parent's priority when that is higher",
          "[engine][sim][priority][nested]") {
    engine::EngineOptions options;
    options.max_running_tasks = 1;
    SimHarness h(options);
    h.add("bulk", fakeTask("b1") + fakeTask("b2"));
    h.add("kid", fakeTask("k"));
    h.add("proud", "priority = -10\n" + fakeTask("p"));
    h.add("urgent", "priority = 50\n[[task]]\nid = \"sub\"\nworkflow = \"kid\"\n");
    h.add("lowparent", "priority = -50\n[[task]]\nid = \"sub2\"\nworkflow = \"proud\"\n");
    h.load();
    h.trigger("bulk");
    h.trigger("lowparent"); // its child keeps its own, higher priority -10 (still below bulk's 0)
    h.trigger("urgent");    // its child's task k starts before bulk's b2
    REQUIRE(h.plugin().started() == std::vector<std::string>{"b1.1"});
    for (int i = 0; i < 4; ++i) REQUIRE(h.finishRunning() == 1);
    CHECK(h.plugin().started() == std::vector<std::string>{"b1.1", "k.1", "b2.1", "p.1"});
}

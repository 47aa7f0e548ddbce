// The engine on its two seams: fake plugins (engine/plugin_port.h) that record each attempt and
// let the test end it, and simulated time (engine/clock.h) that moves only with advance(). No
// test here waits on the wall clock: limits, retry delays, timeouts, pause --freeze and
// recovery are checked to the millisecond. ReadyQueues is checked on its own, without Asio.
#include <catch2/catch.hpp>

#include <map>
#include <set>

#include "engine/observer.h"
#include "engine/ready_queues.h"
#include "model/names.h"
#include "model_text.h"
#include "sim_harness.h"

using namespace std::chrono_literals;
using namespace taskhub;
using namespace taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

// ---- ReadyQueues alone ----

namespace {

// Entries are live until taken; the test keeps its own set of stale sequence numbers.
struct Queues {
    engine::ReadyQueues q;
    std::set<uint64_t> stale;
    std::map<uint64_t, engine::PluginQueue*> home; // seq -> its queue

    explicit Queues(int global, std::map<std::string, int> per_plugin = {}) : q(global, std::move(per_plugin)) {}

    uint64_t push(const std::string& plugin, int priority, uint32_t task, int run_priority = 0) {
        auto& pq = q.queue(plugin);
        auto item = q.push(pq, run_priority, priority, 1, task);
        home[item.seq] = &pq;
        return item.seq;
    }
    // The task id of the next entry to start, or -1 when none may start.
    int next() {
        auto n = q.next([&](const engine::ReadyItem& i) { return !stale.count(i.seq); },
                        [](const std::string&) { return false; });
        return n ? static_cast<int>(n->item.task) : -1;
    }
};

} // namespace

TEST_CASE("ready queues: highest priority first, then first come, across plugins", "[engine][ready_queues]") {
    Queues t(0);
    t.push("a", 0, 1);
    t.push("b", 5, 2);
    t.push("a", 5, 3);
    t.push("b", -1, 4);
    t.push("a", 10, 5);
    std::vector<int> order;
    for (int n = t.next(); n >= 0; n = t.next()) order.push_back(n);
    CHECK(order == std::vector<int>{5, 2, 3, 1, 4});
}

TEST_CASE("ready queues: the global and per-plugin limits hold tasks back; workflow tasks pass",
          "[engine][ready_queues]") {
    Queues t(2, {{"a", 1}});
    t.push("a", 0, 1);
    t.push("a", 0, 2);
    t.push("b", 0, 3);
    t.push("b", 0, 4);
    t.push("", 0, 5); // a workflow task
    CHECK(t.next() == 1);
    t.q.started(t.q.queue("a"));
    CHECK(t.q.pluginLimitReached("a"));
    CHECK(t.q.waitingReason("a", "w", 0, 0) == "waiting: plugin 'a' is at max_concurrency (1)");
    CHECK(t.next() == 3); // a is at its limit: b's oldest
    t.q.started(t.q.queue("b"));
    CHECK(t.q.globalLimitReached());
    CHECK(t.q.waitingReason("b", "w", 0, 0) == "waiting: max_running_tasks (2) reached");
    CHECK(t.next() == 5); // only the workflow task may start
    CHECK(t.next() == -1);
    t.q.ended(t.q.queue("a"));
    CHECK(t.next() == 2);
    t.q.started(t.q.queue("a"));
    CHECK(t.next() == -1);
    t.q.ended(t.q.queue("b"));
    CHECK(t.next() == 4);
    CHECK(t.q.running() == 1);
}

TEST_CASE("ready queues: stale entries are dropped; parked tasks return when their workflow has room",
          "[engine][ready_queues]") {
    Queues t(0);
    const auto s1 = t.push("a", 9, 1);
    t.push("a", 0, 2);
    t.stale.insert(s1); // cancelled meanwhile
    CHECK(t.next() == 2);

    int& running = t.q.workflowRunning("w");
    running = 1;
    CHECK(engine::ReadyQueues::workflowLimitReached(1, running));
    CHECK(t.q.waitingReason("a", "w", 1, running) == "waiting: workflow 'w' is at max_parallel_tasks (1)");
    const auto s3 = t.push("a", 0, 3);
    CHECK(t.next() == 3); // taken, then parked by the caller: its workflow is at its limit
    t.q.park("w", 1, {0, 0, s3, 1, 3});
    const auto back = [&](const engine::ReadyItem& i) { return t.stale.count(i.seq) ? nullptr : t.home.at(i.seq); };
    t.q.unpark(back);
    CHECK(t.next() == -1); // no room yet
    running = 0;
    t.q.unpark(back);
    CHECK(t.next() == 3);
    CHECK(t.q.waitingReason("a", "w", 1, 0) == "waiting: starting");
}

TEST_CASE("ready queues: an unhealthy plugin's tasks wait, or come first when they are to fail",
          "[engine][ready_queues]") {
    Queues t(0);
    t.push("a", 0, 1);
    t.push("b", 0, 2);
    t.q.setUnhealthy("b", true);
    CHECK(t.q.isUnhealthy("b"));
    CHECK_FALSE(t.q.isUnhealthy("a"));
    auto n = t.q.next([](const engine::ReadyItem&) { return true; }, [](const std::string&) { return true; });
    REQUIRE(n);
    CHECK(n->item.task == 2);
    REQUIRE(n->unhealthy);
    CHECK(*n->unhealthy == "b");
    t.push("b", 0, 3);
    CHECK(t.next() == 1); // held (on_unhealthy = hold): only a's task
    CHECK(t.next() == -1);
    t.q.setUnhealthy("b", false);
    CHECK(t.next() == 3);
}

TEST_CASE("ready queues: the run's priority first, then the task's, then first come, across plugins",
          "[engine][ready_queues][priority]") {
    Queues t(0);
    t.push("a", 0, 1, 0);
    t.push("b", 1000, 2, 0);  // a bulk run's most urgent task
    t.push("a", 0, 3, 5);     // an urgent run's tasks: first, whatever their own priority
    t.push("b", -5, 4, 5);
    t.push("a", 7, 5, 5);
    t.push("b", 0, 6, -1);    // below the default
    t.push("a", 0, 7, 5);
    std::vector<int> order;
    for (int n = t.next(); n >= 0; n = t.next()) order.push_back(n);
    CHECK(order == std::vector<int>{5, 3, 7, 4, 2, 1, 6});
}

// ---- the fake clock ----

TEST_CASE("fake clock: advance fires due timers in order; a destroyed timer never fires", "[engine][clock]") {
    engine::FakeClock clock;
    std::vector<std::string> fired;
    auto start = clock.now();
    auto t1 = clock.after(30ms, [&] { fired.push_back("30"); });
    auto t2 = clock.after(10ms, [&] { fired.push_back("10"); });
    auto t3 = clock.after(20ms, [&] { fired.push_back("20"); });
    std::unique_ptr<engine::Timer> chained;
    auto t4 = clock.after(5ms, [&] {
        CHECK(clock.now() - start == 5ms);
        chained = clock.after(10ms, [&] { fired.push_back("15"); });
    });
    t3.reset();
    clock.advance(29ms);
    CHECK(fired == std::vector<std::string>{"10", "15"});
    CHECK(clock.now() - start == 29ms);
    clock.advance(1ms);
    CHECK(fired == std::vector<std::string>{"10", "15", "30"});
    CHECK(clock.pending() == 0);
}

// ---- the engine on fake plugins and simulated time ----

TEST_CASE("engine sim: max_running_tasks and priorities decide which attempt starts next",
          "[engine][sim]") {
    engine::EngineOptions options;
    options.max_running_tasks = 2;
    SimHarness h(options);
    h.add("prio", fakeTask("low") + fakeTask("high", "priority = 10") + fakeTask("mid", "priority = 5") +
                      fakeTask("mid2", "priority = 5"));
    h.load();
    auto id = h.trigger("prio");
    CHECK(h.plugin().started() == std::vector<std::string>{"high.1", "mid.1"});
    CHECK(h.engine().waitingReasons(id) ==
          std::map<std::string, std::string>{{"low", "waiting: max_running_tasks (2) reached"},
                                             {"mid2", "waiting: max_running_tasks (2) reached"}});
    h.plugin().finish("mid", O::Succeeded);
    h.settle();
    CHECK(h.plugin().started() == std::vector<std::string>{"high.1", "mid.1", "mid2.1"});
    h.plugin().finish("high", O::Succeeded);
    h.plugin().finish("mid2", O::Succeeded);
    h.settle();
    CHECK(h.plugin().started().back() == "low.1");
    h.plugin().finish("low", O::Succeeded);
    h.settle();
    CHECK(h.record(id).state == "succeeded");
}

TEST_CASE("engine sim: per-plugin max_concurrency and per-workflow max_parallel_tasks", "[engine][sim]") {
    engine::EngineOptions options;
    options.plugin_max_concurrency = {{"noop", 2}};
    SimHarness h(options);
    h.add("wide", fakeTask("a") + fakeTask("b") + fakeTask("c"));
    h.add("narrow", "max_parallel_tasks = 1\n" + fakeTask("x") + fakeTask("y"));
    h.load();
    auto wide = h.trigger("wide");
    CHECK(h.plugin().running() == 2);
    CHECK(h.engine().waitingReasons(wide).at("c") == "waiting: plugin 'noop' is at max_concurrency (2)");
    h.plugin().finish("a", O::Succeeded);
    h.plugin().finish("b", O::Succeeded);
    h.settle();
    CHECK(h.plugin().running() == 1); // c
    auto narrow = h.trigger("narrow");
    CHECK(h.plugin().running() == 2); // c and x
    CHECK(h.engine().waitingReasons(narrow).at("y") == "waiting: workflow 'narrow' is at max_parallel_tasks (1)");
    h.plugin().finish("c", O::Succeeded);
    h.settle();
    CHECK(h.plugin().latest("y") == nullptr); // a plugin slot is free, the workflow's is not
    h.plugin().finish("x", O::Succeeded);
    h.settle();
    REQUIRE(h.plugin().latest("y"));
    h.plugin().finish("y", O::Succeeded);
    h.settle();
    CHECK(h.record(wide).state == "succeeded");
    CHECK(h.record(narrow).state == "succeeded");
}

TEST_CASE("engine sim: a failed attempt is retried exactly retry_delay later, growing by the backoff",
          "[engine][sim][retry]") {
    SimHarness h;
    h.add("flaky", fakeTask("t", "retries = 2\nretry_delay = \"10s\"\nretry_backoff = 3.0"));
    h.load();
    auto id = h.trigger("flaky");
    h.plugin().finish("t", O::Failed, "boom");
    h.settle();
    CHECK(h.record(id).tasks[0].state == "retrying");
    h.advance(9999ms);
    CHECK(h.plugin().attempts.size() == 1);
    h.advance(1ms);
    CHECK(h.plugin().started() == std::vector<std::string>{"t.1", "t.2"});
    h.plugin().finish("t", O::Failed, "boom");
    h.settle();
    h.advance(29999ms);
    CHECK(h.plugin().attempts.size() == 2);
    h.advance(1ms);
    CHECK(h.plugin().started().back() == "t.3");
    h.plugin().finish("t", O::Succeeded);
    h.settle();
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(simTask(run, "t").attempt == 3);
}

TEST_CASE("engine sim: a task timeout stops the attempt at its deadline; a run timeout fails the run",
          "[engine][sim][timeout]") {
    SimHarness h;
    h.add("slow", fakeTask("t", "timeout = \"5s\""));
    h.add("long", "[policy]\ntimeout = \"1m\"\n\n" + fakeTask("u"));
    h.load();
    auto slow = h.trigger("slow");
    h.advance(4999ms);
    CHECK_FALSE(h.plugin().latest("t")->cancelled);
    h.advance(1ms);
    CHECK(h.plugin().latest("t")->cancelled);
    h.plugin().finish("t", O::Cancelled, "stopped");
    h.settle();
    auto run = h.record(slow);
    CHECK(run.state == "failed");
    CHECK(simTask(run, "t").message == "timed out after 5s (stopped)");

    auto long_run = h.trigger("long");
    h.advance(59999ms);
    CHECK_FALSE(h.plugin().latest("u")->cancelled);
    h.advance(1ms);
    CHECK(h.plugin().latest("u")->cancelled);
    h.plugin().finish("u", O::Cancelled, "stopped");
    h.settle();
    run = h.record(long_run);
    CHECK(run.state == "failed");
    CHECK(run.message == "run timed out after 1m");
}

TEST_CASE("engine sim: pause --freeze stops a task's timeout; resume gives it the time it had left",
          "[engine][sim][pause]") {
    SimHarness h;
    h.add("frozen", fakeTask("t", "timeout = \"10s\""));
    h.load();
    auto id = h.trigger("frozen");
    h.advance(4s);
    std::string err;
    REQUIRE(h.engine().pause(id, true, "test", &err));
    h.settle();
    CHECK(h.plugin().latest("t")->suspended);
    CHECK(h.record(id).tasks[0].state == "frozen");
    h.advance(1h);
    CHECK_FALSE(h.plugin().latest("t")->cancelled);
    REQUIRE(h.engine().resume(id, "test", &err));
    h.settle();
    CHECK_FALSE(h.plugin().latest("t")->suspended);
    h.advance(5999ms);
    CHECK_FALSE(h.plugin().latest("t")->cancelled);
    h.advance(1ms);
    CHECK(h.plugin().latest("t")->cancelled);
    h.plugin().finish("t", O::Cancelled);
    h.settle();
    CHECK(simTask(h.record(id), "t").message == "timed out after 10s");
}

TEST_CASE("engine sim: recovery marks a running attempt lost and retries it", "[engine][sim][recovery]") {
    SimHarness h;
    h.add("crashed", fakeTask("a", "retries = 1\nretry_delay = \"1h\"") + fakeTask("b", "depends_on = [\"a\"]"));
    h.load();
    auto id = h.trigger("crashed");
    REQUIRE(h.plugin().started() == std::vector<std::string>{"a.1"});
    REQUIRE(h.record(id).tasks[0].state == "running");

    h.restart(); // taskhubd killed while a ran: nothing ended it
    auto report = h.engine().recover(false);
    CHECK(report.runs == 1);
    CHECK(report.resumed == 1);
    CHECK(report.lost == 1);
    CHECK(report.killed == 0);
    h.settle();
    // The lost attempt counts as a try; its retry starts at once (retry_delay is for failures).
    CHECK(h.plugin().started() == std::vector<std::string>{"a.2"});
    auto mid = h.record(id);
    CHECK(mid.lost == 1);
    bool lost_event = false;
    for (const auto& e : h.events(id)) {
        if (e.kind == "lost") {
            lost_event = true;
            CHECK(e.detail == "attempt 1 was lost when taskhubd stopped: no process was recorded for it; retry 1 of 1");
        }
    }
    CHECK(lost_event);
    h.plugin().finish("a", O::Succeeded);
    h.settle();
    h.plugin().finish("b", O::Succeeded);
    h.settle();
    CHECK(h.record(id).state == "succeeded");
}

namespace {

// Writes down what the engine tells its observers, in order.
struct RecordingObserver : engine::EngineObserver {
    std::vector<std::string> seen;
    void runCreated(const store::RunRecord& run) override { seen.push_back("created " + model::nameString(run.state)); }
    void runStarted(const store::RunRecord& run) override { seen.push_back("started " + run.workflow); }
    void runEnded(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) override {
        std::string s = "ended " + model::nameString(run.state);
        for (const auto* t : tasks) s += " " + t->task_id + "=" + model::nameString(t->state);
        seen.push_back(s);
    }
    void attemptEnded(const store::RunRecord&, const store::TaskRecord& task) override {
        seen.push_back("attempt " + task.task_id + "." + std::to_string(task.attempt) + " " +
                       model::nameString(task.state) + (task.started_ms && task.ended_ms ? " timed" : " untimed"));
    }
};

} // namespace

TEST_CASE("engine sim: observers hear of a run's creation, start, each attempt (retries included) and end",
          "[engine][sim][observer]") {
    SimHarness h;
    RecordingObserver seen;
    h.engine().addObserver(&seen);
    h.add("flaky", fakeTask("t", "retries = 1\nretry_delay = \"1s\""));
    h.load();
    auto id = h.trigger("flaky");
    h.plugin().finish("t", O::Failed, "boom");
    h.settle();
    h.advance(1000ms);
    h.plugin().finish("t", O::Failed, "boom again");
    h.settle();
    CHECK(h.record(id).state == "failed");
    CHECK(seen.seen == std::vector<std::string>{"created queued", "started flaky", "attempt t.1 retrying timed",
                                                "attempt t.2 failed timed", "ended failed t=failed"});
    h.engine().removeObserver(&seen);
    h.trigger("flaky");
    CHECK(seen.seen.size() == 5);
}

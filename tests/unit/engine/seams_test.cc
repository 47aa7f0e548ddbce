// The engine on its two seams: fake plugins (engine/plugin_port.h) that record each attempt and
// let the test end it, and simulated time (engine/clock.h) that moves only with advance(). No
// test here waits on the wall clock: limits, retry delays, timeouts, pause --freeze and
// recovery are checked to the millisecond. ReadyQueues is checked on its own, without Asio.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <taskhub/plugin_api.h>

#include <fstream>
#include <map>
#include <set>

#include "config/workflow.h"
#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/plugin_port.h"
#include "engine/ready_queues.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"
#include "store/store.h"
#include "model_text.h"
#include "test_support.h"

using namespace std::chrono_literals;
namespace asio = boost::asio;
using taskhub::testing::TempDir;
using namespace taskhub;
using plugin_host::AttemptResult;

namespace {

// A plugin that runs nothing: start() records the attempt, the test ends it with finish().
class FakePlugin final : public plugin_host::Plugin {
public:
    struct Attempt {
        uint64_t token = 0;
        std::string task_id;
        uint32_t attempt = 0;
        Done done;
        bool cancelled = false; // cancel() was called
        bool suspended = false;
        bool ended = false;
    };

    explicit FakePlugin(std::string name) {
        info_.name = std::move(name);
        info_.capabilities = TH_CAP_NO_LOG | TH_CAP_SUSPEND;
    }

    const plugin_host::PluginInfo& info() const override { return info_; }
    std::optional<config::PluginCatalog::Problem> validate(const std::string&) const override { return std::nullopt; }
    uint64_t start(const plugin_host::AttemptSpec& spec, Done done) override {
        attempts.push_back({++next_token_, spec.task_id, spec.attempt, std::move(done)});
        return attempts.back().token;
    }
    void cancel(uint64_t token) override { find(token).cancelled = true; }
    bool canSuspend() const override { return true; }
    void suspend(uint64_t token) override { find(token).suspended = true; }
    void resume(uint64_t token) override { find(token).suspended = false; }
    size_t running() const override {
        size_t n = 0;
        for (const auto& a : attempts) n += a.ended ? 0 : 1;
        return n;
    }
    void checkHealth(std::chrono::milliseconds, HealthDone done) override { done({}); }

    // Ends the latest attempt of task_id as a plugin would (its done callback).
    void finish(const std::string& task_id, AttemptResult::Outcome outcome, std::string message = {}) {
        Attempt* a = latest(task_id);
        REQUIRE(a);
        REQUIRE_FALSE(a->ended);
        a->ended = true;
        AttemptResult r;
        r.outcome = outcome;
        r.message = std::move(message);
        auto done = std::move(a->done); // a may move when done starts another attempt
        done(std::move(r));
    }
    Attempt* latest(const std::string& task_id) {
        for (auto it = attempts.rbegin(); it != attempts.rend(); ++it) {
            if (it->task_id == task_id) return &*it;
        }
        return nullptr;
    }
    std::vector<std::string> started() const {
        std::vector<std::string> out;
        for (const auto& a : attempts) out.push_back(a.task_id + "." + std::to_string(a.attempt));
        return out;
    }

    std::vector<Attempt> attempts;

private:
    Attempt& find(uint64_t token) {
        for (auto& a : attempts) {
            if (a.token == token) return a;
        }
        FAIL("no attempt with token " << token);
        throw std::logic_error("unreachable");
    }
    plugin_host::PluginInfo info_;
    uint64_t next_token_ = 0;
};

// The engine's plugins: one fake, "noop" (workflows are loaded against the real noop plugin's
// catalog entry, so their task parameters are checked as usual).
class FakePlugins final : public engine::PluginPort {
public:
    plugin_host::Plugin* find(const std::string& name) const override { return name == "noop" ? &noop_ : nullptr; }
    std::optional<std::string> unavailable(const std::string& name) const override {
        return "plugin '" + name + "' is not loaded";
    }
    bool dispatchable(const std::string&) const override { return true; }
    const plugin_host::PluginHealth* health(const std::string&) const override { return nullptr; }
    FakePlugin& noop() { return noop_; }

private:
    mutable FakePlugin noop_{"noop"};
};

class SimHarness {
public:
    explicit SimHarness(engine::EngineOptions options = {}) : pool_(1, 1, 1000ms), catalog_(&io_, &pool_) {
        store_ = store::Store::open(dir_.path / "state");
        REQUIRE_FALSE(catalog_.loadFile(TASKHUB_NOOP_PLUGIN_PATH, {}));
        options_ = std::move(options);
        options_.log_dir = dir_.path / "logs";
        store_->startWriter([this](std::function<void()> fn) { asio::post(io_, std::move(fn)); });
        std::filesystem::create_directories(dir_.path / "wf");
        restart();
    }
    ~SimHarness() {
        engine_.reset();
        pool_.stop();
    }

    // A new engine on the same store, as after taskhubd was killed: the old one's attempts are
    // left as the store recorded them.
    void restart() {
        engine_.reset();
        plugins_ = std::make_unique<FakePlugins>();
        engine_ = std::make_unique<engine::Engine>(io_, *store_, *plugins_, clock_, options_);
        engine_->setWorkflowLookup([this](const std::string& name) -> std::shared_ptr<const config::Workflow> {
            auto it = workflows_.find(name);
            return it == workflows_.end() ? nullptr : it->second;
        });
    }

    void add(const std::string& name, const std::string& toml) {
        std::ofstream(dir_.path / "wf" / (name + ".toml")) << toml;
    }
    void load() {
        auto set = config::loadWorkflowDir(dir_.path / "wf", {}, catalog_);
        std::string problems;
        for (const auto& p : set.problems) problems += p.str() + "\n";
        INFO(problems);
        REQUIRE(set.problems.empty());
        workflows_ = set.workflows;
    }

    std::string trigger(const std::string& name) {
        auto r = engine_->trigger({.workflow = workflows_.at(name), .actor = "test"});
        INFO(r.error);
        REQUIRE(r.ok);
        settle();
        return r.run_id;
    }

    // Does the work that is due now: what the engine posted, and the store's answers that
    // launch attempts (each waits for its record to be durable).
    void settle() {
        for (int i = 0; i < 1000; ++i) {
            REQUIRE(store_->commit());
            io_.restart();
            if (io_.poll() == 0) return;
        }
        FAIL("the event loop never went idle");
    }

    void advance(std::chrono::milliseconds d) {
        clock_.advance(d, [this] { settle(); });
        settle();
    }

    FakePlugin& plugin() { return plugins_->noop(); }
    engine::Engine& engine() { return *engine_; }
    engine::FakeClock& clock() { return clock_; }

    store::RunRecord record(const std::string& id) {
        REQUIRE(store_->commit());
        auto rec = store_->run(id, true);
        REQUIRE(rec);
        return *rec;
    }
    std::vector<store::EventRecord> events(const std::string& id) {
        REQUIRE(store_->commit());
        return store_->events(id);
    }

private:
    TempDir dir_{"th-engine-sim"};
    asio::io_context io_{1};
    std::unique_ptr<store::Store> store_;
    pool::WorkerPool pool_;
    plugin_host::PluginHost catalog_; // for loading workflows only
    engine::FakeClock clock_;
    std::unique_ptr<FakePlugins> plugins_;
    engine::EngineOptions options_;
    std::map<std::string, std::shared_ptr<const config::Workflow>> workflows_;
    std::unique_ptr<engine::Engine> engine_;
};

const store::TaskRecord& task(const store::RunRecord& run, const std::string& id) {
    for (const auto& t : run.tasks) {
        if (t.task_id == id) return t;
    }
    FAIL("no task " << id);
    throw std::logic_error("unreachable");
}

std::string fakeTask(const std::string& id, const std::string& extra = "") {
    return "[[task]]\nid = \"" + id + "\"\nplugin = \"noop\"\n" + extra + "\n";
}

using O = AttemptResult::Outcome;

} // namespace

// ---- ReadyQueues alone ----

namespace {

// Entries are live until taken; the test keeps its own set of stale sequence numbers.
struct Queues {
    engine::ReadyQueues q;
    std::set<uint64_t> stale;
    std::map<uint64_t, engine::PluginQueue*> home; // seq -> its queue

    explicit Queues(int global, std::map<std::string, int> per_plugin = {}) : q(global, std::move(per_plugin)) {}

    uint64_t push(const std::string& plugin, int priority, uint32_t task) {
        auto& pq = q.queue(plugin);
        auto item = q.push(pq, priority, 1, task);
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
    t.q.park("w", 1, {0, s3, 1, 3});
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
    CHECK(task(run, "t").attempt == 3);
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
    CHECK(task(run, "t").message == "timed out after 5s (stopped)");

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
    CHECK(task(h.record(id), "t").message == "timed out after 10s");
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

// The engine driven in-process: a real store in a temporary directory, workflows loaded from
// TOML text, and either the real noop and shell plugins (Harness) or a fake plugin on simulated
// time (sim::SimHarness, sim_harness.h) where a test only needs attempts to end when it says so.
// Checks what the event log records: start order under limits and priorities, retries and their
// delays, nested runs, pause, cancel and retry.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "config/workflow.h"
#include "engine/engine.h"
#include "common/proc.h"
#include "engine/retry_policy.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"
#include "store/store.h"
#include "model_text.h"
#include "sim_harness.h"
#include "test_support.h"

using namespace std::chrono_literals;
namespace asio = boost::asio;
using taskhub::testing::TempDir;
using namespace taskhub;
namespace sim = taskhub::testing::engine_sim;
using O = plugin_host::AttemptResult::Outcome;

namespace {

class Harness {
public:
    explicit Harness(engine::EngineOptions options = {}, std::map<std::string, config::PluginSettings> settings = {})
        : pool_(1, 2, 1000ms), plugins_(&io_, &pool_) {
        std::string err;
        store_ = store::Store::open(dir_.path / "state", &err);
        INFO(err);
        REQUIRE(store_);
        REQUIRE_FALSE(plugins_.loadFile(TASKHUB_NOOP_PLUGIN_PATH, settings));
        REQUIRE_FALSE(plugins_.loadFile(TASKHUB_SHELL_PLUGIN_PATH, settings));
        options.log_dir = dir_.path / "logs";
        engine_ = std::make_unique<engine::Engine>(io_, *store_, plugins_, options);
        store_->startWriter([this](std::function<void()> fn) { asio::post(io_, std::move(fn)); });
        engine_->setWorkflowLookup([this](const std::string& name) -> std::shared_ptr<const config::Workflow> {
            auto it = workflows_.find(name);
            return it == workflows_.end() ? nullptr : it->second;
        });
        std::filesystem::create_directories(dir_.path / "wf");
    }
    ~Harness() {
        engine_.reset();
        pool_.stop();
    }

    // Writes a workflow file; load() reads them all, as the daemon does.
    void add(const std::string& name, const std::string& toml) {
        std::ofstream(dir_.path / "wf" / (name + ".toml")) << toml;
    }
    void load() {
        auto set = config::loadWorkflowDir(dir_.path / "wf", {}, plugins_);
        std::string problems;
        for (const auto& p : set.problems) problems += p.str() + "\n";
        INFO(problems);
        REQUIRE(set.problems.empty());
        workflows_ = set.workflows;
    }

    engine::Engine& engine() { return *engine_; }
    store::Store& store() { return *store_; }
    std::shared_ptr<const config::Workflow> workflow(const std::string& name) const { return workflows_.at(name); }
    asio::io_context& io() { return io_; }
    const std::filesystem::path& dir() const { return dir_.path; }

    engine::TriggerResult triggerResult(const std::string& name, const store::NameValues& params = {}) {
        return engine_->trigger({.workflow = workflows_.at(name), .params = params, .actor = "test"});
    }

    std::string trigger(const std::string& name, const store::NameValues& params = {}) {
        auto r = engine_->trigger({.workflow = workflows_.at(name), .params = params, .actor = "test"});
        INFO(r.error);
        REQUIRE(r.ok);
        return r.run_id;
    }

    // Runs the loop until the run has ended (or `limit` passed) and returns its record.
    store::RunRecord waitEnd(const std::string& id, std::chrono::milliseconds limit = 20s) {
        bool ended = false;
        engine_->whenEnded(id, [&](const store::RunRecord&) {
            ended = true;
            io_.stop();
        });
        asio::steady_timer guard(io_, limit);
        guard.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) io_.stop();
        });
        io_.restart();
        io_.run();
        guard.cancel();
        REQUIRE(ended);
        return finished(id);
    }

    // Lets the loop run for a while (for checks in the middle of a run).
    void runFor(std::chrono::milliseconds d) {
        asio::steady_timer t(io_, d);
        t.async_wait([&](const boost::system::error_code&) { io_.stop(); });
        io_.restart();
        io_.run();
    }

    store::RunRecord finished(const std::string& id) {
        REQUIRE(store_->commit());
        auto rec = store_->run(id, true);
        REQUIRE(rec);
        return *rec;
    }

    std::vector<store::EventRecord> events(const std::string& id) {
        REQUIRE(store_->commit());
        return store_->events(id);
    }

    // Task ids in the order their (first) attempts started.
    std::vector<std::string> startOrder(const std::string& id) { return sim::startedTasks(events(id)); }

private:
    TempDir dir_{"th-engine"};
    asio::io_context io_{1};
    std::unique_ptr<store::Store> store_;
    pool::WorkerPool pool_;
    plugin_host::PluginHost plugins_;
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

// A noop task that takes 20 ms unless `extra` sets sleep_ms itself.
std::string noopTask(const std::string& id, const std::string& extra = "") {
    std::string sleep = extra.find("sleep_ms") == std::string::npos ? "sleep_ms = 20\n" : "";
    return "[[task]]\nid = \"" + id + "\"\nplugin = \"noop\"\n" + sleep + extra + "\n";
}

} // namespace

TEST_CASE("engine: retry delays grow by retry_backoff up to retry_max_delay", "[engine][retry]") {
    config::TaskDef def;
    def.retry_delay = 100ms;
    def.retry_backoff = 2.0;
    CHECK(engine::retryDelay(def, 1) == 100ms);
    CHECK(engine::retryDelay(def, 2) == 200ms);
    CHECK(engine::retryDelay(def, 4) == 800ms);
    def.retry_max_delay = 300ms;
    CHECK(engine::retryDelay(def, 3) == 300ms);
    def.retry_backoff = 1.0;
    CHECK(engine::retryDelay(def, 10) == 100ms);
    def.retry_backoff = 10.0;
    def.retry_max_delay = 0ms;
    CHECK(engine::retryDelay(def, 1000).count() > 0); // huge, but no overflow
}

TEST_CASE("engine: under max_running_tasks, the highest priority starts first, then the oldest",
          "[engine][limits]") {
    engine::EngineOptions options;
    options.max_running_tasks = 1;
    sim::SimHarness h(options);
    h.add("prio", noopTask("low") + noopTask("mid1", "priority = 5") + noopTask("high", "priority = 10") +
                      noopTask("mid2", "priority = 5") + noopTask("neg", "priority = -1"));
    h.load();
    auto id = h.trigger("prio");
    while (h.finishRunning() > 0) {
    }
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(h.startOrder(id) == std::vector<std::string>{"high", "mid1", "mid2", "low", "neg"});
}

TEST_CASE("engine: per-plugin max_concurrency and per-workflow max_parallel_tasks bound running tasks",
          "[engine][limits]") {
    engine::EngineOptions options;
    options.plugin_max_concurrency["noop"] = 2;
    sim::SimHarness h(options);
    std::string six;
    for (int i = 0; i < 6; ++i) six += noopTask("t" + std::to_string(i));
    h.add("plugin_limited", six);
    h.add("wf_limited", "max_parallel_tasks = 1\n" + six);
    h.load();

    for (const auto& [name, limit] : std::vector<std::pair<std::string, int>>{{"plugin_limited", 2}, {"wf_limited", 1}}) {
        INFO(name);
        auto id = h.trigger(name);
        // While it runs, the waiting tasks say why.
        auto reasons = h.engine().waitingReasons(id);
        CHECK_FALSE(reasons.empty());
        for (const auto& [t, why] : reasons) {
            CHECK(why == (limit == 2 ? "waiting: plugin 'noop' is at max_concurrency (2)"
                                     : "waiting: workflow 'wf_limited' is at max_parallel_tasks (1)"));
        }
        while (h.finishRunning() > 0) {
        }
        auto run = h.record(id);
        CHECK(run.state == "succeeded");
        int running = 0, peak = 0;
        for (const auto& e : h.events(id)) {
            if (e.kind == "start") peak = std::max(peak, ++running);
            if (e.kind == "end") --running;
        }
        CHECK(peak == limit);
    }
}

TEST_CASE("engine: retries follow retry_on_exit_codes and wait as the backoff says", "[engine][retry]") {
    Harness h;
    h.add("retrying", R"(
[policy]
on_failure = "continue"

[[task]]
id = "flaky"
plugin = "noop"
fail = true
exit_code = 75
retries = 2
retry_delay = "30ms"
retry_backoff = 2.0
retry_on_exit_codes = [75]

[[task]]
id = "fatal"
plugin = "noop"
fail = true
exit_code = 1
retries = 5
retry_delay = "10ms"
retry_on_exit_codes = [75]
)");
    h.load();
    auto id = h.trigger("retrying");
    auto run = h.waitEnd(id);
    CHECK(run.state == "failed");
    CHECK(task(run, "flaky").attempt == 3);
    CHECK(task(run, "flaky").exit_code == 75);
    CHECK(task(run, "fatal").attempt == 1);
    CHECK(task(run, "fatal").message == "failed as requested (exit code 1) (not retried: exit code not in retry_on_exit_codes)");
    std::vector<int64_t> starts;
    for (const auto& e : h.events(id)) {
        if (e.kind == "start" && e.task_id == "flaky") starts.push_back(e.ts_ms);
    }
    REQUIRE(starts.size() == 3);
    CHECK(starts[1] - starts[0] >= 30);
    CHECK(starts[2] - starts[1] >= 60);
}

TEST_CASE("engine: a workflow task runs its workflow as a child run and ends with it", "[engine][nested]") {
    Harness h;
    h.add("leaf", "[params]\ncode = \"0\"\n\n[[task]]\nid = \"work\"\nplugin = \"noop\"\nfail = true\n"
                  "exit_code = 7\n");
    h.add("mid", "[[task]]\nid = \"call_leaf\"\nworkflow = \"leaf\"\n");
    h.add("top", "[[task]]\nid = \"call_mid\"\nworkflow = \"mid\"\n\n" + noopTask("after", "depends_on = [\"call_mid\"]"));
    h.load();
    auto id = h.trigger("top");
    auto run = h.waitEnd(id);
    CHECK(run.state == "failed");
    const auto& call = task(run, "call_mid");
    CHECK(call.state == "failed");
    CHECK(call.child_run == id + "/call_mid.1");
    // The reason travels up the chain: each level names its child run and failing task.
    CHECK(call.message == "child run " + id + "/call_mid.1 failed: task 'call_leaf' failed: child run " + id +
                              "/call_mid.1/call_leaf.1 failed: task 'work' failed: failed as requested (exit code 7)");
    CHECK(task(run, "after").state == "skipped");
    auto child = h.finished(id + "/call_mid.1");
    CHECK(child.parent_run == id);
    CHECK(child.parent_task == "call_mid");
    CHECK(child.depth == 1);
    CHECK(h.finished(id + "/call_mid.1/call_leaf.1").depth == 2);
}

TEST_CASE("engine: nesting deeper than max_nesting_depth fails with the chain", "[engine][nested]") {
    engine::EngineOptions options;
    options.max_nesting_depth = 2;
    Harness h(options);
    h.add("c", noopTask("x"));
    h.add("b", "[[task]]\nid = \"to_c\"\nworkflow = \"c\"\n");
    h.add("a", "[[task]]\nid = \"to_b\"\nworkflow = \"b\"\n");
    h.add("top", "[[task]]\nid = \"to_a\"\nworkflow = \"a\"\n");
    h.load();
    auto ok = h.waitEnd(h.trigger("a")); // a -> b -> c: depth 2
    CHECK(ok.state == "succeeded");
    auto id = h.trigger("top"); // top -> a -> b -> c: depth 3
    auto run = h.waitEnd(id);
    CHECK(run.state == "failed");
    auto deepest = h.finished(id + "/to_a.1/to_b.1");
    CHECK(task(deepest, "to_c").message == "nesting depth exceeds limit (2): top -> a -> b -> c");
}

TEST_CASE("engine: params reach templates, the environment and child runs; outputs flow downstream",
          "[engine][data]") {
    Harness h;
    h.add("child", "[params]\ngreeting = \"none\"\n\n[[task]]\nid = \"echo\"\nplugin = \"shell\"\n"
                   "command = \"echo child got $TASKHUB_PARAM_greeting\"\n");
    h.add("data", R"(
[params]
region = "eu"

[[task]]
id = "produce"
plugin = "shell"
command = "echo '::set-output path=/srv/${params.region}/file'; echo region=$TASKHUB_PARAM_region"

[[task]]
id = "consume"
plugin = "shell"
depends_on = ["produce"]
command = "test '${tasks.produce.outputs.path}' = /srv/us/file"

[[task]]
id = "only_eu"
plugin = "noop"
depends_on = ["produce"]
when = "params.region == 'eu'"

[[task]]
id = "sub"
workflow = "child"
depends_on = ["produce"]
params = { greeting = "hello ${params.region}" }
)");
    h.load();
    auto id = h.trigger("data", {{"region", "us"}});
    auto run = h.waitEnd(id);
    INFO(run.message);
    CHECK(run.state == "succeeded");
    CHECK(run.params == store::NameValues{{"region", "us"}});
    CHECK(task(run, "produce").outputs == store::NameValues{{"path", "/srv/us/file"}});
    CHECK(task(run, "consume").state == "succeeded");
    CHECK(task(run, "only_eu").state == "skipped");
    CHECK(task(run, "only_eu").message == "when condition is false: params.region == 'eu'");
    auto child = h.finished(id + "/sub.1");
    CHECK(child.params == store::NameValues{{"greeting", "hello us"}});
    std::ifstream log(h.dir() / "logs" / id / "sub.1" / "echo.1.log");
    std::string line;
    std::getline(log, line);
    CHECK(line == "child got hello us");
}

TEST_CASE("engine: paths read typed outputs and JSON params; a path that does not hold fails the task",
          "[engine][data][json]") {
    Harness h;
    h.add("child", "[params]\ngreeting = \"none\"\n\n[[task]]\nid = \"echo\"\nplugin = \"noop\"\n");
    h.add("typed", R"(
[params]
regions = '["eu","us"]'
plain = "abc"
unkeyed = '[{"name": "a"}, {"title": "b"}]'

[policy]
on_failure = "continue"

[[task]]
id = "list"
plugin = "shell"
command = "echo '::set-output-json files=[\"a.csv\", \"b.csv\"]'; echo '::set-output-json cfg={\"port\": 5432}'; echo '::set-output name=plain'"

[[task]]
id = "use"
plugin = "shell"
depends_on = ["list"]
command = "test ${tasks.list.outputs.files[1]}:${tasks.list.outputs.files.length}:${tasks.list.outputs.cfg.port}:${params.regions[0]}:${tasks.list.outputs.name.length} = b.csv:2:5432:eu:5 && test '${tasks.list.outputs.files}' = '[\"a.csv\",\"b.csv\"]'"
env = { FIRST = "${tasks.list.outputs.files[0]}" }

[[task]]
id = "when_len"
plugin = "noop"
depends_on = ["list"]
when = "tasks.list.outputs.files.length == 2 && params.regions.length > 1"

[[task]]
id = "bad_index"
plugin = "noop"
depends_on = ["list"]
message = "${tasks.list.outputs.files[2]}"

[[task]]
id = "bad_env"
plugin = "shell"
depends_on = ["list"]
command = "true"
env = { X = "${tasks.list.outputs.cfg.host}" }

[[task]]
id = "bad_param"
plugin = "noop"
depends_on = ["list"]
message = "${params.plain[0]}"

[[task]]
id = "bad_plain"
plugin = "noop"
depends_on = ["list"]
when = "tasks.list.outputs.name.x == ''"

[[task]]
id = "sub"
workflow = "child"
depends_on = ["list"]
params = { greeting = "${tasks.list.outputs.files[5]}" }

[[task]]
id = "each"
plugin = "shell"
depends_on = ["list"]
foreach = [{ name = "a", tags = ["x"] }, { name = "b", tags = [] }]
foreach_key = "${item.name}"
command = "test ${item.name}:${item.tags.length} = a:1 || test ${item.name}:${item.tags.length} = b:0"

[[task]]
id = "each_bad"
plugin = "noop"
depends_on = ["list"]
foreach = [{ name = "a", tags = ["x"] }]
message = "${item.tags[3]}"

[[task]]
id = "each_badkey"
plugin = "noop"
depends_on = ["list"]
foreach = "${params.unkeyed}"
foreach_key = "${item.name}"
)");
    h.load();
    auto run = h.waitEnd(h.trigger("typed"));
    CHECK(task(run, "list").json_outputs == store::NameValues{{"files", R"(["a.csv","b.csv"])"}, {"cfg", R"({"port":5432})"}});
    CHECK(task(run, "list").outputs == store::NameValues{{"name", "plain"}});
    CHECK(task(run, "use").state == "succeeded");
    CHECK(task(run, "when_len").state == "succeeded");
    CHECK(task(run, "bad_index").state == "failed");
    CHECK(task(run, "bad_index").message ==
          "${tasks.list.outputs.files[2]}: index out of range (array of 2); the task was not started");
    CHECK(task(run, "bad_env").message ==
          "${tasks.list.outputs.cfg.host}: no key 'host' (an object with keys port); the task was not started");
    CHECK(task(run, "bad_param").message.rfind("${params.plain}: not JSON text (", 0) == 0);
    CHECK(task(run, "bad_plain").state == "failed");
    CHECK(task(run, "bad_plain").message ==
          "when condition tasks.list.outputs.name.x == '': ${tasks.list.outputs.name.x}: a plain text value has no "
          "fields; only .length applies (publish it with ::set-output-json to read into it)");
    CHECK(task(run, "sub").state == "failed");
    CHECK(task(run, "sub").message ==
          "params.greeting: ${tasks.list.outputs.files[5]}: index out of range (array of 2)");
    // Paths into a fan-out instance's item.
    CHECK(task(run, "each").state == "succeeded");
    CHECK(task(run, "each[a]").state == "succeeded");
    CHECK(task(run, "each[b]").state == "succeeded");
    CHECK(task(run, "each_bad[0]").message ==
          "${item.tags[3]}: index out of range (array of 1); the task was not started");
    CHECK(task(run, "each_badkey").state == "failed");
    CHECK(task(run, "each_badkey").message ==
          "foreach_key \"${item.name}\" for item 1: ${item.name}: no key 'name' (an object with "
          "keys title)");
}

TEST_CASE("engine: an undeclared param is refused with the declared ones", "[engine][data]") {
    Harness h;
    h.add("p", "[params]\nregion = \"eu\"\ndate = \"\"\n\n" + noopTask("t"));
    h.load();
    auto r = h.triggerResult("p", {{"regoin", "us"}});
    CHECK_FALSE(r.ok);
    CHECK(r.error == "workflow 'p' has no param 'regoin' (declared: region, date); did you mean 'region'?");
}

TEST_CASE("engine: a paused run starts nothing new until resumed", "[engine][controls]") {
    sim::SimHarness h;
    h.add("chain", noopTask("a") + noopTask("b", "depends_on = [\"a\"]"));
    h.load();
    auto id = h.trigger("chain");
    std::string err;
    REQUIRE(h.engine().pause(id, false, "uid 0 (root)", &err));
    CHECK_FALSE(h.engine().pause(id, false, "uid 0 (root)", &err));
    CHECK(err == "run " + id + " is already paused (resume it with `taskhubctl resume " + id + "`)");
    h.plugin().finish("a", O::Succeeded); // a ends meanwhile; b must not start
    h.settle();
    CHECK(h.startOrder(id) == std::vector<std::string>{"a"});
    CHECK(h.engine().waitingReasons(id) == std::map<std::string, std::string>{{"b", "waiting: the run is paused"}});
    CHECK(h.record(id).state == "paused");
    REQUIRE(h.engine().resume(id, "uid 0 (root)", &err));
    h.settle();
    h.plugin().finish("b", O::Succeeded);
    h.settle();
    auto run = h.record(id);
    CHECK(run.state == "succeeded");
    CHECK(h.startOrder(id) == std::vector<std::string>{"a", "b"});
    bool paused_event = false;
    for (const auto& e : h.events(id)) paused_event |= e.kind == "paused" && e.detail == "paused by uid 0 (root)";
    CHECK(paused_event);
}

TEST_CASE("engine: cancelling one task lets its downstream follow the trigger rules", "[engine][controls]") {
    sim::SimHarness h;
    h.add("handlers", noopTask("slow") + noopTask("next", "depends_on = [\"slow\"]") +
                          noopTask("on_fail", "depends_on = [\"slow\"]\ntrigger_rule = \"one_failed\"") +
                          noopTask("other"));
    h.load();
    auto id = h.trigger("handlers");
    std::string err;
    CHECK_FALSE(h.engine().cancel(id, "slwo", "uid 0", &err));
    CHECK(err == "run " + id + " has no task 'slwo'; did you mean 'slow'?");
    REQUIRE(h.engine().cancel(id, "slow", "uid 0", &err));
    REQUIRE(h.plugin().latest("slow")->cancelled); // the plugin was asked to stop it
    h.plugin().finish("slow", O::Cancelled, "stopped");
    h.settle();
    while (h.finishRunning() > 0) { // other, on_fail
    }
    auto run = h.record(id);
    CHECK(task(run, "slow").state == "cancelled");
    CHECK(task(run, "slow").message == "cancelled by uid 0");
    CHECK(task(run, "next").state == "skipped");
    CHECK(task(run, "on_fail").state == "succeeded");
    CHECK(task(run, "other").state == "succeeded");
    CHECK(run.state == "failed");
    CHECK(run.message == "task 'slow' was cancelled: cancelled by uid 0");
}

TEST_CASE("engine: retry re-runs failed tasks of an ended run in place, with --downstream", "[engine][controls]") {
    Harness h;
    const auto marker = h.dir() / "fixed";
    h.add("flaky", "[[task]]\nid = \"first\"\nplugin = \"noop\"\n\n"
                   "[[task]]\nid = \"check\"\nplugin = \"shell\"\ndepends_on = [\"first\"]\n"
                   "command = \"test -e " + marker.string() + "\"\n\n" +
                   noopTask("after", "depends_on = [\"check\"]"));
    h.load();
    auto id = h.trigger("flaky");
    auto run = h.waitEnd(id);
    REQUIRE(run.state == "failed");
    CHECK(task(run, "after").state == "skipped");

    std::string err;
    CHECK_FALSE(h.engine().retry(id, "first", false, "uid 0", &err));
    CHECK(err == "task first of run " + id + " succeeded; only failed or cancelled tasks can be retried");
    std::ofstream(marker) << "";
    REQUIRE(h.engine().retry(id, "check", false, "uid 0", &err));
    run = h.waitEnd(id);
    CHECK(run.state == "succeeded");
    CHECK(task(run, "first").attempt == 1); // kept
    CHECK(task(run, "check").attempt == 2); // a new attempt
    CHECK(task(run, "after").attempt == 1); // skipped before, decided anew
    CHECK(task(run, "after").state == "succeeded");

    CHECK_FALSE(h.engine().retry(id, "", false, "uid 0", &err));
    CHECK(err == "run " + id + " has no failed or cancelled task to retry");
}

TEST_CASE("engine: a workflow slot freed while the next parked task's run is paused goes to another run",
          "[engine][limits]") {
    sim::SimHarness h;
    h.add("one", "max_parallel_tasks = 1\n[policy]\noverlap = \"allow\"\n\n" + noopTask("t"));
    h.load();
    auto r1 = h.trigger("one");
    auto r2 = h.trigger("one");
    auto r3 = h.trigger("one");
    std::string err;
    REQUIRE(h.engine().pause(r2, false, "uid 0", &err));
    h.plugin().finish("t", O::Succeeded, {}, r1);
    h.settle();
    CHECK(h.record(r1).state == "succeeded");
    h.plugin().finish("t", O::Succeeded, {}, r3); // not stuck behind the paused r2
    h.settle();
    CHECK(h.record(r3).state == "succeeded");
    REQUIRE(h.engine().cancel(r2, "", "uid 0", &err));
    h.settle();
    CHECK(h.record(r2).state == "cancelled");
    CHECK(h.engine().stats().running_tasks == 0);
}

TEST_CASE("engine: a cancel also stops the clean-up tasks of a run that fail_fast is stopping",
          "[engine][controls]") {
    sim::SimHarness h;
    h.add("ff", noopTask("bad", "fail = true") + noopTask("long") +
                    noopTask("cleanup", "depends_on = [\"long\"]\ntrigger_rule = \"all_done\""));
    h.load();
    auto id = h.trigger("ff");
    h.plugin().finish("bad", O::Failed, "failed as requested"); // fail_fast stops long
    h.settle();
    REQUIRE(h.plugin().latest("long")->cancelled);
    h.plugin().finish("long", O::Cancelled, "stopped");
    h.settle();
    REQUIRE(h.plugin().latest("cleanup")); // bad failed, long ended (cancelled), cleanup runs
    std::string err;
    REQUIRE(h.engine().cancel(id, "", "uid 0", &err));
    REQUIRE(h.plugin().latest("cleanup")->cancelled);
    h.plugin().finish("cleanup", O::Cancelled, "stopped");
    h.settle();
    auto run = h.record(id);
    CHECK(run.state == "cancelled");
    CHECK(task(run, "cleanup").state == "cancelled");
    CHECK(h.engine().stats().running_tasks == 0);
}

TEST_CASE("engine: a task of a queued run cannot be cancelled on its own", "[engine][controls]") {
    sim::SimHarness h;
    h.add("q", "[policy]\noverlap = \"queue_all\"\n\n" + noopTask("a"));
    h.load();
    auto r1 = h.trigger("q");
    auto r2 = h.trigger("q");
    std::string err;
    CHECK_FALSE(h.engine().cancel(r2, "a", "uid 0", &err));
    CHECK(err == "run " + r2 + " is queued and has started no task yet; cancel the whole run, or cancel the task once the run runs");
    h.plugin().finish("a", O::Succeeded, {}, r1);
    h.settle();
    CHECK(h.record(r1).state == "succeeded");
    h.plugin().finish("a", O::Succeeded, {}, r2);
    h.settle();
    CHECK(h.record(r2).state == "succeeded");
    CHECK(h.engine().stats().running_tasks == 0);
}

TEST_CASE("engine: an attempt cancelled before its starting record is committed never reaches its plugin",
          "[engine][durability]") {
    Harness h;
    const auto marker = h.dir() / "ran";
    h.add("once", "[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"touch " + marker.string() + "\"\n");
    h.load();
    auto id = h.trigger("once");
    // The trigger dispatched the task: it is recorded as starting, and its plugin waits for that
    // record to be durable, which takes the loop. A cancel now stops it before it starts.
    std::string err;
    REQUIRE(h.engine().cancel(id, "", "test", &err));
    auto run = h.waitEnd(id);
    CHECK(run.state == "cancelled");
    CHECK(task(run, "a").state == "cancelled");
    CHECK(task(run, "a").attempt == 1);
    CHECK_FALSE(std::filesystem::exists(marker));
}

TEST_CASE("engine: a shell attempt is recorded running with its process, pid checked by start time",
          "[engine][durability]") {
    Harness h;
    h.add("slow", "[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"sleep 5\"\n");
    h.load();
    auto id = h.trigger("slow");
    std::optional<store::TaskRecord> t;
    for (int i = 0; i < 200 && !(t && t->pid); ++i) {
        h.runFor(10ms);
        t = task(h.finished(id), "a");
    }
    REQUIRE(t);
    CHECK(t->state == "running");
    REQUIRE(t->pid);
    CHECK(t->pgid == t->pid); // the command leads its own process group
    REQUIRE(t->proc_start);
    CHECK(sameProcess(static_cast<pid_t>(*t->pid), *t->proc_start));
    std::string err;
    REQUIRE(h.engine().cancel(id, "", "test", &err));
    CHECK(h.waitEnd(id).state == "cancelled");
}

namespace {

// A `sleep 30` standing in for a task process a killed daemon left behind: its pid and start time.
std::pair<pid_t, int64_t> leftoverProcess() {
    char arg0[] = "sleep";
    char arg1[] = "30";
    char* argv[] = {arg0, arg1, nullptr};
    char* envp[] = {nullptr};
    pid_t pid = 0;
    REQUIRE(::posix_spawnp(&pid, "sleep", nullptr, nullptr, argv, envp) == 0);
    auto ticks = processStartTicks(pid);
    REQUIRE(ticks);
    return {pid, *ticks};
}

// What a daemon killed during run `id` of `workflow` leaves in the store: the run, running, and
// its tasks in these states (attempt 1 unless pending), in workflow order.
void leaveCrashedRun(Harness& h, const std::string& id, const std::string& workflow,
                     const std::vector<std::string>& states, const std::map<std::string, std::pair<pid_t, int64_t>>& processes) {
    auto wf = h.workflow(workflow);
    store::RunRecord rec;
    rec.id = id;
    rec.workflow = workflow;
    rec.trigger = taskhub::model::TriggerSource::Manual;
    rec.state = taskhub::model::RunState::Running;
    rec.version = wf->version;
    rec.created_ms = rec.started_ms.emplace(1000);
    h.store().insertRun(rec);
    for (size_t i = 0; i < states.size(); ++i) {
        store::TaskRecord t;
        t.task_id = wf->tasks[i].id;
        t.plugin = "noop";
        t.state = *taskhub::model::parse<taskhub::model::TaskState>(states[i]);
        t.attempt = states[i] == "pending" ? 0 : 1;
        if (auto p = processes.find(t.task_id); p != processes.end()) {
            t.pid = p->second.first;
            t.pgid = p->second.first;
            t.proc_start = p->second.second;
        }
        h.store().upsertTask(id, static_cast<int>(i), t);
    }
    REQUIRE(h.store().commit());
}

} // namespace

TEST_CASE("engine: recovery kills a lost attempt's process, retries it, keeps finished tasks and goes on",
          "[engine][recovery]") {
    Harness h;
    h.add("crashed", noopTask("done") + noopTask("lost", "retries = 1\ndepends_on = [\"done\"]") +
                         noopTask("once", "at_most_once = true\nretries = 3\ndepends_on = [\"done\"]") +
                         noopTask("last", "depends_on = [\"lost\"]"));
    h.load();
    // "lost" ran as a process; it is recorded as leading its process group, though it does not:
    // the pid is killed as well.
    auto [pid, ticks] = leftoverProcess();
    const std::string id = "crashed@1";
    leaveCrashedRun(h, id, "crashed", {"succeeded", "running", "starting", "pending"}, {{"lost", {pid, ticks}}});

    auto report = h.engine().recover(true);
    CHECK(report.runs == 1);
    CHECK(report.resumed == 1);
    CHECK(report.lost == 2);
    CHECK(report.killed == 1);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);

    auto run = h.waitEnd(id);
    CHECK(run.state == "failed"); // "once" failed as lost (fail_fast), so "last" never ran
    CHECK(run.lost == 2);
    CHECK(task(run, "done").attempt == 1); // not run again
    CHECK(task(run, "once").state == "failed");
    CHECK(task(run, "once").attempt == 1);
    CHECK(task(run, "once").message.find("lost: ") == 0);
    CHECK(task(run, "once").message.find("at_most_once") != std::string::npos);
    int lost_events = 0;
    bool recovered = false;
    for (const auto& e : h.events(id)) {
        if (e.kind == "lost") ++lost_events;
        if (e.kind == "recovered") recovered = true;
    }
    CHECK(lost_events == 2);
    CHECK(recovered);
}

TEST_CASE("engine: recovery leaves a process alone whose pid no longer has the recorded start time",
          "[engine][recovery]") {
    Harness h;
    h.add("crashed", noopTask("a", "retries = 1"));
    h.load();
    auto [pid, ticks] = leftoverProcess();
    const std::string id = "crashed@2";
    // Recorded with the start time of an earlier process that had this pid.
    leaveCrashedRun(h, id, "crashed", {"running"}, {{"a", {pid, ticks - 1}}});

    auto report = h.engine().recover(true);
    CHECK(report.lost == 1);
    CHECK(report.killed == 0);
    CHECK(sameProcess(pid, ticks));
    auto run = h.waitEnd(id);
    CHECK(run.state == "succeeded"); // retried
    CHECK(task(run, "a").attempt == 2);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

TEST_CASE("engine: run_as is resolved when the attempt starts; an account gone since load fails it",
          "[engine][run_as]") {
    Harness h;
    h.add("v", "[[task]]\nid = \"t\"\nplugin = \"shell\"\ncommand = \"true\"\nrun_as = \"nobody\"\n");
    h.load();
    // The loaded workflow, as if the account had been deleted after the file was loaded.
    auto gone = std::make_shared<config::Workflow>(*h.workflow("v"));
    gone->tasks[0].run_as = "no-such-user-th";
    auto r = h.engine().trigger({.workflow = gone, .actor = "test"});
    REQUIRE(r.ok);
    auto run = h.waitEnd(r.run_id);
    CHECK(run.state == "failed");
    CHECK(task(run, "t").state == "failed");
    CHECK(task(run, "t").message == "cannot run as \"no-such-user-th\" (run_as, from task): no user "
                                    "'no-such-user-th' in the password database; it resolved when the "
                                    "workflow was loaded");
}

TEST_CASE("engine: a paused firing caught up before its record is committed still becomes the run",
          "[engine][catchup]") {
    // `resume` right after a paused firing was recorded: the catch-up comes in the same turn of
    // the loop, while the store's writer has not committed the skipped record (committing takes
    // an fsync; the two calls below are microseconds apart). The firing must not be taken for a
    // duplicate and lost.
    Harness h;
    h.add("nightly", noopTask("a"));
    h.load();
    const auto instant = std::chrono::sys_seconds(std::chrono::hours(24 * 20001));
    auto skipped = h.engine().trigger({.workflow = h.workflow("nightly"),
                                       .source = model::TriggerSource::Cron,
                                       .scheduled = instant,
                                       .skip = model::SkipCause::Paused});
    REQUIRE(skipped.ok);
    auto caught_up = h.engine().trigger({.workflow = h.workflow("nightly"),
                                         .source = model::TriggerSource::Cron,
                                         .scheduled = instant,
                                         .note = "catch-up"});
    INFO(caught_up.error);
    REQUIRE(caught_up.ok);
    CHECK(caught_up.run_id == skipped.run_id);
    // Fired again while that run is active: a duplicate, not a second revival.
    auto again = h.engine().trigger(
        {.workflow = h.workflow("nightly"), .source = model::TriggerSource::Cron, .scheduled = instant});
    CHECK_FALSE(again.ok);
    CHECK(again.duplicate);
    auto run = h.waitEnd(caught_up.run_id);
    CHECK(run.state == "succeeded");
    CHECK(run.skip_cause == "");
}

TEST_CASE("engine: a firing skipped while its workflow was paused becomes the run on catch-up, whatever its message says",
          "[engine][catchup]") {
    Harness h;
    h.add("nightly", noopTask("a"));
    h.load();
    const auto instant = std::chrono::sys_seconds(std::chrono::hours(24 * 20000));
    // Recorded while paused, with a reason worded unlike model::kPausedFiringMessage.
    auto skipped = h.engine().trigger({.workflow = h.workflow("nightly"),
                                       .source = model::TriggerSource::Cron,
                                       .scheduled = instant,
                                       .skip = model::SkipCause::Paused,
                                       .skip_reason = "not run: someone paused this workflow"});
    REQUIRE(skipped.ok);
    CHECK(skipped.state == "skipped");
    auto rec = h.finished(skipped.run_id);
    CHECK(rec.skip_cause == "paused");
    CHECK(rec.message == "not run: someone paused this workflow");
    // The catch-up after `resume` fires the same instant again: the record becomes the run.
    auto caught_up = h.engine().trigger({.workflow = h.workflow("nightly"),
                                         .source = model::TriggerSource::Cron,
                                         .scheduled = instant,
                                         .note = "catch-up"});
    INFO(caught_up.error);
    REQUIRE(caught_up.ok);
    CHECK(caught_up.run_id == skipped.run_id);
    auto run = h.waitEnd(caught_up.run_id);
    CHECK(run.state == "succeeded");
    CHECK(run.skip_cause == "");
    // Fired once more, the instant is a duplicate: only a paused firing is revived.
    auto again = h.engine().trigger(
        {.workflow = h.workflow("nightly"), .source = model::TriggerSource::Cron, .scheduled = instant});
    CHECK_FALSE(again.ok);
    CHECK(again.duplicate);
}

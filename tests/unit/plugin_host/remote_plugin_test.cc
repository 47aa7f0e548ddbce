// Process isolation against the real taskhub-runner and fixture plugins that crash, hang or throw:
// what the engine sees of a plugin whose runner dies, is restarted, or hangs; that refusals read
// as they do in-process; and that exceptions a plugin lets escape never leave the host.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "plugin_host/plugin_host.h"
#include "plugin_host/remote_plugin.h"
#include "pool/worker_pool.h"

using namespace taskhub::plugin_host;
using namespace std::chrono_literals;
using Outcome = AttemptResult::Outcome;

namespace {

std::string fixture(const std::string& name) { return std::string(FIXTURE_DIR) + "/" + name + ".so"; }

// Runs the loop until pred() holds or `limit` passed; returns pred().
bool runUntil(boost::asio::io_context& io, const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred() && std::chrono::steady_clock::now() < deadline) {
        io.restart();
        io.run_for(10ms);
    }
    return pred();
}

// Collects the log lines of its lifetime (the default logger is replaced meanwhile).
class LogCapture {
public:
    LogCapture() : previous_(spdlog::default_logger()) {
        auto logger = std::make_shared<spdlog::logger>("capture", std::make_shared<Sink>(*this));
        logger->set_level(spdlog::level::trace);
        spdlog::set_default_logger(logger);
    }
    ~LogCapture() { spdlog::set_default_logger(previous_); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;

    bool contains(const std::string& text) {
        std::lock_guard lock(mu_);
        for (const auto& l : lines_) {
            if (l.find(text) != std::string::npos) return true;
        }
        return false;
    }

private:
    class Sink final : public spdlog::sinks::base_sink<std::mutex> {
    public:
        explicit Sink(LogCapture& owner) : owner_(owner) {}

    protected:
        void sink_it_(const spdlog::details::log_msg& msg) override {
            std::lock_guard lock(owner_.mu_);
            owner_.lines_.emplace_back(msg.payload.data(), msg.payload.size());
        }
        void flush_() override {}

    private:
        LogCapture& owner_;
    };
    std::shared_ptr<spdlog::logger> previous_;
    std::mutex mu_;
    std::vector<std::string> lines_;
};

struct Liveness {
    std::vector<std::pair<bool, std::string>> events;
};

std::unique_ptr<RemotePlugin> launch(boost::asio::io_context& io, const std::string& name, std::string* refusal,
                                     const std::string& config = "{}") {
    Description d = describeOutOfProcess(RUNNER, fixture(name), 10s);
    if (!d.info) {
        *refusal = d.refusal;
        return nullptr;
    }
    RemotePlugin::Options o;
    o.runner = RUNNER;
    o.config_json = config;
    return RemotePlugin::launch(io, *d.info, o, refusal);
}

// In a sanitizer build the runner's sanitizer runtime would catch a crash and exit on its own terms;
// a production runner dies of the signal itself, which is what the tests check.
void letCrashesThrough() {
    for (const char* var : {"TSAN_OPTIONS", "ASAN_OPTIONS"}) {
        const char* old = std::getenv(var);
        const std::string value = std::string(old ? old : "") + " handle_segv=0 handle_abort=0";
        ::setenv(var, value.c_str(), 1);
    }
}

std::optional<AttemptResult> runAttempt(boost::asio::io_context& io, Plugin& p, const std::string& params = "{}",
                                        uint32_t attempt = 1) {
    AttemptSpec spec;
    spec.workflow = "wf";
    spec.run_id = "run-1";
    spec.task_id = "t";
    spec.attempt = attempt;
    spec.params_json = params;
    std::optional<AttemptResult> result;
    p.start(spec, [&](AttemptResult r) { result = std::move(r); });
    CHECK_FALSE(result); // never inside start()
    runUntil(io, [&] { return result.has_value(); });
    return result;
}

} // namespace

TEST_CASE("describing out of process says what loading in process says", "[isolation]") {
    Description good = describeOutOfProcess(RUNNER, fixture("fx_good"), 10s);
    REQUIRE(good.info);
    CHECK(good.info->name == "fx_good");
    CHECK(good.info->file == fixture("fx_good"));
    for (const char* name : {"fx_bad_magic", "fx_abi_major2", "fx_no_entry", "fx_suspend_no_functions"}) {
        PluginHost in_process(nullptr, nullptr);
        auto expected = in_process.loadFile(fixture(name), {});
        REQUIRE(expected);
        Description d = describeOutOfProcess(RUNNER, fixture(name), 10s);
        CHECK_FALSE(d.info);
        CHECK(d.refusal == *expected);
    }
    Description missing = describeOutOfProcess("/nonexistent/taskhub-runner", fixture("fx_good"), 10s);
    CHECK(missing.refusal == "cannot describe the plugin out of process: cannot start /nonexistent/taskhub-runner: "
                             "No such file or directory");
}

TEST_CASE("a process plugin runs attempts in its runner", "[isolation]") {
    boost::asio::io_context io;
    std::string refusal;
    auto p = launch(io, "fx_outputs", &refusal);
    REQUIRE(p);
    CHECK(p->info().isolation == Isolation::Process);
    CHECK(p->canSuspend());
    CHECK(p->runnerPid() > 0);
    auto r = runAttempt(io, *p);
    REQUIRE(r);
    CHECK(r->outcome == Outcome::Succeeded);
    CHECK(r->message == "statuses 0 0 0 1 1");
    CHECK_FALSE(r->transient);
    CHECK(r->outputs == taskhub::model::NameValues{{"greeting", "hi"}, {"count", "1"}});
    CHECK(p->running() == 0);

    // Typed outputs (ABI 1.7 set_output_json) travel from the runner as they are stored.
    auto typed = runAttempt(io, *p, R"({"json":true})");
    REQUIRE(typed);
    CHECK(typed->message == "statuses 0 0 0 1 1 json 0 0 1 0 1");
    CHECK(typed->outputs == taskhub::model::NameValues{{"greeting", "hi"}, {"text", "plain"}});
    CHECK(typed->json_outputs == taskhub::model::NameValues{{"files", R"(["a","b"])"}, {"count", "2"}});

    // Suspend, resume and cancel reach the plugin in the runner, in order.
    AttemptSpec spec;
    spec.params_json = R"({"wait":true})";
    std::optional<AttemptResult> waited;
    uint64_t token = p->start(spec, [&](AttemptResult res) { waited = std::move(res); });
    p->suspend(token);
    p->resume(token);
    p->cancel(token);
    REQUIRE(runUntil(io, [&] { return waited.has_value(); }));
    CHECK(waited->outcome == Outcome::Cancelled);
    CHECK(waited->message == "calls: suspend resume ");
}

TEST_CASE("validate is a round trip to the runner", "[isolation]") {
    boost::asio::io_context io;
    std::string refusal;
    Description d = describeOutOfProcess(RUNNER, NOOP_PLUGIN, 10s);
    REQUIRE(d.info);
    RemotePlugin::Options o;
    o.runner = RUNNER;
    auto p = RemotePlugin::launch(io, *d.info, o, &refusal);
    REQUIRE(p);
    CHECK_FALSE(p->validate(R"({"sleep_ms": 5})"));
    auto problem = p->validate(R"({"sleep_ms": "soon"})");
    REQUIRE(problem);
    CHECK(problem->key == "sleep_ms");
    CHECK(problem->message.find("'sleep_ms' must be a non-negative integer") != std::string::npos);
}

TEST_CASE("a runner that dies fails its attempts as transient and is restarted", "[isolation]") {
    boost::asio::io_context io;
    std::string refusal;
    letCrashesThrough();
    auto p = launch(io, "fx_segv", &refusal);
    REQUIRE(p);
    Liveness live;
    p->setLivenessListener([&](bool up, const std::string& m) { live.events.emplace_back(up, m); });
    const int first_pid = p->runnerPid();

    auto r = runAttempt(io, *p);
    REQUIRE(r);
    const std::string death = "runner pid " + std::to_string(first_pid) + " killed by signal 11 (SIGSEGV)";
    CHECK(r->outcome == Outcome::Failed);
    CHECK(r->transient);
    CHECK(r->message.find("plugin 'fx_segv': " + death) == 0);
    REQUIRE(runUntil(io, [&] { return !live.events.empty(); }));
    CHECK_FALSE(live.events[0].first);
    CHECK(live.events[0].second.find(death) == 0);
    CHECK(live.events[0].second.find("; restarting in 1s") != std::string::npos);

    // While it is down: no waiting, a transient failure that says when it comes back.
    CHECK(p->runnerPid() == 0);
    auto down = runAttempt(io, *p, "{}", 2);
    REQUIRE(down);
    CHECK(down->transient);
    CHECK(down->message.find("plugin 'fx_segv' runner is not running (" + death + "; restarting in 1s)") == 0);
    CHECK_FALSE(p->validate("{}")); // skipped, not blocked

    REQUIRE(runUntil(io, [&] { return live.events.size() >= 2; }));
    CHECK(live.events[1].first);
    const int second_pid = p->runnerPid();
    CHECK(second_pid > 0);
    CHECK(second_pid != first_pid);
    auto retried = runAttempt(io, *p, "{}", 2);
    REQUIRE(retried);
    CHECK(retried->outcome == Outcome::Succeeded);
    CHECK(retried->message == "fixture: attempt 2 survived");

    // The next death waits twice as long.
    auto again = runAttempt(io, *p);
    REQUIRE(again);
    CHECK(again->transient);
    REQUIRE(runUntil(io, [&] { return live.events.size() >= 3; }));
    CHECK(live.events[2].second.find("; restarting in 2s") != std::string::npos);
}

TEST_CASE("a runner killed from outside is noticed through its pidfd", "[isolation]") {
    boost::asio::io_context io;
    std::string refusal;
    auto p = launch(io, "fx_never", &refusal);
    REQUIRE(p);
    Liveness live;
    p->setLivenessListener([&](bool up, const std::string& m) { live.events.emplace_back(up, m); });
    AttemptSpec spec;
    std::optional<AttemptResult> result;
    p->start(spec, [&](AttemptResult r) { result = std::move(r); });
    runUntil(io, [] { return false; }, 100ms);
    const int pid = p->runnerPid();
    REQUIRE(::kill(pid, SIGKILL) == 0); // as the OOM killer would
    REQUIRE(runUntil(io, [&] { return result.has_value(); }));
    CHECK(result->transient);
    CHECK(result->message == "plugin 'fx_never': runner pid " + std::to_string(pid) +
                                 " killed by signal 9 (SIGKILL) while the attempt ran");
}

TEST_CASE("a runner whose health check hangs is killed and restarted", "[isolation][health]") {
    boost::asio::io_context io;
    std::string refusal;
    auto p = launch(io, "fx_health_hangs", &refusal);
    REQUIRE(p);
    Liveness live;
    p->setLivenessListener([&](bool up, const std::string& m) { live.events.emplace_back(up, m); });
    const int pid = p->runnerPid();
    std::optional<HealthReport> report;
    p->checkHealth(300ms, [&](HealthReport h) { report = std::move(h); });
    REQUIRE(runUntil(io, [&] { return report.has_value(); }));
    CHECK(report->state == HealthState::Unhealthy);
    CHECK(report->message == "health check timed out after 300ms; runner pid " + std::to_string(pid) +
                                 " killed (SIGKILL) and restarting");
    REQUIRE(runUntil(io, [&] { return live.events.size() >= 2; }));
    CHECK(live.events[0].second == "runner pid " + std::to_string(pid) +
                                       " did not answer a health check within 300ms; killed it (SIGKILL); "
                                       "restarting in 1s");
    CHECK(live.events[1].first);
    CHECK(p->runnerPid() != pid);
}

TEST_CASE("a plugin refused by its runner reads as it would in process", "[isolation]") {
    boost::asio::io_context io;
    std::string refusal;
    CHECK_FALSE(launch(io, "fx_create_fails", &refusal));
    CHECK(refusal == "create() failed: fixture: create always fails");
    CHECK_FALSE(launch(io, "fx_throw", &refusal, R"({"throw_in_create":true})"));
    CHECK(refusal == "create() threw a C++ exception across the C ABI");
}

TEST_CASE("the host loads a plugin in a runner when its isolation says process", "[isolation]") {
    boost::asio::io_context io;
    taskhub::pool::WorkerPool pool(0, 2, 1s);
    PluginHost host(&io, &pool);
    LoadPolicy policy;
    policy.isolate = true;
    policy.runner = RUNNER;
    host.setLoadPolicy(policy);
    std::map<std::string, taskhub::config::PluginSettings> settings;
    settings["fx_good"].isolation = Isolation::Process;
    REQUIRE_FALSE(host.loadFile(fixture("fx_good"), settings));
    REQUIRE_FALSE(host.loadFile(fixture("fx_outputs"), settings)); // default: in process
    CHECK(host.find("fx_good")->info().isolation == Isolation::Process);
    CHECK(host.find("fx_outputs")->info().isolation == Isolation::InProcess);
    // One name, one plugin, whichever way it was loaded.
    auto dup = host.loadFile(fixture("fx_good"), settings);
    REQUIRE(dup);
    CHECK(*dup == "duplicate plugin name 'fx_good', already loaded from " + fixture("fx_good"));
    settings.erase("fx_good");
    settings["fx_outputs"].isolation = Isolation::Process;
    dup = host.loadFile(fixture("fx_outputs"), settings);
    REQUIRE(dup);
    CHECK(*dup == "duplicate plugin name 'fx_outputs', already loaded from " + fixture("fx_outputs"));

    auto r = runAttempt(io, *host.find("fx_good"));
    REQUIRE(r);
    CHECK(r->message == "fixture: done");
}

TEST_CASE("exceptions a plugin lets escape become failures and log lines", "[isolation][exceptions]") {
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(host.loadFile(fixture("fx_throw"), {}));
    Plugin& p = *host.find("fx_throw");
    auto r = runAttempt(io, p);
    REQUIRE(r);
    CHECK(r->outcome == Outcome::Failed);
    CHECK(r->message == "plugin fx_throw could not start the task: execute() threw: fixture: execute throws");
    auto problem = p.validate(R"({"throw_in_validate":1})");
    REQUIRE(problem);
    CHECK(problem->message == "validate() threw a C++ exception across the C ABI");
    // A callback that throws on the event loop: the attempt it completed counts, the loop goes on.
    // cancel() throws as well, and is only logged.
    AttemptSpec spec;
    spec.params_json = R"({"throw_in_timer":1})";
    std::optional<AttemptResult> timer;
    uint64_t token = p.start(spec, [&](AttemptResult res) { timer = std::move(res); });
    p.cancel(token);
    REQUIRE(runUntil(io, [&] { return timer.has_value(); }));
    CHECK(timer->outcome == Outcome::Succeeded);
    CHECK(timer->message == "fixture: completed by the timer");
}

TEST_CASE("a runner killed at shutdown is reaped and the log names its signal", "[isolation][shutdown]") {
    // Before: killAndReap() waited with waitid(P_PIDFD) on the pidfd Asio had made non-blocking,
    // got EAGAIN, gave up: the runner stayed a zombie and the log said "killed by signal 0".
    LogCapture logs;
    boost::asio::io_context io;
    std::string refusal;
    auto p = launch(io, "fx_good", &refusal);
    REQUIRE(p);
    runUntil(io, [] { return false; }, 50ms); // its pidfd watched on the loop, as in the daemon
    const int pid = p->runnerPid();
    REQUIRE(pid > 0);
    REQUIRE(::kill(pid, SIGSTOP) == 0); // it cannot answer the shutdown request
    p.reset();                          // asks, waits 2 s, kills, reaps
    // Reaped: this process, its parent, has no such child any more (a zombie would be reaped here).
    errno = 0;
    CHECK(::waitpid(pid, nullptr, WNOHANG) == -1);
    CHECK(errno == ECHILD);
    const std::string who = "plugin fx_good: runner pid " + std::to_string(pid);
    CHECK(logs.contains("RUNNER_KILLED " + who + " did not exit within 2s of shutdown; killed it"));
    CHECK(logs.contains("RUNNER_STOPPED " + who + " killed by signal 9 (SIGKILL)"));
}

TEST_CASE("an unhealthy plugin's reason survives its runner's restart until a check passes",
          "[isolation][health]") {
    // Before: the restart's liveness report replaced the reason with "runner pid N started
    // (restart 1)", so tasks failed or held meanwhile named no fault.
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    LoadPolicy policy;
    policy.isolate = true;
    policy.runner = RUNNER;
    host.setLoadPolicy(policy);
    std::map<std::string, taskhub::config::PluginSettings> settings;
    auto& s = settings["fx_health_hangs"];
    s.isolation = Isolation::Process;
    s.health.interval = 10ms;
    s.health.timeout = 300ms;
    s.health.unhealthy_after = 1;
    s.health.healthy_after = 1;
    REQUIRE_FALSE(host.loadFile(fixture("fx_health_hangs"), settings));
    auto* remote = dynamic_cast<RemotePlugin*>(host.find("fx_health_hangs"));
    REQUIRE(remote);
    const int first = remote->runnerPid();
    host.startHealthChecks(settings);
    auto health = [&] { return host.health("fx_health_hangs"); };
    REQUIRE(runUntil(io, [&] { return health()->message.find("started (restart 1)") != std::string::npos; }));
    const int second = remote->runnerPid();
    CHECK(health()->state == HealthState::Unhealthy);
    CHECK(health()->message == "runner pid " + std::to_string(first) +
                                   " did not answer a health check within 300ms; killed it (SIGKILL); restarting "
                                   "in 1s; runner pid " + std::to_string(second) + " started (restart 1)");
    host.stopHealthChecks();
}

TEST_CASE("a plugin with a thread still inside execute() is neither destroyed nor unloaded",
          "[isolation][shutdown]") {
    // Before: the host destroyed the instance and unloaded the library under the thread, which
    // then ran unmapped code (SIGSEGV), and the pool joined a thread that never returns.
    LogCapture logs;
    boost::asio::io_context io;
    std::optional<AttemptResult> result;
    const size_t held_before = threadsLeftInPlugins();
    {
        taskhub::pool::WorkerPool pool(0, 2, 1s);
        {
            PluginHost host(&io, &pool);
            REQUIRE_FALSE(host.loadFile(fixture("fx_stuck_loop"), {}));
            Plugin& p = *host.find("fx_stuck_loop");
            AttemptSpec spec;
            spec.workflow = "wf";
            spec.run_id = "run-1";
            spec.task_id = "t";
            const uint64_t token = p.start(spec, [&](AttemptResult r) { result = std::move(r); });
            REQUIRE(runUntil(io, [&] { return host.threadsInside().size() == 1; }));
            p.cancel(token); // completes the attempt; execute() goes on
            REQUIRE(runUntil(io, [&] { return result.has_value(); }));
            CHECK(result->outcome == Outcome::Cancelled);
            const auto inside = host.threadsInside();
            REQUIRE(inside.size() == 1);
            CHECK(inside[0].plugin == "fx_stuck_loop");
            CHECK(inside[0].task_id == "t");
            CHECK(inside[0].run_id == "run-1");
        } // the host goes: the plugin is kept
        CHECK(logs.contains("PLUGIN_THREAD_HELD plugin fx_stuck_loop: execute() of task t (workflow wf, run run-1, "
                            "attempt 1) has not returned after "));
        CHECK(threadsLeftInPlugins() == held_before + 1);
        CHECK(pool.letGone() == 1);
    } // the pool goes without joining it
    // The thread still runs in the plugin, whose code is still mapped.
    std::this_thread::sleep_for(50ms);
    CHECK(threadsLeftInPlugins() == held_before + 1);
}

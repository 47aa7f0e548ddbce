// The noop plugin, driven through the C ABI: parameter checks and the outcomes its parameters
// script, immediately, after a timer, or cancelled.
#include "fake_host.h"

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;
using taskhub::tests::FakeHost;
using taskhub::tests::LoadedPlugin;
using taskhub::tests::TaskSpec;

namespace {

const LoadedPlugin& noopPlugin() {
    static const LoadedPlugin plugin(TASKHUB_NOOP_PLUGIN_PATH);
    return plugin;
}

TaskSpec noopTask(const std::string& params_json) {
    TaskSpec spec;
    spec.params_json = params_json;
    return spec;
}

void requireCleanHost(const FakeHost& host) {
    CHECK(host.pendingTimers() == 0);
    CHECK(host.duplicateCompletions() == 0);
    CHECK(host.offLoopCalls() == 0);
}

} // namespace

TEST_CASE("noop: declares its name, capabilities and threading", "[noop]") {
    const th_plugin_api* api = noopPlugin().api();
    REQUIRE(api != nullptr);
    CHECK(api->magic == TH_ABI_MAGIC);
    CHECK(std::string(api->name) == "noop");
    CHECK(api->capabilities == (TH_CAP_CANCEL | TH_CAP_NO_LOG));
    CHECK(api->thread_safety == TH_THREADS_SAFE);
}

TEST_CASE("noop: has no settings", "[noop]") {
    CHECK(FakeHost::createFailure(noopPlugin(), "{}").first == TH_OK);
    auto [status, message] = FakeHost::createFailure(noopPlugin(), R"({"speed":1})");
    CHECK(status == TH_ERR_FAILED);
    CHECK(message == "unknown setting 'speed' in [plugins.noop] (noop has no settings)");
}

TEST_CASE("noop: validate accepts its parameters", "[noop]") {
    FakeHost host(noopPlugin());
    CHECK(host.validate("{}").status == TH_OK);
    CHECK(host.validate(R"({"sleep_ms":10,"fail":true,"exit_code":-1,"message":"m"})").status ==
          TH_OK);
    CHECK(host.validate(R"({"outputs":{"path":"/tmp/x","_n2":""}})").status == TH_OK);
}

TEST_CASE("noop: validate names the bad parameter and says what would be right", "[noop]") {
    FakeHost host(noopPlugin());
    struct Case {
        const char* params;
        const char* key;
        const char* message;
    };
    const Case cases[] = {
        {R"({"slep_ms":10})", "slep_ms",
         "unknown parameter 'slep_ms' for plugin noop (accepted: sleep_ms, fail, exit_code, "
         "message, outputs); did you mean 'sleep_ms'?"},
        {R"({"command":"x"})", "command",
         "unknown parameter 'command' for plugin noop (accepted: sleep_ms, fail, exit_code, "
         "message, outputs)"},
        {R"({"outputs":["a"]})", "outputs", "'outputs' must be a table of strings, found array"},
        {R"({"outputs":{"a-b":"x"}})", "outputs",
         "output name 'a-b' in 'outputs' must match [A-Za-z_][A-Za-z0-9_]*"},
        {R"({"outputs":{"n":1}})", "outputs", "output 'n' in 'outputs' must be a string, found integer"},
        {R"({"sleep_ms":"10"})", "sleep_ms",
         "'sleep_ms' must be a non-negative integer (milliseconds), found string"},
        {R"({"sleep_ms":-5})", "sleep_ms",
         "'sleep_ms' must be a non-negative integer (milliseconds), found -5"},
        {R"({"fail":"yes"})", "fail", "'fail' must be a boolean, found string"},
        {R"({"exit_code":1.5})", "exit_code", "'exit_code' must be an integer, found float"},
        {R"({"exit_code":4294967296})", "exit_code",
         "'exit_code' must be an integer from -2147483648 to 2147483647, found 4294967296"},
        {R"({"message":{}})", "message", "'message' must be a string, found table"},
        {R"(not json)", "", ""},
    };
    for (const Case& c : cases) {
        INFO(c.params);
        auto result = host.validate(c.params);
        CHECK(result.status == TH_ERR_INVALID);
        CHECK(result.key == c.key);
        if (*c.message != '\0') CHECK(result.message == c.message);
        else CHECK(result.message.starts_with("parameters for plugin noop are not valid JSON: "));
    }
}

TEST_CASE("noop: sleep_ms 0 completes from inside execute", "[noop]") {
    FakeHost host(noopPlugin());
    REQUIRE(host.execute(1, noopTask("{}")) == TH_OK);
    auto done = host.completion(1); // no loop iteration ran
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(done->exit_code == 0);
    CHECK(done->message == "succeeded");
    requireCleanHost(host);
}

TEST_CASE("noop: sleep_ms completes after a host timer", "[noop]") {
    FakeHost host(noopPlugin());
    const auto started = FakeHost::Clock::now();
    REQUIRE(host.execute(1, noopTask(R"({"sleep_ms":50,"message":"slept"})")) == TH_OK);
    CHECK_FALSE(host.completion(1));
    CHECK(host.pendingTimers() == 1);
    auto done = host.waitFor(1, 2s);
    REQUIRE(done);
    CHECK(FakeHost::Clock::now() - started >= 50ms);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    CHECK(done->message == "slept");
    requireCleanHost(host);
}

TEST_CASE("noop: fail reports FAILED with exit code 1 unless told otherwise", "[noop]") {
    FakeHost host(noopPlugin());
    REQUIRE(host.execute(1, noopTask(R"({"fail":true})")) == TH_OK);
    auto done = host.completion(1);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_FAILED);
    CHECK(done->exit_code == 1);
    CHECK(done->message == "failed as requested (exit code 1)");

    REQUIRE(host.execute(2, noopTask(R"({"fail":true,"exit_code":7,"message":"boom",)"
                                     R"("sleep_ms":5})")) == TH_OK);
    done = host.waitFor(2, 2s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_FAILED);
    CHECK(done->exit_code == 7);
    CHECK(done->message == "boom");
    requireCleanHost(host);
}

TEST_CASE("noop: outputs are set through the host before the attempt completes", "[noop]") {
    FakeHost host(noopPlugin());
    REQUIRE(host.execute(1, noopTask(R"({"outputs":{"path":"/srv/x.csv","rows":"12"}})")) == TH_OK);
    REQUIRE(host.completion(1));
    CHECK(host.completion(1)->outcome == TH_OUTCOME_SUCCEEDED);
    using Outputs = std::vector<std::pair<std::string, std::string>>;
    CHECK(host.outputs(1) == Outputs{{"path", "/srv/x.csv"}, {"rows", "12"}});

    REQUIRE(host.execute(2, noopTask(R"({"sleep_ms":5,"outputs":{"a":"1"}})")) == TH_OK);
    CHECK(host.outputs(2).empty()); // only when it completes
    REQUIRE(host.waitFor(2, 2s));
    CHECK(host.outputs(2) == Outputs{{"a", "1"}});
    CHECK(host.lateOutputs() == 0);
    requireCleanHost(host);
}

TEST_CASE("noop: outputs fail the attempt on a host older than ABI 1.1", "[noop]") {
    FakeHost host(noopPlugin(), "{}", FakeHost::Abi::V1_0);
    REQUIRE(host.execute(1, noopTask(R"({"outputs":{"a":"1"}})")) == TH_OK);
    auto done = host.completion(1);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_FAILED);
    CHECK(done->message == "the host refused output 'a' (it is older than ABI 1.1)");
    // Without outputs the plugin works with that host as before.
    REQUIRE(host.execute(2, noopTask("{}")) == TH_OK);
    CHECK(host.completion(2)->outcome == TH_OUTCOME_SUCCEEDED);
}

TEST_CASE("noop: bad parameters refuse to start the attempt", "[noop]") {
    FakeHost host(noopPlugin());
    std::string error;
    CHECK(host.execute(1, noopTask(R"({"fail":1})"), &error) == TH_ERR_FAILED);
    CHECK(error == "'fail' must be a boolean, found integer");
    CHECK_FALSE(host.completion(1));
}

TEST_CASE("noop: cancel stops the timer and completes CANCELLED", "[noop]") {
    FakeHost host(noopPlugin());
    REQUIRE(host.execute(1, noopTask(R"({"sleep_ms":600000})")) == TH_OK);
    host.runFor(10ms);
    REQUIRE(host.cancel(1) == TH_OK);
    auto done = host.completion(1);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(done->message == "cancelled");
    CHECK(host.pendingTimers() == 0);

    // Late or unknown cancels change nothing.
    CHECK(host.cancel(1) == TH_OK);
    CHECK(host.cancel(99) == TH_OK);
    host.runFor(20ms);
    requireCleanHost(host);
}

// ABI negotiation against fixture plugins built for the test, one per way a plugin can be wrong,
// and the ABI 1.1 services (set_output, suspend/resume) as the engine sees them.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>

#include "plugin_host/plugin_host.h"

using namespace taskhub::plugin_host;

namespace {

std::string fixture(const std::string& name) { return std::string(FIXTURE_DIR) + "/" + name + ".so"; }

std::optional<std::string> load(PluginHost& host, const std::string& name) {
    return host.loadFile(fixture(name), {});
}

} // namespace

TEST_CASE("a valid plugin is accepted and described", "[abi]") {
    PluginHost host(nullptr, nullptr);
    CHECK_FALSE(load(host, "fx_good"));
    auto* p = host.find("fx_good");
    REQUIRE(p);
    CHECK(p->info().abi_major == 1);
    CHECK(p->info().abi_minor == 5); // TH_ABI_VERSION_MINOR, which the fixture was built against
    CHECK(p->info().shell_params.empty()); // it declares none
    CHECK(host.shellParams("fx_good").empty());
    CHECK(p->info().file == fixture("fx_good"));
    CHECK_FALSE(host.unavailable("fx_good"));
}

TEST_CASE("a plugin built for a newer minor version is accepted", "[abi]") {
    PluginHost host(nullptr, nullptr);
    CHECK_FALSE(load(host, "fx_newer_minor"));
    REQUIRE(host.plugins().size() == 1);
    CHECK(host.plugins()[0]->info().abi_minor == 99);
}

TEST_CASE("every incompatible plugin is refused with a precise reason", "[abi]") {
    PluginHost host(nullptr, nullptr);
    CHECK(load(host, "fx_no_entry") ==
          "no entry symbol 'th_plugin_entry' (not a TaskHub plugin, or the symbol is not exported)");
    CHECK(load(host, "fx_bad_magic").value().rfind("wrong magic 0x", 0) == 0);
    CHECK(load(host, "fx_bad_magic").value().find("expected 0x54484231 (TH_ABI_MAGIC)") != std::string::npos);
    CHECK(load(host, "fx_abi_major2") ==
          "ABI major version 2, this taskhubd supports 1; rebuild the plugin against the TaskHub 1.x SDK");
    CHECK(load(host, "fx_needs_newer_host") ==
          "requires host ABI 1.99 or newer, this taskhubd provides 1.5; upgrade taskhubd");
    CHECK(load(host, "fx_create_fails") == "create() failed: fixture: create always fails");
    CHECK(load(host, "fx_suspend_no_functions") ==
          "the plugin declares TH_CAP_SUSPEND but its table does not set suspend and resume");
    CHECK(host.plugins().empty());
    CHECK(host.refused().size() == 7);
    CHECK(host.refused()[0].file == fixture("fx_no_entry"));
}

TEST_CASE("a refused plugin never stops the others", "[abi]") {
    PluginHost host(nullptr, nullptr);
    host.loadDirectories({FIXTURE_DIR}, {});
    for (const char* valid : {"fx_abi_1_0", "fx_good", "fx_newer_minor", "fx_outputs"}) {
        CHECK(host.find(valid));
    }
    for (const char* bad : {"fx_bad_magic", "fx_abi_major2", "fx_needs_newer_host", "fx_no_entry", "fx_create_fails",
                            "fx_suspend_no_functions"}) {
        INFO(bad);
        CHECK(std::count_if(host.refused().begin(), host.refused().end(),
                            [&](const RefusedPlugin& r) { return r.file == fixture(bad); }) == 1);
    }
    // Workflows that name a refused plugin learn why.
    auto why = host.unavailable("fx_create_fails");
    REQUIRE(why);
    CHECK(why->find("fx_create_fails.so was refused: create() failed: fixture: create always fails") !=
          std::string::npos);
}

TEST_CASE("a second plugin with the same name is refused", "[abi]") {
    PluginHost host(nullptr, nullptr);
    CHECK_FALSE(host.loadFile(SHELL_PLUGIN, {}));
    auto again = host.loadFile(SHELL_PLUGIN, {});
    REQUIRE(again);
    CHECK(*again == std::string("duplicate plugin name 'shell', already loaded from ") + SHELL_PLUGIN);
}

TEST_CASE("validate reaches the plugin and maps its answer", "[abi]") {
    PluginHost host(nullptr, nullptr);
    REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, {}));
    CHECK_FALSE(host.validate("shell", R"({"command":"true"})"));
    auto problem = host.validate("shell", R"({"comand":"true"})");
    REQUIRE(problem);
    CHECK(problem->key == "comand");
    CHECK(problem->message.find("did you mean 'command'?") != std::string::npos);
    auto missing = host.validate("nope", "{}");
    REQUIRE(missing);
    CHECK(missing->message == "no plugin named 'nope' is loaded (loaded: shell)");
}

namespace {

using Outcome = AttemptResult::Outcome;

// Starts one attempt of plugin and runs the loop until it is done (or a second passed).
struct Attempt {
    boost::asio::io_context& io;
    std::optional<AttemptResult> result;
    uint64_t token = 0;

    Attempt(boost::asio::io_context& ctx, Plugin& plugin, const std::string& params)
        : io(ctx) {
        AttemptSpec spec;
        spec.workflow = "wf";
        spec.run_id = "run-1";
        spec.task_id = "t";
        spec.params_json = params;
        token = plugin.start(spec, [this](AttemptResult r) { result = std::move(r); });
        io.restart();
        io.poll();
    }
    const AttemptResult& wait() {
        for (int i = 0; i < 100 && !result; ++i) {
            io.restart();
            io.run_for(std::chrono::milliseconds(10));
        }
        REQUIRE(result);
        return *result;
    }
};

} // namespace

TEST_CASE("a plugin built against ABI 1.0 runs its attempts and cannot be suspended", "[abi]") {
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_abi_1_0"));
    Plugin* p = host.find("fx_abi_1_0");
    REQUIRE(p);
    CHECK(p->info().abi_minor == 0);
    CHECK_FALSE(p->canSuspend());
    Attempt a(io, *p, "{}");
    const AttemptResult& r = a.wait();
    CHECK(r.outcome == Outcome::Succeeded);
    CHECK(r.message == "fixture: done");
    CHECK(r.outputs.empty());
    p->suspend(a.token); // refused with a log line; nothing to call
    p->resume(a.token);
}

TEST_CASE("outputs set by the plugin arrive with the attempt's result; bad ones are refused", "[abi][outputs]") {
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_outputs"));
    Plugin* p = host.find("fx_outputs");
    REQUIRE(p);
    Attempt a(io, *p, "{}");
    const AttemptResult& r = a.wait();
    CHECK(r.outcome == Outcome::Succeeded);
    // greeting, count, greeting again: accepted; "2bad" and a 4097-byte value: TH_ERR_INVALID.
    CHECK(r.message == "statuses 0 0 0 1 1");
    CHECK(r.outputs == taskhub::model::NameValues{{"greeting", "hi"}, {"count", "1"}});

    // Each attempt has its own outputs.
    Attempt b(io, *p, "{}");
    CHECK(b.wait().outputs.size() == 2);
}

TEST_CASE("suspend and resume reach a plugin that declares TH_CAP_SUSPEND", "[abi][suspend]") {
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_outputs"));
    Plugin* p = host.find("fx_outputs");
    REQUIRE(p);
    CHECK(p->canSuspend());
    Attempt a(io, *p, R"({"wait":true})");
    CHECK_FALSE(a.result);
    p->suspend(a.token);
    p->resume(a.token);
    p->cancel(a.token);
    const AttemptResult& r = a.wait();
    CHECK(r.outcome == Outcome::Cancelled);
    CHECK(r.message == "calls: suspend resume ");
    // After the end, suspend and resume are not passed on.
    p->suspend(a.token);
    p->resume(a.token);
}

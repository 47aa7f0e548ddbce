// ABI negotiation against fixture plugins built for the test, one per way a plugin can be wrong,
// and the ABI 1.1 services (set_output, suspend/resume) as the engine sees them.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <taskhub/plugin_api.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>

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
    CHECK(p->info().abi_minor == 7); // TH_ABI_VERSION_MINOR, which the fixture was built against
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
          "requires host ABI 1.99 or newer, this taskhubd provides 1.7; upgrade taskhubd");
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

    // ABI 1.7 set_output_json: typed outputs, compact; a JSON string is plain; bad JSON and
    // nesting over 64 are refused; "count" moves from plain to typed.
    Attempt c(io, *p, R"({"json":true})");
    const AttemptResult& rc = c.wait();
    CHECK(rc.message == "statuses 0 0 0 1 1 json 0 0 1 0 1");
    CHECK(rc.outputs == taskhub::model::NameValues{{"greeting", "hi"}, {"text", "plain"}});
    CHECK(rc.json_outputs == taskhub::model::NameValues{{"files", R"(["a","b"])"}, {"count", "2"}});
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

namespace {

// A scratch FX_ADOPT_DIR for fx_adopt's "remote jobs" (files), removed afterwards.
struct AdoptDir {
    std::filesystem::path path;
    AdoptDir() {
        char tmpl[] = "/tmp/taskhub-fx-adopt-XXXXXX";
        path = ::mkdtemp(tmpl);
        ::setenv("FX_ADOPT_DIR", path.c_str(), 1);
    }
    ~AdoptDir() {
        ::unsetenv("FX_ADOPT_DIR");
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
    std::string ledger() const {
        std::ifstream in(path / "ledger");
        return std::string(std::istreambuf_iterator<char>(in), {});
    }
};

bool runUntil(boost::asio::io_context& io, const std::function<bool()>& pred) {
    for (int i = 0; i < 300 && !pred(); ++i) {
        io.restart();
        io.run_for(std::chrono::milliseconds(10));
    }
    return pred();
}

AttemptSpec adoptSpec(uint32_t attempt = 1) {
    AttemptSpec spec;
    spec.workflow = "wf";
    spec.run_id = "run-1";
    spec.task_id = "t";
    spec.attempt = attempt;
    return spec;
}

} // namespace

TEST_CASE("ABI 1.6: a plugin reports its attempt's handle and adopts the attempt again by it", "[abi][adopt]") {
    AdoptDir dir;
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_adopt"));
    Plugin* p = host.find("fx_adopt");
    REQUIRE(p);
    CHECK(p->canAdopt());
    CHECK(capabilityNames(p->info().capabilities) ==
          std::vector<std::string>{"cancel", "durable_start", "adopt", "hold"});

    // execute(): the handle reaches the engine's on_handle before the end.
    std::vector<std::string> handles;
    std::optional<AttemptResult> first;
    AttemptSpec spec = adoptSpec();
    spec.on_handle = [&](const std::string& h) { handles.push_back(h); };
    p->start(spec, [&](AttemptResult r) { first = std::move(r); });
    REQUIRE(runUntil(io, [&] { return !handles.empty(); }));
    CHECK(handles == std::vector<std::string>{"J1"});
    CHECK_FALSE(first);

    // adopt() of the same job (as a restarted host would): it ends with the job's result.
    std::optional<AttemptResult> adopted;
    auto token = p->adopt(adoptSpec(), std::string("J1"), [&](AttemptResult r) { adopted = std::move(r); });
    REQUIRE(token);
    dir.write("J1.exit", "3\n");
    REQUIRE(runUntil(io, [&] { return adopted.has_value() && first.has_value(); }));
    CHECK(adopted->outcome == Outcome::Failed);
    CHECK(adopted->exit_code == 3);
    CHECK_FALSE(adopted->lost);
    CHECK(adopted->message == "job J1 finished with exit code 3");
    CHECK(dir.ledger() == "submit J1 run-1 t 1\nadopt J1 run-1 t 1\n");
}

TEST_CASE("ABI 1.6: an adoption the plugin refuses, and TH_OUTCOME_LOST, end the attempt as lost", "[abi][adopt]") {
    AdoptDir dir;
    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_adopt"));
    Plugin* p = host.find("fx_adopt");
    REQUIRE(p);

    std::optional<AttemptResult> unknown, none, vanished;
    REQUIRE(p->adopt(adoptSpec(), std::string("J9"), [&](AttemptResult r) { unknown = std::move(r); }));
    REQUIRE(p->adopt(adoptSpec(), std::nullopt, [&](AttemptResult r) { none = std::move(r); }));
    CHECK_FALSE(unknown); // never inside adopt()
    REQUIRE(runUntil(io, [&] { return unknown && none; }));
    CHECK(unknown->lost);
    CHECK(unknown->outcome == Outcome::Failed);
    CHECK(unknown->message == "plugin fx_adopt could not adopt it: job J9 is unknown");
    CHECK(none->lost);
    CHECK(none->message == "plugin fx_adopt could not adopt it: no job id was recorded for it");

    // A job that disappears while it is followed: TH_OUTCOME_LOST.
    std::vector<std::string> handles;
    AttemptSpec spec = adoptSpec();
    spec.on_handle = [&](const std::string& h) { handles.push_back(h); };
    p->start(spec, [&](AttemptResult r) { vanished = std::move(r); });
    REQUIRE(runUntil(io, [&] { return !handles.empty(); }));
    std::filesystem::remove(dir.path / (handles[0] + ".job"));
    REQUIRE(runUntil(io, [&] { return vanished.has_value(); }));
    CHECK(vanished->lost);
    CHECK(vanished->message == "job " + handles[0] + " is no longer known");
}

TEST_CASE("ABI 1.6: handles are checked; plugins that cannot adopt say so", "[abi][adopt]") {
    std::string why;
    CHECK(validHandle("4242", &why));
    CHECK(validHandle(std::string(kMaxHandle, 'x').c_str(), &why));
    CHECK_FALSE(validHandle(std::string(kMaxHandle + 1, 'x').c_str(), &why));
    CHECK(why == "the handle is 257 bytes long (expected 1 to 256)");
    CHECK_FALSE(validHandle("", &why));
    CHECK_FALSE(validHandle(nullptr, &why));
    CHECK(why == "the handle is NULL");
    CHECK_FALSE(validHandle("42\n43", &why));
    CHECK(why == "the handle holds a control character (byte 10 at offset 2)");

    boost::asio::io_context io;
    PluginHost host(&io, nullptr);
    REQUIRE_FALSE(load(host, "fx_good"));
    Plugin* p = host.find("fx_good");
    CHECK_FALSE(p->canAdopt());
    bool called = false;
    CHECK_FALSE(p->adopt(adoptSpec(), std::string("1"), [&](AttemptResult) { called = true; }));
    io.restart();
    io.poll();
    CHECK_FALSE(called);
}

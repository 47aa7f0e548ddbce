// The fixture plugins of tests/fixtures carry exactly the defect each is named for, and the valid
// ones work. The plugin host's own tests rely on this when they prove it refuses or accepts them.
// Also: the SDK's Host wrappers forward to the host table, or say the host is too old.
#include "fake_host.h"

#include <catch2/catch.hpp>

#include <cstddef>
#include <string>

#include <taskhub/plugin.hpp>

using taskhub::tests::FakeHost;
using taskhub::tests::LoadedPlugin;
using taskhub::tests::TaskSpec;

namespace {

// Checks that every negotiated field other than the named one is what a valid 1.0 plugin has.
void checkValidApartFrom(const th_plugin_api* api, const std::string& defect) {
    REQUIRE(api != nullptr);
    if (defect != "magic") CHECK(api->magic == TH_ABI_MAGIC);
    if (defect != "abi_major") CHECK(api->abi_major == TH_ABI_VERSION_MAJOR);
    if (defect != "struct_size") CHECK(api->struct_size == sizeof(th_plugin_api));
    if (defect != "min_host_minor") CHECK(api->min_host_minor == 0);
    CHECK(api->create != nullptr);
    CHECK(api->destroy != nullptr);
    CHECK(api->validate != nullptr);
    CHECK(api->execute != nullptr);
}

void checkRunsOneTask(const LoadedPlugin& plugin) {
    FakeHost host(plugin);
    REQUIRE(host.execute(1, TaskSpec{}) == TH_OK);
    auto done = host.completion(1);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
}

} // namespace

TEST_CASE("fixtures: fx_good is a valid plugin that succeeds at once", "[fixtures]") {
    LoadedPlugin plugin(TASKHUB_FX_GOOD_PLUGIN_PATH);
    checkValidApartFrom(plugin.api(), "");
    CHECK(std::string(plugin.api()->name) == "fx_good");
    checkRunsOneTask(plugin);
}

TEST_CASE("fixtures: each refused fixture has exactly its defect", "[fixtures]") {
    LoadedPlugin bad_magic(TASKHUB_FX_BAD_MAGIC_PLUGIN_PATH);
    checkValidApartFrom(bad_magic.api(), "magic");
    CHECK(bad_magic.api()->magic != TH_ABI_MAGIC);

    LoadedPlugin major2(TASKHUB_FX_ABI_MAJOR2_PLUGIN_PATH);
    checkValidApartFrom(major2.api(), "abi_major");
    CHECK(major2.api()->abi_major == 2);

    LoadedPlugin needs_newer(TASKHUB_FX_NEEDS_NEWER_HOST_PLUGIN_PATH);
    checkValidApartFrom(needs_newer.api(), "min_host_minor");
    CHECK(needs_newer.api()->min_host_minor == 99);

    LoadedPlugin no_entry(TASKHUB_FX_NO_ENTRY_PLUGIN_PATH);
    CHECK(no_entry.api() == nullptr);

    LoadedPlugin create_fails(TASKHUB_FX_CREATE_FAILS_PLUGIN_PATH);
    checkValidApartFrom(create_fails.api(), "");
    auto [status, message] = FakeHost::createFailure(create_fails, "{}");
    CHECK(status == TH_ERR_FAILED);
    CHECK(message == "fixture: create always fails");
}

TEST_CASE("fixtures: fx_abi_1_0 has a 1.0 table and works", "[fixtures]") {
    LoadedPlugin plugin(TASKHUB_FX_ABI_1_0_PLUGIN_PATH);
    checkValidApartFrom(plugin.api(), "struct_size");
    CHECK(plugin.api()->abi_minor == 0);
    CHECK(plugin.api()->struct_size == offsetof(th_plugin_api, suspend));
    CHECK(plugin.api()->capabilities == 0);
    checkRunsOneTask(plugin);
}

TEST_CASE("TH_HAS_FIELD: a field is covered only when struct_size reaches its last byte",
          "[fixtures]") {
    th_host_api host{};
    host.struct_size = offsetof(th_host_api, report_process) + sizeof host.report_process;
    CHECK(TH_HAS_FIELD(&host, th_host_api, set_output));
    CHECK(TH_HAS_FIELD(&host, th_host_api, report_process));
    host.struct_size -= 1;
    CHECK(TH_HAS_FIELD(&host, th_host_api, set_output));
    CHECK_FALSE(TH_HAS_FIELD(&host, th_host_api, report_process));
    host.struct_size = offsetof(th_host_api, set_output);
    CHECK_FALSE(TH_HAS_FIELD(&host, th_host_api, set_output));

    th_task task{};
    task.struct_size = sizeof task;
    CHECK(TH_HAS_FIELD(&task, th_task, run_as));
    task.struct_size = offsetof(th_task, run_as);
    CHECK_FALSE(TH_HAS_FIELD(&task, th_task, run_as));
    CHECK(TH_HAS_FIELD(&task, th_task, timeout_ms));

    // A real 1.0 table ends before the 1.1 fields; a longer one from a newer minor covers all.
    LoadedPlugin old_plugin(TASKHUB_FX_ABI_1_0_PLUGIN_PATH);
    REQUIRE(old_plugin.api() != nullptr);
    CHECK(TH_HAS_FIELD(old_plugin.api(), th_plugin_api, health_check));
    CHECK_FALSE(TH_HAS_FIELD(old_plugin.api(), th_plugin_api, suspend));
    CHECK_FALSE(TH_HAS_FIELD(old_plugin.api(), th_plugin_api, shell_params));
    LoadedPlugin newer(TASKHUB_FX_NEWER_MINOR_PLUGIN_PATH);
    REQUIRE(newer.api() != nullptr);
    CHECK(TH_HAS_FIELD(newer.api(), th_plugin_api, shell_params));
}

TEST_CASE("fixtures: fx_suspend_no_functions declares TH_CAP_SUSPEND without the functions",
          "[fixtures]") {
    LoadedPlugin plugin(TASKHUB_FX_SUSPEND_NO_FUNCTIONS_PLUGIN_PATH);
    checkValidApartFrom(plugin.api(), "");
    CHECK(plugin.api()->capabilities == TH_CAP_SUSPEND);
    CHECK(plugin.api()->suspend == nullptr);
    CHECK(plugin.api()->resume == nullptr);
}

TEST_CASE("fixtures: fx_outputs sets outputs, some of them invalid, and records suspend/resume",
          "[fixtures]") {
    LoadedPlugin plugin(TASKHUB_FX_OUTPUTS_PLUGIN_PATH);
    checkValidApartFrom(plugin.api(), "");
    CHECK(plugin.api()->capabilities == (TH_CAP_CANCEL | TH_CAP_SUSPEND));
    FakeHost host(plugin);
    REQUIRE(host.execute(1, TaskSpec{}) == TH_OK);
    REQUIRE(host.completion(1));
    CHECK(host.completion(1)->outcome == TH_OUTCOME_SUCCEEDED);
    // FakeHost accepts every call, so all five statuses are 0 here; the daemon's host refuses
    // the last two (see the plugin host's tests).
    CHECK(host.completion(1)->message == "statuses 0 0 0 0 0");
    CHECK(host.outputs(1).size() == 5);

    TaskSpec waiting;
    waiting.params_json = R"({"wait":true})";
    REQUIRE(host.execute(2, waiting) == TH_OK);
    CHECK_FALSE(host.completion(2));
    CHECK(host.suspend(2) == TH_OK);
    CHECK(host.resume(2) == TH_OK);
    CHECK(host.suspend(99) == TH_ERR_INVALID);
    REQUIRE(host.cancel(2) == TH_OK);
    REQUIRE(host.completion(2));
    CHECK(host.completion(2)->outcome == TH_OUTCOME_CANCELLED);
    CHECK(host.completion(2)->message == "calls: suspend resume ");

    FakeHost old_host(plugin, "{}", FakeHost::Abi::V1_0);
    REQUIRE(old_host.execute(1, TaskSpec{}) == TH_OK);
    CHECK(old_host.completion(1)->message == "no set_output");
}

TEST_CASE("fixtures: fx_newer_minor has a longer table and still works", "[fixtures]") {
    LoadedPlugin plugin(TASKHUB_FX_NEWER_MINOR_PLUGIN_PATH);
    checkValidApartFrom(plugin.api(), "struct_size");
    CHECK(plugin.api()->abi_minor == 99);
    CHECK(plugin.api()->struct_size > sizeof(th_plugin_api));
    checkRunsOneTask(plugin);
}

TEST_CASE("sdk: Host::setOutputJson reaches set_output_json, and says when the host is older than 1.7",
          "[sdk][json]") {
    struct Seen {
        std::string name, json;
    };
    static Seen seen;
    th_host_api api{};
    api.struct_size = sizeof api;
    api.set_output_json = [](th_host_ctx*, uint64_t token, const char* name, const char* json) -> th_status {
        seen = {name, json};
        return token == 7 ? TH_OK : TH_ERR_INVALID;
    };
    taskhub::sdk::Host host(&api, nullptr);
    CHECK(host.hasSetOutputJson());
    CHECK(host.setOutputJson(7, "files", R"(["a"])") == TH_OK);
    CHECK(seen.name == "files");
    CHECK(seen.json == R"(["a"])");
    CHECK(host.setOutputJson(8, "files", "[]") == TH_ERR_INVALID);

    api.struct_size = offsetof(th_host_api, set_output_json); // a 1.6 host
    CHECK_FALSE(host.hasSetOutputJson());
    seen = {};
    CHECK(host.setOutputJson(7, "files", "[]") == TH_ERR_UNSUPPORTED);
    CHECK(seen.name.empty());
}

// ABI negotiation against fixture plugins built for the test, one per way a plugin can be wrong.
#include <catch2/catch.hpp>

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
    CHECK(p->info().abi_minor == 0);
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
          "requires host ABI 1.99 or newer, this taskhubd provides 1.0; upgrade taskhubd");
    CHECK(load(host, "fx_create_fails") == "create() failed: fixture: create always fails");
    CHECK(host.plugins().empty());
    CHECK(host.refused().size() == 6);
    CHECK(host.refused()[0].file == fixture("fx_no_entry"));
}

TEST_CASE("a refused plugin never stops the others", "[abi]") {
    PluginHost host(nullptr, nullptr);
    host.loadDirectories({FIXTURE_DIR}, {});
    REQUIRE(host.plugins().size() == 2); // fx_good, fx_newer_minor
    CHECK(host.find("fx_good"));
    CHECK(host.refused().size() == 5);
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

#include "daemon_info.h"

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include <date/tz.h>

#include "render.h"

namespace taskhub::ctl {

namespace json = boost::json;

namespace {

// How long a question on the side may take: a daemon that does not answer in this time is
// treated as absent.
constexpr int kSideTimeoutMs = 2000;

std::optional<json::object> status(const Client& client) {
    Failure f;
    auto d = client.call("status", {}, &f, kSideTimeoutMs);
    if (!d || !d->is_object()) return std::nullopt;
    return d->as_object();
}

std::optional<std::string> stringMember(const json::object& o, const char* key) {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string(v->as_string());
}

const date::time_zone* zoneNamed(std::string_view name) {
    try {
        return date::locate_zone(name);
    } catch (const std::exception&) {
        return nullptr;
    }
}

} // namespace

const date::time_zone* utcZone() { return date::locate_zone("UTC"); }

const date::time_zone* localZone() {
    if (const char* tz = std::getenv("TZ"); tz && *tz) {
        std::string_view name(tz);
        if (name.front() == ':') name.remove_prefix(1);
        if (const auto* z = name.empty() ? nullptr : zoneNamed(name)) return z;
    }
    try {
        return date::current_zone();
    } catch (const std::exception&) {
        return utcZone();
    }
}

const date::time_zone* daemonZone(const Client& client) {
    if (auto s = status(client)) {
        if (auto name = stringMember(*s, "timezone")) {
            if (const auto* z = zoneNamed(*name)) return z;
        }
    }
    return localZone();
}

int printVersions(const Client& client, bool json) {
    const auto s = status(client);
    const auto daemon = s ? stringMember(*s, "version") : std::nullopt;
    const auto abi = s ? stringMember(*s, "abi") : std::nullopt;
    if (json) {
        json::object o;
        o["taskhubctl"] = TASKHUB_VERSION;
        o["taskhubd"] = daemon ? json::value(*daemon) : json::value(nullptr);
        o["plugin_abi"] = abi ? json::value(*abi) : json::value(nullptr);
        const auto* proto = s ? s->if_contains("proto") : nullptr;
        o["proto"] = proto && proto->is_int64() ? *proto : json::value(nullptr);
        emitJson(o);
        return 0;
    }
    std::cout << "taskhubctl " << TASKHUB_VERSION << "\n";
    if (daemon) std::cout << "taskhubd " << terminalSafe(*daemon) << "\n";
    if (abi) std::cout << "plugin ABI " << terminalSafe(*abi) << "\n";
    return 0;
}

} // namespace taskhub::ctl

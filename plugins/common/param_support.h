// Shared by the first-party plugins: wording of parameter and setting errors, so that every
// plugin names types and suggests keys the same way. Header-only; uses Boost.JSON, which the
// first-party plugins parse their parameters with.
#ifndef TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H
#define TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H

#include <taskhub/suggest.hpp>

#include <boost/json/value.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace taskhub::plugins {

// Type names as the user wrote them: parameters come from TOML tables.
inline const char* kindName(const boost::json::value& v) {
    namespace json = boost::json;
    switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "boolean";
    case json::kind::int64:
    case json::kind::uint64: return "integer";
    case json::kind::double_: return "float";
    case json::kind::string: return "string";
    case json::kind::array: return "array";
    case json::kind::object: return "table";
    }
    return "value";
}

// " (accepted: a, b); did you mean 'a'?" — the suggestion only when a key is within two edits.
template <class Range>
std::string acceptedHint(std::string_view key, const Range& accepted) {
    std::string hint = " (accepted: ";
    bool first = true;
    for (const auto& a : accepted) {
        if (!first) hint += ", ";
        first = false;
        hint += a;
    }
    hint += ")";
    std::string best = sdk::closestKey(key, accepted);
    if (!best.empty()) hint += "; did you mean '" + best + "'?";
    return hint;
}

// "<digits><unit>" with unit ms, s, m, h or d ("500ms", "5s", "2m") in milliseconds; nullopt
// for another form or on overflow.
inline std::optional<uint64_t> parseDurationMs(std::string_view text) {
    size_t digits = 0;
    uint64_t value = 0;
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        const auto digit = static_cast<uint64_t>(text[digits] - '0');
        if (value > (kMax - digit) / 10) return std::nullopt;
        value = value * 10 + digit;
        ++digits;
    }
    if (digits == 0) return std::nullopt;
    const std::string_view unit = text.substr(digits);
    uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit == "s") scale = 1000;
    else if (unit == "m") scale = 60 * 1000;
    else if (unit == "h") scale = 60 * 60 * 1000;
    else if (unit == "d") scale = 24 * 60 * 60 * 1000;
    else return std::nullopt;
    if (value > kMax / scale) return std::nullopt;
    return value * scale;
}

} // namespace taskhub::plugins

#endif // TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H

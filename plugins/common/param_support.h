// Shared by the first-party plugins: wording of parameter and setting errors, so that every
// plugin names types and suggests keys the same way. Header-only; uses Boost.JSON, which the
// first-party plugins parse their parameters with.
#ifndef TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H
#define TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H

#include <taskhub/suggest.hpp>

#include <boost/json/value.hpp>

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

} // namespace taskhub::plugins

#endif // TASKHUB_PLUGINS_COMMON_PARAM_SUPPORT_H

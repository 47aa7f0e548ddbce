// Boost.JSON stays in this file: the expr headers are included by config and the engine.
#include <boost/json.hpp>

#include <algorithm>
#include <stdexcept>

#include "expr/shell_context.h"
#include "expr/template.h"

namespace taskhub::expr {

namespace {

void expandValue(boost::json::value& v, const Lookup& lookup) {
    if (auto* s = v.if_string()) {
        std::string_view text(s->data(), s->size());
        if (text.find("${") == std::string_view::npos) return;
        std::string ignored; // never in a loaded workflow; left as written
        if (auto t = Template::parse(text, &ignored)) *s = t->expand(lookup);
    } else if (auto* a = v.if_array()) {
        for (auto& e : *a) expandValue(e, lookup);
    } else if (auto* o = v.if_object()) {
        for (auto& kv : *o) expandValue(kv.value(), lookup);
    }
}

// One shell-text string: every reference escaped for its context.
bool expandShellText(boost::json::string& s, std::string_view key, const Lookup& lookup, std::string* err) {
    std::string_view text(s.data(), s.size());
    if (text.find("${") == std::string_view::npos) return true;
    std::string ignored;
    auto t = Template::parse(text, &ignored);
    if (!t) return true; // never in a loaded workflow; left as written, like expandValue
    const std::vector<ShellContext> contexts = shellContexts(*t);
    bool nul = false;
    size_t failed = 0;
    auto expanded = t->expand(
        lookup,
        [&](size_t i, std::string_view value) -> std::optional<std::string> {
            if (!isSafe(contexts[i])) return std::nullopt;
            auto escaped = escapeForShell(contexts[i], value);
            nul = !escaped;
            return escaped;
        },
        &failed);
    if (!expanded) {
        const std::string shown = "${" + toString(t->refs()[failed]) + "}";
        *err = nul ? "the value of " + shown + " in '" + std::string(key) +
                         "' holds a NUL byte, which cannot be passed to a shell; the task was not started"
                   : shown + " in '" + std::string(key) + "' is " + describe(contexts[failed]) +
                         ", where a value cannot be made safe; the task was not started";
        return false;
    }
    s = *expanded;
    return true;
}

boost::json::value parseObject(std::string_view json) {
    boost::json::error_code ec;
    boost::json::value v = boost::json::parse(json, ec);
    if (ec || !v.is_object()) {
        throw std::invalid_argument("expandJsonStrings: not a JSON object: " + std::string(json.substr(0, 80)));
    }
    return v;
}

} // namespace

std::string expandJsonStrings(std::string_view json, const Lookup& lookup) {
    if (json.find("${") == std::string_view::npos) return std::string(json);
    boost::json::value v = parseObject(json);
    expandValue(v, lookup);
    return boost::json::serialize(v);
}

std::optional<std::string> expandJsonStrings(std::string_view json, const Lookup& lookup,
                                             const std::vector<std::string>& shell_keys, std::string* err) {
    if (json.find("${") == std::string_view::npos) return std::string(json);
    boost::json::value v = parseObject(json);
    for (auto& kv : v.as_object()) {
        const bool shell = std::find(shell_keys.begin(), shell_keys.end(), std::string_view(kv.key())) !=
                           shell_keys.end();
        if (shell && kv.value().is_string()) {
            if (!expandShellText(kv.value().as_string(), kv.key(), lookup, err)) return std::nullopt;
        } else {
            expandValue(kv.value(), lookup);
        }
    }
    return boost::json::serialize(v);
}

} // namespace taskhub::expr

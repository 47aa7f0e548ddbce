// `foreach` and the keys that shape a fan-out: foreach_key, max_parallel, max_failures, on_empty
// (docs/workflow-format.md, "Fan-out").
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "model/json_text.h"

#include "config/workflow_load.h"

namespace taskhub::config {

std::string shownText(std::string_view text, size_t max) {
    std::string out;
    for (size_t i = 0; i < text.size() && i < max; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out += static_cast<char>(c);
        } else {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    if (text.size() > max) out += "...";
    return out;
}

std::string itemText(const std::string& item_json) {
    std::error_code ec;
    auto v = boost::json::parse(item_json, ec);
    if (!ec && v.is_string()) return std::string(v.as_string());
    return item_json;
}

std::optional<std::vector<std::string>> instanceKeys(const std::string& key, const std::vector<std::string>& items,
                                                     std::string* err) {
    const std::string where = "foreach_key \"" + key + "\"";
    auto tpl = expr::Template::parse(key, err);
    if (!tpl) {
        *err = where + ": " + *err;
        return std::nullopt;
    }
    const auto isKeyChar = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    };
    std::vector<std::string> keys;
    keys.reserve(items.size());
    std::unordered_map<std::string, uint32_t> seen;
    seen.reserve(items.size());
    for (uint32_t i = 0; i < items.size(); ++i) {
        const std::string& item = items[i];
        std::string path_err;
        std::string k = tpl->expand([&item, i, &path_err](const expr::Ref& ref) -> std::optional<std::string> {
            if (ref.kind == expr::Ref::Index) return std::to_string(i);
            if (ref.kind != expr::Ref::Item) return std::nullopt;
            if (ref.path.empty()) return itemText(item);
            std::string why;
            auto value = expr::navigate(item, ref.path, &why);
            if (!value && path_err.empty()) path_err = expr::refPathError(ref, why);
            return value;
        });
        if (!path_err.empty()) {
            *err = where + " for item " + std::to_string(i) + ": " + path_err;
            return std::nullopt;
        }
        if (k.empty() || k.size() > 64 || !std::all_of(k.begin(), k.end(), isKeyChar)) {
            *err = where + " gives \"" + shownText(k) + "\" for item " + std::to_string(i) +
                   ", which cannot be part of an instance id (use 1-64 letters, digits, '_', '-' or '.')";
            return std::nullopt;
        }
        auto [it, fresh] = seen.emplace(k, i);
        if (!fresh) {
            *err = where + " gives \"" + k + "\" for items " + std::to_string(it->second) + " and " +
                   std::to_string(i) + "; instance keys must be unique";
            return std::nullopt;
        }
        keys.push_back(std::move(k));
    }
    return keys;
}

} // namespace taskhub::config

namespace taskhub::config::detail {

namespace {

// The keys that only mean something with foreach.
bool isFanOutShapeKey(const std::string& key) {
    return key == "foreach_key" || key == "max_parallel" || key == "max_failures" || key == "on_empty";
}

// "${tasks.list.outputs.files}": exactly one reference and nothing around it.
std::optional<expr::Ref> singleRef(const std::string& text) {
    std::string err;
    auto t = expr::Template::parse(text, &err);
    if (!t || t->refs().size() != 1) return std::nullopt;
    for (auto lit : t->literals()) {
        if (!lit.empty()) return std::nullopt;
    }
    return t->refs().front();
}

} // namespace

bool isFanOutKey(const std::string& key) { return key == "foreach" || isFanOutShapeKey(key); }

void loadFanOutKey(const std::string& key, const Value& kv, const std::string& label, FanOutDef& fan,
                   TaskExtra& extra, const WorkflowLimits& limits, Reporter& r) {
    const std::string what = label + ": '" + key + "'";
    if (key == "foreach") {
        fan.line = r.lineOf(kv);
        if (kv.is_array()) {
            const auto& a = kv.as_array();
            if (a.size() > limits.max_foreach_items) {
                r.add(kv, what + " lists " + std::to_string(a.size()) + " items; a fan-out may have at most " +
                              std::to_string(limits.max_foreach_items) + " (taskhub.toml max_foreach_items)");
                return;
            }
            Table wrap;
            wrap.emplace("v", kv);
            // toJson() keeps the TOML types (numbers stay numbers, tables become objects).
            fan.literal = toJson(wrap);
            fan.literal = fan.literal.substr(5, fan.literal.size() - 6); // {"v":[...]} -> [...]
            return;
        }
        auto text = getString(kv, what, r);
        if (!text) return;
        auto ref = singleRef(*text);
        if (!ref || ref->kind == expr::Ref::TaskState) {
            r.add(kv, what + " must be one reference to a list, e.g. \"${tasks.list.outputs.files}\" or "
                             "\"${params.regions}\", or a literal array such as [\"eu\", \"us\"]; found \"" +
                             *text + "\"");
            return;
        }
        fan.source = *text;
        extra.refs.push_back({r.lineOf(kv), what, *text, *ref});
    } else if (key == "foreach_key") {
        auto text = getString(kv, what, r);
        if (!text) return;
        std::string err;
        auto t = expr::Template::parse(*text, &err);
        if (!t) {
            r.add(kv, what + ": " + err);
            return;
        }
        if (t->refs().empty()) {
            r.add(kv, what + " must use the item, e.g. \"${item.name}\" or \"${item}\" (a constant key would "
                             "repeat for every item), found \"" + *text + "\"");
            return;
        }
        for (const auto& ref : t->refs()) {
            if (ref.kind != expr::Ref::Item && ref.kind != expr::Ref::Index) {
                r.add(kv, what + ": " + "${" + expr::toString(ref) + "}: a key is made of ${item}, ${item.KEY} and "
                                 "${index} only, so that it is the same whenever the list is the same");
                return;
            }
        }
        fan.key = *text;
    } else if (key == "max_parallel") {
        if (auto n = getInt(kv, what, r, 1, 1'000'000)) fan.max_parallel = static_cast<uint32_t>(*n);
    } else if (key == "max_failures") {
        if (kv.is_integer()) {
            if (auto n = getInt(kv, what, r, 0, 1'000'000)) fan.max_failures = static_cast<uint32_t>(*n);
            return;
        }
        auto text = kv.is_string() ? std::optional<std::string>(kv.as_string().str) : std::nullopt;
        int pct = -1;
        if (text && text->size() >= 2 && text->size() <= 4 && text->back() == '%') {
            pct = 0;
            for (size_t i = 0; i + 1 < text->size(); ++i) {
                if (!std::isdigit(static_cast<unsigned char>((*text)[i]))) {
                    pct = -1;
                    break;
                }
                pct = pct * 10 + ((*text)[i] - '0');
            }
        }
        if (pct < 0 || pct > 100) {
            r.add(kv, what + " must be a number of instances (max_failures = 3) or a percentage of them "
                             "(max_failures = \"5%\", 0% to 100%), found " +
                             (text ? "\"" + *text + "\"" : typeName(kv)));
            return;
        }
        fan.max_failures = static_cast<uint32_t>(pct);
        fan.max_failures_percent = true;
    } else if (key == "on_empty") {
        auto text = getString(kv, what, r);
        if (!text) return;
        if (*text == "succeed") {
            fan.on_empty = FanOutDef::OnEmpty::Succeed;
        } else if (*text == "skip") {
            fan.on_empty = FanOutDef::OnEmpty::Skip;
        } else {
            r.add(kv, what + " must be \"succeed\" (the task succeeds with no instances) or \"skip\", found \"" +
                          *text + "\"");
        }
    }
}

void finishFanOut(const Table& t, const std::string& label, FanOutDef fan, TaskDef& task, Reporter& r) {
    if (fan.empty()) {
        for (const auto& [key, kv] : t) {
            if (isFanOutShapeKey(key))
                r.add(kv, label + ": '" + key + "' only applies to a fan-out: add foreach = \"${...}\" (a list) "
                                  "or remove '" + key + "'");
        }
        return;
    }
    // `when` holds no templates (a "${item}" in it would be compared as that text), and it is
    // decided once for the whole fan-out.
    if (const std::string& when = task.when.get();
        when.find("${item") != std::string::npos || when.find("${index") != std::string::npos) {
        r.add(t.at("when"), label + ": 'when' is decided once for the whole fan-out, before any instance exists, "
                                    "so it cannot use ${item} or ${index} (and a condition has no templates: "
                                    "write references like params.NAME); decide per item inside the task instead");
    }
    // A literal list's keys are known now.
    if (!fan.literal.empty() && !fan.key.empty() && t.count("foreach_key")) {
        std::error_code ec;
        auto v = boost::json::parse(fan.literal, ec);
        if (!ec && v.is_array()) {
            std::vector<std::string> items;
            for (const auto& e : v.as_array()) items.push_back(model::jsonText(e));
            std::string err;
            if (!instanceKeys(fan.key, items, &err)) r.add(t.at("foreach_key"), label + ": " + err);
        }
    }
    // A rule that starts the task before its upstream tasks end cannot read their outputs.
    if (task.trigger_rule == TriggerRule::Always && !fan.source.empty() &&
        fan.source.find("${tasks.") != std::string::npos) {
        r.add(t.at("trigger_rule"), label + ": 'foreach' reads an upstream task's output, which trigger_rule = "
                                            "\"always\" does not wait for; use \"all_done\" or another rule");
    }
    task.fan = std::move(fan);
}

} // namespace taskhub::config::detail

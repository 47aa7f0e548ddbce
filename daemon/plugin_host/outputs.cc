#include "plugin_host/outputs.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cmath>
#include <utility>

#include "model/json_text.h"

namespace taskhub::plugin_host {

namespace {

bool isNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

std::string shownName(std::string_view name) {
    return "'" + std::string(name.substr(0, 64)) + (name.size() > 64 ? "...'" : "'");
}

bool checkName(std::string_view name, std::string* err) {
    if (isOutputName(name)) return true;
    *err = "invalid output name " + shownName(name) +
           ": a name starts with a letter or '_' and continues with letters, digits or '_'";
    return false;
}

} // namespace

bool isOutputName(std::string_view name) {
    if (name.empty() || !isNameStart(name[0])) return false;
    return std::all_of(name.begin() + 1, name.end(),
                       [](char c) { return isNameStart(c) || (c >= '0' && c <= '9'); });
}

std::optional<size_t> firstInvalidUtf8(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len = 0;
        uint32_t cp = 0, min = 0;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (i + len > n) return i;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return std::nullopt;
}

namespace {

// Boost.JSON reads a number beyond a double's range (1e400) as infinity, which has no JSON text.
bool allFinite(const boost::json::value& v) {
    switch (v.kind()) {
    case boost::json::kind::double_: return std::isfinite(v.get_double());
    case boost::json::kind::array:
        for (const auto& e : v.get_array()) {
            if (!allFinite(e)) return false;
        }
        return true;
    case boost::json::kind::object:
        for (const auto& kv : v.get_object()) {
            if (!allFinite(kv.value())) return false;
        }
        return true;
    default: return true;
    }
}

} // namespace

bool checkJsonValue(std::string_view text, bool* is_string, std::string* value, std::string* err) {
    if (text.size() > kMaxJsonOutputBytes) {
        *err = "is " + std::to_string(text.size()) + " bytes of JSON, over the limit of 1 MiB (1048576 bytes) for "
               "one JSON value";
        return false;
    }
    if (auto bad = firstInvalidUtf8(text)) {
        *err = "is not valid JSON: invalid UTF-8 at byte " + std::to_string(*bad + 1) + " of " +
               std::to_string(text.size());
        return false;
    }
    boost::json::parse_options opts;
    opts.max_depth = kMaxJsonDepth;
    boost::json::parser p({}, opts);
    boost::json::error_code ec;
    const size_t used = p.write(text.data(), text.size(), ec);
    if (ec) {
        const std::string at = std::to_string(std::min(used, text.size()) + 1);
        const std::string of = std::to_string(text.size());
        if (ec == boost::json::error::too_deep) {
            *err = "is not valid JSON: nested more than 64 levels deep (at byte " + at + " of " + of + ")";
        } else if (ec == boost::json::error::extra_data) {
            *err = "is not one JSON value: text follows it at byte " + at + " of " + of;
        } else if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
            *err = "is not valid JSON: the value is empty (expected e.g. [\"a\",\"b\"], {\"k\":1} or 3)";
        } else if (ec == boost::json::error::incomplete) {
            *err = "is not valid JSON: it ends before the value is complete (" + of + " bytes)";
        } else {
            *err = "is not valid JSON: " + ec.message() + " at byte " + at + " of " + of;
        }
        return false;
    }
    const boost::json::value v = p.release();
    if (!allFinite(v)) {
        *err = "is not valid JSON for TaskHub: a number is too large to hold (over about 1.8e308); write it as a "
               "string";
        return false;
    }
    *is_string = v.is_string();
    if (*is_string) {
        value->assign(v.get_string().data(), v.get_string().size());
    } else {
        *value = model::jsonText(v);
    }
    return true;
}

bool OutputSet::set(std::string_view name, std::string_view value, std::string* err) {
    if (!checkName(name, err)) return false;
    if (value.size() > kMaxOutputValueBytes) {
        *err = "output '" + std::string(name) + "' is " + std::to_string(value.size()) +
               " bytes, over the limit of 4 KiB (4096 bytes) for one value";
        return false;
    }
    return store(name, value, false, err);
}

bool OutputSet::setJson(std::string_view name, std::string_view json, std::string* err) {
    if (!checkName(name, err)) return false;
    bool is_string = false;
    std::string value, why;
    if (!checkJsonValue(json, &is_string, &value, &why)) {
        *err = "output '" + std::string(name) + "' " + why;
        return false;
    }
    return is_string ? set(name, value, err) : store(name, value, true, err);
}

bool OutputSet::setCompactJson(std::string_view name, std::string_view compact_json, std::string* err) {
    if (!checkName(name, err)) return false;
    return store(name, compact_json, true, err);
}

bool OutputSet::store(std::string_view name, std::string_view value, bool json, std::string* err) {
    auto it = index_.find(std::string(name));
    size_t plain = plain_bytes_, typed = json_bytes_;
    if (it != index_.end()) {
        const auto& list = it->second.first ? json_values_ : values_;
        (it->second.first ? typed : plain) -= name.size() + list[it->second.second].second.size();
    }
    (json ? typed : plain) += name.size() + value.size();
    if (plain > kMaxOutputsBytes) {
        *err = "output '" + std::string(name) + "' would bring the attempt's outputs to " + std::to_string(plain) +
               " bytes, over the limit of 64 KiB (65536 bytes, names and values) for all plain outputs of an attempt";
        return false;
    }
    if (plain + typed > kMaxAllOutputsBytes) {
        *err = "output '" + std::string(name) + "' would bring the attempt's outputs to " +
               std::to_string(plain + typed) + " bytes, over the limit of 1 MiB (1048576 bytes, names and values, "
               "JSON as stored) for all outputs of an attempt";
        return false;
    }
    plain_bytes_ = plain;
    json_bytes_ = typed;
    auto& list = json ? json_values_ : values_;
    if (it != index_.end() && it->second.first == json) {
        list[it->second.second].second.assign(value);
        return true;
    }
    if (it != index_.end()) { // it was the other kind: take it out of that list
        auto& other = it->second.first ? json_values_ : values_;
        other.erase(other.begin() + static_cast<std::ptrdiff_t>(it->second.second));
        for (auto& [n, where] : index_) {
            if (where.first == it->second.first && where.second > it->second.second) --where.second;
        }
        index_.erase(it);
    }
    index_.emplace(name, std::make_pair(json, list.size()));
    list.emplace_back(name, value);
    return true;
}

model::NameValues OutputSet::take() noexcept {
    plain_bytes_ = 0;
    std::erase_if(index_, [](const auto& kv) { return !kv.second.first; });
    return std::exchange(values_, {});
}

model::NameValues OutputSet::takeJson() noexcept {
    json_bytes_ = 0;
    std::erase_if(index_, [](const auto& kv) { return kv.second.first; });
    return std::exchange(json_values_, {});
}

} // namespace taskhub::plugin_host

#include "config/toml_support.h"

#include <boost/json.hpp>
#include <taskhub/suggest.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/time_util.h"
#include "config/toml_nesting.h"

namespace taskhub::config::detail {

namespace {

// toml11 formats errors as several lines with ASCII art; keep the first line's text without
// the "[error] toml::function_name: " prefix.
std::string firstLine(const std::string& what) {
    std::string line = what.substr(0, what.find('\n'));
    const std::string tag = "[error] ";
    if (line.rfind(tag, 0) == 0) line = line.substr(tag.size());
    if (line.rfind("toml::", 0) == 0) {
        auto colon = line.find(": ");
        if (colon != std::string::npos) line = line.substr(colon + 2);
    }
    return line;
}

template <class Parse>
std::optional<Value> parseWith(Parse&& parse, Reporter& r) {
    try {
        return parse();
    } catch (const toml::exception& e) {
        r.add(e.location().line(), "TOML syntax error: " + firstLine(e.what()));
    } catch (const std::exception& e) {
        r.add(0, firstLine(e.what()));
    }
    return std::nullopt;
}

} // namespace

std::optional<Value> parseFile(const std::filesystem::path& file, Reporter& r) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        r.add(0, "cannot open file: " + std::string(std::strerror(errno)));
        return std::nullopt;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    return parseText(ss.str(), file, r);
}

std::optional<Value> parseText(const std::string& text, const std::filesystem::path& name,
                               Reporter& r) {
    if (auto line = firstInvalidUtf8(text)) {
        r.add(*line, "the file is not valid UTF-8 (a TOML file must be): save it as UTF-8; this line holds "
                     "the first byte that is not");
        return std::nullopt;
    }
    // toml11 recurses once per level: a deeper text could exhaust the stack (toml_nesting.h).
    if (auto deep = firstTooDeep(text)) {
        r.add(deep->line, "TOML nesting deeper than " + std::to_string(kMaxTomlNesting) +
                              " levels (arrays, inline tables, dotted keys and table headers inside each "
                              "other); the file is refused unparsed, as deeper nesting could crash the "
                              "parser: flatten it to at most " + std::to_string(kMaxTomlNesting) + " levels");
        return std::nullopt;
    }
    return parseWith(
        [&] {
            std::istringstream in(text);
            return toml::parse<toml::discard_comments, std::map, std::vector>(in, name.string());
        },
        r);
}

std::string typeName(const Value& v) {
    switch (v.type()) {
    case toml::value_t::boolean: return "boolean";
    case toml::value_t::integer: return "integer";
    case toml::value_t::floating: return "float";
    case toml::value_t::string: return "string";
    case toml::value_t::offset_datetime:
    case toml::value_t::local_datetime:
    case toml::value_t::local_date:
    case toml::value_t::local_time: return "date-time";
    case toml::value_t::array: return "array";
    case toml::value_t::table: return "table";
    default: return "nothing";
    }
}

std::string didYouMean(const std::string& word, const std::set<std::string>& known) {
    std::string best = sdk::closestKey(word, known);
    return best.empty() ? "" : "; did you mean '" + best + "'?";
}

std::string joinKeys(const std::set<std::string>& keys) {
    std::string out;
    for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
    return out;
}

std::optional<std::string> getString(const Value& v, const std::string& what, Reporter& r) {
    if (!v.is_string()) {
        r.add(v, what + " must be a string, found " + typeName(v));
        return std::nullopt;
    }
    return v.as_string().str;
}

std::optional<int64_t> getInt(const Value& v, const std::string& what, Reporter& r, int64_t min,
                              int64_t max) {
    if (!v.is_integer()) {
        r.add(v, what + " must be an integer, found " + typeName(v));
        return std::nullopt;
    }
    int64_t n = v.as_integer();
    if (n < min || n > max) {
        r.add(v, what + " must be between " + std::to_string(min) + " and " +
                     std::to_string(max) + ", found " + std::to_string(n));
        return std::nullopt;
    }
    return n;
}

std::optional<std::chrono::milliseconds> getDuration(const Value& v, const std::string& what,
                                                     Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    std::string err;
    auto d = parseDuration(*s, &err);
    if (!d) r.add(v, what + ": " + err);
    return d;
}

std::optional<std::vector<std::string>> getStringArray(const Value& v, const std::string& what,
                                                       Reporter& r) {
    if (!v.is_array()) {
        r.add(v, what + " must be an array of strings, found " + typeName(v));
        return std::nullopt;
    }
    std::vector<std::string> out;
    for (const auto& e : v.as_array()) {
        if (!e.is_string()) {
            r.add(e, what + " must contain only strings, found " + typeName(e));
            return std::nullopt;
        }
        out.push_back(e.as_string().str);
    }
    return out;
}

std::optional<double> getNumber(const Value& v, const std::string& what, Reporter& r, double min,
                                double max) {
    double n = 0;
    if (v.is_integer()) {
        n = static_cast<double>(v.as_integer());
    } else if (v.is_floating()) {
        n = v.as_floating();
    } else {
        r.add(v, what + " must be a number, found " + typeName(v));
        return std::nullopt;
    }
    if (!(n >= min && n <= max)) {
        r.add(v, what + " must be between " + numberText(min) + " and " + numberText(max) + ", found " +
                     numberText(n));
        return std::nullopt;
    }
    return n;
}

std::string numberText(double d) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d);
    std::string s(buf, res.ptr);
    if (s.find_first_of(".en") == std::string::npos) s += ".0";
    return s;
}

std::optional<std::string> getScalarText(const Value& v, const std::string& what, Reporter& r) {
    switch (v.type()) {
    case toml::value_t::string: return v.as_string().str;
    case toml::value_t::integer: return std::to_string(v.as_integer());
    case toml::value_t::floating: return numberText(v.as_floating());
    case toml::value_t::boolean: return std::string(v.as_boolean() ? "true" : "false");
    default:
        r.add(v, what + " must be a string, integer, float or boolean, found " + typeName(v));
        return std::nullopt;
    }
}

namespace {

// The value's place in the text it was parsed from; null for a value made in code (toml11 gives
// those a plain region_base, "unknown file" at line 1).
const toml::detail::region* regionOf(const Value& v) {
    return dynamic_cast<const toml::detail::region*>(toml::detail::get_region(v));
}

} // namespace

size_t LineIndex::lineOf(const Value& v) {
    const auto* reg = regionOf(v);
    if (reg == nullptr || !reg->source()) return v.location().line(); // cheap: no text to scan
    if (reg->source() != source_) {
        source_ = reg->source();
        newlines_.clear();
        for (size_t i = 0; i < source_->size(); ++i) {
            if ((*source_)[i] == '\n') newlines_.push_back(i);
        }
    }
    // toml11: 1 + the number of '\n' before the region's first character.
    const auto offset = static_cast<size_t>(reg->first() - reg->begin());
    return 1 + static_cast<size_t>(std::lower_bound(newlines_.begin(), newlines_.end(), offset) -
                                   newlines_.begin());
}

std::string Reporter::fileOf(const Value& v) const {
    const auto* reg = regionOf(v);
    if (reg == nullptr || !reg->source() || reg->name().empty()) return file_.string();
    return reg->name();
}

size_t sourceOffset(const Value& v) {
    const auto* reg = regionOf(v);
    if (reg == nullptr || !reg->source()) return 0;
    return static_cast<size_t>(reg->first() - reg->begin());
}

std::vector<std::pair<std::string, const Value*>> inFileOrder(const Table& table) {
    // By offset, which orders one file's values as (line, column) does; a value without a
    // place is at offset 0, where toml11 puts it too (line 1, column 1).
    std::vector<std::pair<size_t, std::pair<std::string, const Value*>>> keyed;
    keyed.reserve(table.size());
    for (const auto& [k, v] : table) keyed.push_back({sourceOffset(v), {k, &v}});
    std::stable_sort(keyed.begin(), keyed.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::pair<std::string, const Value*>> out;
    out.reserve(keyed.size());
    for (auto& [offset, entry] : keyed) out.push_back(std::move(entry));
    return out;
}

namespace {

boost::json::value jsonOf(const Value& v) {
    switch (v.type()) {
    case toml::value_t::boolean: return v.as_boolean();
    case toml::value_t::integer: return v.as_integer();
    case toml::value_t::floating: return v.as_floating();
    case toml::value_t::string: return boost::json::string(v.as_string().str);
    case toml::value_t::array: {
        boost::json::array a;
        for (const auto& e : v.as_array()) a.push_back(jsonOf(e));
        return a;
    }
    case toml::value_t::table: {
        boost::json::object o;
        for (const auto& [k, e] : v.as_table()) o[k] = jsonOf(e);
        return o;
    }
    default: {
        std::ostringstream ss;
        ss << v;
        return boost::json::string(ss.str());
    }
    }
}

} // namespace

std::string toJson(const Table& table) {
    boost::json::object o;
    for (const auto& [k, v] : table) o[k] = jsonOf(v);
    return boost::json::serialize(o);
}

} // namespace taskhub::config::detail

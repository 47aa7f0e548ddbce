#include "metrics_export/text_format.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <vector>

namespace taskhub::metrics_export {

namespace {

struct Family {
    std::string name;
    std::string type; // OpenMetrics type; empty: none given
    std::string help; // escaped as in OpenMetrics; has_help tells an empty help from none
    bool has_help = false;
    std::vector<std::string_view> samples;
};

bool startsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool endsWith(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "# KEYWORD NAME REST": splits off NAME and REST (REST may be empty).
void metadata(std::string_view rest, std::string_view* name, std::string_view* text) {
    const auto sp = rest.find(' ');
    *name = rest.substr(0, sp);
    *text = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
}

// A sample line cut down to "NAME{LABELS} VALUE": no timestamp, no exemplar. Label values are
// quoted with \\, \" and \n escapes, so a space or '#' inside them is skipped over.
std::string sampleWithoutExtras(std::string_view line, std::string_view* name_out) {
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    *name_out = line.substr(0, i);
    if (i < line.size() && line[i] == '{') {
        bool quoted = false;
        for (++i; i < line.size(); ++i) {
            const char c = line[i];
            if (quoted && c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = !quoted;
            } else if (!quoted && c == '}') {
                ++i;
                break;
            }
        }
    }
    // i is at the space before the value.
    size_t v = i;
    while (v < line.size() && line[v] == ' ') ++v;
    size_t end = v;
    while (end < line.size() && line[end] != ' ') ++end;
    std::string out(line.substr(0, i));
    out += ' ';
    out += line.substr(v, end - v);
    return out;
}

std::string helpFor04(std::string_view om_help) {
    std::string out;
    out.reserve(om_help.size());
    for (size_t i = 0; i < om_help.size(); ++i) {
        if (om_help[i] == '\\' && i + 1 < om_help.size()) {
            const char next = om_help[i + 1];
            if (next == '"') out += '"';
            else (out += '\\') += next;
            ++i;
        } else {
            out += om_help[i];
        }
    }
    return out;
}

void emit(const Family& f, std::string& out) {
    std::string name = f.name;
    std::string type;
    bool drop_created = false;
    if (f.type == "counter") {
        if (!endsWith(name, "_total")) name += "_total";
        type = "counter";
        drop_created = true;
    } else if (f.type == "histogram" || f.type == "summary") {
        type = f.type;
        drop_created = true;
    } else if (f.type == "gauge") {
        type = "gauge";
    } else if (f.type == "info") {
        name += "_info";
        type = "gauge";
    } else if (f.type == "stateset") {
        type = "gauge";
    } else if (f.type == "unknown") {
        type = "untyped";
    }
    // gaugehistogram (and a family without TYPE): no metadata, the samples stay untyped.
    if (!type.empty()) {
        if (f.has_help) out += "# HELP " + name + " " + helpFor04(f.help) + "\n";
        out += "# TYPE " + name + " " + type + "\n";
    }
    const std::string created = f.name + "_created";
    for (auto line : f.samples) {
        std::string_view sample_name;
        std::string sample = sampleWithoutExtras(line, &sample_name);
        if (drop_created && sample_name == created) continue;
        out += sample;
        out += '\n';
    }
}

} // namespace

std::string toPrometheusText(std::string_view om) {
    std::string out;
    out.reserve(om.size());
    std::vector<Family> families;
    Family loose; // samples before any metadata
    auto current = [&](std::string_view name) -> Family& {
        if (families.empty() || families.back().name != name) {
            families.push_back(Family{});
            families.back().name = std::string(name);
        }
        return families.back();
    };
    size_t pos = 0;
    while (pos < om.size()) {
        size_t nl = om.find('\n', pos);
        if (nl == std::string_view::npos) nl = om.size();
        std::string_view line = om.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.empty()) continue;
        if (line[0] == '#') {
            std::string_view name, text;
            if (startsWith(line, "# TYPE ")) {
                metadata(line.substr(7), &name, &text);
                current(name).type = std::string(text);
            } else if (startsWith(line, "# HELP ")) {
                metadata(line.substr(7), &name, &text);
                auto& f = current(name);
                f.help = std::string(text);
                f.has_help = true;
            }
            // "# EOF", "# UNIT" and other comments: left out.
            continue;
        }
        (families.empty() ? loose : families.back()).samples.push_back(line);
    }
    emit(loose, out);
    for (const auto& f : families) emit(f, out);
    return out;
}

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// q from "0", "0.5", "1", "1.000"; malformed: 0 (the range is then ignored).
double parseQ(std::string_view v) {
    v = trim(v);
    if (v.empty() || v.size() > 5 || (v[0] != '0' && v[0] != '1')) return 0;
    std::string s(v);
    char* end = nullptr;
    const double q = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || q < 0 || q > 1) return 0;
    return q;
}

} // namespace

bool wantsOpenMetrics(std::string_view accept) {
    double om = -1, text = -1;
    size_t pos = 0;
    while (pos <= accept.size()) {
        size_t comma = accept.find(',', pos);
        if (comma == std::string_view::npos) comma = accept.size();
        std::string_view range = accept.substr(pos, comma - pos);
        pos = comma + 1;
        // type/subtype *(; param=value)
        size_t semi = range.find(';');
        const std::string_view media = trim(range.substr(0, semi));
        double q = 1;
        std::string_view version;
        while (semi != std::string_view::npos) {
            const size_t next = range.find(';', semi + 1);
            std::string_view param = trim(range.substr(semi + 1, next == std::string_view::npos ? next : next - semi - 1));
            semi = next;
            const size_t eq = param.find('=');
            if (eq == std::string_view::npos) continue;
            const auto key = trim(param.substr(0, eq));
            auto value = trim(param.substr(eq + 1));
            if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
            if (iequals(key, "q")) q = parseQ(value);
            else if (iequals(key, "version")) version = value;
        }
        if (iequals(media, "application/openmetrics-text")) {
            if (version.empty() || version == "1.0.0" || version == "0.0.1") om = std::max(om, q);
        } else if (iequals(media, "text/plain")) {
            if (version.empty() || version == "0.0.4") text = std::max(text, q);
        } else if (iequals(media, "text/*") || iequals(media, "*/*")) {
            text = std::max(text, q);
        }
    }
    return om > 0 && om >= text;
}

} // namespace taskhub::metrics_export

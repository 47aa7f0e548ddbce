#include "metrics_export/text_format.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

namespace taskhub::metrics_export {

namespace {

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

// The length of "NAME{LABELS} VALUE" at the start of a sample line (what stays once a timestamp
// and an exemplar are cut off), and the sample's name. Label values are quoted with \\, \" and
// \n escapes, so a space, '}' or '#' inside them is skipped over.
size_t sampleEnd(std::string_view line, std::string_view* name_out) {
    // The common line, "NAME{LABELS} VALUE" or "NAME VALUE" with no '#' (no exemplar): the
    // labels end at the last '}' (values and timestamps have none), found with memchr-speed
    // searches rather than walked through.
    if (line.find('#') == std::string_view::npos) {
        const size_t brace = line.find('{');
        const size_t name_end = std::min(brace, line.find(' '));
        *name_out = line.substr(0, name_end);
        size_t i = brace == std::string_view::npos || brace > name_end ? name_end : line.rfind('}') + 1;
        while (i < line.size() && line[i] == ' ') ++i;
        const size_t end = line.find(' ', i);
        return end == std::string_view::npos ? line.size() : end;
    }
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
    size_t end = i;
    while (end < line.size() && line[end] == ' ') ++end;
    while (end < line.size() && line[end] != ' ') ++end;
    return end;
}

void appendHelp04(std::string& out, std::string_view om_help) {
    for (size_t i = 0; i < om_help.size(); ++i) {
        if (om_help[i] == '\\' && i + 1 < om_help.size()) {
            const char next = om_help[i + 1];
            if (next != '"') out += '\\';
            out += next;
            ++i;
        } else {
            out += om_help[i];
        }
    }
}

// One family while it is converted: its metadata is held until its first sample (or the next
// family), because the name the text format gives it depends on its type.
struct Family {
    std::string_view name;
    std::string_view type; // OpenMetrics type; empty: none given
    std::string_view help;
    bool has_help = false;
    bool header_done = false;

    void header(std::string& out) {
        if (header_done) return;
        header_done = true;
        std::string_view suffix;
        std::string_view type04;
        if (type == "counter") {
            if (!endsWith(name, "_total")) suffix = "_total";
            type04 = "counter";
        } else if (type == "histogram" || type == "summary" || type == "gauge") {
            type04 = type;
        } else if (type == "info") {
            suffix = "_info";
            type04 = "gauge";
        } else if (type == "stateset") {
            type04 = "gauge";
        } else if (type == "unknown") {
            type04 = "untyped";
        }
        // gaugehistogram (and a family without TYPE): no metadata, the samples stay untyped.
        if (type04.empty()) return;
        if (has_help) {
            ((out += "# HELP ") += name) += suffix;
            out += ' ';
            appendHelp04(out, help);
            out += '\n';
        }
        ((((out += "# TYPE ") += name) += suffix) += ' ') += type04;
        out += '\n';
    }
    bool dropsCreated() const { return type == "counter" || type == "histogram" || type == "summary"; }
};

} // namespace

std::string toPrometheusText(std::string_view om) {
    std::string out;
    out.reserve(om.size());
    Family f;
    size_t pos = 0;
    while (pos < om.size()) {
        size_t nl = om.find('\n', pos);
        if (nl == std::string_view::npos) nl = om.size();
        const std::string_view line = om.substr(pos, nl - pos);
        pos = nl + 1;
        if (line.empty()) continue;
        if (line[0] == '#') {
            const bool type = startsWith(line, "# TYPE ");
            const bool help = !type && startsWith(line, "# HELP ");
            if (!type && !help) continue; // "# EOF", "# UNIT" and other comments: left out
            std::string_view name, text;
            metadata(line.substr(7), &name, &text);
            if (name != f.name) {
                if (!f.name.empty()) f.header(out); // a family without samples keeps its metadata
                f = Family{};
                f.name = name;
            }
            if (type) {
                f.type = text;
            } else {
                f.help = text;
                f.has_help = true;
            }
            continue;
        }
        if (!f.name.empty()) f.header(out);
        std::string_view sample_name;
        const size_t end = sampleEnd(line, &sample_name);
        if (f.dropsCreated() && sample_name.size() == f.name.size() + 8 && startsWith(sample_name, f.name) &&
            endsWith(sample_name, "_created")) {
            continue;
        }
        out.append(line.data(), end);
        out += '\n';
    }
    if (!f.name.empty()) f.header(out);
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

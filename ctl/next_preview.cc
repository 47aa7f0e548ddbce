#include "next_preview.h"

#include <date/tz.h>
#include <taskhub/suggest.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace taskhub::ctl {

using std::chrono::sys_seconds;

namespace {

bool equalsIgnoringCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// Zone names to suggest for an unknown one: the closest name within two edits, else the zones
// whose city is the name given ("berlin" -> Europe/Berlin), at most three.
std::vector<std::string> zoneSuggestions(std::string_view name) {
    const std::vector<std::string> names = zoneNames();
    if (auto best = sdk::closestKey(name, names); !best.empty()) return {best};
    std::vector<std::string> out;
    for (const auto& n : names) {
        auto slash = n.rfind('/');
        if (slash != std::string::npos && equalsIgnoringCase(std::string_view(n).substr(slash + 1), name)) {
            out.push_back(n);
            if (out.size() == 3) break;
        }
    }
    return out;
}

} // namespace

std::vector<std::string> zoneNames() {
    std::vector<std::string> names;
    // The system's tz database (USE_OS_TZDB) lists links like "UTC" among the zones.
    for (const auto& z : date::get_tzdb().zones) names.emplace_back(z.name());
    return names;
}

const date::time_zone* findZone(std::string_view name, std::string* err) {
    try {
        return date::locate_zone(name);
    } catch (const std::runtime_error&) {
    }
    std::string hint;
    auto suggestions = zoneSuggestions(name);
    for (size_t i = 0; i < suggestions.size(); ++i) {
        hint += (i == 0 ? "; did you mean '" : i + 1 == suggestions.size() ? "' or '" : "', '") + suggestions[i];
    }
    if (!hint.empty()) hint += "'?";
    *err = "unknown time zone \"" + std::string(name) + "\"" + hint +
           " (expected an IANA name like \"Europe/Berlin\" or \"UTC\")";
    return nullptr;
}

std::vector<PreviewFiring> previewFirings(const cron::CronExpr& expr, const date::time_zone* tz, sys_seconds after,
                                          size_t n, const cron::DstPolicy& policy) {
    std::vector<PreviewFiring> out;
    for (sys_seconds from = after; out.size() < n;) {
        auto next = expr.next(from, tz, policy);
        if (!next) break;
        auto facts = triggers::dstFacts(&expr, tz, *next, policy);
        PreviewFiring f{*next, formatIsoLocal(*next, tz), facts.note, std::move(facts.skipped_wall)};
        out.push_back(std::move(f));
        from = *next;
    }
    return out;
}

std::string formatIsoLocal(sys_seconds t, const date::time_zone* tz) {
    return date::format("%FT%T%Ez", date::make_zoned(tz, t));
}

std::string dstNoteText(const PreviewFiring& f) {
    return triggers::dstNoteText({f.dst, f.skipped_wall}, f.local);
}

namespace {

// "a, b or c": the names of a table, as an error message lists them.
template <class Table>
std::string choiceList(const Table& names) {
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
        out += names[i].second;
    }
    return out;
}

template <class Table, class E>
bool parseName(const Table& names, std::string_view text, E* out, std::string* err) {
    for (const auto& [value, name] : names) {
        if (name == text) {
            *out = value;
            return true;
        }
    }
    *err = "expected " + choiceList(names) + ", found '" + std::string(text) + "'";
    return false;
}

template <class Table, class E>
const char* nameOf(const Table& names, E value) {
    for (const auto& [v, name] : names) {
        if (v == value) return name.data();
    }
    return "";
}

} // namespace

bool parseDstGap(std::string_view text, cron::DstPolicy::Gap* out, std::string* err) {
    return parseName(kDstGapNames, text, out, err);
}

bool parseDstFold(std::string_view text, cron::DstPolicy::Fold* out, std::string* err) {
    return parseName(kDstFoldNames, text, out, err);
}

const char* dstGapName(cron::DstPolicy::Gap gap) { return nameOf(kDstGapNames, gap); }

const char* dstFoldName(cron::DstPolicy::Fold fold) { return nameOf(kDstFoldNames, fold); }

} // namespace taskhub::ctl

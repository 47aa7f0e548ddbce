#include "triggers/backfill.h"

#include <date/tz.h>

#include <algorithm>
#include <sstream>

#include "common/time_util.h"

namespace taskhub::triggers {

using std::chrono::seconds;
using std::chrono::sys_seconds;
using Kind = config::TriggerDef::Kind;

namespace {

constexpr const char* kForms =
    "expected an instant with its offset (2026-03-29T02:30:00+01:00, 2026-03-29T00:30:00Z), a wall time in the "
    "workflow's zone (2026-03-29T02:30:00, 2026-03-29T02:30) or a date (2026-03-29: its midnight in the workflow's "
    "zone)";

bool hasOffset(std::string_view text) {
    // After the date (10 characters) and the time: a 'Z' or a sign.
    if (text.size() <= 10) return false;
    const auto rest = text.substr(10);
    return rest.find_first_of("Zz+-") != std::string_view::npos;
}

std::optional<date::local_seconds> parseLocal(std::string_view text, const char* format) {
    std::istringstream in{std::string(text)};
    date::local_seconds t;
    in >> date::parse(format, t);
    if (in.fail()) return std::nullopt;
    in.peek();
    if (!in.eof()) return std::nullopt;
    return t;
}

} // namespace

std::optional<sys_seconds> parseRangeTime(std::string_view text, const date::time_zone* tz, RangeEnd end,
                                          std::string* err) {
    if (text.empty()) {
        *err = std::string("an empty time; ") + kForms;
        return std::nullopt;
    }
    if (hasOffset(text)) {
        std::string why;
        if (auto t = parseIsoInstant(text, &why)) return t;
        *err = "\"" + std::string(text) + "\": " + why;
        return std::nullopt;
    }
    const bool date_only = text.size() == 10;
    std::optional<date::local_seconds> local;
    if (date_only) {
        local = parseLocal(text, "%F");
    } else {
        std::string t(text);
        if (t.size() > 10 && t[10] == ' ') t[10] = 'T';
        local = parseLocal(t, "%FT%T");
        if (!local) local = parseLocal(t, "%FT%R");
    }
    if (!local) {
        *err = "\"" + std::string(text) + "\" is not a time; " + kForms;
        return std::nullopt;
    }
    const auto info = tz->get_info(*local);
    switch (info.result) {
    case date::local_info::unique: return sys_seconds(local->time_since_epoch() - info.first.offset);
    case date::local_info::ambiguous:
        // The first pass begins the range, the second ends it: the repeated hour is covered.
        return sys_seconds(local->time_since_epoch() -
                           (end == RangeEnd::From ? info.first.offset : info.second.offset));
    case date::local_info::nonexistent:
        if (date_only) return info.first.end; // the day begins at the jump
        *err = "\"" + std::string(text) + "\" does not exist in " + std::string(tz->name()) +
               " (a DST change skipped it); give an instant with its offset, or a wall time before or after the jump";
        return std::nullopt;
    }
    return std::nullopt;
}

RangeFirings firingsBetween(const config::Workflow& wf, sys_seconds from, sys_seconds to, size_t max) {
    RangeFirings out;
    const PlanContext ctx{};
    std::vector<size_t> used;
    for (size_t t = 0; t < wf.triggers.size(); ++t) {
        const auto& trig = wf.triggers[t];
        if (trig.kind == Kind::Reboot || trig.kind == Kind::File) continue;
        if (trig.kind == Kind::Every && !trig.start_at) {
            out.left_out.push_back("#" + std::to_string(t) + " " + trig.describe());
            continue;
        }
        used.push_back(t);
    }
    out.triggers_used = used.size();
    if (from > to) return out;
    // The triggers' firings merged in order of scheduled instant, one per instant: each trigger's
    // next firing in the range, the earliest taken. Counting stops at the limit ("more than").
    std::vector<std::optional<PlannedFiring>> next;
    for (size_t t : used) next.push_back(nextFiring(wf, t, from - seconds(1), ctx));
    std::optional<sys_seconds> last;
    for (;;) {
        std::optional<PlannedFiring>* first = nullptr;
        for (auto& n : next) {
            if (n && n->scheduled > to) n.reset();
            if (n && (!first || n->scheduled < (*first)->scheduled)) first = &n;
        }
        if (!first) break;
        const PlannedFiring f = **first;
        *first = nextFiring(wf, f.trigger, f.scheduled, ctx);
        if (last && *last == f.scheduled) continue; // another trigger named this instant already
        last = f.scheduled;
        if (out.count == kBackfillCountLimit) {
            out.count_capped = true;
            break;
        }
        ++out.count;
        if (out.count <= max) out.firings.push_back(f);
    }
    if (out.count > max) {
        out.over = true;
        out.firings.clear();
    }
    return out;
}

} // namespace taskhub::triggers

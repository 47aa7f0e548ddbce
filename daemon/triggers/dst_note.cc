#include "triggers/dst_note.h"

#include <date/tz.h>

namespace taskhub::triggers {

using std::chrono::seconds;
using std::chrono::sys_seconds;

namespace {

// The wall time of a skipped interval that a run_after firing at t stands for, if t is such a
// firing: CronExpr::next() fires a fixed-hour expression at the first instant after a
// spring-forward jump when the expression matches a wall time the jump skipped.
std::optional<sys_seconds> skippedWallTime(const cron::CronExpr& expr, const date::time_zone* tz, sys_seconds t,
                                           const cron::DstPolicy& policy) {
    if (expr.hourIsWildcard() || policy.gap != cron::DstPolicy::Gap::RunAfter) return std::nullopt;
    const auto after = tz->get_info(t);
    if (after.begin != t) return std::nullopt;
    const auto before = tz->get_info(t - seconds(1));
    if (before.offset >= after.offset) return std::nullopt;
    // The skipped wall times are [t + before.offset, t + after.offset). In UTC wall time and
    // instant coincide, so the first match there is the first matching wall time.
    static const date::time_zone* utc = date::locate_zone("Etc/UTC");
    const sys_seconds skipped_begin = t + before.offset;
    auto match = expr.next(skipped_begin - seconds(1), utc);
    if (!match || *match >= t + after.offset) return std::nullopt;
    return match;
}

DstNote foldPass(const date::time_zone* tz, sys_seconds t) {
    const auto info = tz->get_info(t);
    const auto local = tz->get_info(date::local_seconds(t.time_since_epoch() + info.offset));
    if (local.result != date::local_info::ambiguous) return DstNote::None;
    return info.begin == local.first.begin ? DstNote::FoldFirst : DstNote::FoldSecond;
}

// "02:30" from "2026-03-29T02:30:00"; seconds only when they are not zero.
std::string wallClock(const std::string& iso) {
    if (iso.size() < 19) return iso;
    return iso.compare(16, 3, ":00") == 0 ? iso.substr(11, 5) : iso.substr(11, 8);
}

} // namespace

DstFacts dstFacts(const cron::CronExpr* expr, const date::time_zone* tz, sys_seconds t,
                  const cron::DstPolicy& policy) {
    DstFacts out;
    if (expr) {
        if (auto wall = skippedWallTime(*expr, tz, t, policy)) {
            out.note = DstNote::Gap;
            out.skipped_wall = date::format("%FT%T", *wall);
            return out;
        }
    }
    out.note = foldPass(tz, t);
    return out;
}

const char* dstNoteName(DstNote note) {
    switch (note) {
    case DstNote::None: return "";
    case DstNote::Gap: return "gap";
    case DstNote::FoldFirst: return "fold_first";
    case DstNote::FoldSecond: return "fold_second";
    }
    return "";
}

std::string dstNoteText(const DstFacts& facts, const std::string& local) {
    switch (facts.note) {
    case DstNote::None: return "";
    case DstNote::Gap: return "DST gap: stands for " + wallClock(facts.skipped_wall) + ", which the jump skipped";
    case DstNote::FoldFirst: return "DST fold: 1st pass of " + wallClock(local);
    case DstNote::FoldSecond: return "DST fold: 2nd pass of " + wallClock(local);
    }
    return "";
}

} // namespace taskhub::triggers

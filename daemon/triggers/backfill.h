// Backfill (`taskhubctl backfill WORKFLOW --from T1 --to T2`): the firings a workflow's time
// triggers would have made with scheduled instants in a range, walked by the one schedule walker
// (plan.h: nextFiring, the daemon's own CronExpr::next() with the workflow's zone and DST
// policy), so that a backfilled firing gets exactly the id the scheduler would have given it.
// Pure (no clock, no I/O).
//
// Threading: pure functions over immutable workflow definitions; callable from any thread.
#ifndef TASKHUB_TRIGGERS_BACKFILL_H
#define TASKHUB_TRIGGERS_BACKFILL_H

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/workflow.h"
#include "triggers/plan.h"

namespace taskhub::triggers {

// A backfill creates at most this many runs: a larger range is refused with its count.
inline constexpr size_t kMaxBackfillInstants = 10'000;
// Counting the firings of a range refused as too large stops here ("more than ...").
inline constexpr size_t kBackfillCountLimit = 100'000;

// Which end of a backfill range a time argument gives: a local time that occurs twice (a DST
// fold) takes its first pass as the start and its second as the end, so that the range covers
// the whole repeated interval.
enum class RangeEnd { From, To };

// A --from / --to value, as the instant it names. Accepted:
//   "2026-03-29T02:30:00+01:00", "...Z", seconds optional   an instant with its offset
//   "2026-03-29T02:30:00", "2026-03-29T02:30"               a wall time in zone tz
//   "2026-03-29"                                            that day's midnight in zone tz
// A wall time a DST jump skipped is refused (it names no instant); a day whose midnight was
// skipped begins at the jump. On error returns nullopt and sets *err to what is wrong and which
// forms are accepted (without naming the option: the caller does).
std::optional<std::chrono::sys_seconds> parseRangeTime(std::string_view text, const date::time_zone* tz, RangeEnd end,
                                                       std::string* err);

struct RangeFirings {
    // The firings with scheduled instants in [from, to] (both ends included), oldest first, one
    // per instant (several triggers naming one instant make one firing, as in catch-up). Empty
    // when over.
    std::vector<PlannedFiring> firings;
    // How many instants the range holds, counted up to kBackfillCountLimit (then count_capped:
    // "more than"); over: more than `max`.
    bool over = false;
    size_t count = 0;
    bool count_capped = false;
    // The time triggers that took part: cron, at, and every with start_at.
    size_t triggers_used = 0;
    // Time triggers left out: `every` without start_at (its grid is anchored at the daemon's
    // start, so the instants it would have fired before are not defined); "#1 every 15m".
    std::vector<std::string> left_out;
};

// The firings of wf's time triggers (cron, at, every with start_at; never @reboot or file
// drops) scheduled in [from, to], at most max (see RangeFirings::over). Jitter plays no part: a
// backfilled firing is identified and ordered by its scheduled instant.
RangeFirings firingsBetween(const config::Workflow& wf, std::chrono::sys_seconds from, std::chrono::sys_seconds to,
                            size_t max = kMaxBackfillInstants);

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_BACKFILL_H

// Cron expressions: parsing and next-fire computation in a time zone. Pure: no I/O, no clock.
//
// Grammar (see docs/workflow-format.md):
//   - 5 fields "min hour dom month dow", or 6 fields with seconds first "sec min hour dom month dow";
//   - each field: "*", a number, a name (JAN..DEC, SUN..SAT, case-insensitive), ranges "a-b",
//     steps "*/n" and "a-b/n" and "a/n", and comma-separated lists of those; "?" is accepted in
//     the day-of-month and day-of-week fields and means "*"; day-of-week 7 is Sunday like 0;
//   - macros: @yearly @annually @monthly @weekly @daily @midnight @hourly;
//   - day-of-month and day-of-week follow the Vixie rule: when both are restricted (neither
//     starts with "*" or "?"), a day matches if either matches.
//
// Time zones and DST: next() works in the wall-clock time of the given zone. A wall time that
// does not exist (spring-forward gap) and one that occurs twice (fall-back fold) are resolved by
// DstPolicy. Expressions whose hour field is "*" are interval-like: they fire at every real
// instant that matches, in both passes of a repeated hour, and have no firings in a gap,
// whatever the policy says.
//
// Thread-safety: CronExpr is immutable after parse(); next() may be called concurrently.
#ifndef TASKHUB_CRON_CRON_H
#define TASKHUB_CRON_CRON_H

#include <bitset>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace date {
class time_zone;
}

namespace taskhub::cron {

// How fixed-hour expressions treat DST transitions. The defaults are cronie's.
struct DstPolicy {
    enum class Gap { RunAfter, Skip };          // wall time skipped by a spring-forward jump
    enum class Fold { First, Second, Both };    // wall time repeated by a fall-back
    Gap gap = Gap::RunAfter; // RunAfter: fire once at the first instant after the jump
    Fold fold = Fold::First; // First: fire once, at the first occurrence
};

class CronExpr {
public:
    // Parses text. On error returns std::nullopt and sets *err to one line naming the field,
    // the offending text and what is allowed, e.g. "minute 61 out of range 0-59" or
    // "expected 5 or 6 fields, found 4". Callers prefix file:line and the expression.
    static std::optional<CronExpr> parse(std::string_view text, std::string* err);

    // The first firing instant strictly after `after`, in zone tz (never null), or std::nullopt
    // when the expression never matches in the next 8 years (e.g. "0 0 30 2 *").
    std::optional<std::chrono::sys_seconds> next(std::chrono::sys_seconds after,
                                                 const date::time_zone* tz,
                                                 const DstPolicy& policy = {}) const;

    const std::string& text() const noexcept { return text_; }
    bool hasSeconds() const noexcept { return has_seconds_; }
    // True when the hour field selects all 24 hours: "*", or e.g. "*/1" or "0-23".
    bool hourIsWildcard() const noexcept { return hour_wildcard_; }

private:
    CronExpr() = default;

    bool parseFields(std::string_view text, std::string* err);
    // First wall-clock time (seconds since the local epoch) in [from, limit) that matches the
    // fields, ignoring time zones; std::nullopt if there is none.
    std::optional<std::int64_t> nextMatchingWall(std::int64_t from, std::int64_t limit) const;
    std::uint64_t matchingDaysOfMonth(int year, unsigned month) const;

    std::string text_;
    bool has_seconds_ = false;
    bool hour_wildcard_ = false;
    bool dom_restricted_ = false;
    bool dow_restricted_ = false;
    std::bitset<60> seconds_;
    std::bitset<60> minutes_;
    std::bitset<24> hours_;
    std::bitset<32> days_of_month_; // 1..31
    std::bitset<13> months_;        // 1..12
    std::bitset<7> days_of_week_;   // 0..6, Sunday = 0
};

} // namespace taskhub::cron

#endif // TASKHUB_CRON_CRON_H

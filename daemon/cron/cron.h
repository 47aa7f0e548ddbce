// Cron expressions: parsing and next-fire computation in a time zone. Pure: no I/O, no clock.
//
// Grammar (docs/scheduling.md has the full reference with examples):
//   - 5 fields "min hour dom month dow", or 6 fields with seconds first
//     "sec min hour dom month dow";
//   - each field: "*", a number, a name (JAN..DEC, SUN..SAT, case-insensitive), ranges "a-b",
//     steps "*/n" and "a-b/n" and "a/n", and comma-separated lists of those; "?" is accepted in
//     the day-of-month and day-of-week fields and means "*"; day-of-week 7 is Sunday like 0;
//   - day-of-month also takes "L" (the last day of the month), "L-n" (n days before it), "LW"
//     (the last weekday, Monday to Friday, of the month) and "nW" (the weekday nearest to day n,
//     never crossing into another month, Quartz's rule); day-of-week also takes "nL" (the last
//     weekday n of the month, "5L" or "FRIL") and "n#k" (the k-th weekday n of the month, k 1-5);
//   - "H", "H(a-b)", "H/n" and "H(a-b)/n" in any field (Jenkins): a value picked by hashing the
//     hash_key given to parse(), stable across versions and machines (the rule is in
//     docs/scheduling.md and fieldHash() in cron.cc);
//   - macros: @yearly @annually @monthly @weekly @daily @midnight @hourly, and @reboot;
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

// The day-of-month and day-of-week elements whose days depend on the month (an implementation
// detail of CronExpr, public only so that the parser in cron.cc can fill it in).
struct MonthRelativeDays {
    std::uint32_t before_last = 0;     // day-of-month, bit n: "L-n" ("L" is bit 0)
    bool last_weekday = false;         // day-of-month "LW"
    std::uint32_t nearest_weekday = 0; // day-of-month, bit d: "dW"
    std::uint8_t last_of_weekday = 0;  // day-of-week, bit w: "wL"
    std::uint64_t nth_of_weekday = 0;  // day-of-week, bit 5*w + k-1: "w#k"
};

class CronExpr {
public:
    // Parses text. On error returns std::nullopt and sets *err to one line naming the field,
    // the offending text and what is allowed, e.g. "minute 61 out of range 0-59" or
    // "expected 5 or 6 fields, found 4". Callers prefix file:line and the expression.
    // hash_key (the workflow's name) seeds the values "H" picks; an expression using "H" with
    // an empty hash_key is an error.
    static std::optional<CronExpr> parse(std::string_view text, std::string* err,
                                         std::string_view hash_key = {});

    // The first firing instant strictly after `after`, in zone tz (never null), or std::nullopt
    // when the expression never matches in the next 8 years (e.g. "0 0 30 2 *") and for @reboot.
    std::optional<std::chrono::sys_seconds> next(std::chrono::sys_seconds after,
                                                 const date::time_zone* tz,
                                                 const DstPolicy& policy = {}) const;

    const std::string& text() const noexcept { return text_; }
    // "@reboot": fires once per machine boot, which the scheduler decides; next() has no instant.
    bool isReboot() const noexcept { return reboot_; }
    bool hasSeconds() const noexcept { return has_seconds_; }
    // True when the hour field selects all 24 hours: "*", or e.g. "*/1" or "0-23".
    bool hourIsWildcard() const noexcept { return hour_wildcard_; }

private:
    CronExpr() = default;

    bool parseFields(std::string_view text, std::string_view hash_key, std::string* err);
    // First wall-clock time (seconds since the local epoch) in [from, limit) that matches the
    // fields, ignoring time zones; std::nullopt if there is none.
    std::optional<std::int64_t> nextMatchingWall(std::int64_t from, std::int64_t limit) const;
    // Bit d set for each day d of the month that matches the day-of-month and day-of-week
    // fields.
    std::uint64_t matchingDaysOfMonth(int year, unsigned month) const;
    struct MonthDays {
        std::uint64_t by_day = 0;     // from the day-of-month field
        std::uint64_t by_weekday = 0; // from the day-of-week field
    };
    // The days month_relative_ selects in a month of last_day days starting on first_weekday.
    MonthDays monthRelativeDays(unsigned last_day, unsigned first_weekday) const;

    std::string text_;
    bool reboot_ = false;
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
    MonthRelativeDays month_relative_;
};

} // namespace taskhub::cron

#endif // TASKHUB_CRON_CRON_H

#include "cron/cron.h"

#include <catch2/catch.hpp>

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using taskhub::cron::CronExpr;
using taskhub::cron::DstPolicy;
using Gap = DstPolicy::Gap;
using Fold = DstPolicy::Fold;
using std::chrono::seconds;
using std::chrono::sys_seconds;

const date::time_zone* zone(const char* name) { return date::locate_zone(name); }

// Seconds since the epoch of "2026-03-29 01:00:00", read as a wall time.
seconds sinceEpoch(const std::string& text) {
    int y = 0;
    unsigned mo = 0, d = 0;
    int h = 0, mi = 0, s = 0;
    REQUIRE(std::sscanf(text.c_str(), "%d-%u-%u %d:%d:%d", &y, &mo, &d, &h, &mi, &s) == 6);
    const date::sys_days day{date::year{y} / date::month{mo} / date::day{d}};
    return day.time_since_epoch() + std::chrono::hours(h) + std::chrono::minutes(mi) +
           seconds(s);
}

sys_seconds utc(const std::string& text) { return sys_seconds(sinceEpoch(text)); }

// A wall time that occurs exactly once in tz.
sys_seconds local(const date::time_zone* tz, const std::string& text) {
    return tz->to_sys(date::local_seconds(sinceEpoch(text)));
}

std::string inZone(const date::time_zone* tz, sys_seconds t) {
    return date::format("%F %T %z", date::zoned_seconds(tz, t));
}

CronExpr parsed(const std::string& text) {
    std::string err;
    auto expr = CronExpr::parse(text, &err);
    INFO(text << ": " << err);
    REQUIRE(expr);
    return *expr;
}

std::string parseError(const std::string& text) {
    std::string err;
    auto expr = CronExpr::parse(text, &err);
    INFO(text);
    REQUIRE_FALSE(expr);
    return err;
}

// The first n firings strictly after `after`, as wall times with offset in tz.
std::vector<std::string> firings(const std::string& text, const date::time_zone* tz,
                                 sys_seconds after, int n, const DstPolicy& policy = {}) {
    const CronExpr expr = parsed(text);
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        const auto t = expr.next(after, tz, policy);
        if (!t) break;
        out.push_back(inZone(tz, *t));
        after = *t;
    }
    return out;
}

std::vector<std::string> utcFirings(const std::string& text, const std::string& after, int n) {
    return firings(text, zone("UTC"), utc(after), n);
}

enum class Part { Second, Minute, Hour, DayOfMonth, Month, DayOfWeek };

// Which values of one calendar part the firings in [from, to) (UTC) take.
std::set<unsigned> firedValues(const std::string& text, Part part, const std::string& from,
                               const std::string& to) {
    const CronExpr expr = parsed(text);
    const date::time_zone* tz = zone("UTC");
    std::set<unsigned> values;
    const sys_seconds end = utc(to);
    for (auto t = expr.next(utc(from) - seconds(1), tz); t && *t < end;
         t = expr.next(*t, tz)) {
        const auto day = date::floor<date::days>(*t);
        const date::year_month_day ymd{day};
        const date::hh_mm_ss<seconds> tod{*t - day};
        switch (part) {
        case Part::Second: values.insert(static_cast<unsigned>(tod.seconds().count())); break;
        case Part::Minute: values.insert(static_cast<unsigned>(tod.minutes().count())); break;
        case Part::Hour: values.insert(static_cast<unsigned>(tod.hours().count())); break;
        case Part::DayOfMonth: values.insert(static_cast<unsigned>(ymd.day())); break;
        case Part::Month: values.insert(static_cast<unsigned>(ymd.month())); break;
        case Part::DayOfWeek: values.insert(date::weekday(day).c_encoding()); break;
        }
    }
    return values;
}

std::set<unsigned> minutesOf(const std::string& text) {
    return firedValues(text, Part::Minute, "2026-01-05 10:00:00", "2026-01-05 11:00:00");
}

std::set<unsigned> monthsOf(const std::string& text) {
    return firedValues(text, Part::Month, "2026-01-01 00:00:00", "2027-01-01 00:00:00");
}

// 2026-01-04 is a Sunday; two full weeks.
std::set<unsigned> weekdaysOf(const std::string& text) {
    return firedValues(text, Part::DayOfWeek, "2026-01-04 00:00:00", "2026-01-18 00:00:00");
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Parsing

TEST_CASE("a number, a list, a range and a step select minutes", "[cron][parse]") {
    CHECK(minutesOf("7 * * * *") == std::set<unsigned>{7});
    CHECK(minutesOf("1,2,30 * * * *") == std::set<unsigned>{1, 2, 30});
    CHECK(minutesOf("10-13 * * * *") == std::set<unsigned>{10, 11, 12, 13});
    CHECK(minutesOf("*/15 * * * *") == std::set<unsigned>{0, 15, 30, 45});
    CHECK(minutesOf("10-40/5 * * * *") == std::set<unsigned>{10, 15, 20, 25, 30, 35, 40});
    CHECK(minutesOf("5/10 * * * *") == std::set<unsigned>{5, 15, 25, 35, 45, 55});
    CHECK(minutesOf("0-4,50-59/3,*/30 * * * *") ==
          std::set<unsigned>{0, 1, 2, 3, 4, 30, 50, 53, 56, 59});
    CHECK(minutesOf("* * * * *").size() == 60);
    CHECK(minutesOf("07 * * * *") == std::set<unsigned>{7});
}

TEST_CASE("hours, days of month and seconds use their own ranges", "[cron][parse]") {
    CHECK(firedValues("0 */6 * * *", Part::Hour, "2026-01-05 00:00:00", "2026-01-06 00:00:00") ==
          std::set<unsigned>{0, 6, 12, 18});
    CHECK(firedValues("0 0 1,15,31 * *", Part::DayOfMonth, "2026-01-01 00:00:00",
                      "2026-02-01 00:00:00") == std::set<unsigned>{1, 15, 31});
    CHECK(firedValues("*/20 * * * * *", Part::Second, "2026-01-05 10:00:00",
                      "2026-01-05 10:01:00") == std::set<unsigned>{0, 20, 40});
    CHECK(firedValues("* * * * *", Part::Second, "2026-01-05 10:00:00", "2026-01-05 10:10:00") ==
          std::set<unsigned>{0});
}

TEST_CASE("month names are case-insensitive and work in lists and ranges", "[cron][parse]") {
    CHECK(monthsOf("0 0 1 JAN *") == std::set<unsigned>{1});
    CHECK(monthsOf("0 0 1 jan,Jun-AUG *") == std::set<unsigned>{1, 6, 7, 8});
    CHECK(monthsOf("0 0 1 mar-5,dec *") == std::set<unsigned>{3, 4, 5, 12});
    CHECK(monthsOf("0 0 1 */4 *") == std::set<unsigned>{1, 5, 9});
}

TEST_CASE("weekday names, ranges, and 7 as Sunday", "[cron][parse]") {
    CHECK(weekdaysOf("0 0 * * MON-FRI") == std::set<unsigned>{1, 2, 3, 4, 5});
    CHECK(weekdaysOf("0 0 * * sun,Sat") == std::set<unsigned>{0, 6});
    CHECK(weekdaysOf("0 0 * * 7") == std::set<unsigned>{0});
    CHECK(weekdaysOf("0 0 * * 0") == std::set<unsigned>{0});
    CHECK(weekdaysOf("0 0 * * 5-7") == std::set<unsigned>{0, 5, 6});
    CHECK(weekdaysOf("0 0 * * */2") == std::set<unsigned>{0, 2, 4, 6});
    CHECK(weekdaysOf("0 0 * * 1/2") == std::set<unsigned>{1, 3, 5});
    CHECK(weekdaysOf("0 0 * * *").size() == 7);
}

TEST_CASE("? means * in day-of-month and day-of-week", "[cron][parse]") {
    CHECK(utcFirings("0 12 ? * *", "2026-01-01 00:00:00", 2) ==
          utcFirings("0 12 * * *", "2026-01-01 00:00:00", 2));
    CHECK(weekdaysOf("0 0 ? * WED") == std::set<unsigned>{3});
    CHECK(firedValues("0 0 15 * ?", Part::DayOfMonth, "2026-01-01 00:00:00",
                      "2026-04-01 00:00:00") == std::set<unsigned>{15});
}

TEST_CASE("runs of spaces and tabs separate fields; outer whitespace is ignored",
          "[cron][parse]") {
    CHECK(utcFirings(" \t30  9\t* *   MON-FRI \t", "2026-01-02 10:00:00", 1) ==
          std::vector<std::string>{"2026-01-05 09:30:00 +0000"});
}

TEST_CASE("macros stand for fixed five-field expressions", "[cron][parse]") {
    const std::string from = "2026-05-17 13:45:00";
    CHECK(utcFirings("@yearly", from, 1) == utcFirings("0 0 1 1 *", from, 1));
    CHECK(utcFirings("@annually", from, 1) == utcFirings("0 0 1 1 *", from, 1));
    CHECK(utcFirings("@monthly", from, 1) == utcFirings("0 0 1 * *", from, 1));
    CHECK(utcFirings("@weekly", from, 2) == std::vector<std::string>{
                                                "2026-05-24 00:00:00 +0000",
                                                "2026-05-31 00:00:00 +0000"});
    CHECK(utcFirings("@daily", from, 1) ==
          std::vector<std::string>{"2026-05-18 00:00:00 +0000"});
    CHECK(utcFirings("@midnight", from, 1) == utcFirings("@daily", from, 1));
    CHECK(utcFirings("@hourly", from, 2) == std::vector<std::string>{
                                                "2026-05-17 14:00:00 +0000",
                                                "2026-05-17 15:00:00 +0000"});
    CHECK(utcFirings("  @DAILY ", from, 1) == utcFirings("@daily", from, 1));
}

TEST_CASE("the expression keeps its text and reports seconds and a wildcard hour",
          "[cron][parse]") {
    CHECK(parsed("@daily").text() == "@daily");
    CHECK(parsed("0 9 * * *").text() == "0 9 * * *");
    CHECK_FALSE(parsed("0 9 * * *").hasSeconds());
    CHECK(parsed("*/5 * * * * *").hasSeconds());

    CHECK(parsed("*/15 * * * *").hourIsWildcard());
    CHECK(parsed("0 */1 * * *").hourIsWildcard());
    CHECK(parsed("0 0-23 * * *").hourIsWildcard());
    CHECK(parsed("@hourly").hourIsWildcard());
    CHECK_FALSE(parsed("0 */2 * * *").hourIsWildcard());
    CHECK_FALSE(parsed("0 0-22 * * *").hourIsWildcard());
    CHECK_FALSE(parsed("30 2 * * *").hourIsWildcard());
    CHECK_FALSE(parsed("@daily").hourIsWildcard());
}

TEST_CASE("parse errors name the field, the offending text and what is allowed",
          "[cron][parse]") {
    struct Case {
        const char* text;
        const char* error;
    };
    const Case cases[] = {
        {"* * * *", "expected 5 or 6 fields, found 4"},
        {"* * * * * * *", "expected 5 or 6 fields, found 7"},
        {"   ", "expected 5 or 6 fields, found 0"},
        {"61 * * * *", "minute 61 out of range 0-59"},
        {"60 * * * * *", "second 60 out of range 0-59"},
        {"* 24 * * *", "hour 24 out of range 0-23"},
        {"* * 0 * *", "day-of-month 0 out of range 1-31"},
        {"* * 32 * *", "day-of-month 32 out of range 1-31"},
        {"* * * 13 *", "month 13 out of range 1-12"},
        {"* * * 0 *", "month 0 out of range 1-12"},
        {"* * * * 8", "day-of-week 8 out of range 0-7"},
        {"99999999999 * * * *", "minute 99999999999 out of range 0-59"},
        {"* 2x * * *",
         "hour field \"2x\": expected a number, name, range or step (allowed 0-23)"},
        {"1,2x * * * *",
         "minute field \"2x\": expected a number, name, range or step (allowed 0-59)"},
        {"MON * * * *",
         "minute field \"MON\": expected a number, name, range or step (allowed 0-59)"},
        {"? * * * *",
         "minute field \"?\": expected a number, name, range or step (allowed 0-59)"},
        {"*/ * * * *",
         "minute field \"*/\": expected a number, name, range or step (allowed 0-59)"},
        {"1-2-3 * * * *",
         "minute field \"1-2-3\": expected a number, name, range or step (allowed 0-59)"},
        {"-5 * * * *",
         "minute field \"-5\": expected a number, name, range or step (allowed 0-59)"},
        {"* * * * 1/2/3",
         "day-of-week field \"1/2/3\": expected a number, name, range or step "
         "(allowed 0-7 or SUN-SAT)"},
        {"* * * FOO *", "month field \"FOO\": unknown name \"FOO\" (allowed 1-12 or JAN-DEC)"},
        {"* * * * MON-FRX",
         "day-of-week field \"MON-FRX\": unknown name \"FRX\" (allowed 0-7 or SUN-SAT)"},
        {"1,,2 * * * *", "minute field \"1,,2\": empty list element"},
        {"5, * * * *", "minute field \"5,\": empty list element"},
        {"* * * * */0", "day-of-week step 0 must be at least 1"},
        {"0/0 * * * *", "minute step 0 must be at least 1"},
        {"*/60 * * * *", "minute step 60 out of range 1-59"},
        {"* */24 * * *", "hour step 24 out of range 1-23"},
        {"40-10 * * * *", "minute range 40-10 is reversed (start must be <= end)"},
        {"* * * * FRI-MON", "day-of-week range FRI-MON is reversed (start must be <= end)"},
        {"@fortnightly", "unknown macro \"@fortnightly\" (known: @yearly, @annually, @monthly, "
                         "@weekly, @daily, @midnight, @hourly)"},
        {"@daily 5", "macro \"@daily\" must stand alone, but is followed by \"5\""},
        {"@reboot", "macro \"@reboot\" is not supported"},
        {"* * L * *", "day-of-month field \"L\": \"L\" (last day of the month) is not supported"},
        {"* * 15W * *",
         "day-of-month field \"15W\": \"W\" (nearest weekday) is not supported"},
        {"* * LW * *",
         "day-of-month field \"LW\": \"L\" (last day of the month) is not supported"},
        {"* * * * FRI#2",
         "day-of-week field \"FRI#2\": \"#\" (nth weekday of the month) is not supported"},
        {"* * * * 5L",
         "day-of-week field \"5L\": \"L\" (last weekday of the month) is not supported"},
    };
    for (const Case& c : cases) {
        CHECK(parseError(c.text) == c.error);
    }
}

// ---------------------------------------------------------------------------------------------
// next() in UTC

TEST_CASE("next() returns the first firing strictly after the given instant", "[cron][next]") {
    CHECK(utcFirings("* * * * *", "2026-01-05 10:00:30", 2) ==
          std::vector<std::string>{"2026-01-05 10:01:00 +0000", "2026-01-05 10:02:00 +0000"});
    CHECK(utcFirings("* * * * *", "2026-01-05 10:01:00", 1) ==
          std::vector<std::string>{"2026-01-05 10:02:00 +0000"});
    CHECK(utcFirings("*/15 * * * *", "2026-01-05 23:50:00", 3) ==
          std::vector<std::string>{"2026-01-06 00:00:00 +0000", "2026-01-06 00:15:00 +0000",
                                   "2026-01-06 00:30:00 +0000"});
    CHECK(utcFirings("*/5 * * * * *", "2026-01-05 10:00:58", 3) ==
          std::vector<std::string>{"2026-01-05 10:01:00 +0000", "2026-01-05 10:01:05 +0000",
                                   "2026-01-05 10:01:10 +0000"});
    CHECK(utcFirings("@daily", "2026-12-31 00:00:00", 2) ==
          std::vector<std::string>{"2027-01-01 00:00:00 +0000", "2027-01-02 00:00:00 +0000"});
}

TEST_CASE("weekdays at 9:30 skip the weekend", "[cron][next]") {
    // 2026-01-02 is a Friday.
    CHECK(utcFirings("30 9 * * MON-FRI", "2026-01-02 09:30:00", 3) ==
          std::vector<std::string>{"2026-01-05 09:30:00 +0000", "2026-01-06 09:30:00 +0000",
                                   "2026-01-07 09:30:00 +0000"});
}

TEST_CASE("days that some months lack are skipped", "[cron][next]") {
    CHECK(utcFirings("0 0 31 * *", "2026-01-31 00:00:00", 3) ==
          std::vector<std::string>{"2026-03-31 00:00:00 +0000", "2026-05-31 00:00:00 +0000",
                                   "2026-07-31 00:00:00 +0000"});
    CHECK(utcFirings("0 0 29 2 *", "2025-01-01 00:00:00", 2) ==
          std::vector<std::string>{"2028-02-29 00:00:00 +0000", "2032-02-29 00:00:00 +0000"});
}

TEST_CASE("the search covers eight years, enough for a leap day after 2100", "[cron][next]") {
    CHECK(utcFirings("0 0 29 2 *", "2096-02-29 00:00:00", 1) ==
          std::vector<std::string>{"2104-02-29 00:00:00 +0000"});
    CHECK_FALSE(parsed("0 0 30 2 *").next(utc("2025-01-01 00:00:00"), zone("UTC")));
    CHECK_FALSE(parsed("0 0 31 4,6,9,11 *").next(utc("2025-01-01 00:00:00"), zone("UTC")));
}

TEST_CASE("day-of-month and day-of-week: either matches when both are restricted",
          "[cron][next]") {
    // January 2026: Fridays are the 2nd, 9th, 16th, 23rd and 30th; the 13th is a Tuesday.
    CHECK(utcFirings("0 0 13 * FRI", "2026-01-01 00:00:00", 7) ==
          std::vector<std::string>{"2026-01-02 00:00:00 +0000", "2026-01-09 00:00:00 +0000",
                                   "2026-01-13 00:00:00 +0000", "2026-01-16 00:00:00 +0000",
                                   "2026-01-23 00:00:00 +0000", "2026-01-30 00:00:00 +0000",
                                   "2026-02-06 00:00:00 +0000"});
}

TEST_CASE("day-of-month and day-of-week: a field starting with * or ? does not widen the other",
          "[cron][next]") {
    CHECK(firedValues("0 0 13 * *", Part::DayOfMonth, "2026-01-01 00:00:00",
                      "2026-07-01 00:00:00") == std::set<unsigned>{13});
    CHECK(weekdaysOf("0 0 * * FRI") == std::set<unsigned>{5});
    CHECK(weekdaysOf("0 0 ? * FRI") == std::set<unsigned>{5});
    // "*/2" starts with "*", so it counts as unrestricted (cronie): both must match, which
    // leaves the Fridays on odd days.
    CHECK(utcFirings("0 0 */2 * FRI", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-09 00:00:00 +0000", "2026-01-23 00:00:00 +0000",
                                   "2026-02-13 00:00:00 +0000", "2026-02-27 00:00:00 +0000"});
    // "1-31/2" does not start with "*": either matches.
    CHECK(utcFirings("0 0 1-31/2 * FRI", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-02 00:00:00 +0000", "2026-01-03 00:00:00 +0000",
                                   "2026-01-05 00:00:00 +0000", "2026-01-07 00:00:00 +0000"});
}

// ---------------------------------------------------------------------------------------------
// Daylight saving time

namespace {

struct DstCase {
    const char* expr;
    DstPolicy policy;
    std::vector<std::string> expected;
};

DstPolicy policy(Gap gap, Fold fold) { return DstPolicy{gap, fold}; }

void checkDst(const char* zone_name, const std::string& after_utc, int n,
              const std::vector<DstCase>& cases) {
    const date::time_zone* tz = zone(zone_name);
    for (const DstCase& c : cases) {
        INFO(zone_name << " \"" << c.expr << "\" after " << after_utc << " UTC, gap "
                       << (c.policy.gap == Gap::RunAfter ? "run_after" : "skip") << ", fold "
                       << static_cast<int>(c.policy.fold));
        CHECK(firings(c.expr, tz, utc(after_utc), n, c.policy) == c.expected);
    }
}

const DstPolicy kDefault{};
const DstPolicy kSkipGap = policy(Gap::Skip, Fold::First);
const DstPolicy kSecond = policy(Gap::RunAfter, Fold::Second);
const DstPolicy kBoth = policy(Gap::RunAfter, Fold::Both);

} // namespace

TEST_CASE("Europe/Berlin spring forward: 02:00 CET jumps to 03:00 CEST", "[cron][dst]") {
    // 2026-03-29 01:00 UTC. Start the evening before, 2026-03-28 23:00 CET.
    checkDst("Europe/Berlin", "2026-03-28 22:00:00", 2,
             {
                 {"30 2 * * *", kDefault,
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:30:00 +0200"}},
                 {"30 2 * * *", kSkipGap,
                  {"2026-03-30 02:30:00 +0200", "2026-03-31 02:30:00 +0200"}},
                 {"30 1 * * *", kDefault,
                  {"2026-03-29 01:30:00 +0100", "2026-03-30 01:30:00 +0200"}},
                 {"30 1 * * *", kSkipGap,
                  {"2026-03-29 01:30:00 +0100", "2026-03-30 01:30:00 +0200"}},
                 {"0 3 * * *", kDefault,
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 03:00:00 +0200"}},
                 // Several wall times in the gap still give a single firing.
                 {"*/15 2 * * *", kDefault,
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:00:00 +0200"}},
                 {"0 2,3 * * *", kDefault,
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:00:00 +0200"}},
             });
    // Interval-like expressions have nothing in the gap, whatever the policy.
    checkDst("Europe/Berlin", "2026-03-29 00:30:00", 3,
             {
                 {"*/15 * * * *", kDefault,
                  {"2026-03-29 01:45:00 +0100", "2026-03-29 03:00:00 +0200",
                   "2026-03-29 03:15:00 +0200"}},
                 {"*/15 * * * *", kSkipGap,
                  {"2026-03-29 01:45:00 +0100", "2026-03-29 03:00:00 +0200",
                   "2026-03-29 03:15:00 +0200"}},
             });
    checkDst("Europe/Berlin", "2026-03-28 23:30:00", 3,
             {
                 {"0 * * * *", kDefault,
                  {"2026-03-29 01:00:00 +0100", "2026-03-29 03:00:00 +0200",
                   "2026-03-29 04:00:00 +0200"}},
                 {"0 * * * *", kSkipGap,
                  {"2026-03-29 01:00:00 +0100", "2026-03-29 03:00:00 +0200",
                   "2026-03-29 04:00:00 +0200"}},
             });
}

TEST_CASE("Europe/Berlin fall back: 03:00 CEST returns to 02:00 CET", "[cron][dst]") {
    // 2026-10-25 01:00 UTC; 02:00-02:59 happens first at +0200, then at +0100.
    checkDst("Europe/Berlin", "2026-10-24 22:00:00", 3,
             {
                 {"30 2 * * *", kDefault,
                  {"2026-10-25 02:30:00 +0200", "2026-10-26 02:30:00 +0100",
                   "2026-10-27 02:30:00 +0100"}},
                 {"30 2 * * *", kSecond,
                  {"2026-10-25 02:30:00 +0100", "2026-10-26 02:30:00 +0100",
                   "2026-10-27 02:30:00 +0100"}},
                 {"30 2 * * *", kBoth,
                  {"2026-10-25 02:30:00 +0200", "2026-10-25 02:30:00 +0100",
                   "2026-10-26 02:30:00 +0100"}},
                 {"30 1 * * *", kDefault,
                  {"2026-10-25 01:30:00 +0200", "2026-10-26 01:30:00 +0100",
                   "2026-10-27 01:30:00 +0100"}},
                 {"30 1 * * *", kBoth,
                  {"2026-10-25 01:30:00 +0200", "2026-10-26 01:30:00 +0100",
                   "2026-10-27 01:30:00 +0100"}},
             });
    // Interval-like expressions fire in both passes, whatever the policy.
    const std::vector<std::string> quarter_hours = {
        "2026-10-25 02:00:00 +0200", "2026-10-25 02:15:00 +0200", "2026-10-25 02:30:00 +0200",
        "2026-10-25 02:45:00 +0200", "2026-10-25 02:00:00 +0100", "2026-10-25 02:15:00 +0100",
        "2026-10-25 02:30:00 +0100", "2026-10-25 02:45:00 +0100", "2026-10-25 03:00:00 +0100"};
    const std::vector<std::string> hours = {"2026-10-25 02:00:00 +0200",
                                            "2026-10-25 02:00:00 +0100",
                                            "2026-10-25 03:00:00 +0100"};
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 9,
             {{"*/15 * * * *", kDefault, quarter_hours},
              {"*/15 * * * *", kSecond, quarter_hours},
              {"*/15 * * * *", kBoth, quarter_hours}});
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 3,
             {{"0 * * * *", kDefault, hours}, {"0 * * * *", kSecond, hours}});
    // A fixed hour with several minutes in the fold: the policy picks the pass.
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 4,
             {
                 {"*/30 2 * * *", kDefault,
                  {"2026-10-25 02:00:00 +0200", "2026-10-25 02:30:00 +0200",
                   "2026-10-26 02:00:00 +0100", "2026-10-26 02:30:00 +0100"}},
                 {"*/30 2 * * *", kSecond,
                  {"2026-10-25 02:00:00 +0100", "2026-10-25 02:30:00 +0100",
                   "2026-10-26 02:00:00 +0100", "2026-10-26 02:30:00 +0100"}},
                 {"*/30 2 * * *", kBoth,
                  {"2026-10-25 02:00:00 +0200", "2026-10-25 02:30:00 +0200",
                   "2026-10-25 02:00:00 +0100", "2026-10-25 02:30:00 +0100"}},
             });
}

TEST_CASE("a search starting inside a fold finds the later pass of earlier wall times",
          "[cron][dst]") {
    const date::time_zone* berlin = zone("Europe/Berlin");
    // 02:50 CEST is 00:50 UTC, in the first pass; 02:00 CET (01:00 UTC) comes next in real time.
    const sys_seconds first_pass = utc("2026-10-25 00:50:00");
    CHECK(firings("*/15 * * * *", berlin, first_pass, 2) ==
          std::vector<std::string>{"2026-10-25 02:00:00 +0100", "2026-10-25 02:15:00 +0100"});
    CHECK(firings("*/15 2 * * *", berlin, first_pass, 2, kBoth) ==
          std::vector<std::string>{"2026-10-25 02:00:00 +0100", "2026-10-25 02:15:00 +0100"});
    CHECK(firings("*/15 2 * * *", berlin, first_pass, 1, kSecond) ==
          std::vector<std::string>{"2026-10-25 02:00:00 +0100"});
    CHECK(firings("*/15 2 * * *", berlin, first_pass, 1, kDefault) ==
          std::vector<std::string>{"2026-10-26 02:00:00 +0100"});
    // From inside the second pass, the first policy has nothing left that day.
    const sys_seconds second_pass = utc("2026-10-25 01:10:00");
    CHECK(firings("*/15 2 * * *", berlin, second_pass, 1, kDefault) ==
          std::vector<std::string>{"2026-10-26 02:00:00 +0100"});
    CHECK(firings("*/15 2 * * *", berlin, second_pass, 1, kSecond) ==
          std::vector<std::string>{"2026-10-25 02:15:00 +0100"});
}

TEST_CASE("repeated next() never returns an instant twice around a transition", "[cron][dst]") {
    const date::time_zone* berlin = zone("Europe/Berlin");
    for (const char* text : {"*/15 2 * * *", "0 2,3 * * *", "* 2 * * *", "*/10 * * * * *"}) {
        for (const DstPolicy& p : {kDefault, kSkipGap, kSecond, kBoth}) {
            INFO(text);
            const CronExpr expr = parsed(text);
            sys_seconds t = local(berlin, "2026-03-28 00:00:00");
            for (int i = 0; i < 300; ++i) {
                const auto next = expr.next(t, berlin, p);
                REQUIRE(next);
                REQUIRE(*next > t);
                t = *next;
            }
        }
    }
}

TEST_CASE("America/New_York: spring forward 02:00 -> 03:00, fall back 02:00 -> 01:00",
          "[cron][dst]") {
    // Spring forward 2026-03-08 07:00 UTC.
    checkDst("America/New_York", "2026-03-08 04:00:00", 2,
             {
                 {"30 2 * * *", kDefault,
                  {"2026-03-08 03:00:00 -0400", "2026-03-09 02:30:00 -0400"}},
                 {"30 2 * * *", kSkipGap,
                  {"2026-03-09 02:30:00 -0400", "2026-03-10 02:30:00 -0400"}},
                 {"30 1 * * *", kDefault,
                  {"2026-03-08 01:30:00 -0500", "2026-03-09 01:30:00 -0400"}},
                 {"*/15 * * * *", kDefault,
                  {"2026-03-07 23:15:00 -0500", "2026-03-07 23:30:00 -0500"}},
             });
    checkDst("America/New_York", "2026-03-08 06:40:00", 3,
             {
                 {"*/15 * * * *", kDefault,
                  {"2026-03-08 01:45:00 -0500", "2026-03-08 03:00:00 -0400",
                   "2026-03-08 03:15:00 -0400"}},
                 {"0 * * * *", kDefault,
                  {"2026-03-08 03:00:00 -0400", "2026-03-08 04:00:00 -0400",
                   "2026-03-08 05:00:00 -0400"}},
                 {"0 * * * *", kSkipGap,
                  {"2026-03-08 03:00:00 -0400", "2026-03-08 04:00:00 -0400",
                   "2026-03-08 05:00:00 -0400"}},
             });
    // Fall back 2026-11-01 06:00 UTC; 01:00-01:59 happens at -0400, then at -0500.
    checkDst("America/New_York", "2026-11-01 04:00:00", 3,
             {
                 {"30 1 * * *", kDefault,
                  {"2026-11-01 01:30:00 -0400", "2026-11-02 01:30:00 -0500",
                   "2026-11-03 01:30:00 -0500"}},
                 {"30 1 * * *", kSecond,
                  {"2026-11-01 01:30:00 -0500", "2026-11-02 01:30:00 -0500",
                   "2026-11-03 01:30:00 -0500"}},
                 {"30 1 * * *", kBoth,
                  {"2026-11-01 01:30:00 -0400", "2026-11-01 01:30:00 -0500",
                   "2026-11-02 01:30:00 -0500"}},
                 {"30 2 * * *", kBoth,
                  {"2026-11-01 02:30:00 -0500", "2026-11-02 02:30:00 -0500",
                   "2026-11-03 02:30:00 -0500"}},
                 {"0 * * * *", kDefault,
                  {"2026-11-01 01:00:00 -0400", "2026-11-01 01:00:00 -0500",
                   "2026-11-01 02:00:00 -0500"}},
             });
    checkDst("America/New_York", "2026-11-01 05:40:00", 5,
             {{"*/15 * * * *", kDefault,
               {"2026-11-01 01:45:00 -0400", "2026-11-01 01:00:00 -0500",
                "2026-11-01 01:15:00 -0500", "2026-11-01 01:30:00 -0500",
                "2026-11-01 01:45:00 -0500"}}});
}

TEST_CASE("Australia/Lord_Howe shifts by 30 minutes", "[cron][dst]") {
    // Fall back 2026-04-05 02:00 +1100 -> 01:30 +1030 (2026-04-04 15:00 UTC).
    checkDst("Australia/Lord_Howe", "2026-04-04 13:00:00", 2,
             {
                 {"45 1 * * *", kDefault,
                  {"2026-04-05 01:45:00 +1100", "2026-04-06 01:45:00 +1030"}},
                 {"45 1 * * *", kSecond,
                  {"2026-04-05 01:45:00 +1030", "2026-04-06 01:45:00 +1030"}},
                 {"45 1 * * *", kBoth,
                  {"2026-04-05 01:45:00 +1100", "2026-04-05 01:45:00 +1030"}},
                 {"15 1 * * *", kBoth,
                  {"2026-04-05 01:15:00 +1100", "2026-04-06 01:15:00 +1030"}},
             });
    checkDst("Australia/Lord_Howe", "2026-04-04 14:20:00", 5,
             {{"*/15 * * * *", kDefault,
               {"2026-04-05 01:30:00 +1100", "2026-04-05 01:45:00 +1100",
                "2026-04-05 01:30:00 +1030", "2026-04-05 01:45:00 +1030",
                "2026-04-05 02:00:00 +1030"}}});
    // Spring forward 2026-10-04 02:00 +1030 -> 02:30 +1100 (2026-10-03 15:30 UTC).
    checkDst("Australia/Lord_Howe", "2026-10-03 14:00:00", 2,
             {
                 {"15 2 * * *", kDefault,
                  {"2026-10-04 02:30:00 +1100", "2026-10-05 02:15:00 +1100"}},
                 {"15 2 * * *", kSkipGap,
                  {"2026-10-05 02:15:00 +1100", "2026-10-06 02:15:00 +1100"}},
                 {"45 2 * * *", kSkipGap,
                  {"2026-10-04 02:45:00 +1100", "2026-10-05 02:45:00 +1100"}},
                 {"0 * * * *", kDefault,
                  {"2026-10-04 01:00:00 +1030", "2026-10-04 03:00:00 +1100"}},
                 {"*/15 * * * *", kDefault,
                  {"2026-10-04 00:45:00 +1030", "2026-10-04 01:00:00 +1030"}},
             });
    checkDst("Australia/Lord_Howe", "2026-10-03 15:10:00", 3,
             {{"*/15 * * * *", kDefault,
               {"2026-10-04 01:45:00 +1030", "2026-10-04 02:30:00 +1100",
                "2026-10-04 02:45:00 +1100"}}});
}

// ---------------------------------------------------------------------------------------------
// Property test: random expressions against a brute-force scan

namespace {

// A field chosen at random, with the set of values it must select computed independently of
// the parser.
struct RandomField {
    std::string text;
    std::set<int> values;
};

struct FieldShape {
    int min;
    int max;
    int implicit_max; // end of "*" and "a/n"
    const std::vector<std::string>* names;
    bool question;
    bool seven_is_sunday;
};

const std::vector<std::string> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                              "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
const std::vector<std::string> kDayNames = {"sun", "Mon", "TUE", "wed", "Thu", "FRI", "sat"};

class ExprGenerator {
public:
    explicit ExprGenerator(unsigned seed) : rng_(seed) {}

    int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

    RandomField field(const FieldShape& s, int preferred_lo = -1, int preferred_hi = -1) {
        const int choice = uniform(0, 9);
        RandomField f;
        if (choice <= 2) {
            f.text = (s.question && uniform(0, 3) == 0) ? "?" : "*";
            add(f, s, s.min, s.implicit_max, 1);
        } else if (choice == 3) {
            const int step = uniform(1, std::max(1, (s.max - s.min) / 2));
            f.text = "*/" + std::to_string(step);
            add(f, s, s.min, s.implicit_max, step);
        } else if (choice == 4 || choice == 5) {
            f.text = element(f, s, preferred_lo, preferred_hi);
        } else if (choice == 6) {
            const int lo = value(s, preferred_lo, preferred_hi);
            const int step = uniform(1, std::max(1, (s.max - s.min) / 3));
            f.text = std::to_string(lo) + "/" + std::to_string(step);
            add(f, s, lo, s.implicit_max, step);
        } else {
            const int parts = uniform(2, 3);
            for (int i = 0; i < parts; ++i) {
                f.text += (i > 0 ? "," : "") + element(f, s, preferred_lo, preferred_hi);
            }
        }
        return f;
    }

private:
    int value(const FieldShape& s, int preferred_lo, int preferred_hi) {
        if (preferred_lo >= 0 && uniform(0, 1) == 0) return uniform(preferred_lo, preferred_hi);
        return uniform(s.min, s.max);
    }

    std::string name(const FieldShape& s, int v) {
        if (s.names != nullptr && v - s.min < static_cast<int>(s.names->size()) &&
            uniform(0, 2) == 0) {
            return (*s.names)[static_cast<std::size_t>(v - s.min)];
        }
        return std::to_string(v);
    }

    // A single value, a range or a stepped range.
    std::string element(RandomField& f, const FieldShape& s, int preferred_lo, int preferred_hi) {
        const int a = value(s, preferred_lo, preferred_hi);
        const int kind = uniform(0, 2);
        if (kind == 0) {
            add(f, s, a, a, 1);
            return name(s, a);
        }
        const int b = uniform(a, std::min(s.max, a + uniform(0, s.max - s.min)));
        if (kind == 1) {
            add(f, s, a, b, 1);
            return name(s, a) + "-" + name(s, b);
        }
        const int step = uniform(1, std::max(1, (b - a) / 2 + 1));
        add(f, s, a, b, step);
        return std::to_string(a) + "-" + std::to_string(b) + "/" + std::to_string(step);
    }

    static void add(RandomField& f, const FieldShape& s, int lo, int hi, int step) {
        for (int v = lo; v <= hi; v += step) f.values.insert(s.seven_is_sunday ? v % 7 : v);
    }

    std::mt19937 rng_;
};

struct RandomExpr {
    std::string text;
    bool with_seconds = false;
    RandomField second, minute, hour, dom, month, dow;
    bool dom_restricted = false;
    bool dow_restricted = false;
    bool hour_wildcard = false;
};

RandomExpr randomExpr(ExprGenerator& gen) {
    RandomExpr e;
    e.with_seconds = gen.uniform(0, 4) == 0;
    if (e.with_seconds) {
        e.second = gen.field({0, 59, 59, nullptr, false, false});
    } else {
        e.second = {"0", {0}};
    }
    e.minute = gen.field({0, 59, 59, nullptr, false, false});
    // Hours around the transitions in Berlin and New York, half of the time.
    e.hour = gen.field({0, 23, 23, nullptr, false, false}, 0, 3);
    e.dom = gen.uniform(0, 2) == 0 ? gen.field({1, 31, 31, nullptr, true, false})
                                   : RandomField{"*", {}};
    if (e.dom.text == "*") {
        for (int d = 1; d <= 31; ++d) e.dom.values.insert(d);
    }
    e.month = gen.uniform(0, 3) == 0 ? gen.field({1, 12, 12, &kMonthNames, false, false})
                                     : RandomField{"*", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}};
    e.dow = gen.uniform(0, 2) == 0 ? gen.field({0, 7, 6, &kDayNames, true, true})
                                   : RandomField{"*", {0, 1, 2, 3, 4, 5, 6}};
    e.text = (e.with_seconds ? e.second.text + " " : "") + e.minute.text + " " + e.hour.text +
             " " + e.dom.text + " " + e.month.text + " " + e.dow.text;
    e.dom_restricted = e.dom.text[0] != '*' && e.dom.text[0] != '?';
    e.dow_restricted = e.dow.text[0] != '*' && e.dow.text[0] != '?';
    e.hour_wildcard = e.hour.values.size() == 24;
    return e;
}

bool matchesWall(const RandomExpr& e, date::local_seconds wall) {
    const auto day = date::floor<date::days>(wall);
    const date::year_month_day ymd{day};
    const date::hh_mm_ss<seconds> tod{wall - day};
    const bool dom = e.dom.values.count(static_cast<int>(static_cast<unsigned>(ymd.day()))) != 0;
    const bool dow =
        e.dow.values.count(static_cast<int>(date::weekday(day).c_encoding())) != 0;
    const bool day_ok = (e.dom_restricted && e.dow_restricted) ? (dom || dow) : (dom && dow);
    return day_ok && e.second.values.count(static_cast<int>(tod.seconds().count())) != 0 &&
           e.minute.values.count(static_cast<int>(tod.minutes().count())) != 0 &&
           e.hour.values.count(static_cast<int>(tod.hours().count())) != 0 &&
           e.month.values.count(static_cast<int>(static_cast<unsigned>(ymd.month()))) != 0;
}

// The DST rules of cron.h, checked one real instant at a time.
bool firesAt(const RandomExpr& e, const date::time_zone* tz, const DstPolicy& p, sys_seconds t) {
    const date::sys_info period = tz->get_info(t);
    const auto wall = date::local_seconds((t + period.offset).time_since_epoch());
    if (matchesWall(e, wall)) {
        if (e.hour_wildcard || p.fold == Fold::Both) return true;
        const date::local_info info = tz->get_info(wall);
        if (info.result == date::local_info::unique) return true;
        const bool first_pass =
            t == sys_seconds((wall - info.first.offset).time_since_epoch());
        return first_pass == (p.fold == Fold::First);
    }
    if (e.hour_wildcard || p.gap != Gap::RunAfter || period.begin != t) return false;
    const date::sys_info before = tz->get_info(t - seconds(1));
    const seconds step = e.with_seconds ? seconds(1) : seconds(60);
    for (auto w = date::local_seconds((t + before.offset).time_since_epoch()); w < wall;
         w += step) {
        if (matchesWall(e, w)) return true;
    }
    return false;
}

std::string describe(const DstPolicy& p) {
    return std::string(p.gap == Gap::RunAfter ? "run_after" : "skip") + "/" +
           (p.fold == Fold::First ? "first" : p.fold == Fold::Second ? "second" : "both");
}

// Returns the firings found in [from, to).
std::vector<sys_seconds> checkAgainstBruteForce(const RandomExpr& e, const CronExpr& expr, const date::time_zone* tz,
                            const DstPolicy& p, sys_seconds from, sys_seconds to) {
    INFO("\"" << e.text << "\" in " << tz->name() << " from " << date::format("%F %T", from)
              << " UTC, policy " << describe(p));
    const seconds step = e.with_seconds ? seconds(1) : seconds(60);
    std::vector<sys_seconds> expected;
    for (sys_seconds t = from; t < to; t += step) {
        if (firesAt(e, tz, p, t)) expected.push_back(t);
    }
    std::vector<sys_seconds> got;
    for (auto t = expr.next(from - seconds(1), tz, p); t && *t < to; t = expr.next(*t, tz, p)) {
        got.push_back(t.value());
    }
    if (got != expected) {
        const auto [g, x] = std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
        FAIL("first difference: next() gave " << (g == got.end() ? "nothing" : inZone(tz, *g))
                                              << ", brute force "
                                              << (x == expected.end() ? "nothing"
                                                                      : inZone(tz, *x)));
    }

    // Fifty steps on: strictly increasing, and every instant is a firing.
    sys_seconds t = from;
    for (int i = 0; i < 50; ++i) {
        const auto next = expr.next(t, tz, p);
        if (!next) break;
        REQUIRE(*next > t);
        INFO("returned " << inZone(tz, *next));
        REQUIRE(firesAt(e, tz, p, *next));
        t = *next;
    }
    return expected;
}

} // namespace

TEST_CASE("random expressions agree with a brute-force scan, in UTC and across DST shifts",
          "[cron][property]") {
    ExprGenerator gen(20260329);
    const date::time_zone* utc_zone = zone("UTC");
    struct Transition {
        const date::time_zone* tz;
        sys_seconds at;
    };
    const Transition transitions[] = {
        {zone("Europe/Berlin"), utc("2026-03-29 01:00:00")},
        {zone("Europe/Berlin"), utc("2026-10-25 01:00:00")},
        {zone("Australia/Lord_Howe"), utc("2026-04-04 15:00:00")},
        {zone("Australia/Lord_Howe"), utc("2026-10-03 15:30:00")},
    };
    const DstPolicy policies[] = {kDefault, kSkipGap, kSecond, kBoth};
    int windows_firing_near_transition = 0;

    for (int i = 0; i < 200; ++i) {
        const RandomExpr e = randomExpr(gen);
        const CronExpr expr = parsed(e.text);
        REQUIRE(expr.hourIsWildcard() == e.hour_wildcard);
        // A day and a half either side for five fields, an hour for six (scanned per second).
        const seconds half_window = e.with_seconds ? seconds(3600) : seconds(36 * 3600);

        const sys_seconds utc_from =
            utc("2026-01-01 00:00:00") + seconds(gen.uniform(0, 364 * 24) * 3600);
        checkAgainstBruteForce(e, expr, utc_zone, {}, utc_from, utc_from + 2 * half_window);

        for (const Transition& transition : transitions) {
            const DstPolicy& p = policies[gen.uniform(0, 3)];
            const sys_seconds at = transition.at;
            const std::vector<sys_seconds> found = checkAgainstBruteForce(
                e, expr, transition.tz, p, at - half_window, at + half_window);
            windows_firing_near_transition +=
                std::any_of(found.begin(), found.end(), [at](sys_seconds t) {
                    return t >= at - seconds(3600) && t < at + seconds(3600);
                });
        }
    }
    // The generator favours hours 0-3 so that the DST hours are actually exercised.
    CHECK(windows_firing_near_transition >= 200);
}

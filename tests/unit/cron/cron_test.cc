#include "cron/cron.h"

#include <catch2/catch.hpp>

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <cstdio>
#include <map>
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

CronExpr parsed(const std::string& text, const std::string& hash_key = "") {
    std::string err;
    auto expr = CronExpr::parse(text, &err, hash_key);
    INFO(text << ": " << err);
    REQUIRE(expr);
    return *expr;
}

std::string parseError(const std::string& text, const std::string& hash_key = "") {
    std::string err;
    auto expr = CronExpr::parse(text, &err, hash_key);
    INFO(text);
    REQUIRE_FALSE(expr);
    return err;
}

// The first n firings of expr strictly after `after`, formatted in tz with `format`.
std::vector<std::string> firingsOf(const CronExpr& expr, const date::time_zone* tz,
                                   sys_seconds after, int n, const DstPolicy& policy = {},
                                   const char* format = "%F %T %z") {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) {
        const auto t = expr.next(after, tz, policy);
        if (!t) break;
        out.push_back(date::format(format, date::zoned_seconds(tz, *t)));
        after = *t;
    }
    return out;
}

// The first n firings strictly after `after`, as wall times with offset in tz.
std::vector<std::string> firings(const std::string& text, const date::time_zone* tz,
                                 sys_seconds after, int n, const DstPolicy& policy = {}) {
    return firingsOf(parsed(text), tz, after, n, policy);
}

std::vector<std::string> utcFirings(const std::string& text, const std::string& after, int n,
                                    const std::string& hash_key = "") {
    return firingsOf(parsed(text, hash_key), zone("UTC"), utc(after), n);
}

// The days (YYYY-MM-DD) of the first n firings strictly after `after`, in UTC.
std::vector<std::string> fireDays(const std::string& text, const std::string& after, int n) {
    return firingsOf(parsed(text), zone("UTC"), utc(after), n, {}, "%F");
}

enum class Part { Second, Minute, Hour, DayOfMonth, Month, DayOfWeek };

// Which values of one calendar part the firings in [from, to) (UTC) take.
std::set<unsigned> firedValues(const std::string& text, Part part, const std::string& from,
                               const std::string& to, const std::string& hash_key = "") {
    const CronExpr expr = parsed(text, hash_key);
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

std::set<unsigned> minutesOf(const std::string& text, const std::string& hash_key = "") {
    return firedValues(text, Part::Minute, "2026-01-05 10:00:00", "2026-01-05 11:00:00",
                       hash_key);
}

std::set<unsigned> monthsOf(const std::string& text) {
    return firedValues(text, Part::Month, "2026-01-01 00:00:00", "2027-01-01 00:00:00");
}

// 2026-01-04 is a Sunday; two full weeks.
std::set<unsigned> weekdaysOf(const std::string& text, const std::string& hash_key = "") {
    return firedValues(text, Part::DayOfWeek, "2026-01-04 00:00:00", "2026-01-18 00:00:00",
                       hash_key);
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
        const char* hash_key = "";
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
                         "@weekly, @daily, @midnight, @hourly, @reboot)"},
        {"@daily 5", "macro \"@daily\" must stand alone, but is followed by \"5\""},
        {"@reboot now", "macro \"@reboot\" must stand alone, but is followed by \"now\""},
        // L, W and #: where they belong, and their own ranges.
        {"L * * * *", "minute field \"L\": \"L\" is only allowed in day-of-month and day-of-week"},
        {"* * * L *", "month field \"L\": \"L\" is only allowed in day-of-month and day-of-week"},
        {"* * * * L",
         "day-of-week field \"L\": \"L\" alone is only allowed in day-of-month (in day-of-week, "
         "\"5L\" is the last Friday of the month)"},
        {"* * 5L * *",
         "day-of-month field \"5L\": \"nL\" is only allowed in day-of-week (in day-of-month, "
         "\"L\" is the last day of the month)"},
        {"* 5L * * *", "hour field \"5L\": \"L\" is only allowed in day-of-month and day-of-week"},
        {"15W * * * *", "minute field \"15W\": \"W\" is only allowed in day-of-month"},
        {"* * * * LW", "day-of-week field \"LW\": \"W\" is only allowed in day-of-month"},
        {"* * FRI#2 * *", "day-of-month field \"FRI#2\": \"#\" is only allowed in day-of-week"},
        {"* * 32W * *", "day-of-month 32 out of range 1-31"},
        {"* * 0W * *", "day-of-month 0 out of range 1-31"},
        {"* * L-31 * *", "day-of-month field \"L-31\": offset 31 out of range 0-30"},
        {"* * L-x * *",
         "day-of-month field \"L-x\": expected a number, name, range or step (allowed 1-31)"},
        {"* * L/2 * *",
         "day-of-month field \"L/2\": expected a number, name, range or step (allowed 1-31)"},
        {"* * * * FRI#6", "day-of-week field \"FRI#6\": occurrence 6 out of range 1-5"},
        {"* * * * 5#0", "day-of-week field \"5#0\": occurrence 0 out of range 1-5"},
        {"* * * * 8#1", "day-of-week 8 out of range 0-7"},
        {"* * * * FRX#1",
         "day-of-week field \"FRX#1\": unknown name \"FRX\" (allowed 0-7 or SUN-SAT)"},
        {"* * * * #3",
         "day-of-week field \"#3\": expected a number, name, range or step "
         "(allowed 0-7 or SUN-SAT)"},
        {"* * * * FRI#1#2",
         "day-of-week field \"FRI#1#2\": expected a number, name, range or step "
         "(allowed 0-7 or SUN-SAT)"},
        {"* * * * 8L", "day-of-week 8 out of range 0-7"},
        // H: without a name to hash, and malformed whatever the name.
        {"H * * * *",
         "minute field \"H\": H needs a workflow name to hash (none was given to the parser)"},
        {"0 0 * * H(1-5)",
         "day-of-week field \"H(1-5)\": H needs a workflow name to hash (none was given to "
         "the parser)"},
        {"H(5) * * * *",
         "minute field \"H(5)\": expected H, H(a-b), H/n or H(a-b)/n (allowed 0-59)"},
        // H with a workflow name ("wf"): malformed forms and ranges are refused all the same.
        {"H(0-60) * * * *", "minute 60 out of range 0-59", "wf"},
        {"H(30-10) * * * *", "minute range 30-10 is reversed (start must be <= end)", "wf"},
        {"H(0-9 * * * *",
         "minute field \"H(0-9\": expected H, H(a-b), H/n or H(a-b)/n (allowed 0-59)", "wf"},
        {"H(0-9)x * * * *",
         "minute field \"H(0-9)x\": expected H, H(a-b), H/n or H(a-b)/n (allowed 0-59)", "wf"},
        {"H/x * * * *",
         "minute field \"H/x\": expected H, H(a-b), H/n or H(a-b)/n (allowed 0-59)", "wf"},
        {"H/0 * * * *", "minute field \"H/0\": step 0 out of range 1-60", "wf"},
        {"H(0-9)/11 * * * *", "minute field \"H(0-9)/11\": step 11 out of range 1-10", "wf"},
        {"* H/25 * * *", "hour field \"H/25\": step 25 out of range 1-24", "wf"},
        {"Hx * * * *",
         "minute field \"Hx\": expected a number, name, range or step (allowed 0-59)", "wf"},
        {"* * * H(JAN-FOO) *",
         "month field \"H(JAN-FOO)\": unknown name \"FOO\" (allowed 1-12 or JAN-DEC)", "wf"},
    };
    for (const Case& c : cases) {
        CHECK(parseError(c.text, c.hash_key) == c.error);
    }
}

// ---------------------------------------------------------------------------------------------
// L, W and # (Quartz), in UTC. The calendar facts in the comments are from Python's calendar.

TEST_CASE("L is the last day of the month, L-n counts back from it", "[cron][quartz]") {
    CHECK(fireDays("0 0 L * *", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"});
    CHECK(fireDays("0 0 L * *", "2028-01-31 00:00:00", 2) ==
          std::vector<std::string>{"2028-02-29", "2028-03-31"});
    CHECK(fireDays("0 0 L-1 * *", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-01-30", "2026-02-27", "2026-03-30"});
    CHECK(fireDays("0 0 L-1 2 *", "2027-03-01 00:00:00", 1) ==
          std::vector<std::string>{"2028-02-28"});
    // L-30 is the 1st of a 31-day month and nothing in shorter months.
    CHECK(fireDays("0 0 L-30 * *", "2025-12-31 12:00:00", 3) ==
          std::vector<std::string>{"2026-01-01", "2026-03-01", "2026-05-01"});
    CHECK(fireDays("0 0 1,L * *", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-31", "2026-02-01", "2026-02-28", "2026-03-01"});
    CHECK(utcFirings("30 23 L 12 *", "2026-06-01 00:00:00", 1) ==
          std::vector<std::string>{"2026-12-31 23:30:00 +0000"});
    CHECK(fireDays("0 0 l-1 * *", "2026-01-01 00:00:00", 1) ==
          std::vector<std::string>{"2026-01-30"});
}

TEST_CASE("LW is the last Monday-to-Friday of the month", "[cron][quartz]") {
    // 2026: Jan 31 and Feb 28 are Saturdays, Mar 31 a Tuesday, Apr 30 a Thursday, May 31 a
    // Sunday. Feb 28, 2027 is a Sunday; Feb 29, 2028 a Tuesday.
    CHECK(fireDays("0 0 LW * *", "2026-01-01 00:00:00", 5) ==
          std::vector<std::string>{"2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30",
                                   "2026-05-29"});
    CHECK(fireDays("0 0 LW 2 *", "2026-03-01 00:00:00", 2) ==
          std::vector<std::string>{"2027-02-26", "2028-02-29"});
    CHECK(fireDays("0 0 lw * *", "2026-01-01 00:00:00", 1) ==
          std::vector<std::string>{"2026-01-30"});
}

TEST_CASE("nW is the weekday nearest to day n, never in another month", "[cron][quartz]") {
    // 1W: Feb and Mar 2026 start on a Sunday (-> Monday 2nd), Aug 2026 on a Saturday (-> Monday
    // 3rd, not Friday July 31st).
    CHECK(fireDays("0 0 1W * *", "2026-01-01 00:00:00", 8) ==
          std::vector<std::string>{"2026-02-02", "2026-03-02", "2026-04-01", "2026-05-01",
                                   "2026-06-01", "2026-07-01", "2026-08-03", "2026-09-01"});
    // 31W: Jan 31 and Oct 31 are Saturdays (-> Friday 30th), May 31 a Sunday (-> Friday 29th,
    // not Monday June 1st); 30-day months and February have no 31st.
    CHECK(fireDays("0 0 31W * *", "2026-01-01 00:00:00", 7) ==
          std::vector<std::string>{"2026-01-30", "2026-03-31", "2026-05-29", "2026-07-31",
                                   "2026-08-31", "2026-10-30", "2026-12-31"});
    // 15W: Feb 15, Mar 15 and Nov 15 are Sundays (-> 16th), Aug 15 a Saturday (-> 14th).
    CHECK(fireDays("0 0 15W * *", "2026-01-01 00:00:00", 8) ==
          std::vector<std::string>{"2026-01-15", "2026-02-16", "2026-03-16", "2026-04-15",
                                   "2026-05-15", "2026-06-15", "2026-07-15", "2026-08-14"});
    CHECK(fireDays("0 0 15W 11 *", "2026-01-01 00:00:00", 1) ==
          std::vector<std::string>{"2026-11-16"});
    // February: the 28th is a Saturday in 2026 (-> 27th), a Sunday and the last day in 2027
    // (-> Friday 26th), a Monday in 2028; the 29th exists in 2028 only.
    CHECK(fireDays("0 0 28W 2 *", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-02-27", "2027-02-26", "2028-02-28"});
    CHECK(fireDays("0 0 29W 2 *", "2026-01-01 00:00:00", 1) ==
          std::vector<std::string>{"2028-02-29"});
    CHECK(fireDays("0 0 1W,15w * *", "2026-07-20 00:00:00", 3) ==
          std::vector<std::string>{"2026-08-03", "2026-08-14", "2026-09-01"});
}

TEST_CASE("nL is the last such weekday of the month", "[cron][quartz]") {
    // Last Fridays of 2026: Jan 30, Feb 27, Mar 27, Apr 24, May 29.
    const std::vector<std::string> last_fridays = {"2026-01-30", "2026-02-27", "2026-03-27",
                                                   "2026-04-24", "2026-05-29"};
    CHECK(fireDays("0 0 * * 5L", "2026-01-01 00:00:00", 5) == last_fridays);
    CHECK(fireDays("0 0 * * FRIL", "2026-01-01 00:00:00", 5) == last_fridays);
    CHECK(fireDays("0 0 * * friL", "2026-01-01 00:00:00", 5) == last_fridays);
    // Last Tuesday of February: the 24th in 2026, the 23rd in 2027, the 29th in 2028.
    CHECK(fireDays("0 0 * 2 2L", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-02-24", "2027-02-23", "2028-02-29"});
    // 0 and 7 are both Sunday: the last Sundays of March and October 2026 are the EU's DST days.
    CHECK(fireDays("0 0 * 3,10 0L", "2026-01-01 00:00:00", 2) ==
          std::vector<std::string>{"2026-03-29", "2026-10-25"});
    CHECK(fireDays("0 0 * 3,10 7L", "2026-01-01 00:00:00", 2) ==
          fireDays("0 0 * 3,10 SUNL", "2026-01-01 00:00:00", 2));
}

TEST_CASE("n#k is the k-th such weekday of the month; a month without it does not match",
          "[cron][quartz]") {
    const std::vector<std::string> third_fridays = {"2026-01-16", "2026-02-20", "2026-03-20",
                                                    "2026-04-17"};
    CHECK(fireDays("0 0 * * FRI#3", "2026-01-01 00:00:00", 4) == third_fridays);
    CHECK(fireDays("0 0 * * 5#3", "2026-01-01 00:00:00", 4) == third_fridays);
    CHECK(fireDays("0 0 * * fri#3", "2026-01-01 00:00:00", 4) == third_fridays);
    // Five Mondays only in March, June and August of the first eight months of 2026.
    CHECK(fireDays("0 0 * * MON#5", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-03-30", "2026-06-29", "2026-08-31"});
    // A fifth Sunday in February needs a leap year starting on a Sunday: 2032.
    CHECK(fireDays("0 0 * 2 SUN#5", "2026-01-01 00:00:00", 1) ==
          std::vector<std::string>{"2032-02-29"});
    const std::vector<std::string> first_sundays = {"2026-01-04", "2026-02-01", "2026-03-01",
                                                    "2026-04-05"};
    CHECK(fireDays("0 0 * * 0#1", "2026-01-01 00:00:00", 4) == first_sundays);
    CHECK(fireDays("0 0 * * 7#1", "2026-01-01 00:00:00", 4) == first_sundays);
    CHECK(fireDays("0 0 * * MON#1,FRIL", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-05", "2026-01-30", "2026-02-02", "2026-02-27"});
}

TEST_CASE("L, W and # follow the Vixie rule like plain days", "[cron][quartz]") {
    // Both restricted: either matches. Fridays of January 2026 are the 2nd ... 30th.
    CHECK(fireDays("0 0 L * FRI", "2026-01-20 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-23", "2026-01-30", "2026-01-31", "2026-02-06"});
    CHECK(fireDays("0 0 15W * 5L", "2026-01-01 00:00:00", 4) ==
          std::vector<std::string>{"2026-01-15", "2026-01-30", "2026-02-16", "2026-02-27"});
    CHECK(fireDays("0 0 L * MON#1", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-01-05", "2026-01-31", "2026-02-02"});
    // Day-of-month starts with "*": both must match, so last Fridays on odd days only.
    CHECK(fireDays("0 0 */2 * 5L", "2026-01-01 00:00:00", 3) ==
          std::vector<std::string>{"2026-02-27", "2026-03-27", "2026-05-29"});
    // Day-of-week starts with "*" or "?": the day-of-month extension alone decides.
    CHECK(fireDays("0 0 LW * ?", "2026-01-01 00:00:00", 2) ==
          std::vector<std::string>{"2026-01-30", "2026-02-27"});
}

// ---------------------------------------------------------------------------------------------
// H (Jenkins). The expected values come from an independent implementation of the documented
// rule (FNV-1a 64 of the name and the field's position, fmix64, then mod the range width).

TEST_CASE("H picks a value per workflow name, stable across versions and machines",
          "[cron][hash]") {
    // "nightly-backup": minute 52, hour 4, day 11, month 7, day-of-week 1, second 17.
    CHECK(utcFirings("H H * * *", "2026-01-05 10:00:00", 2, "nightly-backup") ==
          std::vector<std::string>{"2026-01-06 04:52:00 +0000", "2026-01-07 04:52:00 +0000"});
    CHECK(utcFirings("H H H H *", "2026-01-01 00:00:00", 1, "nightly-backup") ==
          std::vector<std::string>{"2026-07-11 04:52:00 +0000"});
    // Monday; 2026-01-05 is one.
    CHECK(utcFirings("H H * * H", "2026-01-01 00:00:00", 1, "nightly-backup") ==
          std::vector<std::string>{"2026-01-05 04:52:00 +0000"});
    CHECK(utcFirings("H H * * * *", "2026-01-05 10:00:00", 1, "nightly-backup") ==
          std::vector<std::string>{"2026-01-05 10:52:17 +0000"});
    // "reports": minute 19, hour 18, day 17, month 6; "etl": minute 1, hour 6.
    CHECK(utcFirings("H H H H *", "2026-01-01 00:00:00", 1, "reports") ==
          std::vector<std::string>{"2026-06-17 18:19:00 +0000"});
    CHECK(utcFirings("H H * * *", "2026-01-05 00:00:00", 1, "etl") ==
          std::vector<std::string>{"2026-01-05 06:01:00 +0000"});
}

TEST_CASE("H(a-b) picks within the range, H/n starts at hash mod n", "[cron][hash]") {
    // nightly-backup: minute hash mod 15 = 7; hour H(0-7) = 4; H(9-17)/4 starts at 9.
    CHECK(minutesOf("H/15 * * * *", "nightly-backup") == std::set<unsigned>{7, 22, 37, 52});
    CHECK(utcFirings("H H(0-7) * * *", "2026-01-05 00:00:00", 1, "nightly-backup") ==
          std::vector<std::string>{"2026-01-05 04:52:00 +0000"});
    CHECK(firedValues("0 H(9-17)/4 * * *", Part::Hour, "2026-01-05 00:00:00",
                      "2026-01-06 00:00:00", "nightly-backup") == std::set<unsigned>{9, 13, 17});
    // etl: H(9-17)/4 starts at 11; seconds hash mod 10 = 4; H(1-5) in day-of-week is Wednesday.
    CHECK(firedValues("0 H(9-17)/4 * * *", Part::Hour, "2026-01-05 00:00:00",
                      "2026-01-06 00:00:00", "etl") == std::set<unsigned>{11, 15});
    CHECK(firedValues("H/10 * * * * *", Part::Second, "2026-01-05 10:00:00",
                      "2026-01-05 10:01:00", "etl") ==
          std::set<unsigned>{4, 14, 24, 34, 44, 54});
    CHECK(weekdaysOf("0 0 * * H(1-5)", "etl") == std::set<unsigned>{3});
    CHECK(weekdaysOf("0 0 * * H(MON-FRI)", "etl") == std::set<unsigned>{3});
    // H/1 is every value; H(a-a) is a.
    CHECK(minutesOf("H/1 * * * *", "etl").size() == 60);
    CHECK(parsed("0 H/1 * * *", "etl").hourIsWildcard());
    CHECK(minutesOf("H(42-42) * * * *", "etl") == std::set<unsigned>{42});
    // Lists mix H with plain elements.
    CHECK(minutesOf("H(0-29),H(30-59) * * * *", "etl") == std::set<unsigned>{1, 31});
}

TEST_CASE("H spreads names over the whole range and stays in it", "[cron][hash]") {
    std::set<unsigned> minutes, hours, days, weekdays, offsets;
    for (int i = 0; i < 2000; ++i) {
        const std::string name = "workflow-" + std::to_string(i);
        const CronExpr expr = parsed("H H H * *", name);
        const auto t = expr.next(utc("2026-01-01 00:00:00"), zone("UTC"));
        REQUIRE(t);
        const auto day = date::floor<date::days>(*t);
        const date::hh_mm_ss<seconds> tod{*t - day};
        minutes.insert(static_cast<unsigned>(tod.minutes().count()));
        hours.insert(static_cast<unsigned>(tod.hours().count()));
        days.insert(static_cast<unsigned>(date::year_month_day{day}.day()));
        REQUIRE(parsed("H H H * *", name).next(utc("2026-01-01 00:00:00"), zone("UTC")) == t);
        weekdays.merge(weekdaysOf("0 0 * * H", name));
        offsets.merge(minutesOf("H/7 * * * *", name));
    }
    CHECK(minutes.size() == 60);
    CHECK(hours.size() == 24);
    // Day-of-month H stays in 1-28, so that every month has the day.
    CHECK(days.size() == 28);
    CHECK(*days.rbegin() == 28);
    CHECK(weekdays.size() == 7);
    CHECK(offsets.size() == 60);
}

TEST_CASE("the hash key changes only the H fields, and each field differently", "[cron][hash]") {
    CHECK(utcFirings("30 2 * * *", "2026-01-05 00:00:00", 1, "a") ==
          utcFirings("30 2 * * *", "2026-01-05 00:00:00", 1, "b"));
    // The same range in the minute and hour fields: the field's position is hashed too, so
    // "nightly-backup" gets minute 16 and hour 4.
    CHECK(utcFirings("H(0-23) H(0-23) * * *", "2026-01-05 00:00:00", 1, "nightly-backup") ==
          std::vector<std::string>{"2026-01-05 04:16:00 +0000"});
}

// ---------------------------------------------------------------------------------------------
// @reboot

TEST_CASE("@reboot parses, says so, and has no next instant", "[cron][parse]") {
    const CronExpr reboot = parsed("@reboot");
    CHECK(reboot.isReboot());
    CHECK(reboot.text() == "@reboot");
    CHECK_FALSE(reboot.hasSeconds());
    CHECK_FALSE(reboot.hourIsWildcard());
    CHECK_FALSE(reboot.next(utc("2026-01-01 00:00:00"), zone("UTC")));
    CHECK_FALSE(reboot.next(utc("2026-03-29 00:00:00"), zone("Europe/Berlin")));
    CHECK(parsed(" @REBOOT ").isReboot());
    CHECK_FALSE(parsed("@daily").isReboot());
    CHECK_FALSE(parsed("0 0 * * *").isReboot());
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

DstPolicy policy(Gap gap, Fold fold) { return DstPolicy{gap, fold}; }

const DstPolicy kDefault{};
const DstPolicy kSkipGap = policy(Gap::Skip, Fold::First);
const DstPolicy kSecond = policy(Gap::RunAfter, Fold::Second);
const DstPolicy kBoth = policy(Gap::RunAfter, Fold::Both);

constexpr Gap kGaps[] = {Gap::RunAfter, Gap::Skip};
constexpr Fold kFolds[] = {Fold::First, Fold::Second, Fold::Both};

// The policies that give the same firings in one case of a table.
using Policies = std::vector<DstPolicy>;

Policies anyPolicy() {
    Policies out;
    for (Gap g : kGaps) {
        for (Fold f : kFolds) out.push_back(policy(g, f));
    }
    return out;
}

Policies gapIs(Gap g) {
    Policies out;
    for (Fold f : kFolds) out.push_back(policy(g, f));
    return out;
}

Policies foldIs(Fold f) {
    Policies out;
    for (Gap g : kGaps) out.push_back(policy(g, f));
    return out;
}

std::string describe(const DstPolicy& p) {
    return std::string("dst_gap ") + (p.gap == Gap::RunAfter ? "run_after" : "skip") +
           ", dst_fold " +
           (p.fold == Fold::First ? "first" : p.fold == Fold::Second ? "second" : "both");
}

struct DstCase {
    const char* expr;
    Policies policies;
    std::vector<std::string> expected;
};

// Checks the first n firings after after_utc of every case under each of its policies. The
// cases of one expression must together name all six dst_gap x dst_fold combinations, so that
// a table states what every setting does.
void checkDst(const char* zone_name, const std::string& after_utc, int n,
              const std::vector<DstCase>& cases) {
    const date::time_zone* tz = zone(zone_name);
    std::map<std::string, std::set<std::pair<Gap, Fold>>> covered;
    for (const DstCase& c : cases) {
        for (const DstPolicy& p : c.policies) {
            INFO(zone_name << " \"" << c.expr << "\" after " << after_utc << " UTC, "
                           << describe(p));
            CHECK(firings(c.expr, tz, utc(after_utc), n, p) == c.expected);
            covered[c.expr].insert({p.gap, p.fold});
        }
    }
    for (const auto& [expr, policies] : covered) {
        INFO("the table for \"" << expr << "\" in " << zone_name << " misses a policy");
        CHECK(policies.size() == 6);
    }
}

} // namespace

TEST_CASE("Europe/Berlin spring forward: 02:00 CET jumps to 03:00 CEST", "[cron][dst]") {
    // 2026-03-29 01:00 UTC. Start the evening before, 2026-03-28 23:00 CET.
    checkDst("Europe/Berlin", "2026-03-28 22:00:00", 2,
             {
                 {"30 2 * * *", gapIs(Gap::RunAfter),
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:30:00 +0200"}},
                 {"30 2 * * *", gapIs(Gap::Skip),
                  {"2026-03-30 02:30:00 +0200", "2026-03-31 02:30:00 +0200"}},
                 {"30 1 * * *", anyPolicy(),
                  {"2026-03-29 01:30:00 +0100", "2026-03-30 01:30:00 +0200"}},
                 {"0 3 * * *", anyPolicy(),
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 03:00:00 +0200"}},
                 // Several wall times in the gap still give a single firing.
                 {"*/15 2 * * *", gapIs(Gap::RunAfter),
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:00:00 +0200"}},
                 {"*/15 2 * * *", gapIs(Gap::Skip),
                  {"2026-03-30 02:00:00 +0200", "2026-03-30 02:15:00 +0200"}},
                 // The firing after the jump and 03:00 itself are one firing.
                 {"0 2,3 * * *", anyPolicy(),
                  {"2026-03-29 03:00:00 +0200", "2026-03-30 02:00:00 +0200"}},
             });
    // Interval-like expressions have nothing in the gap, whatever the policy.
    checkDst("Europe/Berlin", "2026-03-29 00:30:00", 3,
             {{"*/15 * * * *", anyPolicy(),
               {"2026-03-29 01:45:00 +0100", "2026-03-29 03:00:00 +0200",
                "2026-03-29 03:15:00 +0200"}}});
    checkDst("Europe/Berlin", "2026-03-28 23:30:00", 3,
             {{"0 * * * *", anyPolicy(),
               {"2026-03-29 01:00:00 +0100", "2026-03-29 03:00:00 +0200",
                "2026-03-29 04:00:00 +0200"}}});
}

TEST_CASE("Europe/Berlin fall back: 03:00 CEST returns to 02:00 CET", "[cron][dst]") {
    // 2026-10-25 01:00 UTC; 02:00-02:59 happens first at +0200, then at +0100.
    checkDst("Europe/Berlin", "2026-10-24 22:00:00", 3,
             {
                 {"30 2 * * *", foldIs(Fold::First),
                  {"2026-10-25 02:30:00 +0200", "2026-10-26 02:30:00 +0100",
                   "2026-10-27 02:30:00 +0100"}},
                 {"30 2 * * *", foldIs(Fold::Second),
                  {"2026-10-25 02:30:00 +0100", "2026-10-26 02:30:00 +0100",
                   "2026-10-27 02:30:00 +0100"}},
                 {"30 2 * * *", foldIs(Fold::Both),
                  {"2026-10-25 02:30:00 +0200", "2026-10-25 02:30:00 +0100",
                   "2026-10-26 02:30:00 +0100"}},
                 {"30 1 * * *", anyPolicy(),
                  {"2026-10-25 01:30:00 +0200", "2026-10-26 01:30:00 +0100",
                   "2026-10-27 01:30:00 +0100"}},
             });
    // Interval-like expressions fire in both passes, whatever the policy.
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 9,
             {{"*/15 * * * *", anyPolicy(),
               {"2026-10-25 02:00:00 +0200", "2026-10-25 02:15:00 +0200",
                "2026-10-25 02:30:00 +0200", "2026-10-25 02:45:00 +0200",
                "2026-10-25 02:00:00 +0100", "2026-10-25 02:15:00 +0100",
                "2026-10-25 02:30:00 +0100", "2026-10-25 02:45:00 +0100",
                "2026-10-25 03:00:00 +0100"}}});
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 3,
             {{"0 * * * *", anyPolicy(),
               {"2026-10-25 02:00:00 +0200", "2026-10-25 02:00:00 +0100",
                "2026-10-25 03:00:00 +0100"}}});
    // A fixed hour with several minutes in the fold: the policy picks the pass.
    checkDst("Europe/Berlin", "2026-10-24 23:45:00", 4,
             {
                 {"*/30 2 * * *", foldIs(Fold::First),
                  {"2026-10-25 02:00:00 +0200", "2026-10-25 02:30:00 +0200",
                   "2026-10-26 02:00:00 +0100", "2026-10-26 02:30:00 +0100"}},
                 {"*/30 2 * * *", foldIs(Fold::Second),
                  {"2026-10-25 02:00:00 +0100", "2026-10-25 02:30:00 +0100",
                   "2026-10-26 02:00:00 +0100", "2026-10-26 02:30:00 +0100"}},
                 {"*/30 2 * * *", foldIs(Fold::Both),
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
        for (const DstPolicy& p : anyPolicy()) {
            INFO(text << ", " << describe(p));
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
                 {"30 2 * * *", gapIs(Gap::RunAfter),
                  {"2026-03-08 03:00:00 -0400", "2026-03-09 02:30:00 -0400"}},
                 {"30 2 * * *", gapIs(Gap::Skip),
                  {"2026-03-09 02:30:00 -0400", "2026-03-10 02:30:00 -0400"}},
                 {"30 1 * * *", anyPolicy(),
                  {"2026-03-08 01:30:00 -0500", "2026-03-09 01:30:00 -0400"}},
             });
    checkDst("America/New_York", "2026-03-08 06:40:00", 3,
             {
                 {"*/15 * * * *", anyPolicy(),
                  {"2026-03-08 01:45:00 -0500", "2026-03-08 03:00:00 -0400",
                   "2026-03-08 03:15:00 -0400"}},
                 {"0 * * * *", anyPolicy(),
                  {"2026-03-08 03:00:00 -0400", "2026-03-08 04:00:00 -0400",
                   "2026-03-08 05:00:00 -0400"}},
             });
    // Fall back 2026-11-01 06:00 UTC; 01:00-01:59 happens at -0400, then at -0500.
    checkDst("America/New_York", "2026-11-01 04:00:00", 3,
             {
                 {"30 1 * * *", foldIs(Fold::First),
                  {"2026-11-01 01:30:00 -0400", "2026-11-02 01:30:00 -0500",
                   "2026-11-03 01:30:00 -0500"}},
                 {"30 1 * * *", foldIs(Fold::Second),
                  {"2026-11-01 01:30:00 -0500", "2026-11-02 01:30:00 -0500",
                   "2026-11-03 01:30:00 -0500"}},
                 {"30 1 * * *", foldIs(Fold::Both),
                  {"2026-11-01 01:30:00 -0400", "2026-11-01 01:30:00 -0500",
                   "2026-11-02 01:30:00 -0500"}},
                 {"30 2 * * *", anyPolicy(),
                  {"2026-11-01 02:30:00 -0500", "2026-11-02 02:30:00 -0500",
                   "2026-11-03 02:30:00 -0500"}},
                 {"0 * * * *", anyPolicy(),
                  {"2026-11-01 01:00:00 -0400", "2026-11-01 01:00:00 -0500",
                   "2026-11-01 02:00:00 -0500"}},
             });
    checkDst("America/New_York", "2026-11-01 05:40:00", 5,
             {{"*/15 * * * *", anyPolicy(),
               {"2026-11-01 01:45:00 -0400", "2026-11-01 01:00:00 -0500",
                "2026-11-01 01:15:00 -0500", "2026-11-01 01:30:00 -0500",
                "2026-11-01 01:45:00 -0500"}}});
}

TEST_CASE("Australia/Lord_Howe shifts by 30 minutes", "[cron][dst]") {
    // Fall back 2026-04-05 02:00 +1100 -> 01:30 +1030 (2026-04-04 15:00 UTC).
    checkDst("Australia/Lord_Howe", "2026-04-04 13:00:00", 2,
             {
                 {"45 1 * * *", foldIs(Fold::First),
                  {"2026-04-05 01:45:00 +1100", "2026-04-06 01:45:00 +1030"}},
                 {"45 1 * * *", foldIs(Fold::Second),
                  {"2026-04-05 01:45:00 +1030", "2026-04-06 01:45:00 +1030"}},
                 {"45 1 * * *", foldIs(Fold::Both),
                  {"2026-04-05 01:45:00 +1100", "2026-04-05 01:45:00 +1030"}},
                 {"15 1 * * *", anyPolicy(),
                  {"2026-04-05 01:15:00 +1100", "2026-04-06 01:15:00 +1030"}},
             });
    checkDst("Australia/Lord_Howe", "2026-04-04 14:20:00", 5,
             {{"*/15 * * * *", anyPolicy(),
               {"2026-04-05 01:30:00 +1100", "2026-04-05 01:45:00 +1100",
                "2026-04-05 01:30:00 +1030", "2026-04-05 01:45:00 +1030",
                "2026-04-05 02:00:00 +1030"}}});
    // Spring forward 2026-10-04 02:00 +1030 -> 02:30 +1100 (2026-10-03 15:30 UTC).
    checkDst("Australia/Lord_Howe", "2026-10-03 14:00:00", 2,
             {
                 {"15 2 * * *", gapIs(Gap::RunAfter),
                  {"2026-10-04 02:30:00 +1100", "2026-10-05 02:15:00 +1100"}},
                 {"15 2 * * *", gapIs(Gap::Skip),
                  {"2026-10-05 02:15:00 +1100", "2026-10-06 02:15:00 +1100"}},
                 {"45 2 * * *", anyPolicy(),
                  {"2026-10-04 02:45:00 +1100", "2026-10-05 02:45:00 +1100"}},
                 {"0 * * * *", anyPolicy(),
                  {"2026-10-04 01:00:00 +1030", "2026-10-04 03:00:00 +1100"}},
                 {"*/15 * * * *", anyPolicy(),
                  {"2026-10-04 00:45:00 +1030", "2026-10-04 01:00:00 +1030"}},
             });
    checkDst("Australia/Lord_Howe", "2026-10-03 15:10:00", 3,
             {{"*/15 * * * *", anyPolicy(),
               {"2026-10-04 01:45:00 +1030", "2026-10-04 02:30:00 +1100",
                "2026-10-04 02:45:00 +1100"}}});
}

TEST_CASE("leap days and month-relative days in a DST zone", "[cron][dst][quartz]") {
    const date::time_zone* berlin = zone("Europe/Berlin");
    CHECK(firings("0 0 29 2 *", berlin, utc("2026-03-01 00:00:00"), 2) ==
          std::vector<std::string>{"2028-02-29 00:00:00 +0100", "2032-02-29 00:00:00 +0100"});
    // The last Sunday of March is the spring-forward day: 02:30 falls in the gap.
    CHECK(firings("30 2 * 3 SUNL", berlin, utc("2026-01-01 00:00:00"), 2) ==
          std::vector<std::string>{"2026-03-29 03:00:00 +0200", "2027-03-28 03:00:00 +0200"});
    CHECK(firings("30 2 * 3 SUNL", berlin, utc("2026-01-01 00:00:00"), 2, kSkipGap) ==
          std::vector<std::string>{});
    // The last Sunday of October is the fall-back day: 02:30 happens twice.
    CHECK(firings("30 2 * 10 0#4,0#5", berlin, utc("2026-10-01 00:00:00"), 2, kBoth) ==
          std::vector<std::string>{"2026-10-25 02:30:00 +0200", "2026-10-25 02:30:00 +0100"});
}

// ---------------------------------------------------------------------------------------------
// Property test: random expressions against a brute-force scan

namespace {

// A day-of-month or day-of-week element whose day depends on the month.
struct RelativeDay {
    enum Kind { BeforeLast, LastWeekday, NearestWeekday, LastOf, Nth } kind;
    int n = 0; // BeforeLast: days before the last; NearestWeekday: the day; LastOf, Nth: weekday
    int k = 0; // Nth: the occurrence
};

// A field chosen at random, with the set of values (and month-relative days) it must select
// computed independently of the parser.
struct RandomField {
    std::string text;
    std::set<int> values;
    std::vector<RelativeDay> relative;
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

    // Adds one or two month-relative elements to a day-of-month field (L, L-n, LW, nW) or a
    // day-of-week field (nL, n#k), or makes them the whole field.
    void addRelative(RandomField& f, bool day_of_month) {
        if (uniform(0, 1) == 0) {
            f.text.clear();
            f.values.clear();
        }
        const int count = uniform(1, 2);
        for (int i = 0; i < count; ++i) {
            RelativeDay r{RelativeDay::LastWeekday};
            std::string text;
            if (day_of_month) {
                const int kind = uniform(0, 3);
                if (kind == 0) {
                    r = {RelativeDay::BeforeLast, uniform(0, 1) == 0 ? 0 : uniform(0, 30)};
                    text = (r.n == 0 && uniform(0, 1) == 0) ? "L" : "L-" + std::to_string(r.n);
                } else if (kind == 1) {
                    text = "LW";
                } else {
                    // Favour the days whose neighbours are in other months.
                    const int edge_days[] = {1, 2, 28, 29, 30, 31};
                    r = {RelativeDay::NearestWeekday,
                         uniform(0, 1) == 0 ? edge_days[uniform(0, 5)] : uniform(1, 31)};
                    text = std::to_string(r.n) + (uniform(0, 3) == 0 ? "w" : "W");
                }
            } else {
                const int w = uniform(0, 7);
                const std::string day =
                    uniform(0, 1) == 0 ? kDayNames[static_cast<std::size_t>(w % 7)]
                                       : std::to_string(w);
                if (uniform(0, 1) == 0) {
                    r = {RelativeDay::LastOf, w % 7};
                    text = day + "L";
                } else {
                    r = {RelativeDay::Nth, w % 7, uniform(1, 5)};
                    text = day + "#" + std::to_string(r.k);
                }
            }
            f.relative.push_back(r);
            f.text += (f.text.empty() ? "" : ",") + text;
        }
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

// The day-of-month, month and day-of-week fields of e, with month-relative elements in a third
// of the day fields.
void randomDays(ExprGenerator& gen, RandomExpr& e) {
    e.dom = gen.uniform(0, 2) == 0 ? gen.field({1, 31, 31, nullptr, true, false})
                                   : RandomField{"*", {}, {}};
    if (e.dom.text == "*") {
        for (int d = 1; d <= 31; ++d) e.dom.values.insert(d);
    }
    if (gen.uniform(0, 2) == 0) gen.addRelative(e.dom, true);
    e.month = gen.uniform(0, 3) == 0
                  ? gen.field({1, 12, 12, &kMonthNames, false, false})
                  : RandomField{"*", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {}};
    e.dow = gen.uniform(0, 2) == 0 ? gen.field({0, 7, 6, &kDayNames, true, true})
                                   : RandomField{"*", {0, 1, 2, 3, 4, 5, 6}, {}};
    if (gen.uniform(0, 2) == 0) gen.addRelative(e.dow, false);
}

void finish(RandomExpr& e) {
    e.text = (e.with_seconds ? e.second.text + " " : "") + e.minute.text + " " + e.hour.text +
             " " + e.dom.text + " " + e.month.text + " " + e.dow.text;
    e.dom_restricted = e.dom.text[0] != '*' && e.dom.text[0] != '?';
    e.dow_restricted = e.dow.text[0] != '*' && e.dow.text[0] != '?';
    e.hour_wildcard = e.hour.values.size() == 24;
}

RandomExpr randomExpr(ExprGenerator& gen) {
    RandomExpr e;
    e.with_seconds = gen.uniform(0, 4) == 0;
    if (e.with_seconds) {
        e.second = gen.field({0, 59, 59, nullptr, false, false});
    } else {
        e.second = {"0", {0}, {}};
    }
    e.minute = gen.field({0, 59, 59, nullptr, false, false});
    // Hours around the transitions in Berlin and New York, half of the time.
    e.hour = gen.field({0, 23, 23, nullptr, false, false}, 0, 3);
    randomDays(gen, e);
    finish(e);
    return e;
}

// Whether a month-relative element selects ymd, by looking at the days of its month.
bool selects(const RelativeDay& r, date::year_month_day ymd) {
    const int day = static_cast<int>(static_cast<unsigned>(ymd.day()));
    const date::year_month month = ymd.year() / ymd.month();
    const int last = static_cast<int>(static_cast<unsigned>((month / date::last).day()));
    const auto weekdayOf = [month](int d) {
        const date::sys_days that_day = month / date::day(static_cast<unsigned>(d));
        return static_cast<int>(date::weekday(that_day).c_encoding());
    };
    const auto workday = [&weekdayOf](int d) { return weekdayOf(d) >= 1 && weekdayOf(d) <= 5; };
    switch (r.kind) {
    case RelativeDay::BeforeLast: return day == last - r.n;
    case RelativeDay::LastWeekday:
        for (int d = day + 1; d <= last; ++d) {
            if (workday(d)) return false;
        }
        return workday(day);
    case RelativeDay::NearestWeekday:
        // The Monday-to-Friday day of this month closest to n (there is never a tie).
        if (r.n > last || !workday(day)) return false;
        for (int d = 1; d <= last; ++d) {
            if (workday(d) && std::abs(d - r.n) < std::abs(day - r.n)) return false;
        }
        return true;
    case RelativeDay::LastOf: return weekdayOf(day) == r.n && day + 7 > last;
    case RelativeDay::Nth: return weekdayOf(day) == r.n && (day - 1) / 7 + 1 == r.k;
    }
    return false;
}

bool selectsDay(const RandomField& f, int value, date::year_month_day ymd) {
    return f.values.count(value) != 0 ||
           std::any_of(f.relative.begin(), f.relative.end(),
                       [ymd](const RelativeDay& r) { return selects(r, ymd); });
}

bool matchesWall(const RandomExpr& e, date::local_seconds wall) {
    const auto day = date::floor<date::days>(wall);
    const date::year_month_day ymd{day};
    const date::hh_mm_ss<seconds> tod{wall - day};
    if (e.second.values.count(static_cast<int>(tod.seconds().count())) == 0 ||
        e.minute.values.count(static_cast<int>(tod.minutes().count())) == 0 ||
        e.hour.values.count(static_cast<int>(tod.hours().count())) == 0 ||
        e.month.values.count(static_cast<int>(static_cast<unsigned>(ymd.month()))) == 0) {
        return false;
    }
    const bool dom = selectsDay(e.dom, static_cast<int>(static_cast<unsigned>(ymd.day())), ymd);
    const bool dow = selectsDay(e.dow, static_cast<int>(date::weekday(day).c_encoding()), ymd);
    return (e.dom_restricted && e.dow_restricted) ? (dom || dow) : (dom && dow);
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

// Returns the firings found in [from, to).
std::vector<sys_seconds> checkAgainstBruteForce(const RandomExpr& e, const CronExpr& expr,
                                                const date::time_zone* tz, const DstPolicy& p,
                                                sys_seconds from, sys_seconds to) {
    INFO("\"" << e.text << "\" in " << tz->name() << " from " << date::format("%F %T", from)
              << " UTC, " << describe(p));
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
        const auto [g, x] =
            std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
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
        {zone("America/New_York"), utc("2026-03-08 07:00:00")},
        {zone("America/New_York"), utc("2026-11-01 06:00:00")},
        {zone("Australia/Lord_Howe"), utc("2026-04-04 15:00:00")},
        {zone("Australia/Lord_Howe"), utc("2026-10-03 15:30:00")},
    };
    const Policies policies = anyPolicy();
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
            const DstPolicy& p = policies[static_cast<std::size_t>(gen.uniform(0, 5))];
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
    CHECK(windows_firing_near_transition >= 300);
}

TEST_CASE("random day fields with L, W and # agree with a day-by-day scan over twelve years",
          "[cron][property][quartz]") {
    ExprGenerator gen(20280229);
    const date::time_zone* utc_zone = zone("UTC");
    const date::sys_days first_day = date::year{2026} / 1 / 1;
    const date::sys_days end_day = date::year{2038} / 1 / 1;
    int relative_firings = 0;

    for (int i = 0; i < 300; ++i) {
        RandomExpr e;
        e.second = {"0", {0}, {}};
        e.minute = {"0", {0}, {}};
        e.hour = {"12", {12}, {}};
        randomDays(gen, e);
        finish(e);
        INFO("\"" << e.text << "\"");
        const CronExpr expr = parsed(e.text);

        std::vector<date::sys_days> expected;
        for (date::sys_days d = first_day; d < end_day; d += date::days(1)) {
            if (matchesWall(e, date::local_days(d.time_since_epoch()) + std::chrono::hours(12))) {
                expected.push_back(d);
            }
        }
        std::vector<date::sys_days> got;
        for (auto t = expr.next(sys_seconds(first_day) - seconds(1), utc_zone);
             t && *t < sys_seconds(end_day); t = expr.next(*t, utc_zone)) {
            got.push_back(date::floor<date::days>(*t));
        }
        if (got != expected) {
            const auto [g, x] =
                std::mismatch(got.begin(), got.end(), expected.begin(), expected.end());
            FAIL("first difference: next() gave "
                 << (g == got.end() ? "nothing" : date::format("%F", *g)) << ", the scan "
                 << (x == expected.end() ? "nothing" : date::format("%F", *x)));
        }
        if (!e.dom.relative.empty() || !e.dow.relative.empty()) {
            relative_firings += static_cast<int>(got.size());
        }
    }
    // Month-relative elements select about one day a month each.
    CHECK(relative_firings >= 10000);
}

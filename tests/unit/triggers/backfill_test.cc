// Backfill's side of the schedule: the range's ends as users write them, and the instants the
// time triggers name in a range (the scheduler's own walk: the same instants, the same DST
// handling, one firing per instant), with the bounds that keep a backfill's work finite.
#include <catch2/catch.hpp>

#include <date/tz.h>

#include <string>
#include <vector>

#include "common/time_util.h"
#include "trigger_support.h"
#include "triggers/backfill.h"
#include "triggers/dst_note.h"

namespace {

using namespace taskhub;
using std::chrono::sys_seconds;
using triggers::RangeEnd;

using testing::triggers_support::at;
using testing::triggers_support::workflow;

const date::time_zone* berlin() { return date::locate_zone("Europe/Berlin"); }

std::string parsed(const std::string& text, RangeEnd end = RangeEnd::From) {
    std::string err;
    auto t = triggers::parseRangeTime(text, berlin(), end, &err);
    return t ? formatIsoSeconds(*t) : "error: " + err;
}

// "<UTC instant> <dst note>" of each firing in [from, to].
std::vector<std::string> instants(const config::Workflow& wf, const char* from, const char* to) {
    auto r = triggers::firingsBetween(wf, at(from), at(to));
    REQUIRE_FALSE(r.over);
    std::vector<std::string> out;
    for (const auto& f : r.firings) {
        const auto& trig = wf.triggers[f.trigger];
        auto facts = triggers::dstFacts(trig.cron ? &*trig.cron : nullptr, wf.zone, f.scheduled, wf.dst);
        std::string note = triggers::dstNoteName(facts.note);
        out.push_back(formatIsoSeconds(f.scheduled) + (note.empty() ? "" : " " + note));
    }
    return out;
}

} // namespace

TEST_CASE("backfill range ends: instants with offsets, wall times and dates in the workflow's zone",
          "[triggers][backfill]") {
    CHECK(parsed("2026-03-28T02:30:00+01:00") == "2026-03-28T01:30:00Z");
    CHECK(parsed("2026-03-28T01:30:00Z") == "2026-03-28T01:30:00Z");
    CHECK(parsed("2026-03-28T02:30") == "2026-03-28T01:30:00Z");     // CET
    CHECK(parsed("2026-06-01 02:30:00") == "2026-06-01T00:30:00Z");  // CEST, a space for the T
    CHECK(parsed("2026-03-28") == "2026-03-27T23:00:00Z");           // midnight in Berlin
    // A wall time of the autumn fold: the first pass begins a range, the second ends it.
    CHECK(parsed("2026-10-25T02:30", RangeEnd::From) == "2026-10-25T00:30:00Z");
    CHECK(parsed("2026-10-25T02:30", RangeEnd::To) == "2026-10-25T01:30:00Z");
    // A wall time the spring jump skipped names no instant.
    CHECK(parsed("2026-03-29T02:30") == "error: \"2026-03-29T02:30\" does not exist in Europe/Berlin (a DST change "
                                         "skipped it); give an instant with its offset, or a wall time before or "
                                         "after the jump");
    CHECK(parsed("yesterday").starts_with("error: \"yesterday\" is not a time; expected an instant with its offset"));
    CHECK(parsed("2026-13-01").starts_with("error: \"2026-13-01\" is not a time"));
    CHECK(parsed("2026-03-28T25:00").starts_with("error: \"2026-03-28T25:00\" is not a time"));
    CHECK(parsed("2026-03-28T02:30:00+25:00").starts_with("error: \"2026-03-28T02:30:00+25:00\": "));
    CHECK(parsed("").starts_with("error: an empty time"));
}

TEST_CASE("backfill across the spring gap in Europe/Berlin follows dst_gap", "[triggers][backfill][dst]") {
    const char* trig = "timezone = \"Europe/Berlin\"\n[[trigger]]\ncron = \"30 2 * * *\"\n";
    // run_after (the default): the skipped 02:30 runs once, at the first instant after the jump.
    auto after = workflow("a", trig);
    CHECK(instants(*after, "2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z") ==
          std::vector<std::string>{"2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z gap", "2026-03-30T00:30:00Z"});
    // skip: that day has no firing.
    auto skip = workflow("s", std::string("dst_gap = \"skip\"\n") + trig);
    CHECK(instants(*skip, "2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z") ==
          std::vector<std::string>{"2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"});
    // Both ends are included, and nothing outside them.
    CHECK(instants(*after, "2026-03-28T01:30:01Z", "2026-03-30T00:29:59Z") ==
          std::vector<std::string>{"2026-03-29T01:00:00Z gap"});
}

TEST_CASE("backfill across the autumn fold in Europe/Berlin follows dst_fold", "[triggers][backfill][dst]") {
    const char* trig = "timezone = \"Europe/Berlin\"\n[[trigger]]\ncron = \"30 2 * * *\"\n";
    const char* from = "2026-10-24T00:00:00Z";
    const char* to = "2026-10-25T23:00:00Z";
    auto first = workflow("f", trig);
    CHECK(instants(*first, from, to) ==
          std::vector<std::string>{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z fold_first"});
    auto second = workflow("s", std::string("dst_fold = \"second\"\n") + trig);
    CHECK(instants(*second, from, to) ==
          std::vector<std::string>{"2026-10-24T00:30:00Z", "2026-10-25T01:30:00Z fold_second"});
    auto both = workflow("b", std::string("dst_fold = \"both\"\n") + trig);
    CHECK(instants(*both, from, to) == std::vector<std::string>{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z fold_first",
                                                                "2026-10-25T01:30:00Z fold_second"});
    // An hourly expression is interval-like: both passes of the repeated hour fire.
    auto hourly = workflow("h", "timezone = \"Europe/Berlin\"\n[[trigger]]\ncron = \"0 * * * *\"\n");
    CHECK(instants(*hourly, "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z") ==
          std::vector<std::string>{"2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z fold_first",
                                   "2026-10-25T01:00:00Z fold_second", "2026-10-25T02:00:00Z"});
}

TEST_CASE("backfill: one firing per instant across triggers; at and anchored every count, the rest do not",
          "[triggers][backfill]") {
    auto wf = workflow("m", "timezone = \"UTC\"\n"
                            "[[trigger]]\ncron = \"0 12 * * *\"\n"
                            "[[trigger]]\nat = \"2026-05-02T12:00:00Z\"\n"      // the same instant as the cron
                            "[[trigger]]\nat = \"2026-05-02T08:30:00Z\"\n"
                            "[[trigger]]\nevery = \"1d\"\nstart_at = \"2026-05-01T06:00:00Z\"\n"
                            "[[trigger]]\nevery = \"90s\"\n"                    // no fixed grid: left out
                            "[[trigger]]\ncron = \"@reboot\"\n");
    auto r = triggers::firingsBetween(*wf, at("2026-05-02T00:00:00Z"), at("2026-05-02T23:59:59Z"));
    CHECK(r.triggers_used == 4);
    CHECK(r.left_out == std::vector<std::string>{"#4 every 1m30s"});
    std::vector<std::string> got;
    for (const auto& f : r.firings) got.push_back(formatIsoSeconds(f.scheduled) + " #" + std::to_string(f.trigger));
    CHECK(got == std::vector<std::string>{"2026-05-02T06:00:00Z #3", "2026-05-02T08:30:00Z #2",
                                          "2026-05-02T12:00:00Z #0"});
    CHECK(r.count == 3);

    auto floating = workflow("f", "[[trigger]]\nevery = \"1h\"\n[[trigger]]\ncron = \"@reboot\"\n");
    auto none = triggers::firingsBetween(*floating, at("2026-05-02T00:00:00Z"), at("2026-05-02T23:59:59Z"));
    CHECK(none.triggers_used == 0);
    CHECK(none.firings.empty());
}

TEST_CASE("backfill: a range with more instants than the maximum is refused with its count", "[triggers][backfill]") {
    auto minutely = workflow("m", "timezone = \"UTC\"\n[[trigger]]\ncron = \"* * * * *\"\n");
    auto day = triggers::firingsBetween(*minutely, at("2026-05-02T00:00:00Z"), at("2026-05-02T23:59:00Z"), 1000);
    CHECK(day.over);
    CHECK(day.count == 1440);
    CHECK_FALSE(day.count_capped);
    CHECK(day.firings.empty());
    auto fits = triggers::firingsBetween(*minutely, at("2026-05-02T00:00:00Z"), at("2026-05-02T23:59:00Z"), 1440);
    CHECK_FALSE(fits.over);
    CHECK(fits.firings.size() == 1440);
    // Counting stops at kBackfillCountLimit: "more than".
    auto secondly = workflow("s", "timezone = \"UTC\"\n[[trigger]]\ncron = \"* * * * * *\"\n");
    auto days = triggers::firingsBetween(*secondly, at("2026-05-01T00:00:00Z"), at("2026-05-03T00:00:00Z"));
    CHECK(days.over);
    CHECK(days.count_capped);
    CHECK(days.count == triggers::kBackfillCountLimit);
    // An empty range (from after to) names nothing.
    CHECK(triggers::firingsBetween(*minutely, at("2026-05-02T00:01:00Z"), at("2026-05-02T00:00:00Z")).firings.empty());
}

#include "next_preview.h"

#include "common/time_util.h"

#include <catch2/catch.hpp>

#include <date/tz.h>

#include <string>
#include <vector>

namespace {

using taskhub::cron::CronExpr;
using taskhub::cron::DstPolicy;
using namespace taskhub::ctl;
using std::chrono::sys_seconds;

const date::time_zone* zone(const char* name) { return date::locate_zone(name); }

CronExpr parsed(const std::string& text) {
    std::string err;
    auto expr = CronExpr::parse(text, &err);
    INFO(text << ": " << err);
    REQUIRE(expr);
    return *expr;
}

// The instant "2026-03-29T00:00:00+01:00" names.
sys_seconds instant(const std::string& text) {
    std::string err;
    auto t = taskhub::parseIsoInstant(text, &err);
    INFO(err);
    REQUIRE(t);
    return *t;
}

struct Row {
    std::string local;
    DstNote dst;
    std::string skipped_wall;
    bool operator==(const Row&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Row& r) {
    return os << r.local << " " << dstNoteName(r.dst) << " " << r.skipped_wall;
}

std::vector<Row> preview(const std::string& cron, const char* tz, const std::string& from, size_t n,
                         DstPolicy policy = {}) {
    std::vector<Row> out;
    for (const auto& f : previewFirings(parsed(cron), zone(tz), instant(from), n, policy)) {
        CHECK(f.local == formatIsoLocal(f.instant, zone(tz)));
        out.push_back({f.local, f.dst, f.skipped_wall});
    }
    return out;
}

} // namespace

TEST_CASE("a fixed-hour firing in the spring-forward gap runs once after the jump, marked", "[next]") {
    auto rows = preview("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+01:00", 3);
    CHECK(rows == std::vector<Row>{
                      {"2026-03-29T03:00:00+02:00", DstNote::Gap, "2026-03-29T02:30:00"},
                      {"2026-03-30T02:30:00+02:00", DstNote::None, ""},
                      {"2026-03-31T02:30:00+02:00", DstNote::None, ""},
                  });
    auto f = previewFirings(parsed("30 2 * * *"), zone("Europe/Berlin"), instant("2026-03-28T12:00:00+01:00"), 1, {});
    REQUIRE(f.size() == 1);
    CHECK(dstNoteText(f[0]) == "DST gap: stands for 02:30, which the jump skipped");
}

TEST_CASE("with dst_gap skip the gap day has no firing and nothing is marked", "[next]") {
    DstPolicy skip;
    skip.gap = DstPolicy::Gap::Skip;
    auto rows = preview("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00+01:00", 2, skip);
    CHECK(rows == std::vector<Row>{
                      {"2026-03-30T02:30:00+02:00", DstNote::None, ""},
                      {"2026-03-31T02:30:00+02:00", DstNote::None, ""},
                  });
}

TEST_CASE("a real 03:00 firing right after the jump is not marked as shifted", "[next]") {
    auto rows = preview("0 3 * * *", "Europe/Berlin", "2026-03-29T00:00:00+01:00", 1);
    CHECK(rows == std::vector<Row>{{"2026-03-29T03:00:00+02:00", DstNote::None, ""}});
}

TEST_CASE("an interval-like expression has no firing in the gap and none is marked", "[next]") {
    auto rows = preview("*/30 * * * *", "Europe/Berlin", "2026-03-29T01:00:00+01:00", 3);
    CHECK(rows == std::vector<Row>{
                      {"2026-03-29T01:30:00+01:00", DstNote::None, ""},
                      {"2026-03-29T03:00:00+02:00", DstNote::None, ""},
                      {"2026-03-29T03:30:00+02:00", DstNote::None, ""},
                  });
}

TEST_CASE("fold passes are marked for each fold policy", "[next]") {
    const std::string from = "2026-10-25T00:00:00+02:00";
    CHECK(preview("30 2 * * *", "Europe/Berlin", from, 2) ==
          std::vector<Row>{{"2026-10-25T02:30:00+02:00", DstNote::FoldFirst, ""},
                           {"2026-10-26T02:30:00+01:00", DstNote::None, ""}});
    DstPolicy second;
    second.fold = DstPolicy::Fold::Second;
    CHECK(preview("30 2 * * *", "Europe/Berlin", from, 1, second) ==
          std::vector<Row>{{"2026-10-25T02:30:00+01:00", DstNote::FoldSecond, ""}});
    DstPolicy both;
    both.fold = DstPolicy::Fold::Both;
    CHECK(preview("30 2 * * *", "Europe/Berlin", from, 2, both) ==
          std::vector<Row>{{"2026-10-25T02:30:00+02:00", DstNote::FoldFirst, ""},
                           {"2026-10-25T02:30:00+01:00", DstNote::FoldSecond, ""}});
    auto f = previewFirings(parsed("30 2 * * *"), zone("Europe/Berlin"), instant(from), 2, both);
    CHECK(dstNoteText(f[0]) == "DST fold: 1st pass of 02:30");
    CHECK(dstNoteText(f[1]) == "DST fold: 2nd pass of 02:30");
}

TEST_CASE("an interval-like expression fires in both passes of the fold", "[next]") {
    auto rows = preview("*/30 * * * *", "Europe/Berlin", "2026-10-25T01:30:00+02:00", 5);
    CHECK(rows == std::vector<Row>{
                      {"2026-10-25T02:00:00+02:00", DstNote::FoldFirst, ""},
                      {"2026-10-25T02:30:00+02:00", DstNote::FoldFirst, ""},
                      {"2026-10-25T02:00:00+01:00", DstNote::FoldSecond, ""},
                      {"2026-10-25T02:30:00+01:00", DstNote::FoldSecond, ""},
                      {"2026-10-25T03:00:00+01:00", DstNote::None, ""},
                  });
}

TEST_CASE("firings are strictly after the start and stop when the expression never matches", "[next]") {
    CHECK(preview("0 12 * * *", "UTC", "2026-01-01T12:00:00Z", 1) ==
          std::vector<Row>{{"2026-01-02T12:00:00+00:00", DstNote::None, ""}});
    CHECK(preview("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", 5).empty());
}

TEST_CASE("local times carry the zone's offset, half hours included", "[next]") {
    CHECK(formatIsoLocal(instant("2026-06-01T12:00:00Z"), zone("Asia/Kolkata")) == "2026-06-01T17:30:00+05:30");
    CHECK(formatIsoLocal(instant("2026-06-01T12:00:00Z"), zone("America/New_York")) == "2026-06-01T08:00:00-04:00");
}

TEST_CASE("zones are found by IANA name; unknown ones get the closest names", "[next]") {
    std::string err;
    CHECK(findZone("Europe/Berlin", &err) == zone("Europe/Berlin"));
    CHECK(findZone("UTC", &err) != nullptr);
    CHECK(findZone("Europe/Berln", &err) == nullptr);
    CHECK(err == "unknown time zone \"Europe/Berln\"; did you mean 'Europe/Berlin'? "
                 "(expected an IANA name like \"Europe/Berlin\" or \"UTC\")");
    CHECK(findZone("kolkata", &err) == nullptr);
    CHECK(err == "unknown time zone \"kolkata\"; did you mean 'Asia/Kolkata'? "
                 "(expected an IANA name like \"Europe/Berlin\" or \"UTC\")");
    CHECK(findZone("Nowhere/Atlantis", &err) == nullptr);
    CHECK(err == "unknown time zone \"Nowhere/Atlantis\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")");
}

TEST_CASE("DST policy names are the workflow keys' values", "[next]") {
    DstPolicy p;
    std::string err;
    CHECK(parseDstGap("skip", &p.gap, &err));
    CHECK(p.gap == DstPolicy::Gap::Skip);
    CHECK(std::string(dstGapName(p.gap)) == "skip");
    CHECK_FALSE(parseDstGap("after", &p.gap, &err));
    CHECK(err == "expected run_after or skip, found 'after'");
    CHECK(parseDstFold("both", &p.fold, &err));
    CHECK(std::string(dstFoldName(p.fold)) == "both");
    CHECK_FALSE(parseDstFold("twice", &p.fold, &err));
    CHECK(err == "expected first, second or both, found 'twice'");
}

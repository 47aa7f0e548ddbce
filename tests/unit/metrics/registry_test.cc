// The registry and its OpenMetrics text: names, escaping of hostile label values, counters,
// gauges, histogram buckets, series removal and collectors.
#include <catch2/catch.hpp>

#include <stdexcept>

#include "metrics/registry.h"

using namespace taskhub::metrics;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace

TEST_CASE("label values escape backslash, quote and newline; invalid UTF-8 becomes U+FFFD", "[metrics]") {
    std::string out;
    appendEscapedLabelValue(&out, "a\\b\"c\nd");
    CHECK(out == "a\\\\b\\\"c\\nd");
    out.clear();
    appendEscapedLabelValue(&out, "caf\xC3\xA9 \xFF\xC3 \xED\xA0\x80 x");
    CHECK(out == "caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD x");
    out.clear();
    appendEscapedLabelValue(&out, std::string("nul\0byte", 8)); // NUL is a legal character in a label value
    CHECK(out == std::string("nul\0byte", 8));
}

TEST_CASE("a hostile label value cannot end the label, the line or the exposition", "[metrics]") {
    Registry r;
    auto& c = r.counter("x_events", "events", {"workflow"});
    c.inc({"evil\"} 1\n# EOF\nx_events_total{workflow=\"other"});
    const std::string text = r.render();
    CHECK(text ==
          "# TYPE x_events counter\n"
          "# HELP x_events events\n"
          "x_events_total{workflow=\"evil\\\"} 1\\n# EOF\\nx_events_total{workflow=\\\"other\"} 1\n"
          "# EOF\n");
}

TEST_CASE("values print as integers when whole, shortest round-trip otherwise", "[metrics]") {
    auto v = [](double d) {
        std::string s;
        appendValue(&s, d);
        return s;
    };
    CHECK(v(0) == "0");
    CHECK(v(42) == "42");
    CHECK(v(-3) == "-3");
    CHECK(v(0.25) == "0.25");
    CHECK(v(1765062000.123) == "1765062000.123");
    CHECK(v(1.0 / 0.0) == "+Inf");
    CHECK(v(-1.0 / 0.0) == "-Inf");
    CHECK(v(0.0 / 0.0) == "NaN");
}

TEST_CASE("counters render as NAME_total, gauges with their unit, families in order", "[metrics]") {
    Registry r;
    auto& runs = r.counter("t_runs", "Runs \"finished\"\\ok", {"workflow", "state"});
    auto& ts = r.gauge("t_last_seconds", "last", {"workflow"}, "seconds");
    runs.inc({"b", "failed"});
    runs.inc({"a", "succeeded"}, 2);
    ts.set({"a"}, 1765062000.5);
    CHECK(r.render() ==
          "# TYPE t_runs counter\n"
          "# HELP t_runs Runs \\\"finished\\\"\\\\ok\n"
          "t_runs_total{workflow=\"a\",state=\"succeeded\"} 2\n"
          "t_runs_total{workflow=\"b\",state=\"failed\"} 1\n"
          "# TYPE t_last_seconds gauge\n"
          "# UNIT t_last_seconds seconds\n"
          "# HELP t_last_seconds last\n"
          "t_last_seconds{workflow=\"a\"} 1765062000.5\n"
          "# EOF\n");
}

TEST_CASE("histograms count per bucket cumulatively, le canonical, +Inf equals count", "[metrics]") {
    Registry r;
    auto& h = r.histogram("t_duration_seconds", "d", {"workflow"}, {0.5, 1, 10}, "seconds");
    for (double v : {0.1, 0.5, 0.7, 3.0, 99.0}) h.observe({"w"}, v);
    const auto* s = h.find({"w"});
    REQUIRE(s);
    CHECK(s->count == 5);
    CHECK(s->sum == Approx(103.3));
    CHECK(r.render() ==
          "# TYPE t_duration_seconds histogram\n"
          "# UNIT t_duration_seconds seconds\n"
          "# HELP t_duration_seconds d\n"
          "t_duration_seconds_bucket{workflow=\"w\",le=\"0.5\"} 2\n" // 0.5 itself is <= 0.5
          "t_duration_seconds_bucket{workflow=\"w\",le=\"1.0\"} 3\n"
          "t_duration_seconds_bucket{workflow=\"w\",le=\"10.0\"} 4\n"
          "t_duration_seconds_bucket{workflow=\"w\",le=\"+Inf\"} 5\n"
          "t_duration_seconds_sum{workflow=\"w\"} 103.3\n"
          "t_duration_seconds_count{workflow=\"w\"} 5\n"
          "# EOF\n");
}

TEST_CASE("bad names, reused names, le as a label and wrong arity are refused", "[metrics]") {
    Registry r;
    r.counter("ok_name", "h");
    CHECK_THROWS_AS(r.counter("ok_name", "h"), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("1bad", "h"), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("bad-name", "h"), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("g", "h", {"bad label"}), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge("g_bytes", "h", {}, "seconds"), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("h", "h", {"le"}, {1}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("h2", "h", {}, {2, 1}), std::invalid_argument);
    auto& c = r.counter("c", "h", {"a", "b"});
    CHECK_THROWS_AS(c.inc({"only one"}), std::invalid_argument);
    CHECK(c.seriesCount() == 0);
    CHECK(validMetricName("taskhub:x_y"));
    CHECK_FALSE(validLabelName("a:b"));
}

TEST_CASE("retainLabelValues drops the series of removed values in every family with that label", "[metrics]") {
    Registry r;
    auto& c = r.counter("c", "h", {"workflow", "state"});
    auto& h = r.histogram("d", "h", {"workflow"}, {1});
    auto& g = r.gauge("g", "h", {"plugin"});
    c.inc({"keep", "failed"});
    c.inc({"gone", "failed"});
    h.observe({"gone"}, 0.5);
    h.observe({"keep"}, 0.5);
    g.set({"gone"}, 1);
    r.retainLabelValues("workflow", [](std::string_view w) { return w == "keep"; });
    CHECK(c.seriesCount() == 1);
    CHECK(c.find({"keep", "failed"}));
    CHECK(h.seriesCount() == 1);
    CHECK_FALSE(h.find({"gone"}));
    CHECK(g.seriesCount() == 1); // no workflow label: untouched
    CHECK_FALSE(contains(r.render(), "gone\",state"));
}

TEST_CASE("collectors write their own families after the registry's, before # EOF", "[metrics]") {
    Registry r;
    r.gauge("first", "h").set({}, 1);
    r.addCollector([](Writer& w) {
        w.family("other_notifications", Type::Counter, "from another module");
        w.sample("other_notifications_total", {{"event", "failure"}, {"target", "mail"}, {"result", "failed"}}, 3);
    });
    CHECK(r.render() ==
          "# TYPE first gauge\n"
          "# HELP first h\n"
          "first 1\n"
          "# TYPE other_notifications counter\n"
          "# HELP other_notifications from another module\n"
          "other_notifications_total{event=\"failure\",target=\"mail\",result=\"failed\"} 3\n"
          "# EOF\n");
}

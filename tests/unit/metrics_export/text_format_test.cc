// The text format 0.0.4 made from OpenMetrics, and content negotiation.
#include <catch2/catch.hpp>

#include "metrics_export/text_format.h"

using namespace taskhub::metrics_export;

TEST_CASE("OpenMetrics becomes the text format node_exporter's parser reads", "[text_format]") {
    const std::string om = R"(# HELP taskhub_runs_finished Runs that ended, by \"state\".
# TYPE taskhub_runs_finished counter
taskhub_runs_finished_total{workflow="a",state="succeeded"} 3
taskhub_runs_finished_created{workflow="a",state="succeeded"} 1.7e9
# HELP taskhub_run_duration_seconds Run durations.
# TYPE taskhub_run_duration_seconds histogram
# UNIT taskhub_run_duration_seconds seconds
taskhub_run_duration_seconds_bucket{workflow="a",le="1.0"} 2 # {trace_id="x y"} 0.5
taskhub_run_duration_seconds_bucket{workflow="a",le="+Inf"} 3
taskhub_run_duration_seconds_sum{workflow="a"} 4.5
taskhub_run_duration_seconds_count{workflow="a"} 3
taskhub_run_duration_seconds_created{workflow="a"} 1.7e9
# HELP taskhub_build Version.
# TYPE taskhub_build info
taskhub_build_info{version="1.0"} 1
# TYPE taskhub_tasks_running gauge
taskhub_tasks_running 2 1700000000.5
# TYPE taskhub_mode stateset
taskhub_mode{taskhub_mode="a"} 1
# TYPE taskhub_odd unknown
taskhub_odd 1
# EOF
)";
    CHECK(toPrometheusText(om) == R"(# HELP taskhub_runs_finished_total Runs that ended, by "state".
# TYPE taskhub_runs_finished_total counter
taskhub_runs_finished_total{workflow="a",state="succeeded"} 3
# HELP taskhub_run_duration_seconds Run durations.
# TYPE taskhub_run_duration_seconds histogram
taskhub_run_duration_seconds_bucket{workflow="a",le="1.0"} 2
taskhub_run_duration_seconds_bucket{workflow="a",le="+Inf"} 3
taskhub_run_duration_seconds_sum{workflow="a"} 4.5
taskhub_run_duration_seconds_count{workflow="a"} 3
# HELP taskhub_build_info Version.
# TYPE taskhub_build_info gauge
taskhub_build_info{version="1.0"} 1
# TYPE taskhub_tasks_running gauge
taskhub_tasks_running 2
# TYPE taskhub_mode gauge
taskhub_mode{taskhub_mode="a"} 1
# TYPE taskhub_odd untyped
taskhub_odd 1
)");
}

TEST_CASE("label values with spaces, '#', braces and escapes survive the conversion", "[text_format]") {
    const std::string om = "# TYPE taskhub_x gauge\n"
                           "taskhub_x{workflow=\"a # b } \\\" \\\\ \\n c\"} 7 # {a=\"1\"} 1\n"
                           "# EOF\n";
    CHECK(toPrometheusText(om) == "# TYPE taskhub_x gauge\n"
                                  "taskhub_x{workflow=\"a # b } \\\" \\\\ \\n c\"} 7\n");
}

TEST_CASE("braces and spaces inside label values do not confuse the fast path", "[text_format]") {
    CHECK(toPrometheusText("# TYPE x gauge\nx{a=\"} {\",b=\"x y\"} 1 1700000000\nx 2\n# EOF\n") ==
          "# TYPE x gauge\nx{a=\"} {\",b=\"x y\"} 1\nx 2\n");
}

TEST_CASE("HELP keeps the escapes the text format allows", "[text_format]") {
    CHECK(toPrometheusText("# HELP m a \\\\ b \\n c \\\" d\n# TYPE m gauge\nm 1\n# EOF\n") ==
          "# HELP m a \\\\ b \\n c \" d\n# TYPE m gauge\nm 1\n");
}

TEST_CASE("gauge histograms keep their samples, untyped", "[text_format]") {
    CHECK(toPrometheusText("# HELP g q\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum 2\n# EOF\n") ==
          "g_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum 2\n");
}

TEST_CASE("content negotiation follows the Accept header's q-values", "[text_format]") {
    // What Prometheus 2.x sends when it may use OpenMetrics.
    CHECK(wantsOpenMetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                           "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"));
    CHECK(wantsOpenMetrics("application/openmetrics-text"));
    CHECK(wantsOpenMetrics("Application/OpenMetrics-Text; version=\"1.0.0\"; charset=utf-8"));
    CHECK(wantsOpenMetrics("text/plain;q=0.5, application/openmetrics-text;q=0.5"));
    // What Prometheus sends without OpenMetrics, curl, and others.
    CHECK_FALSE(wantsOpenMetrics("text/plain;version=0.0.4;q=1,*/*;q=0.1"));
    CHECK_FALSE(wantsOpenMetrics("*/*"));
    CHECK_FALSE(wantsOpenMetrics(""));
    CHECK_FALSE(wantsOpenMetrics("application/json"));
    CHECK_FALSE(wantsOpenMetrics("application/openmetrics-text;q=0"));
    CHECK_FALSE(wantsOpenMetrics("application/openmetrics-text;version=2.0.0"));
    CHECK_FALSE(wantsOpenMetrics("application/openmetrics-text;q=0.5,text/plain"));
    CHECK_FALSE(wantsOpenMetrics("application/openmetrics-text;q=bogus"));
    CHECK_FALSE(wantsOpenMetrics(",,;;==,"));
}

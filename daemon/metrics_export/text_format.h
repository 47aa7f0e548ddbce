// The two text formats a Prometheus scraper reads, and which one a client asked for.
//
// The metrics module renders OpenMetrics 1.0 (application/openmetrics-text). node_exporter's
// textfile collector and clients that do not ask for OpenMetrics read the older Prometheus text
// format 0.0.4 (text/plain; version=0.0.4), whose parser (Go's expfmt.TextParser) refuses or
// misreads parts of OpenMetrics: it has no "# EOF" line, no "# UNIT", no exemplars; a counter's
// family is named with its _total suffix; "_created" samples would become stray untyped series;
// HELP text may escape only backslash and newline; node_exporter refuses a file whose samples
// carry timestamps. toPrometheusText() converts.
//
// Pure functions; any thread.
#ifndef TASKHUB_METRICS_EXPORT_TEXT_FORMAT_H
#define TASKHUB_METRICS_EXPORT_TEXT_FORMAT_H

#include <string>
#include <string_view>

namespace taskhub::metrics_export {

inline constexpr std::string_view kOpenMetricsContentType =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
inline constexpr std::string_view kPrometheusTextContentType = "text/plain; version=0.0.4; charset=utf-8";

// The Prometheus text format 0.0.4 of an OpenMetrics exposition:
// - "# EOF" and "# UNIT" lines are left out;
// - counter families are named NAME_total in HELP and TYPE, and their NAME_created samples are
//   left out (as are those of histograms and summaries);
// - info families become gauges named NAME_info, stateset families gauges, unknown families
//   untyped; gaugehistogram families lose their HELP and TYPE (their samples stay, untyped);
// - exemplars and sample timestamps are left out;
// - HELP text keeps the escapes \\ and \n, and \" becomes ".
std::string toPrometheusText(std::string_view openmetrics);

// Whether an HTTP Accept header prefers OpenMetrics (application/openmetrics-text, version 1.0.0,
// 0.0.1 or none) to the text format (text/plain, version 0.0.4 or none; text/*; */*), by the
// q-values of RFC 9110: OpenMetrics when a range naming it has q > 0 and no text range has a
// higher q (a client that names OpenMetrics at all, at equal weight, gets it). An absent or empty
// header, and one naming neither, mean the text format.
bool wantsOpenMetrics(std::string_view accept);

} // namespace taskhub::metrics_export

#endif // TASKHUB_METRICS_EXPORT_TEXT_FORMAT_H

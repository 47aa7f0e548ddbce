// Wall-clock helpers shared by every module: millisecond timestamps, ISO 8601 formatting and
// the duration syntax of workflow files ("90s", "20m", "2h", "1d", "500ms"). Pure functions.
#ifndef TASKHUB_COMMON_TIME_UTIL_H
#define TASKHUB_COMMON_TIME_UTIL_H

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace taskhub {

using Millis = std::chrono::milliseconds;
using SysMillis = std::chrono::sys_time<std::chrono::milliseconds>;

// Milliseconds since the Unix epoch, from the system (wall) clock.
int64_t nowMillis();

// "2026-11-22T10:23:17.123Z" (UTC, millisecond precision).
std::string formatIsoMillis(int64_t epoch_ms);
// "2026-11-22T10:23:17Z" (UTC, whole seconds).
std::string formatIsoSeconds(std::chrono::sys_seconds t);
// "20261122T102317Z": compact UTC form used inside run ids.
std::string formatCompactUtc(std::chrono::sys_seconds t);

// Parses an ISO 8601 instant with its offset: "2026-12-24T18:00:00+01:00", "…Z", seconds
// optional ("2026-12-24T18:00+01:00"), 'T' or one space between date and time. On error returns
// std::nullopt and sets *err to what is wrong and what would be right.
std::optional<std::chrono::sys_seconds> parseIsoInstant(std::string_view text, std::string* err);

// Parses "<n><unit>" with unit ms, s, m, h or d, or a sequence of such ("1h30m"). On error
// returns std::nullopt and sets *err to what is wrong and what would be right.
std::optional<Millis> parseDuration(std::string_view text, std::string* err);
// Inverse of parseDuration for display: "1h30m", "250ms", "0s".
std::string formatDuration(Millis d);

} // namespace taskhub

#endif // TASKHUB_COMMON_TIME_UTIL_H

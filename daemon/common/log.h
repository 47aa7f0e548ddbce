// Logging for the daemon. Every message that an operator may act on starts with a stable id in
// the form MODULE_WHAT (e.g. "ENGINE_RUN_FAILED"), so log lines can be searched and documented.
// This header is cheap; spdlog itself is only included by log.cc and by .cc files that log.
#ifndef TASKHUB_COMMON_LOG_H
#define TASKHUB_COMMON_LOG_H

#include <string>

namespace taskhub::logging {

// Configures the default logger: to stderr (journald adds its own timestamps when stderr is not
// a terminal, so the pattern then leaves the time out). level: trace|debug|info|warn|error.
void init(const std::string& level);

} // namespace taskhub::logging

#endif // TASKHUB_COMMON_LOG_H

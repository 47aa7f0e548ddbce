// How long a failed task waits before its next attempt. Pure; shared by the engine and its tests.
#ifndef TASKHUB_ENGINE_RETRY_POLICY_H
#define TASKHUB_ENGINE_RETRY_POLICY_H

#include <algorithm>
#include <chrono>
#include <cmath>

#include "config/workflow.h"

namespace taskhub::engine {

// The delay after failed attempt number `attempt` (1-based): retry_delay * retry_backoff^(attempt-1),
// capped by retry_max_delay when that is set (and at about 31,000 years, so that it never
// overflows).
inline std::chrono::milliseconds retryDelay(const config::TaskDef& def, int attempt) {
    double ms = static_cast<double>(def.retry_delay.count()) * std::pow(def.retry_backoff, attempt - 1);
    if (def.retry_max_delay.count() > 0) ms = std::min(ms, static_cast<double>(def.retry_max_delay.count()));
    ms = std::min(ms, 1e15);
    return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_RETRY_POLICY_H

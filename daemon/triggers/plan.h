// Planning a workflow's time triggers: the instants its triggers fire at, pure (no clock, no
// I/O), shared by the scheduler (which fires them) and `taskhubctl next WORKFLOW` (which shows
// them).
//
// Threading: pure functions over immutable workflow definitions; callable from any thread.
#ifndef TASKHUB_TRIGGERS_PLAN_H
#define TASKHUB_TRIGGERS_PLAN_H

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include "config/workflow.h"

namespace taskhub::triggers {

struct PlannedFiring {
    size_t trigger = 0;                 // index into Workflow::triggers
    std::chrono::sys_seconds scheduled; // the instant the trigger names (its identity: run ids)
    std::chrono::sys_seconds due;       // scheduled + the workflow's stable jitter: when it fires
};

// What the plan needs to know about the daemon.
struct PlanContext {
    std::chrono::sys_seconds daemon_start{}; // anchor of `every` triggers without start_at
};

// The first firing of trigger `t` of `wf` whose scheduled instant is strictly after `after`, or
// std::nullopt when it never fires again (a one-off in the past, a cron expression that never
// matches, @reboot).
std::optional<PlannedFiring> nextFiring(const config::Workflow& wf, size_t t, std::chrono::sys_seconds after,
                                        const PlanContext& ctx);

// The next n firings of all of wf's time triggers whose scheduled instants are strictly after
// `after`, in order of due time (ties by trigger index).
std::vector<PlannedFiring> upcoming(const config::Workflow& wf, std::chrono::sys_seconds after, size_t n,
                                    const PlanContext& ctx);

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_PLAN_H

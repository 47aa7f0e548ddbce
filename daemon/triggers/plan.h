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

// The first firing of trigger `t` of `wf` that is still to come at `now`: its due instant is
// after now and its scheduled instant after `handled` (what the trigger handled already). A
// firing whose scheduled instant has passed but whose due instant has not (scheduled <= now <
// due, held back by jitter) is pending and is this firing: a restart or a re-plan between the
// two instants keeps it. `lookback` widens the window to firings scheduled after now - lookback
// (a reload passes the trigger's jitter before the edit, so that a firing pending under the old
// definition stays planned even when the new jitter made it due already).
std::optional<PlannedFiring> nextToCome(const config::Workflow& wf, size_t t, std::chrono::sys_seconds now,
                                        std::chrono::sys_seconds handled, const PlanContext& ctx,
                                        std::chrono::seconds lookback = std::chrono::seconds(0));

// The next n firings of all of wf's time triggers whose due instants are strictly after `now`
// (pending ones included, see nextToCome), in order of due time (ties by trigger index).
std::vector<PlannedFiring> upcoming(const config::Workflow& wf, std::chrono::sys_seconds now, size_t n,
                                    const PlanContext& ctx);

// Why firings were missed: the daemon was not running (restart), or it was running but could not
// fire them on time (late: suspend, a clock jump, a stalled loop).
struct MissedContext {
    bool restart = false;
    // restart: the workflow's last scheduled instant from the store, if it ever fired. A
    // workflow that never fired only misses its one-off `at` triggers; `every` triggers without
    // start_at continue the grid of that last firing.
    std::optional<std::chrono::sys_seconds> last_recorded;
};

// The firings of wf's time triggers whose scheduled instants are in (max(from, last[t]), now]
// and whose due instants are at most now, oldest first; an instant named by several triggers is
// one firing (one run). last[t] is what trigger t handled already. At most `cap` firings per
// trigger are looked at.
std::vector<PlannedFiring> missedFirings(const config::Workflow& wf, std::chrono::sys_seconds from,
                                         std::chrono::sys_seconds now,
                                         const std::vector<std::chrono::sys_seconds>& last,
                                         const MissedContext& why, const PlanContext& ctx, size_t cap);

// What the catch-up policy runs of `missed` (oldest first): none, the latest, or all of them
// oldest first but at most `max_all` (the oldest beyond that are dropped).
struct CatchupChoice {
    std::vector<PlannedFiring> run; // oldest first
    size_t dropped = 0;             // catchup = all: missed firings not run because of max_all
};
CatchupChoice chooseCatchup(config::Catchup policy, const std::vector<PlannedFiring>& missed, size_t max_all);

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_PLAN_H

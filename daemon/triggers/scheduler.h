// Time triggers: one timer for the whole schedule. Holds the next firing of every time trigger
// (cron, every, at) of every workflow in a priority queue and sleeps on one CLOCK_REALTIME
// timerfd armed for the earliest; idle cost is that one armed timer, whatever the number of
// workflows. The timer is armed with TFD_TIMER_CANCEL_ON_SET: when the system clock is set, the
// scheduler wakes at once and looks again, so a jump forward runs the catch-up rules for what it
// skipped and a jump back never fires an instant twice (each trigger remembers the last instant
// it fired).
//
// Catch-up: firings whose instant passed while nothing could fire them (the daemon stopped, the
// machine suspended, the clock jumped, the loop was stalled for more than kLateLimit) are
// "missed". At start, each workflow's last scheduled instant comes from the store; the missed
// firings after it within the workflow's catchup_window are handled as its `catchup` says: none
// (logged only), latest (the most recent one fires), all (all fire, oldest first, at most
// kMaxCatchup, the older ones dropped with a warning naming how many). One-off `at` triggers of
// a workflow that never fired count as missed when their instant is within the window.
//
// A firing held back by jitter is pending between its scheduled and due instants; a restart, a
// reload or a catch-up in that time keeps it planned, and it fires at its due instant: no firing
// is lost without a record (a run, a skipped run, or a SCHED_MISSED / SCHED_CATCHUP_DROPPED line).
//
// @reboot triggers fire once per machine boot, at start, with the boot's instant as their
// scheduled instant (so the run id, and with it "fired in this boot", survives daemon restarts).
//
// Threading: event-loop thread only.
#ifndef TASKHUB_TRIGGERS_SCHEDULER_H
#define TASKHUB_TRIGGERS_SCHEDULER_H

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/workflow.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::triggers {

struct Firing {
    std::shared_ptr<const config::Workflow> workflow;
    size_t trigger = 0;
    std::chrono::sys_seconds instant; // the scheduled instant: the run's identity
    const char* label = "cron";       // the trigger kind: cron, every, at, reboot
    std::string note;                 // why it fires now when not on time, e.g. "catch-up: ..."
    std::string skip_reason;          // not empty: record the firing as skipped (workflow paused)
};

class Scheduler {
public:
    // A firing this late (or later) when the scheduler handles it counts as missed.
    static constexpr std::chrono::seconds kLateLimit{60};
    // Catch-up "all" fires at most this many firings per workflow.
    static constexpr size_t kMaxCatchup = 1000;

    using FireFn = std::function<void(const Firing&)>;
    // The latest scheduled instant recorded for a workflow (from the store), if any.
    using LastFiringFn = std::function<std::optional<std::chrono::sys_seconds>(const std::string& workflow)>;

    struct Options {
        std::chrono::sys_seconds daemon_start{}; // anchor of `every` triggers without start_at
        std::chrono::sys_seconds boot{};         // this machine boot's instant, for @reboot
        // The wall clock; tests give a fake one and call poll() (default: the system clock).
        std::function<std::chrono::system_clock::time_point()> clock;
    };

    // Plans nothing on its own until start() has given it its timer.
    Scheduler(boost::asio::io_context& io, Options options, FireFn fire, LastFiringFn last_firing);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Creates the timer (a timerfd on CLOCK_REALTIME) that wakes it when a firing is due. False
    // with *err (e.g. "timerfd_create(CLOCK_REALTIME): Too many open files") when it cannot: the
    // caller logs that; then no firing is due by itself (poll() still fires what is due), and the
    // rest of the scheduler (pauses, next firings) keeps working, as the watchers do without
    // inotify (common/inotify.h).
    bool start(std::string* err);

    // Replaces the set of scheduled workflows and plans each trigger's next firing. A workflow
    // seen for the first time since the daemon started gets its catch-up and @reboot firings
    // here; a workflow reloaded keeps what it last fired, and one whose definition is the same
    // object as before keeps its plan as it is.
    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs);
    void stop();
    // Fires what is due now (by the clock) and re-arms the timer: what the timer's wake-up does.
    void poll();

    // Pausing a workflow's schedule (`taskhubctl pause WORKFLOW`): while paused, its firings are
    // recorded as skipped runs with model::kPausedFiringMessage, and missed firings wait for
    // resume(). Runs already active are not touched.
    struct Pause {
        std::chrono::sys_seconds since{};
        std::string by; // e.g. "uid 0 (root)"
    };
    // Pauses remembered by the store, before the first setWorkflows().
    void restorePauses(std::map<std::string, Pause> pauses);
    void pause(const std::string& workflow, Pause p);
    // Ends a pause: the firings since the pause began (recorded as skipped, or missed while the
    // daemon was down) follow the workflow's catch-up rules. False when it was not paused.
    bool resume(const std::string& workflow);
    std::optional<Pause> paused(const std::string& workflow) const;

    // The next planned due instant of each trigger of a workflow (epoch 0 for a trigger that
    // will not fire again); empty when the workflow is unknown.
    std::vector<std::chrono::sys_seconds> nextFirings(const std::string& workflow) const;

    // The earliest planned firing of the workflows not paused (workflow name, due instant), for
    // the service status line; nullopt when none will fire. Walks every workflow's plan.
    struct Next {
        std::string workflow;
        std::chrono::sys_seconds due{};
    };
    std::optional<Next> earliestFiring() const;

    const Options& options() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The skip reason of a firing of a workflow paused as p (it starts with
// model::kPausedFiringMessage, which resume() looks for): also used for file drops.
std::string pausedFiringReason(const Scheduler::Pause& p);

// This boot's instant: boot_id and btime from /proc, remembered in state_dir/boot so that it does
// not move when the clock is stepped during the boot. Falls back to the daemon's start time (and
// logs why) when /proc cannot be read.
std::chrono::sys_seconds bootInstant(const std::string& state_dir);

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_SCHEDULER_H

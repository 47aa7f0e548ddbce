// Deadlines (`deadline = "45m"` in a workflow file): for every firing of a workflow's time
// triggers (cron, every, at) with scheduled instant S, if no run of that firing has succeeded by
// S + deadline (its due instant), the firing missed its deadline: logged as DEADLINE_MISSED,
// recorded once through the DeadlineBook, and handed to the miss callback.
//
// Which firings exist comes from the one schedule walker (triggers/plan.h): the watch walks each
// trigger's firings as their due instants pass, and after a restart lists the firings since the
// workflow's mark the way catch-up lists missed firings (missedFirings, with the same context).
// What became of a firing's run comes from the engine (runChanged, fed by an engine observer in
// app/) and, for runs from before a restart, from the book. Nothing polls history: one timer is
// armed for the earliest due instant of all watched workflows.
//
// Durable: per workflow a mark, the latest scheduled instant decided (met or missed); firings at
// or before it are never checked again, so a miss found after a restart is not found again after
// the next one. A workflow seen with a deadline for the first time is marked at that instant:
// firings from before the deadline was configured never count. After a long outage the watch
// checks back at most catchup_window and at most kMaxChecked firings per workflow (the newest);
// the older ones are passed over with one DEADLINE_UNCHECKED line.
//
// Threading: event-loop thread only.
#ifndef TASKHUB_TRIGGERS_DEADLINE_H
#define TASKHUB_TRIGGERS_DEADLINE_H

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/workflow.h"
#include "model/states.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::triggers {

// One firing that missed its deadline: what the miss callback and the book receive.
struct DeadlineMiss {
    std::string workflow;
    std::string run_id;                   // the firing's id, "<workflow>@<compact UTC instant>"
    std::chrono::sys_seconds scheduled{}; // S
    std::chrono::sys_seconds due{};       // S + deadline
    std::chrono::seconds deadline{0};
    std::chrono::sys_seconds detected{};  // when the watch found it (>= due)
    std::optional<model::RunState> run_state; // the firing's run then; nullopt: it has no run
    std::string reason; // "no run: taskhubd was not running", "still running", "failed: ...", ...
};

// What the watch is told about a run (engine observer, or the book after a restart).
struct FiringRun {
    std::string workflow;
    model::TriggerSource trigger = model::TriggerSource::Manual; // only cron, every and at count
    std::optional<std::chrono::sys_seconds> scheduled;           // the firing's instant
    model::RunState state = model::RunState::Queued;
    std::optional<std::chrono::system_clock::time_point> ended;
    std::string message;
    bool top_level = true;
};

// The durable side of the watch (app/ implements it over the store).
class DeadlineBook {
public:
    virtual ~DeadlineBook() = default;
    // The workflow's mark, if it has one.
    virtual std::optional<std::chrono::sys_seconds> mark(const std::string& workflow) = 0;
    // Sets the mark (it never moves back), or forgets it (nullopt: no deadline any more).
    virtual void setMark(const std::string& workflow, std::optional<std::chrono::sys_seconds> mark) = 0;
    // The workflow's recorded top-level runs of scheduled firings after `after`, at most limit.
    virtual std::vector<FiringRun> runsAfter(const std::string& workflow, std::chrono::sys_seconds after,
                                             size_t limit) = 0;
    // The scheduled instants after `after` of the workflow's recorded misses.
    virtual std::set<std::chrono::sys_seconds> missesAfter(const std::string& workflow,
                                                           std::chrono::sys_seconds after) = 0;
    virtual void recordMiss(const DeadlineMiss& miss) = 0;
    // The workflow's latest scheduled firing recorded (the scheduler's LastFiringFn).
    virtual std::optional<std::chrono::sys_seconds> lastFiring(const std::string& workflow) = 0;
};

class DeadlineWatch {
public:
    // Firings per workflow checked back after an outage, at most (the newest).
    static constexpr size_t kMaxChecked = 1000;

    using MissFn = std::function<void(const DeadlineMiss&)>;
    struct Options {
        std::chrono::sys_seconds daemon_start{}; // the scheduler's: anchor of `every` without start_at
        // The wall clock; tests give a fake one and call poll() (default: the system clock).
        std::function<std::chrono::system_clock::time_point()> clock;
    };

    // book must outlive the watch. on_miss is called after the miss is logged and handed to the
    // book, on the event loop; it must return quickly.
    DeadlineWatch(boost::asio::io_context& io, Options options, DeadlineBook& book, MissFn on_miss);
    ~DeadlineWatch();
    DeadlineWatch(const DeadlineWatch&) = delete;
    DeadlineWatch& operator=(const DeadlineWatch&) = delete;

    // Replaces the watched workflows (those with a deadline). Call it before the scheduler's
    // setWorkflows, so that the watch's view of a restart is taken before catch-up fires runs.
    // A workflow seen for the first time is checked back from its mark (or marked now); a
    // workflow whose deadline was removed, or that is no longer loaded (its file is gone), loses
    // its mark.
    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs);
    // A run was created, started or ended (engine observer).
    void runChanged(const FiringRun& run);
    // Decides what is due now (by the clock) and re-arms the timer: what the timer does.
    void poll();
    void stop();

    // The earliest instant at which a firing is due to be decided, if any (for tests).
    std::optional<std::chrono::sys_seconds> nextCheck() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_DEADLINE_H

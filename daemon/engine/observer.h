// What the engine tells the rest of the daemon about runs and attempts as they happen: the one
// seam through which metrics, notifications and deadlines learn of outcomes, without reading
// history back from the store. Observers are called on the event-loop thread, synchronously,
// right after the engine has handed the change to the store (so a record an observer adds after
// it is ordered after the change); they must not call back into the engine and must return
// quickly (queue anything slow).
#ifndef TASKHUB_ENGINE_OBSERVER_H
#define TASKHUB_ENGINE_OBSERVER_H

#include <string>
#include <vector>

#include "store/records.h"

namespace taskhub::engine {

class EngineObserver {
public:
    virtual ~EngineObserver() = default;

    // A run was created by a trigger: started, queued, or recorded as skipped (then run.state is
    // Skipped and runEnded does not follow). Child runs are not created by triggers; they start
    // with runStarted.
    virtual void runCreated(const store::RunRecord& run) { (void)run; }
    // A run started (run.started_ms set); also each child run.
    virtual void runStarted(const store::RunRecord& run) { (void)run; }
    // A run is about to reach its final state: run.state and run.ended_ms are final, and the
    // record saying so is handed to the store right after this call, so that a record an
    // observer adds now is durable whenever the run's end is (the store commits in order: the
    // notification outbox relies on it). run.tasks is empty; tasks as for runEnded.
    virtual void runEnding(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) {
        (void)run;
        (void)tasks;
    }
    // A run reached its final state (succeeded, failed or cancelled), also when recovery after a
    // crash found that it could not continue. run.tasks is empty; tasks holds each task's
    // record (its latest attempt), in the workflow's order. run.lost counts the attempts lost in
    // it and its child runs.
    virtual void runEnded(const store::RunRecord& run, const std::vector<const store::TaskRecord*>& tasks) {
        (void)run;
        (void)tasks;
    }
    // An attempt of a task ended (task.started_ms and task.ended_ms set). task.state is the
    // task's state after it: Retrying when another attempt follows, else final.
    virtual void attemptEnded(const store::RunRecord& run, const store::TaskRecord& task) {
        (void)run;
        (void)task;
    }
    // A task with on_failure = "continue" ended failed and its run absorbed the failure (its
    // failure_absorbed event was recorded; run.failures_absorbed counts it already).
    virtual void failureAbsorbed(const store::RunRecord& run, const store::TaskRecord& task) {
        (void)run;
        (void)task;
    }
    // Recovery after a crash found an attempt lost (its `lost` event was recorded).
    virtual void attemptLost(const store::RunRecord& run, const store::TaskRecord& task) {
        (void)run;
        (void)task;
    }
};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_OBSERVER_H

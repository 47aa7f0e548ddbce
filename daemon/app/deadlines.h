// The deadline watch's wiring (triggers/deadline.h): its durable side over the store, and the
// engine observer that tells it what became of each firing's run.
//
// Threading: event-loop thread only.
#ifndef TASKHUB_APP_DEADLINES_H
#define TASKHUB_APP_DEADLINES_H

#include <map>
#include <string>

#include "engine/observer.h"
#include "triggers/deadline.h"

namespace taskhub::store {
class Store;
}

namespace taskhub::app {

// DeadlineBook over the store: marks are read once (at construction) and kept in memory, writes
// go through the store's writer thread.
class StoreDeadlineBook final : public triggers::DeadlineBook {
public:
    explicit StoreDeadlineBook(store::Store& store);
    std::optional<std::chrono::sys_seconds> mark(const std::string& workflow) override;
    void setMark(const std::string& workflow, std::optional<std::chrono::sys_seconds> mark) override;
    std::vector<triggers::FiringRun> runsAfter(const std::string& workflow, std::chrono::sys_seconds after,
                                               size_t limit) override;
    std::set<std::chrono::sys_seconds> missesAfter(const std::string& workflow,
                                                   std::chrono::sys_seconds after) override;
    void recordMiss(const triggers::DeadlineMiss& miss) override;
    std::optional<std::chrono::sys_seconds> lastFiring(const std::string& workflow) override;

private:
    store::Store& store_;
    std::map<std::string, std::chrono::sys_seconds> marks_;
};

// What a run record says about its firing, for the watch.
triggers::FiringRun firingRun(const store::RunRecord& run);

// Hands every change of a run to the watch.
class DeadlineObserver final : public engine::EngineObserver {
public:
    explicit DeadlineObserver(triggers::DeadlineWatch& watch) : watch_(watch) {}
    void runCreated(const store::RunRecord& run) override { watch_.runChanged(firingRun(run)); }
    void runStarted(const store::RunRecord& run) override { watch_.runChanged(firingRun(run)); }
    void runEnded(const store::RunRecord& run, const std::vector<const store::TaskRecord*>&) override {
        watch_.runChanged(firingRun(run));
    }

private:
    triggers::DeadlineWatch& watch_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_DEADLINES_H

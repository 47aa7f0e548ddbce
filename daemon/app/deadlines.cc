#include "app/deadlines.h"

#include "store/store.h"

namespace taskhub::app {

using std::chrono::sys_seconds;

namespace {

sys_seconds fromMs(int64_t ms) {
    return std::chrono::floor<std::chrono::seconds>(std::chrono::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(ms)));
}

} // namespace

StoreDeadlineBook::StoreDeadlineBook(store::Store& store) : store_(store) {
    for (const auto& [workflow, ms] : store_.deadlineMarks()) marks_.emplace(workflow, fromMs(ms));
}

std::optional<sys_seconds> StoreDeadlineBook::mark(const std::string& workflow) {
    auto it = marks_.find(workflow);
    if (it == marks_.end()) return std::nullopt;
    return it->second;
}

void StoreDeadlineBook::setMark(const std::string& workflow, std::optional<sys_seconds> mark) {
    if (mark) {
        marks_[workflow] = *mark;
        store_.setDeadlineMark(workflow, mark->time_since_epoch().count() * 1000);
    } else if (marks_.erase(workflow)) {
        store_.setDeadlineMark(workflow, std::nullopt);
    }
}

std::vector<triggers::FiringRun> StoreDeadlineBook::runsAfter(const std::string& workflow, sys_seconds after,
                                                              size_t limit) {
    std::vector<triggers::FiringRun> out;
    for (const auto& r : store_.scheduledRuns(workflow, after.time_since_epoch().count() * 1000,
                                              static_cast<int>(limit))) {
        out.push_back(firingRun(r));
    }
    return out;
}

std::set<sys_seconds> StoreDeadlineBook::missesAfter(const std::string& workflow, sys_seconds after) {
    std::set<sys_seconds> out;
    for (const auto& m : store_.deadlineMisses(workflow, after.time_since_epoch().count() * 1000,
                                               static_cast<int>(triggers::DeadlineWatch::kMaxChecked))) {
        out.insert(fromMs(m.scheduled_ms));
    }
    return out;
}

void StoreDeadlineBook::recordMiss(const triggers::DeadlineMiss& miss) {
    store::DeadlineMissRecord r;
    r.workflow = miss.workflow;
    r.run_id = miss.run_id;
    r.scheduled_ms = miss.scheduled.time_since_epoch().count() * 1000;
    r.due_ms = miss.due.time_since_epoch().count() * 1000;
    r.deadline_s = miss.deadline.count();
    r.detected_ms = miss.detected.time_since_epoch().count() * 1000;
    r.run_state = miss.run_state;
    r.reason = miss.reason;
    store_.recordDeadlineMiss(r);
}

std::optional<sys_seconds> StoreDeadlineBook::lastFiring(const std::string& workflow) {
    auto ms = store_.lastScheduledMs(workflow);
    if (!ms) return std::nullopt;
    return fromMs(*ms);
}

triggers::FiringRun firingRun(const store::RunRecord& run) {
    triggers::FiringRun f;
    f.workflow = run.workflow;
    f.trigger = run.trigger;
    if (run.scheduled_ms) f.scheduled = fromMs(*run.scheduled_ms);
    f.state = run.state;
    if (run.ended_ms) f.ended = std::chrono::system_clock::time_point(std::chrono::milliseconds(*run.ended_ms));
    f.message = run.message;
    f.top_level = run.parent_run.empty();
    return f;
}

} // namespace taskhub::app

// Time triggers: one timer for the whole schedule. Holds the next firing instant of every cron
// trigger of every workflow in a priority queue, sleeps until the earliest, fires it, and plans
// that trigger's next firing. Idle cost is one armed timer, whatever the number of workflows.
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
    std::chrono::sys_seconds instant;
};

class Scheduler {
public:
    using FireFn = std::function<void(const Firing&)>;
    Scheduler(boost::asio::io_context& io, FireFn fire);
    ~Scheduler();
    Scheduler(const Scheduler&) = delete;
    Scheduler& operator=(const Scheduler&) = delete;

    // Replaces the set of scheduled workflows; plans each trigger's next firing after now.
    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs);
    void stop();

    // The next planned firing of each trigger of a workflow (empty when unknown or none).
    std::vector<std::chrono::sys_seconds> nextFirings(const std::string& workflow) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_SCHEDULER_H

#include "engine/ready_queues.h"

#include <utility>

namespace taskhub::engine {

ReadyQueues::ReadyQueues(int max_running_tasks, std::map<std::string, int> plugin_max_concurrency)
    : max_running_tasks_(max_running_tasks), plugin_max_concurrency_(std::move(plugin_max_concurrency)) {}

PluginQueue& ReadyQueues::queue(const std::string& key) {
    auto [it, added] = queues_.try_emplace(key);
    if (added && !key.empty()) it->second.limit = pluginLimit(key);
    return it->second;
}

ReadyItem ReadyQueues::push(PluginQueue& q, int run_priority, int priority, uint64_t run, uint32_t task) {
    ReadyItem item{run_priority, priority, ++next_seq_, run, task};
    q.heap.push(item);
    return item;
}

void ReadyQueues::park(const std::string& workflow, int limit, const ReadyItem& item) {
    auto& p = parked_[workflow];
    p.limit = limit;
    p.heap.push(item);
}

void ReadyQueues::setUnhealthy(const std::string& plugin, bool unhealthy) {
    auto& q = queue(plugin);
    if (q.unhealthy != unhealthy) {
        q.unhealthy = unhealthy;
        if (unhealthy) ++unhealthy_;
        else --unhealthy_;
    }
}

bool ReadyQueues::isUnhealthy(const std::string& plugin) const {
    if (unhealthy_ == 0) return false;
    auto it = queues_.find(plugin);
    return it != queues_.end() && it->second.unhealthy;
}

bool ReadyQueues::globalLimitReached() const {
    return max_running_tasks_ > 0 && running_ >= static_cast<size_t>(max_running_tasks_);
}

int ReadyQueues::pluginLimit(const std::string& plugin) const {
    auto lim = plugin_max_concurrency_.find(plugin);
    return lim == plugin_max_concurrency_.end() ? 0 : lim->second;
}

bool ReadyQueues::pluginLimitReached(const std::string& plugin) const {
    auto it = queues_.find(plugin);
    return it != queues_.end() && atLimit(it->second);
}

std::string ReadyQueues::waitingReason(const std::string& key, const std::string& workflow, int max_parallel_tasks,
                                       int workflow_running) const {
    if (workflowLimitReached(max_parallel_tasks, workflow_running)) {
        return "waiting: workflow '" + workflow + "' is at max_parallel_tasks (" + std::to_string(max_parallel_tasks) +
               ")";
    }
    if (!key.empty() && pluginLimitReached(key)) {
        return "waiting: plugin '" + key + "' is at max_concurrency (" + std::to_string(pluginLimit(key)) + ")";
    }
    if (!key.empty() && globalLimitReached()) {
        return "waiting: max_running_tasks (" + std::to_string(max_running_tasks_) + ") reached";
    }
    return "waiting: starting";
}

} // namespace taskhub::engine

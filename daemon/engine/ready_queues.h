// Ready tasks waiting for a slot, and the limits that decide which one starts next: like ninja's
// Pool. One queue per plugin (highest workflow priority first, then the highest task priority,
// then first come, first served), the global max_running_tasks, each plugin's max_concurrency
// and health, and each workflow's max_parallel_tasks (a task held back by it is parked until its
// workflow has room).
//
// It knows no runs, no clock and no Asio: a task is an entry (run serial, task index, seq), and
// whether an entry is still live (the task still ready, not cancelled, started or queued again)
// is asked of the caller.
#ifndef TASKHUB_ENGINE_READY_QUEUES_H
#define TASKHUB_ENGINE_READY_QUEUES_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <vector>

namespace taskhub::engine {

struct ReadyItem {
    int run_priority = 0; // its run's priority (the workflow's; a child run's may be its parent's)
    int priority = 0;     // the task's own
    uint64_t seq = 0;
    uint64_t run = 0; // Run::serial
    uint32_t task = 0;
};

// Highest run (workflow) priority first, then the highest task priority, then first come, first
// served. True when a starts after b.
struct ItemOrder {
    bool operator()(const ReadyItem& a, const ReadyItem& b) const {
        if (a.run_priority != b.run_priority) return a.run_priority < b.run_priority;
        return a.priority != b.priority ? a.priority < b.priority : a.seq > b.seq;
    }
};

using ReadyHeap = std::priority_queue<ReadyItem, std::vector<ReadyItem>, ItemOrder>;

// A plugin's ready tasks with what decides whether one may start: how many of its attempts
// run, its max_concurrency, its health. Nodes of a std::map never move, so tasks and runs keep
// pointers to their queue and counter instead of looking names up per dispatch.
struct PluginQueue {
    ReadyHeap heap;
    int running = 0;
    int limit = 0;          // max_concurrency; 0 = unlimited
    bool unhealthy = false; // as PluginHost::dispatchable() said at the last transition
};

class ReadyQueues {
public:
    // max_running_tasks: 0 = unlimited; plugin_max_concurrency: per plugin, absent or 0 = unlimited.
    ReadyQueues(int max_running_tasks, std::map<std::string, int> plugin_max_concurrency);

    // The queue of a plugin's ready tasks, made on first use. "" holds workflow tasks, which
    // start child runs and are held back by no plugin or global limit (a parent waiting on a
    // slot its own child needs could never finish).
    PluginQueue& queue(const std::string& key);

    // A ready task joins q; the entry returned (its seq) is the task's live entry.
    ReadyItem push(PluginQueue& q, int run_priority, int priority, uint64_t run, uint32_t task);

    // An attempt of q's plugin started or ended.
    void started(PluginQueue& q) {
        ++running_;
        ++q.running;
    }
    void ended(PluginQueue& q) {
        --running_;
        --q.running;
    }
    size_t running() const { return running_; }

    // How many tasks of a workflow run now (a run keeps a pointer to it: map nodes never move).
    int& workflowRunning(const std::string& workflow) { return workflow_running_[workflow]; }
    static bool workflowLimitReached(int max_parallel_tasks, int running) {
        return max_parallel_tasks > 0 && running >= max_parallel_tasks;
    }
    // Holds a ready task back for its workflow's max_parallel_tasks (limit) until there is room.
    void park(const std::string& workflow, int limit, const ReadyItem& item);

    // A plugin's health as PluginHost::dispatchable() said at its last transition.
    void setUnhealthy(const std::string& plugin, bool unhealthy);
    bool isUnhealthy(const std::string& plugin) const;

    bool globalLimitReached() const;
    int pluginLimit(const std::string& plugin) const;
    static bool atLimit(const PluginQueue& q) { return q.limit > 0 && q.running >= q.limit; }
    bool pluginLimitReached(const std::string& plugin) const;

    // Why a ready task waits when neither a pause nor its plugin's health holds it: its
    // workflow's, its plugin's or the global limit, else it is about to start. key is its queue
    // (its plugin, "" for a workflow task).
    std::string waitingReason(const std::string& key, const std::string& workflow, int max_parallel_tasks,
                              int workflow_running) const;

    // The entry to take next, taken off its queue: the best live entry of the queues whose
    // limits allow a start (in ItemOrder: run priority, task priority, then the oldest), or,
    // first, the top entry of an unhealthy plugin whose tasks fail at once
    // (fails_when_unhealthy(plugin)); then `unhealthy` names that plugin. Stale entries met on the
    // way are dropped. live(item) says whether an entry is still its task's live entry. Cost: the
    // number of queues.
    struct Next {
        ReadyItem item;
        const std::string* unhealthy = nullptr; // its tasks fail at once (on_unhealthy = fail)
    };
    template <class Live, class FailsWhenUnhealthy>
    std::optional<Next> next(Live&& live, FailsWhenUnhealthy&& fails_when_unhealthy);

    // Parked tasks of workflows with room compete for a slot again (as many as there is room;
    // dispatch checks the limit once more). queue_of(item) is the queue a live entry goes back
    // to, or null when the entry is stale.
    template <class QueueOf>
    void unpark(QueueOf&& queue_of);

private:
    // Held back by a workflow's max_parallel_tasks.
    struct Parked {
        int limit = 0;
        ReadyHeap heap;
    };

    int max_running_tasks_ = 0;
    std::map<std::string, int> plugin_max_concurrency_;
    std::map<std::string, PluginQueue> queues_; // by plugin; "" holds workflow tasks
    std::map<std::string, Parked> parked_;      // by workflow name
    std::map<std::string, int> workflow_running_;
    uint64_t next_seq_ = 0;
    size_t running_ = 0;
    size_t unhealthy_ = 0; // queues marked unhealthy
};

template <class Live, class FailsWhenUnhealthy>
std::optional<ReadyQueues::Next> ReadyQueues::next(Live&& live, FailsWhenUnhealthy&& fails_when_unhealthy) {
    ReadyHeap* best = nullptr;
    const std::string* unhealthy = nullptr;
    for (auto& [plugin, q] : queues_) {
        auto& heap = q.heap;
        while (!heap.empty() && !live(heap.top())) heap.pop();
        if (heap.empty()) continue;
        if (q.unhealthy) {
            if (!fails_when_unhealthy(plugin)) continue; // held until it recovers
            best = &heap;
            unhealthy = &plugin;
            break;
        }
        if (!plugin.empty() && (globalLimitReached() || atLimit(q))) continue;
        if (!best || ItemOrder{}(best->top(), heap.top())) best = &heap;
    }
    if (!best) return std::nullopt;
    Next out{best->top(), unhealthy};
    best->pop();
    return out;
}

template <class QueueOf>
void ReadyQueues::unpark(QueueOf&& queue_of) {
    for (auto& [name, p] : parked_) {
        if (p.heap.empty()) continue;
        auto cur = workflow_running_.find(name);
        int room = p.limit - (cur == workflow_running_.end() ? 0 : cur->second);
        while (room > 0 && !p.heap.empty()) {
            ReadyItem item = p.heap.top();
            p.heap.pop();
            PluginQueue* q = queue_of(item);
            if (!q) continue;
            q->heap.push(item);
            --room;
        }
    }
}

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_READY_QUEUES_H

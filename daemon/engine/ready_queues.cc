// Ready tasks waiting for a slot: per-plugin queues by priority, the global, per-plugin and
// per-workflow limits, and parking of tasks held back by their workflow's max_parallel_tasks.
#include "engine/engine_state.h"

namespace taskhub::engine {

PluginQueue& Core::queueNamed(const std::string& key) {
    auto [it, added] = ready.try_emplace(key);
    if (added && !key.empty()) it->second.limit = pluginLimit(key);
    return it->second;
}

PluginQueue& Core::queueOf(TaskRun& task) {
    if (!task.queue) task.queue = &queueNamed(queueKey(*task.def));
    return *task.queue;
}

void Core::enqueue(Run& run, uint32_t t) {
    auto& task = run.tasks[t];
    ReadyItem item{task.def->priority, ++next_seq, run.serial, t};
    task.ready_seq = item.seq;
    auto& q = queueOf(task);
    q.heap.push(item);
    if (q.unhealthy) holdForPlugin(run, t);
}

// The run and task of a queue entry, or null when the entry is stale (the task was
// cancelled, or started, or queued again since).
std::pair<Run*, uint32_t> Core::live(const ReadyItem& item) {
    auto it = by_serial.find(item.run);
    if (it == by_serial.end()) return {nullptr, 0};
    auto& task = it->second->tasks[item.task];
    if (task.st != TS::Ready || task.ready_seq != item.seq) return {nullptr, 0};
    return {it->second, item.task};
}

void Core::dropStale(ReadyHeap& heap) {
    while (!heap.empty() && !live(heap.top()).first) heap.pop();
}

bool Core::globalLimitReached() const {
    return opts.max_running_tasks > 0 && running_tasks >= static_cast<size_t>(opts.max_running_tasks);
}

int Core::pluginLimit(const std::string& plugin) const {
    auto lim = opts.plugin_max_concurrency.find(plugin);
    return lim == opts.plugin_max_concurrency.end() ? 0 : lim->second;
}

bool Core::atLimit(const PluginQueue& q) { return q.limit > 0 && q.running >= q.limit; }

bool Core::pluginLimitReached(const std::string& plugin) const {
    auto it = ready.find(plugin);
    return it != ready.end() && atLimit(it->second);
}

bool Core::workflowLimitReached(const Run& run) {
    return run.wf->max_parallel_tasks > 0 && *run.wf_running >= run.wf->max_parallel_tasks;
}

// Starts ready tasks while the limits allow, always the best waiting one first: highest
// priority, then the oldest. Cost per start is the number of plugins, not of waiting tasks.
void Core::pump() {
    for (;;) {
        unpark();
        ReadyHeap* best = nullptr;
        const std::string* unhealthy = nullptr; // its tasks fail at once (on_unhealthy = fail)
        for (auto& [plugin, q] : ready) {
            auto& heap = q.heap;
            dropStale(heap);
            if (heap.empty()) continue;
            if (q.unhealthy) {
                if (!failsWhenUnhealthy(plugin)) continue; // held until it recovers
                best = &heap;
                unhealthy = &plugin;
                break;
            }
            if (!plugin.empty() && (globalLimitReached() || atLimit(q))) continue;
            if (!best || ItemOrder{}(best->top(), heap.top())) best = &heap;
        }
        if (!best) {
            flushLaunches();
            return;
        }
        ReadyItem item = best->top();
        best->pop();
        Run& run = *by_serial.at(item.run);
        if (run.paused) {
            run.held.push_back(item);
            continue;
        }
        if (unhealthy) {
            failUnstarted(run, item.task, unhealthyText(*unhealthy) + " (on_unhealthy = fail)");
            continue;
        }
        if (workflowLimitReached(run)) {
            auto& p = parked[run.wf->name];
            p.limit = run.wf->max_parallel_tasks;
            p.heap.push(item);
            continue;
        }
        dispatch(run, item.task);
    }
}

// A task of this workflow stopped running: one parked task may compete for a slot again.
// Parked tasks of workflows with room compete for a slot again (as many as there is room;
// dispatch checks the limit once more). Called at the start of every pump(), so that a slot
// is offered again even when the task it was offered to went to a paused run or was
// cancelled meanwhile.
void Core::unpark() {
    for (auto& [name, p] : parked) {
        if (p.heap.empty()) continue;
        auto cur = workflow_running.find(name);
        int room = p.limit - (cur == workflow_running.end() ? 0 : cur->second);
        while (room > 0 && !p.heap.empty()) {
            ReadyItem item = p.heap.top();
            p.heap.pop();
            auto [run, t] = live(item);
            if (!run) continue;
            queueOf(run->tasks[t]).heap.push(item);
            --room;
        }
    }
}

} // namespace taskhub::engine

#include "pool/worker_pool.h"

#include <algorithm>

#include <pthread.h>

namespace taskhub::pool {

WorkerPool::WorkerPool(size_t min_workers, size_t max_workers, std::chrono::milliseconds idle_timeout)
    : min_(std::min(min_workers, std::max<size_t>(max_workers, 1))),
      max_(std::max<size_t>(max_workers, 1)),
      idle_timeout_(idle_timeout) {
    std::lock_guard lock(s_->mu);
    for (size_t i = 0; i < min_; ++i) spawnLocked();
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
    std::vector<std::thread> threads;
    std::set<std::thread::id> let_go;
    {
        std::lock_guard lock(s_->mu);
        s_->stopping = true;
        threads.swap(s_->threads);
        let_go = s_->let_go;
    }
    s_->cv.notify_all();
    for (auto& t : threads) {
        if (!t.joinable()) continue;
        if (let_go.count(t.get_id())) t.detach();
        else t.join();
    }
}

void WorkerPool::letGo(std::thread::id id) {
    std::lock_guard lock(s_->mu);
    auto it = std::find_if(s_->threads.begin(), s_->threads.end(),
                           [id](const std::thread& t) { return t.get_id() == id; });
    if (it != s_->threads.end()) s_->let_go.insert(id);
}

void WorkerPool::spawnLocked() {
    State& s = *s_;
    // Join threads that exited on their idle timeout, so handles do not accumulate.
    for (auto id : s.exited) {
        auto it = std::find_if(s.threads.begin(), s.threads.end(),
                               [id](const std::thread& t) { return t.get_id() == id; });
        if (it != s.threads.end()) {
            it->join();
            s.threads.erase(it);
        }
    }
    s.exited.clear();
    ++s.alive;
    s.peak = std::max(s.peak, s.alive);
    s.threads.emplace_back([state = s_, min = min_, idle_timeout = idle_timeout_] {
        pthread_setname_np(pthread_self(), "taskhubd-worker"); // as top -H and /proc show it
        workerLoop(*state, min, idle_timeout);
    });
}

void WorkerPool::post(std::function<void()> job) {
    {
        std::lock_guard lock(s_->mu);
        if (s_->stopping) return;
        s_->jobs.push_back(std::move(job));
        if (s_->idle < s_->jobs.size() && s_->alive < max_) spawnLocked();
    }
    s_->cv.notify_one();
}

void WorkerPool::workerLoop(State& s, size_t min_workers, std::chrono::milliseconds idle_timeout) {
    const auto self = std::this_thread::get_id();
    std::unique_lock lock(s.mu);
    bool let_go = false;
    for (;;) {
        if (s.let_go.count(self)) {
            let_go = true; // its job returned after all: nothing more runs on it
            break;
        }
        if (!s.jobs.empty()) {
            auto job = std::move(s.jobs.front());
            s.jobs.pop_front();
            lock.unlock();
            job();
            job = nullptr; // what the job holds goes before the lock is taken again
            lock.lock();
            continue;
        }
        if (s.stopping) break;
        ++s.idle;
        bool woke = s.cv.wait_for(lock, idle_timeout, [&s] { return s.stopping || !s.jobs.empty(); });
        --s.idle;
        if (!woke && s.alive > min_workers) break; // idle too long and more than the minimum remain
    }
    --s.alive;
    // A thread let go is detached by stop(), or, before a stop, there when stop() comes.
    if (!s.stopping && !let_go) s.exited.push_back(self);
}

size_t WorkerPool::threads() const {
    std::lock_guard lock(s_->mu);
    return s_->alive;
}

size_t WorkerPool::idle() const {
    std::lock_guard lock(s_->mu);
    return s_->idle;
}

size_t WorkerPool::queued() const {
    std::lock_guard lock(s_->mu);
    return s_->jobs.size();
}

size_t WorkerPool::peakThreads() const {
    std::lock_guard lock(s_->mu);
    return s_->peak;
}

size_t WorkerPool::letGone() const {
    std::lock_guard lock(s_->mu);
    return s_->let_go.size();
}

} // namespace taskhub::pool

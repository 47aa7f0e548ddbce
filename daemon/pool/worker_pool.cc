#include "pool/worker_pool.h"

#include <algorithm>

#include <pthread.h>

namespace taskhub::pool {

WorkerPool::WorkerPool(size_t min_workers, size_t max_workers, std::chrono::milliseconds idle_timeout)
    : min_(std::min(min_workers, std::max<size_t>(max_workers, 1))),
      max_(std::max<size_t>(max_workers, 1)),
      idle_timeout_(idle_timeout) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < min_; ++i) spawnLocked();
}

WorkerPool::~WorkerPool() { stop(); }

void WorkerPool::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) {
        if (t.joinable()) t.join();
    }
}

void WorkerPool::spawnLocked() {
    // Join threads that exited on their idle timeout, so handles do not accumulate.
    for (auto id : exited_) {
        auto it = std::find_if(threads_.begin(), threads_.end(),
                               [id](const std::thread& t) { return t.get_id() == id; });
        if (it != threads_.end()) {
            it->join();
            threads_.erase(it);
        }
    }
    exited_.clear();
    ++alive_;
    peak_ = std::max(peak_, alive_);
    threads_.emplace_back([this] {
        pthread_setname_np(pthread_self(), "taskhubd-worker"); // as top -H and /proc show it
        workerLoop();
    });
}

void WorkerPool::post(std::function<void()> job) {
    {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        jobs_.push_back(std::move(job));
        if (idle_ < jobs_.size() && alive_ < max_) spawnLocked();
    }
    cv_.notify_one();
}

void WorkerPool::workerLoop() {
    std::unique_lock lock(mu_);
    for (;;) {
        if (!jobs_.empty()) {
            auto job = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            job();
            lock.lock();
            continue;
        }
        if (stopping_) break;
        ++idle_;
        bool woke = cv_.wait_for(lock, idle_timeout_, [this] { return stopping_ || !jobs_.empty(); });
        --idle_;
        if (!woke && alive_ > min_) break; // idle too long and more than the minimum remain
    }
    --alive_;
    if (!stopping_) exited_.push_back(std::this_thread::get_id());
}

size_t WorkerPool::threads() const {
    std::lock_guard lock(mu_);
    return alive_;
}

size_t WorkerPool::idle() const {
    std::lock_guard lock(mu_);
    return idle_;
}

size_t WorkerPool::queued() const {
    std::lock_guard lock(mu_);
    return jobs_.size();
}

size_t WorkerPool::peakThreads() const {
    std::lock_guard lock(mu_);
    return peak_;
}

} // namespace taskhub::pool

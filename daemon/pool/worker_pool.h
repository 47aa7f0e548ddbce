// Elastic pool of worker threads for plugin calls that block: today, execute() of a plugin that
// declares TH_CAP_BLOCKING_EXECUTE. Nothing that waits for another task ever runs here: jobs are
// plain calls that return.
//
// Sizing: starts min_workers threads; post() starts another thread when no worker is idle and
// fewer than max_workers exist (the hard cap; beyond it jobs queue in FIFO order); a worker that
// stays idle for idle_timeout exits while more than min_workers remain.
//
// Threading: post() and the observers are thread-safe. The destructor (or stop()) lets queued
// jobs finish and joins every thread.
#ifndef TASKHUB_POOL_WORKER_POOL_H
#define TASKHUB_POOL_WORKER_POOL_H

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace taskhub::pool {

class WorkerPool {
public:
    WorkerPool(size_t min_workers, size_t max_workers, std::chrono::milliseconds idle_timeout);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    void post(std::function<void()> job);
    void stop();

    size_t threads() const;      // live worker threads
    size_t idle() const;         // of those, waiting for work
    size_t queued() const;       // jobs not yet started
    size_t maxWorkers() const noexcept { return max_; }
    size_t peakThreads() const;  // most threads alive at once

private:
    void spawnLocked();
    void workerLoop();

    const size_t min_;
    const size_t max_;
    const std::chrono::milliseconds idle_timeout_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    std::vector<std::thread> threads_;  // includes exited threads until reaped
    std::vector<std::thread::id> exited_;
    size_t alive_ = 0;
    size_t idle_ = 0;
    size_t peak_ = 0;
    bool stopping_ = false;
};

} // namespace taskhub::pool

#endif // TASKHUB_POOL_WORKER_POOL_H

// Elastic pool of worker threads for plugin calls that block: today, execute() of a plugin that
// declares TH_CAP_BLOCKING_EXECUTE. Nothing that waits for another task ever runs here: jobs are
// plain calls that return.
//
// Sizing: starts min_workers threads; post() starts another thread when no worker is idle and
// fewer than max_workers exist (the hard cap; beyond it jobs queue in FIFO order); a worker that
// stays idle for idle_timeout exits while more than min_workers remain.
//
// Threading: post() and the observers are thread-safe. The destructor (or stop()) lets queued
// jobs finish and joins every thread, except the threads let go (letGo()): those are detached.
// A job that never returns (a plugin's blocking execute() stuck in a loop) would otherwise hold
// stop() forever. What a detached thread touches when its job returns at last (the pool's state)
// is shared with it and outlives the pool; it then exits without running another job.
#ifndef TASKHUB_POOL_WORKER_POOL_H
#define TASKHUB_POOL_WORKER_POOL_H

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
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

    // The worker thread `id` (one of this pool's, running a job) is not to be joined: stop()
    // detaches it, and it exits as soon as its job returns, without taking another. For a thread
    // held inside a plugin at shutdown (plugin_host: a blocking execute() that has not returned).
    // Unknown ids are ignored. Thread-safe.
    void letGo(std::thread::id id);

    size_t threads() const;      // live worker threads
    size_t idle() const;         // of those, waiting for work
    size_t queued() const;       // jobs not yet started
    size_t maxWorkers() const noexcept { return max_; }
    size_t peakThreads() const;  // most threads alive at once
    size_t letGone() const;      // threads let go (letGo()) so far

private:
    // Shared with every worker thread, so that one let go still finds it when its job returns.
    struct State {
        std::mutex mu;
        std::condition_variable cv;
        std::deque<std::function<void()>> jobs;
        std::vector<std::thread> threads; // includes exited threads until reaped
        std::vector<std::thread::id> exited;
        std::set<std::thread::id> let_go;
        size_t alive = 0;
        size_t idle = 0;
        size_t peak = 0;
        bool stopping = false;
    };

    void spawnLocked();
    static void workerLoop(State& s, size_t min_workers, std::chrono::milliseconds idle_timeout);

    const size_t min_;
    const size_t max_;
    const std::chrono::milliseconds idle_timeout_;
    std::shared_ptr<State> s_ = std::make_shared<State>();
};

} // namespace taskhub::pool

#endif // TASKHUB_POOL_WORKER_POOL_H

// The elastic pool grows when work waits and no worker is idle, never beyond max_workers, and
// shrinks back to min_workers after the idle timeout.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "pool/worker_pool.h"

using taskhub::pool::WorkerPool;
using namespace std::chrono_literals;

namespace {

// Jobs block until released, so the test controls how many are in flight.
struct Gate {
    std::mutex mu;
    std::condition_variable cv;
    bool open = false;
    std::atomic<int> entered{0};
    void wait() {
        ++entered;
        std::unique_lock lock(mu);
        cv.wait(lock, [this] { return open; });
    }
    void release() {
        {
            std::lock_guard lock(mu);
            open = true;
        }
        cv.notify_all();
    }
};

template <class Pred>
bool eventually(Pred p, std::chrono::milliseconds limit = 5000ms) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (p()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return p();
}

} // namespace

TEST_CASE("starts min_workers threads", "[pool]") {
    WorkerPool pool(2, 8, 60s);
    CHECK(pool.threads() == 2);
    CHECK(eventually([&] { return pool.idle() == 2; }));
}

TEST_CASE("grows while work waits, up to the hard cap, and queues beyond it", "[pool]") {
    WorkerPool pool(1, 3, 60s);
    Gate gate;
    for (int i = 0; i < 5; ++i) pool.post([&] { gate.wait(); });
    CHECK(eventually([&] { return gate.entered == 3; }));
    CHECK(pool.threads() == 3);
    CHECK(pool.queued() == 2);
    gate.release();
    CHECK(eventually([&] { return gate.entered == 5 && pool.queued() == 0; }));
    CHECK(pool.peakThreads() == 3);
}

TEST_CASE("does not grow when an idle worker can take the job", "[pool]") {
    WorkerPool pool(2, 8, 60s);
    REQUIRE(eventually([&] { return pool.idle() == 2; }));
    std::atomic<int> done{0};
    pool.post([&] { ++done; });
    CHECK(eventually([&] { return done == 1; }));
    CHECK(pool.threads() == 2);
}

TEST_CASE("shrinks to min_workers after the idle timeout", "[pool]") {
    WorkerPool pool(1, 4, 50ms);
    Gate gate;
    for (int i = 0; i < 4; ++i) pool.post([&] { gate.wait(); });
    REQUIRE(eventually([&] { return pool.threads() == 4; }));
    gate.release();
    CHECK(eventually([&] { return pool.threads() == 1; }));
    // And it can grow again afterwards.
    Gate again;
    for (int i = 0; i < 2; ++i) pool.post([&] { again.wait(); });
    CHECK(eventually([&] { return again.entered == 2; }));
    again.release();
}

TEST_CASE("stop lets queued jobs finish and joins", "[pool]") {
    std::atomic<int> done{0};
    {
        WorkerPool pool(1, 1, 60s);
        for (int i = 0; i < 10; ++i) pool.post([&] {
            std::this_thread::sleep_for(1ms);
            ++done;
        });
    }
    CHECK(done == 10);
}

TEST_CASE("a thread let go is detached by stop(), not joined, and takes no other job", "[pool]") {
    Gate gate;
    std::atomic<bool> returned{false};
    std::atomic<bool> second_ran{false};
    std::mutex mu;
    std::thread::id worker;
    {
        WorkerPool pool(0, 1, 60s);
        pool.post([&] {
            {
                std::lock_guard lock(mu);
                worker = std::this_thread::get_id();
            }
            gate.wait(); // as a plugin's execute() that does not return
            returned = true;
        });
        pool.post([&] { second_ran = true; }); // queued behind it (one worker at most)
        REQUIRE(eventually([&] { return gate.entered == 1; }));
        std::thread::id id;
        {
            std::lock_guard lock(mu);
            id = worker;
        }
        pool.letGo(std::this_thread::get_id()); // not one of the pool's: ignored
        CHECK(pool.letGone() == 0);
        pool.letGo(id);
        CHECK(pool.letGone() == 1);
        pool.stop(); // would wait for the gate forever without letGo()
    }
    // The pool is gone; the thread's job returns at last and the thread ends on the pool's
    // shared state, without running the queued job.
    CHECK_FALSE(returned);
    gate.release();
    CHECK(eventually([&] { return returned.load(); }));
    std::this_thread::sleep_for(50ms);
    CHECK_FALSE(second_ran);
}

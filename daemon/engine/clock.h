// The engine's time: what it reads deadlines from and arms its timers with (run and task
// timeouts, retry delays, waits for an unhealthy plugin, the shutdown grace). Engine's public
// constructor uses AsioClock; tests give it a FakeClock and move time with advance(), so that
// timeouts and retries need no wall clock (as triggers/scheduler.h takes a fake clock).
// Timestamps recorded in the store (created_ms, ended_ms) stay on the system clock.
#ifndef TASKHUB_ENGINE_CLOCK_H
#define TASKHUB_ENGINE_CLOCK_H

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <utility>

namespace boost::asio {
class io_context;
}

namespace taskhub::engine {

// A timer armed by EngineClock::after(). Destroying it cancels it: its function is not called
// afterwards (and it may be destroyed from inside that function).
class Timer {
public:
    virtual ~Timer() = default;
};

class EngineClock {
public:
    using TimePoint = std::chrono::steady_clock::time_point;
    virtual ~EngineClock() = default;
    virtual TimePoint now() const = 0;
    // Calls fn once, on the event loop, `d` from now, unless the Timer is destroyed first.
    virtual std::unique_ptr<Timer> after(std::chrono::milliseconds d, std::function<void()> fn) = 0;
};

// Steady time and Asio timers on the daemon's event loop.
class AsioClock final : public EngineClock {
public:
    explicit AsioClock(boost::asio::io_context& io) : io_(io) {}
    TimePoint now() const override { return std::chrono::steady_clock::now(); }
    std::unique_ptr<Timer> after(std::chrono::milliseconds d, std::function<void()> fn) override;

private:
    boost::asio::io_context& io_;
};

// Simulated time for tests: it stands still until advance(). Must outlive the timers it armed.
class FakeClock final : public EngineClock {
public:
    TimePoint now() const override { return now_; }
    std::unique_ptr<Timer> after(std::chrono::milliseconds d, std::function<void()> fn) override;

    // Moves time forward by d, calling each timer that falls due on the way in order of its due
    // time (then of arming), with now() at that time; a timer armed meanwhile fires in the same
    // advance when it falls due within it. settle, when given, runs after each timer (a test
    // polls its event loop there, so that work the timer posted is done before the next one).
    void advance(std::chrono::milliseconds d, const std::function<void()>& settle = {});
    // Timers armed and neither fired nor cancelled.
    size_t pending() const { return timers_.size(); }

private:
    class FakeTimer;
    using Key = std::pair<TimePoint, uint64_t>;
    TimePoint now_{std::chrono::hours(1)};
    uint64_t next_seq_ = 0;
    std::map<Key, std::function<void()>> timers_;
};

} // namespace taskhub::engine

#endif // TASKHUB_ENGINE_CLOCK_H

#include "engine/clock.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

namespace taskhub::engine {

namespace {

class AsioTimer final : public Timer {
public:
    AsioTimer(boost::asio::io_context& io, std::chrono::milliseconds d) : timer_(io, d) {}
    boost::asio::steady_timer timer_; // destroying it cancels the wait (operation_aborted)
};

} // namespace

std::unique_ptr<Timer> AsioClock::after(std::chrono::milliseconds d, std::function<void()> fn) {
    auto t = std::make_unique<AsioTimer>(io_, d);
    t->timer_.async_wait([fn = std::move(fn)](const boost::system::error_code& ec) {
        if (!ec) fn();
    });
    return t;
}

class FakeClock::FakeTimer final : public Timer {
public:
    FakeTimer(FakeClock& clock, Key key) : clock_(clock), key_(key) {}
    ~FakeTimer() override { clock_.timers_.erase(key_); }

private:
    FakeClock& clock_;
    Key key_;
};

std::unique_ptr<Timer> FakeClock::after(std::chrono::milliseconds d, std::function<void()> fn) {
    Key key{now_ + d, ++next_seq_};
    timers_.emplace(key, std::move(fn));
    return std::make_unique<FakeTimer>(*this, key);
}

void FakeClock::advance(std::chrono::milliseconds d, const std::function<void()>& settle) {
    const TimePoint until = now_ + d;
    while (!timers_.empty() && timers_.begin()->first.first <= until) {
        auto it = timers_.begin();
        now_ = std::max(now_, it->first.first);
        auto fn = std::move(it->second);
        timers_.erase(it); // fired: its Timer's destructor finds nothing to cancel
        fn();
        if (settle) settle();
    }
    now_ = until;
}

} // namespace taskhub::engine

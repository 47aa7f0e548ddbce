#include "app/service_watchdog.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common/notify.h"

namespace taskhub::app {

namespace asio = boost::asio;

std::optional<std::chrono::microseconds> ServiceWatchdog::interval(const char* watchdog_usec,
                                                                   const char* watchdog_pid, long pid) {
    if (watchdog_usec == nullptr || *watchdog_usec == '\0') return std::nullopt;
    if (watchdog_pid != nullptr && *watchdog_pid != '\0') {
        char* end = nullptr;
        errno = 0;
        const long p = std::strtol(watchdog_pid, &end, 10);
        if (errno != 0 || *end != '\0' || p != pid) return std::nullopt;
    }
    char* end = nullptr;
    errno = 0;
    const unsigned long long usec = std::strtoull(watchdog_usec, &end, 10);
    if (errno != 0 || *end != '\0' || usec == 0 || watchdog_usec[0] == '-') return std::nullopt;
    return std::chrono::microseconds(usec);
}

struct ServiceWatchdog::Impl {
    Impl(asio::io_context& io, StatusFn s) : timer(io), status(std::move(s)) {}
    asio::steady_timer timer;
    StatusFn status;
    std::optional<std::chrono::microseconds> watchdog;
    std::chrono::microseconds period{0};
    std::chrono::steady_clock::time_point next_status{};
    std::string last_status;
    bool stopped = false;

    void tick() {
        if (watchdog) notifyServiceManager("WATCHDOG=1");
        const auto now = std::chrono::steady_clock::now();
        if (now >= next_status) {
            next_status = now + kStatusInterval;
            std::string s = status();
            if (s != last_status) {
                const std::string msg = "STATUS=" + s;
                if (notifyServiceManager(msg.c_str())) last_status = std::move(s);
            }
        }
        timer.expires_after(period);
        timer.async_wait([this](const boost::system::error_code& ec) {
            if (!ec && !stopped) tick();
        });
    }
};

ServiceWatchdog::ServiceWatchdog(asio::io_context& io, StatusFn status)
    : impl_(std::make_unique<Impl>(io, std::move(status))) {}

ServiceWatchdog::~ServiceWatchdog() { stop(); }

void ServiceWatchdog::start() {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    if (socket == nullptr || *socket == '\0') return;
    impl_->watchdog = interval(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), static_cast<long>(::getpid()));
    // Pings at half the interval; the status line on the first tick kStatusInterval after the
    // last (with WatchdogSec=30s: on every ping, each 15 s).
    impl_->period = impl_->watchdog ? *impl_->watchdog / 2 : std::chrono::microseconds(kStatusInterval);
    impl_->tick();
}

void ServiceWatchdog::stop() {
    if (impl_->stopped) return;
    impl_->stopped = true;
    impl_->timer.cancel();
}

} // namespace taskhub::app

// The service manager's watchdog and status line (sd_notify WATCHDOG=1 and STATUS=, sent with
// common/notify.h). When $WATCHDOG_USEC is set and $WATCHDOG_PID is unset or this process's pid
// (systemd sets both for WatchdogSec=), a timer on the event loop sends WATCHDOG=1 every
// WATCHDOG_USEC/2: a wedged loop stops the pings, and systemd kills and restarts the daemon.
// Each tick (or every kStatusInterval without a watchdog) the status line is computed and sent as
// STATUS= when it changed since the last one sent, e.g.
// "3 running, 1 waiting; next: nightly-backup at 2026-12-07T01:30:00Z" (`systemctl status`).
//
// Threading: event-loop thread only.
#ifndef TASKHUB_APP_SERVICE_WATCHDOG_H
#define TASKHUB_APP_SERVICE_WATCHDOG_H

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace boost::asio {
class io_context;
}

namespace taskhub::app {

class ServiceWatchdog {
public:
    static constexpr std::chrono::seconds kStatusInterval{5};
    using StatusFn = std::function<std::string()>;

    // The watchdog interval systemd asks for: WATCHDOG_USEC (a positive integer) when
    // WATCHDOG_PID is unset or equals pid; nullopt otherwise (no pings).
    static std::optional<std::chrono::microseconds> interval(const char* watchdog_usec, const char* watchdog_pid,
                                                             long pid);

    ServiceWatchdog(boost::asio::io_context& io, StatusFn status);
    ~ServiceWatchdog();
    ServiceWatchdog(const ServiceWatchdog&) = delete;
    ServiceWatchdog& operator=(const ServiceWatchdog&) = delete;

    // Reads the environment and starts the timer (nothing at all without $NOTIFY_SOCKET).
    void start();
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_SERVICE_WATCHDOG_H

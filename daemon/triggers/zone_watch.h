// Watches the system time zone (/etc/localtime, /etc/timezone) with inotify on the event loop
// and calls back when it changes, so that schedules in the system zone are re-planned at once
// (timedatectl set-timezone replaces the /etc/localtime symlink).
//
// Threading: event-loop thread only.
#ifndef TASKHUB_TRIGGERS_ZONE_WATCH_H
#define TASKHUB_TRIGGERS_ZONE_WATCH_H

#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace taskhub::triggers {

class ZoneWatch {
public:
    // Watches dir (default /etc) for changes of the files named localtime and timezone. When the
    // watch cannot be set up, logs SCHED_ZONE_WATCH_FAILED and does nothing else.
    ZoneWatch(boost::asio::io_context& io, std::function<void()> changed, std::string dir = "/etc");
    ~ZoneWatch();
    void stop(); // no more callbacks; the event loop no longer waits on the watch
    ZoneWatch(const ZoneWatch&) = delete;
    ZoneWatch& operator=(const ZoneWatch&) = delete;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_ZONE_WATCH_H

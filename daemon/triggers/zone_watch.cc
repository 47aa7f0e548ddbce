#include "triggers/zone_watch.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace taskhub::triggers {

namespace asio = boost::asio;

struct ZoneWatch::Impl {
    std::function<void()> changed;
    std::string dir;
    int fd = -1;
    asio::posix::stream_descriptor stream;
    asio::steady_timer settle; // one callback for the burst of events a zone change makes

    Impl(asio::io_context& io, std::function<void()> c, std::string d)
        : changed(std::move(c)), dir(std::move(d)), stream(io), settle(io) {}

    void wait() {
        stream.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec) return;
            alignas(inotify_event) char buf[4096];
            bool relevant = false;
            for (;;) {
                ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0) break;
                for (char* p = buf; p < buf + n;) {
                    auto* ev = reinterpret_cast<inotify_event*>(p);
                    const std::string name = ev->len ? ev->name : "";
                    if (name == "localtime" || name == "timezone" || (ev->mask & IN_Q_OVERFLOW)) relevant = true;
                    p += sizeof(inotify_event) + ev->len;
                }
            }
            if (relevant) {
                settle.expires_after(std::chrono::milliseconds(200));
                settle.async_wait([this](const boost::system::error_code& e) {
                    if (e) return;
                    spdlog::info("SCHED_ZONE_CHANGED the system time zone changed ({}/localtime); re-planning", dir);
                    changed();
                });
            }
            wait();
        });
    }
};

ZoneWatch::ZoneWatch(asio::io_context& io, std::function<void()> changed, std::string dir)
    : impl_(std::make_unique<Impl>(io, std::move(changed), std::move(dir))) {
    auto& im = *impl_;
    im.fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (im.fd < 0) {
        spdlog::warn("SCHED_ZONE_WATCH_FAILED inotify_init1: {}; time zone changes take effect at the next reload",
                     std::strerror(errno));
        return;
    }
    if (::inotify_add_watch(im.fd, im.dir.c_str(), IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE) < 0) {
        spdlog::warn("SCHED_ZONE_WATCH_FAILED cannot watch {}: {}; time zone changes take effect at the next reload",
                     im.dir, std::strerror(errno));
        ::close(im.fd);
        im.fd = -1;
        return;
    }
    im.stream.assign(im.fd);
    im.wait();
}

ZoneWatch::~ZoneWatch() = default;

void ZoneWatch::stop() {
    boost::system::error_code ec;
    impl_->settle.cancel();
    impl_->stream.cancel(ec);
}

} // namespace taskhub::triggers

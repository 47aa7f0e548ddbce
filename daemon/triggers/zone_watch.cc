#include "triggers/zone_watch.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "common/inotify.h"

namespace taskhub::triggers {

namespace asio = boost::asio;

struct ZoneWatch::Impl {
    std::function<void()> changed;
    std::string dir;
    common::Inotify inotify;
    asio::steady_timer settle; // one callback for the burst of events a zone change makes
    bool relevant = false;     // an event of this wake-up concerns the zone

    Impl(asio::io_context& io, std::function<void()> c, std::string d)
        : changed(std::move(c)), dir(std::move(d)), inotify(io), settle(io) {}

    void batchDone() {
        if (!relevant) return;
        relevant = false;
        settle.expires_after(std::chrono::milliseconds(200));
        settle.async_wait([this](const boost::system::error_code& e) {
            if (e) return;
            spdlog::info("SCHED_ZONE_CHANGED the system time zone changed ({}/localtime); re-planning", dir);
            changed();
        });
    }
};

ZoneWatch::ZoneWatch(asio::io_context& io, std::function<void()> changed, std::string dir)
    : impl_(std::make_unique<Impl>(io, std::move(changed), std::move(dir))) {
    auto& im = *impl_;
    std::string err;
    if (!im.inotify.open(&err) ||
        im.inotify.addWatch(im.dir, IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE, &err) < 0) {
        spdlog::warn("SCHED_ZONE_WATCH_FAILED {}; time zone changes take effect at the next reload", err);
        return;
    }
    im.inotify.start({[&im](const inotify_event& ev) {
                          const std::string name = ev.len ? ev.name : "";
                          if (name == "localtime" || name == "timezone") im.relevant = true;
                      },
                      [&im] { im.relevant = true; }, [&im] { im.batchDone(); }});
}

ZoneWatch::~ZoneWatch() = default;

void ZoneWatch::stop() {
    impl_->settle.cancel();
    impl_->inotify.stop();
}

} // namespace taskhub::triggers

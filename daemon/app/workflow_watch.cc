#include "app/workflow_watch.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "config/workflow.h"

namespace taskhub::app {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kDirMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB |
                              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;
// On an ancestor while the directory is missing: anything that may bring it back.
constexpr uint32_t kAncestorMask = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

} // namespace

struct WorkflowWatch::Impl {
    fs::path dir;
    Callbacks cb;
    std::chrono::milliseconds debounce;
    int fd = -1;
    int dir_wd = -1;      // the directory, while it is watched
    int ancestor_wd = -1; // its nearest existing ancestor, while it is missing
    bool missing = false; // logged as missing
    bool stopped = false;
    asio::posix::stream_descriptor stream;
    asio::steady_timer timer;
    std::map<std::string, Clock::time_point> pending; // file name -> when to report it

    Impl(asio::io_context& io, fs::path d, Callbacks c, std::chrono::milliseconds db)
        : dir(std::move(d)), cb(std::move(c)), debounce(db), stream(io), timer(io) {}

    // Watches the directory, or its nearest existing ancestor when it is missing. True when the
    // directory itself is watched.
    bool arm() {
        if (ancestor_wd >= 0) {
            ::inotify_rm_watch(fd, ancestor_wd);
            ancestor_wd = -1;
        }
        dir_wd = ::inotify_add_watch(fd, dir.c_str(), kDirMask);
        if (dir_wd >= 0) {
            if (missing) spdlog::info("CONFIG_WATCH_DIR_BACK workflows directory {} is back", dir.string());
            missing = false;
            return true;
        }
        const int err = errno;
        for (fs::path p = dir.parent_path(); !p.empty(); p = p.parent_path()) {
            ancestor_wd = ::inotify_add_watch(fd, p.c_str(), kAncestorMask);
            if (ancestor_wd >= 0) {
                if (!missing) {
                    spdlog::warn("CONFIG_WATCH_DIR_MISSING cannot watch workflows directory {}: {}; watching {} until "
                                 "it is back (the workflows loaded keep running)",
                                 dir.string(), std::strerror(err), p.string());
                }
                missing = true;
                return false;
            }
            if (p == p.root_path()) break;
        }
        spdlog::error("CONFIG_WATCH_FAILED cannot watch workflows directory {} nor any parent: {}; changes take "
                      "effect at the next reload (SIGHUP)",
                      dir.string(), std::strerror(err));
        return false;
    }

    void note(const std::string& name, Clock::duration delay) { pending[name] = Clock::now() + delay; }

    void handle(const inotify_event& ev) {
        if (ev.mask & IN_Q_OVERFLOW) {
            pending.clear();
            cb.rescan("the inotify event queue overflowed");
            return;
        }
        if (ev.wd == ancestor_wd) {
            if (arm()) {
                pending.clear();
                cb.rescan("the workflows directory is back");
            }
            return;
        }
        if (ev.wd != dir_wd) return; // a watch removed already
        if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED)) {
            // Files deleted with the directory are not retired one by one: a missing directory
            // changes nothing until it is back (then it is read again).
            ::inotify_rm_watch(fd, dir_wd);
            dir_wd = -1;
            pending.clear();
            spdlog::warn("CONFIG_WATCH_DIR_GONE workflows directory {} was {}", dir.string(),
                         (ev.mask & IN_MOVE_SELF) ? "moved away" : "deleted or unmounted");
            arm();
            cb.rescan("the workflows directory was deleted or moved");
            return;
        }
        if (ev.len == 0) return;
        const std::string name = ev.name;
        if (!config::isWorkflowFileName(name)) return;
        if (ev.mask & IN_MOVED_TO) {
            note(name, Clock::duration::zero());
        } else if (ev.mask & IN_CREATE) {
            // A regular file being written is reported when it is closed; anything else (a
            // symlink, a hard link, a directory) is complete when it appears.
            struct stat st {};
            const fs::path p = dir / name;
            if (::lstat(p.c_str(), &st) == 0 && (!S_ISREG(st.st_mode) || st.st_nlink > 1)) note(name, debounce);
        } else {
            note(name, debounce);
        }
    }

    void wait() {
        stream.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            alignas(inotify_event) char buf[16384];
            for (;;) {
                const ssize_t n = ::read(fd, buf, sizeof buf);
                if (n <= 0) break;
                for (char* p = buf; p < buf + n;) {
                    const auto* ev = reinterpret_cast<const inotify_event*>(p);
                    handle(*ev);
                    p += sizeof(inotify_event) + ev->len;
                }
            }
            schedule();
            wait();
        });
    }

    // Arms the timer for the earliest pending report.
    void schedule() {
        if (pending.empty() || stopped) return;
        auto first = std::min_element(pending.begin(), pending.end(),
                                      [](const auto& a, const auto& b) { return a.second < b.second; })
                         ->second;
        timer.expires_at(first);
        timer.async_wait([this](const boost::system::error_code& ec) {
            if (ec || stopped) return;
            const auto now = Clock::now();
            std::vector<std::string> due;
            for (auto it = pending.begin(); it != pending.end();) {
                if (it->second <= now) {
                    due.push_back(it->first);
                    it = pending.erase(it);
                } else {
                    ++it;
                }
            }
            if (!due.empty()) cb.changed(due);
            schedule();
        });
    }
};

WorkflowWatch::WorkflowWatch(asio::io_context& io, fs::path dir, Callbacks callbacks,
                             std::chrono::milliseconds debounce)
    : impl_(std::make_unique<Impl>(io, std::move(dir), std::move(callbacks), debounce)) {
    auto& im = *impl_;
    im.fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (im.fd < 0) {
        spdlog::error("CONFIG_WATCH_FAILED inotify_init1: {}; workflow changes take effect at the next reload (SIGHUP)",
                      std::strerror(errno));
        return;
    }
    im.stream.assign(im.fd);
    im.arm();
    im.wait();
}

WorkflowWatch::~WorkflowWatch() = default;

void WorkflowWatch::stop() {
    impl_->stopped = true;
    boost::system::error_code ec;
    impl_->timer.cancel();
    impl_->stream.cancel(ec);
}

} // namespace taskhub::app

#include "app/workflow_watch.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <map>

#include "common/inotify.h"
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
    common::Inotify inotify;
    int dir_wd = -1;      // the directory, while it is watched
    int ancestor_wd = -1; // its nearest existing ancestor, while it is missing
    bool missing = false; // logged as missing
    bool stopped = false;
    asio::steady_timer timer;
    std::map<std::string, Clock::time_point> pending; // file name -> when to report it

    Impl(asio::io_context& io, fs::path d, Callbacks c, std::chrono::milliseconds db)
        : dir(std::move(d)), cb(std::move(c)), debounce(db), inotify(io), timer(io) {}

    // Watches the directory, or its nearest existing ancestor when it is missing. True when the
    // directory itself is watched.
    bool arm() {
        if (ancestor_wd >= 0) {
            inotify.removeWatch(ancestor_wd);
            ancestor_wd = -1;
        }
        std::string err;
        dir_wd = inotify.addWatch(dir, kDirMask, &err);
        if (dir_wd >= 0) {
            if (missing) spdlog::info("CONFIG_WATCH_DIR_BACK workflows directory {} is back", dir.string());
            missing = false;
            return true;
        }
        // An ancestor that exists but cannot be watched (no permission): the next one up.
        for (fs::path p = common::nearestExistingParent(dir); !p.empty(); p = common::nearestExistingParent(p)) {
            std::string ignored;
            ancestor_wd = inotify.addWatch(p, kAncestorMask, &ignored);
            if (ancestor_wd >= 0) {
                if (!missing) {
                    spdlog::warn("CONFIG_WATCH_DIR_MISSING {} (the workflows directory); watching {} until it is "
                                 "back (the workflows loaded keep running)",
                                 err, p.string());
                }
                missing = true;
                return false;
            }
            if (p == p.root_path()) break;
        }
        spdlog::error("CONFIG_WATCH_FAILED {} (the workflows directory), nor any parent; changes take effect at the "
                      "next reload (SIGHUP)",
                      err);
        return false;
    }

    void note(const std::string& name, Clock::duration delay) { pending[name] = Clock::now() + delay; }

    void overflow() {
        pending.clear();
        cb.rescan("the inotify event queue overflowed");
    }

    void handle(const inotify_event& ev) {
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
            inotify.removeWatch(dir_wd);
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
    std::string err;
    if (!im.inotify.open(&err)) {
        spdlog::error("CONFIG_WATCH_FAILED {}; workflow changes take effect at the next reload (SIGHUP)", err);
        return;
    }
    im.arm();
    im.inotify.start({[&im](const inotify_event& ev) { im.handle(ev); }, [&im] { im.overflow(); },
                      [&im] { im.schedule(); }});
}

WorkflowWatch::~WorkflowWatch() = default;

void WorkflowWatch::stop() {
    impl_->stopped = true;
    impl_->timer.cancel();
    impl_->inotify.stop();
}

} // namespace taskhub::app

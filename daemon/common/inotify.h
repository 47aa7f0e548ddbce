// One inotify instance on the event loop: the descriptor, the watches and the read loop, shared
// by the three watchers (triggers/file_watch, triggers/zone_watch, app/workflow_watch).
//
// Failure policy, the same for every watcher: open() says whether the instance could be created
// (false + *err, e.g. "inotify_init1: Too many open files"); the watcher logs that with its own
// log id and watches nothing from then on, while the rest of the daemon keeps working (a reload
// still reads workflows and the time zone). A watch that cannot be added is reported the same
// way by addWatch() for the caller to log.
//
// Threading: event-loop thread only; the handlers run there.
#ifndef TASKHUB_COMMON_INOTIFY_H
#define TASKHUB_COMMON_INOTIFY_H

#include <sys/inotify.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace taskhub::common {

class Inotify {
public:
    struct Handlers {
        // Each event read, in order, except IN_Q_OVERFLOW.
        std::function<void(const inotify_event&)> event;
        // The kernel's queue overflowed (IN_Q_OVERFLOW): events were lost, so whatever is watched
        // must be looked at again. Required.
        std::function<void()> overflow;
        // Once per wake-up, after every event that could be read then was handled (optional).
        std::function<void()> batch_done;
    };

    explicit Inotify(boost::asio::io_context& io);
    ~Inotify();
    Inotify(const Inotify&) = delete;
    Inotify& operator=(const Inotify&) = delete;

    // Creates the inotify instance (non-blocking, close-on-exec) on the event loop. False when it
    // cannot be created: *err says why.
    bool open(std::string* err);
    bool isOpen() const;

    // Adds a watch of path with mask (for a path already watched, its mask is replaced, as
    // inotify_add_watch does): the watch descriptor, or -1 with *err = "cannot watch PATH: why".
    int addWatch(const std::filesystem::path& path, uint32_t mask, std::string* err);
    void removeWatch(int wd);

    // Starts waiting for events; the handlers are called until stop(). Does nothing when the
    // instance is not open.
    void start(Handlers handlers);
    // No more handler calls; the event loop no longer waits on the descriptor.
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The directory to watch while path does not exist: its nearest existing ancestor, the root at
// the latest (for a relative path without an existing ancestor, the empty path). Watching it for
// IN_CREATE | IN_MOVED_TO tells when the next directory on the way to path appears; watching that
// one then moves the watch down until path itself can be watched.
std::filesystem::path nearestExistingParent(const std::filesystem::path& path);

} // namespace taskhub::common

#endif // TASKHUB_COMMON_INOTIFY_H

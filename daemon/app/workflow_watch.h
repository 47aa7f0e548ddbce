// Watches workflows_dir with inotify on the event loop and reports the workflow files that are
// complete and may have changed, so that the daemon reloads them one by one.
//
// Only names config::isWorkflowFileName() accepts count ("x.toml", not ".x.toml.swp", "x.toml~",
// "4913", ...). A file counts as complete when it is closed after writing (IN_CLOSE_WRITE), moved
// into the directory (IN_MOVED_TO), moved out or deleted, or its attributes change (chmod, chown);
// a regular file that is created is not reported until it is closed, so a partial write is never
// read. Reports of one file are coalesced: it is reported once `debounce` has passed since its
// last event, except after IN_MOVED_TO (a rename is atomic), which is reported at once.
//
// When the directory is deleted, moved away or does not exist, that is logged and its nearest
// existing ancestor is watched until it is back; then, and after an inotify queue overflow,
// `rescan` is called: everything must be read again.
//
// Threading: event-loop thread only; callbacks run there.
#ifndef TASKHUB_APP_WORKFLOW_WATCH_H
#define TASKHUB_APP_WORKFLOW_WATCH_H

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace boost::asio {
class io_context;
}

namespace taskhub::app {

class WorkflowWatch {
public:
    struct Callbacks {
        std::function<void(const std::vector<std::string>& file_names)> changed; // names in dir
        std::function<void(const std::string& why)> rescan;
    };
    static constexpr std::chrono::milliseconds kDebounce{50};

    // Starts watching at once (events are handled once the loop runs). When inotify cannot be
    // used, logs CONFIG_WATCH_FAILED and does nothing else (SIGHUP still reloads).
    WorkflowWatch(boost::asio::io_context& io, std::filesystem::path dir, Callbacks callbacks,
                  std::chrono::milliseconds debounce = kDebounce);
    ~WorkflowWatch();
    void stop(); // no more callbacks
    WorkflowWatch(const WorkflowWatch&) = delete;
    WorkflowWatch& operator=(const WorkflowWatch&) = delete;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::app

#endif // TASKHUB_APP_WORKFLOW_WATCH_H

// File-drop triggers: one inotify instance on the event loop watches the directories of every
// `watch` trigger of every workflow and fires a run once per version of each complete file
// dropped there. Semantics (documented for users in docs/operations.md, "File drops"):
//
// - A file fires on IN_CLOSE_WRITE or IN_MOVED_TO, never while it is being written. With
//   `settle`, it fires only once its size and mtime have not changed for that long (re-checked
//   when the time is up), for writers that close and reopen.
// - A file version is path + inode + size + mtime (ns). Each version is recorded in the store
//   when its run is created and fires at most once; re-recording is harmless.
// - Names starting with '.' or ending in '~', ".tmp" or ".part" are ignored unless the pattern
//   itself starts with '.' or ends in that suffix.
// - Files found by a scan (at start, when a trigger is new, after IN_Q_OVERFLOW, when a watched
//   directory appears) fire only once their mtime is at least kScanSettle old and unchanged,
//   since nothing says whether a writer still has them open. At start and for a new trigger the
//   workflow's catch-up policy decides which of them run; after an overflow and for a directory
//   that appears, all of them do.
// - A watched directory that is missing is reported and its nearest existing ancestor watched;
//   when it appears (or is replaced) it is watched again and scanned.
// - The drop box is hostile ground (its writers may swap, rename and symlink anything in it at
//   any moment): every look at a dropped file (its version, the check right before its run is
//   created, `after = "delete"` and `after = "move:DIR"`) goes through a descriptor of the watch
//   root, which must be the directory being watched (device and inode, recorded when the watch
//   began), and resolves the file beneath it without following symlinks (beneath.h). A file
//   reached through a symlink, not a regular file, with more than one hard link, or swapped since
//   it was seen is not acted on (FILE_DROP_REFUSED, FILE_AFTER_REFUSED; a run event when it has a
//   run). The path a task gets was verified right before its run was created; between then and
//   the task's own open() a writer of the box can still swap a directory on it, so such a task
//   must guard itself (run_as, O_NOFOLLOW; docs/operations.md, "File drops").
//
// Threading: event-loop thread only.
#ifndef TASKHUB_TRIGGERS_FILE_WATCH_H
#define TASKHUB_TRIGGERS_FILE_WATCH_H

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config/workflow.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::triggers {

// One version of one dropped file, and the run it becomes.
struct FileDrop {
    std::shared_ptr<const config::Workflow> workflow;
    size_t trigger = 0;
    std::string path; // absolute
    std::string name; // the last path component
    int64_t inode = 0;
    int64_t size = 0;
    int64_t mtime_ns = 0;
    int64_t dev = 0;         // device of the version (compared when it is handled; not recorded)
    std::string run_id;      // "<workflow>@file-<16 hex digits>": a hash of the version
    std::string note;        // why it fires when not as it lands, e.g. "catch-up: ..."
    std::string skip_reason; // not empty: record the run as skipped (the workflow is paused)
};

// The run id of a file version: deterministic, so the same version can never make two runs.
std::string fileRunId(const std::string& workflow, const std::string& path, int64_t inode, int64_t size,
                      int64_t mtime_ns);

// True when name is a hidden or temporary file that pattern does not name explicitly.
bool ignoredFileName(const std::string& name, const std::string& pattern);

class FileWatch {
public:
    // A scanned file fires once its mtime is at least this old (and unchanged when looked at).
    static constexpr std::chrono::milliseconds kScanSettle{1000};

    struct Hooks {
        // Creates the run of a file version (or records it as skipped, drop.skip_reason) and
        // records the version in the store. False when no run was created (e.g. shutting down):
        // the version stays unrecorded and fires when it is next seen.
        std::function<bool(const FileDrop&)> fire;
        // Records a version that catch-up passes over (no run).
        std::function<void(const FileDrop&)> pass_over;
        // The versions recorded for a workflow: "path\0inode\0size\0mtime" keys (versionKey()),
        // with the run id recorded for each.
        std::function<std::map<std::string, std::string>(const std::string& workflow)> recorded;
        // Why the workflow's firings are recorded as skipped now (it is paused), or nullopt.
        std::function<std::optional<std::string>(const std::string& workflow)> paused;
        // True when the run is a firing recorded as skipped because its workflow was paused.
        std::function<bool(const std::string& run_id)> paused_skip;
        // Calls fn(succeeded) once the run has ended; false when there is no such run.
        std::function<bool(const std::string& run_id, std::function<void(bool succeeded)> fn)> when_ended;
        // Adds an event to a run's event log.
        std::function<void(const std::string& run_id, const std::string& kind, const std::string& detail)> event;
    };

    // When inotify cannot be used, logs FILE_WATCH_FAILED and watches nothing: each file trigger's
    // state says "not watched: WHY" (common/inotify.h, the watchers' one failure policy). Test
    // hooks (logged as FILE_WATCH_TEST_HOOK; never for production):
    // - TASKHUB_TEST_INOTIFY_OVERFLOW_AFTER=N: after N events the watcher discards every event for
    //   200 ms and then handles a simulated IN_Q_OVERFLOW (once).
    // - TASKHUB_TEST_FILE_DROP_DELAY_MS=N: each firing waits N ms (on a timer, the loop keeps
    //   serving) between the version being seen and its check, and each `after` N ms between the
    //   run's end and its check, logging "FILE_WATCH_TEST_HOOK firing PATH in N ms" / "applying
    //   'after' to PATH in N ms" first, so that a test can race the daemon deterministically.
    // - TASKHUB_TEST_NO_OPENAT2=1: files are resolved by the O_NOFOLLOW walk (beneath.h).
    FileWatch(boost::asio::io_context& io, Hooks hooks);
    ~FileWatch();
    FileWatch(const FileWatch&) = delete;
    FileWatch& operator=(const FileWatch&) = delete;

    // Replaces the set of workflows. File triggers seen for the first time (by workflow and
    // describe()) scan their directories under the catch-up rules; workflows no longer present
    // stop firing.
    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs);
    // The workflow's pause ended: the versions recorded as skipped while it was paused follow its
    // catch-up policy (none: stay skipped; latest: the newest runs; all: all run, oldest first).
    void resume(const std::string& workflow);
    void stop(); // no more firings; the event loop no longer waits on the watch

    // Per trigger of the workflow (empty string for time triggers): what the watch is doing,
    // e.g. "watching" or "waiting: /srv/in does not exist (watching /srv)".
    std::vector<std::string> states(const std::string& workflow) const;

    static std::string versionKey(const std::string& path, int64_t inode, int64_t size, int64_t mtime_ns);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_FILE_WATCH_H

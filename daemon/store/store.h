// Durable state in SQLite under the state directory: runs, their tasks and an event log.
//
// What is written per task: a run's row carries its task list (each task's id, plugin and kind,
// in workflow order, written once with the run); a task gets a row of its own only when it first
// leaves `pending`, and every later change of it rewrites that row (one UPSERT per task and
// batch, however often it changed within the batch). Reads build the tasks without a row from
// the list: pending, or skipped ("the run was skipped") in a run recorded as skipped. Events are
// appended to the run's block of the batch (event_blocks: one row per run per commit).
//
// Durability: WAL journal with synchronous=FULL. Two modes:
//   - synchronous (after open()): writes join an open transaction on the calling thread and
//     commit() makes them durable. Used at start-up (recovery) and by tests.
//   - writer thread (after startWriter()): writes are queued as plain records and a writer
//     thread with its own connection commits them in batches (group commit). The first write of a
//     batch posts a kick to the event loop, which runs after the handler that wrote it: the kick
//     wakes the writer, so that an idle store commits everything that handler writes (an
//     attempt's end, the next one's start, their events) together, not just its first write. A
//     batch taken when its 20 ms are up or for a waiter may still end within a handler's writes
//     (the rest follow in the next commit, in order). The writer commits at once when idle or
//     when someone waits for the writes through whenDurable (that wakes it at once, without the
//     kick), else at most every 20 ms under load, so fsync never blocks the event loop. Several
//     updates of one task within a batch collapse into its latest state. whenDurable(fn) calls fn
//     (through the poster given to startWriter) once everything written so far is committed: the
//     control channel answers a client only then, so nothing acknowledged is ever lost and every
//     answer reads its own writes.
//
// Threading: the write and read methods are for one thread (the event loop); the writer thread
// is internal. Reads use their own connection and see committed data only.
// Errors: open() returns nullptr with a message saying what to do (a damaged database file is
// refused and left as it is). After that, a batch that fails because the database cannot be
// written (disk full, read-only file or file system, I/O error) is rolled back, kept and retried
// every second, newer writes queued behind it in order, until it commits: nothing written is
// lost while the daemon runs (if it is stopped meanwhile, the batch is tried three more times,
// then logged as lost). Meanwhile writeProblem() says why (logged as STORE_UNWRITABLE, and
// STORE_WRITABLE on recovery), whenDurable waits and whenDurableOrUnwritable answers ok=false
// at once. Any other failed write (a bug: a constraint, a write for an unknown run) is
// logged (STORE_WRITE_FAILED, STORE_COMMIT_FAILED), its batch dropped and reported to
// whenDurable callbacks, and kept in lastError().
#ifndef TASKHUB_STORE_STORE_H
#define TASKHUB_STORE_STORE_H

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "store/records.h"

struct sqlite3;
struct sqlite3_stmt;

namespace taskhub::store {

// Thrown by the statements queries and retention prepare for themselves when SQLite cannot
// prepare one (store/internal.h); open() reports its failures through *err.
class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RunFilter {
    std::optional<std::string> workflow;
    // A run state, or "lost": runs in which recovery after a crash found lost attempts (any state).
    std::optional<std::string> state;
    size_t limit = 50;
    bool top_level_only = false; // leave out child runs (those with a parent_run)
    std::optional<int64_t> since_ms = std::nullopt; // created at or after (epoch ms)
    std::optional<int64_t> until_ms = std::nullopt; // created before (epoch ms)
};

class Store {
public:
    // 1: runs, tasks, events. 2: run params, parent_run, parent_task, depth; task outputs and
    // child_run (ADD COLUMN). 3: integer keys for runs and tasks, the event log in blocks
    // (event_blocks: one row per run per commit, a JSON array of events) instead of one row per
    // event, runs_by_schedule, workflow_pauses. 4: plugin_events (health transitions).
    // 5: file_versions (file-drop triggers). 6: tasks.pid, pgid, proc_start (the process of
    // the latest attempt), runs.lost, meta (boot_id). 7: tasks.kind, runs.skip_cause.
    // 8: deadline_misses, deadline_marks (triggers/deadline.h) and notifications (the outbox of
    // daemon/notify). 9: tasks.cpu_user_us, cpu_system_us, memory_peak, oom_kills,
    // io_read_bytes, io_write_bytes, usage_source, leftovers_found, leftovers_action (what the
    // latest attempt cost and left behind). 10: runs.tasks, the run's task list (ids, plugins,
    // kinds in workflow order; see TaskList): a task's row is written when it first leaves
    // pending, not with the run. Runs of older schemas keep their rows and read as before.
    // Older databases are migrated when opened.
    static constexpr int kSchemaVersion = 13;
    static constexpr int kMaxTasksPerRun = 1 << 20; // tasks.key holds the position in 20 bits

    // Opens (creating if needed) state_dir/taskhub.db and migrates it forward to kSchemaVersion
    // (in one transaction, logged as STORE_MIGRATING). Takes an exclusive lock on
    // state_dir/taskhub.lock first: a second daemon on the same state directory is refused before
    // it reads or writes anything. Refuses a database written by a newer schema version, and one
    // that is not a TaskHub database.
    //
    // The database file is checked first, reading only: a file that is not a SQLite database, is
    // cut short (truncated mid-page, or shorter than its header says), fails PRAGMA quick_check
    // (run for at most 500 ms: a large database on a cold disk is checked as far as that goes)
    // or has a -wal file beside it that belongs to another database is refused (nullptr; *err names
    // the file, what is wrong and what to do; it is never modified. An empty file is a
    // new database (SQLite leaves one when the daemon dies before its first commit).
    struct Options {
        // synchronous=NORMAL instead of FULL: a commit does not wait for the WAL's fsync (the
        // last commits can be lost at power loss). For benchmarks that compare the two only;
        // taskhubd always uses FULL.
        bool sync_normal = false;
    };
    // nullptr: *err says why the store cannot be used, and what to do.
    static std::unique_ptr<Store> open(const std::filesystem::path& state_dir, const Options& options,
                                       std::string* err);
    static std::unique_ptr<Store> open(const std::filesystem::path& state_dir, std::string* err) {
        return open(state_dir, Options{}, err);
    }
    // The same check of state_dir/taskhub.db as open() makes, for `taskhubd --check`: "" when the
    // file is missing or looks sound, otherwise the message open() would refuse it with. Reads
    // only, takes no lock (a running daemon may hold the database).
    static std::string checkDatabase(const std::filesystem::path& state_dir);
    ~Store(); // commits or flushes what is pending, stops the writer
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Switches to writer-thread mode (see above). post(fn) must run fn on the event-loop thread.
    void startWriter(std::function<void(std::function<void()>)> post);

    // A run's tasks as written with the run: each task's id, plugin and kind, in workflow order,
    // as one text (runs.tasks). Each task is its kind ('p' plugin, 'w' workflow) followed by the
    // id and the plugin, each as its length in decimal, ':' and its bytes ("p2:t04:noop"), so that
    // any bytes are kept.
    class TaskList {
    public:
        void reserve(size_t tasks) { text_.reserve(tasks * 12); }
        void add(std::string_view task_id, std::string_view plugin, model::TaskKind kind);
        size_t size() const noexcept { return size_; }
        const std::string& text() const noexcept { return text_; }
        std::string release() && { return std::move(text_); }
        // The tasks of a list text, pending; nullopt when the text is no such list.
        static std::optional<std::vector<TaskRecord>> parse(std::string_view text);

    private:
        std::string text_;
        size_t size_ = 0;
    };

    // ---- writes ----
    // Every field; params as a JSON object; the tasks' ids, plugins and kinds from run.tasks (or
    // from `tasks`), as the run's task list. No task row is written: each task reads as pending
    // (skipped, when run is recorded as skipped) until upsertTask writes it.
    void insertRun(const RunRecord& run);
    void insertRun(const RunRecord& run, TaskList tasks);
    void updateRun(const RunRecord& run); // state, message, started, ended
    // Turns a recorded run (a firing recorded as skipped while its workflow was paused) into
    // this new one: the row keeps its id and key, takes run's trigger, state, message, version,
    // times, params and task list (as insertRun), and loses its task rows.
    void reviveRun(const RunRecord& run);
    void reviveRun(const RunRecord& run, TaskList tasks);
    // Records that a workflow's schedule is paused (since, by whom), or no longer is.
    void setWorkflowPaused(const std::string& workflow, bool paused, int64_t since_ms = 0,
                           const std::string& by = {});
    // A plugin's health transition (`taskhubctl plugin show`).
    struct PluginEvent {
        std::string plugin;
        int64_t at_ms = 0;
        std::string from; // state names: healthy, degraded, unhealthy
        std::string to;
        std::string message;
    };
    void addPluginEvent(const PluginEvent& event);
    // A version of a file seen by a workflow's file-drop trigger: its identity (path, inode,
    // size, mtime in ns) and the run created for it, or an empty run_id when it was passed over
    // (catch-up none). Recorded once: recording the same version again changes nothing.
    struct FileVersion {
        std::string workflow;
        std::string path;
        int64_t inode = 0;
        int64_t size = 0;
        int64_t mtime_ns = 0;
        std::string run_id;
        int64_t recorded_ms = 0;
    };
    void recordFileVersion(const FileVersion& version);
    // Deadlines (triggers/deadline.h): a missed firing, recorded once (a second record of the same
    // workflow and scheduled instant changes nothing); and the workflow's mark, the latest
    // scheduled instant decided (it never moves back), or nullopt to forget it (the workflow no
    // longer has a deadline).
    void recordDeadlineMiss(const DeadlineMissRecord& miss);
    void setDeadlineMark(const std::string& workflow, std::optional<int64_t> checked_ms);
    // order: the task's position in its workflow, which is the order tasks are listed in
    // (0 <= order < kMaxTasksPerRun).
    // Writes every field, outputs (a JSON object in their order) and child_run included.
    void upsertTask(const std::string& run_id, int order, const TaskRecord& task);
    void addEvent(const EventRecord& event); // event.seq is ignored: the store numbers events
    void addEvent(int64_t ts_ms, std::string_view run_id, std::string_view task_id, std::string_view kind,
                  std::string_view detail);

    // Synchronous mode: commits the open transaction. Writer mode: waits until everything
    // written so far is committed. Returns false when a write since the last commit() (sync) or
    // a write pending at the call (writer) was not stored.
    bool commit();
    // A position in the stream of writes: the number of writes handed to the store so far.
    uint64_t writeMark() const;
    // Whether every write up to and including the mark's is committed (or its batch failed):
    // writeMark() taken right after a write tells whether that write has reached the disk yet.
    bool isDurable(uint64_t mark) const;
    // Writer mode: the batches committed (or lost) so far. For tests and benchmarks.
    uint64_t batchesWritten() const;
    // Calls fn(ok) on the event loop once every write made before this call is committed (at
    // once, through post, when nothing is pending). ok is false when any write made after
    // writeMark() returned `since` was lost (its batch failed). While the store cannot write
    // (writeProblem()) fn waits until the writes are committed after all. Writer mode only.
    void whenDurable(uint64_t since, std::function<void(bool ok)> fn);
    // As whenDurable, but while the store cannot write (writeProblem()) fn(false) is called at
    // once, also when the store becomes unwritable while fn waits: for answers to clients, who
    // should hear about the problem rather than wait until the disk has room again.
    void whenDurableOrUnwritable(uint64_t since, std::function<void(bool ok)> fn);
    // As whenDurable, but fn does not hurry the commit: it runs after whichever commit covers
    // the writes made so far, when the writer would make it anyway (for clean-up that must wait
    // until a record is on disk, not for anyone who waits).
    void afterDurable(std::function<void(bool ok)> fn);
    // For a daemon that begins to stop: from now on every whenDurable callback behaves as a
    // whenDurableOrUnwritable one (those waiting already too), so that nothing the shutdown
    // waits for (an attempt waiting for its "starting" record) waits for a disk that may not
    // have room again before the exit. Event-loop thread.
    void stopWaitingWhileUnwritable();

    // Synchronous mode only (start-up): returns the value stored under key in the meta table ("" when
    // none) and stores value in its place (durable with the next commit()).
    std::string exchangeMeta(const std::string& key, const std::string& value);

    // ---- notifications (daemon/notify's durable outbox) ----
    // Records a notification; one that exists already (same id) is left as it is.
    void addNotification(const NotificationRecord& n);
    // Writes its state, attempts, next_attempt_ms, last_error and sent_ms.
    void updateNotification(const NotificationRecord& n);
    // The notifications of a run (or firing), oldest first.
    std::vector<NotificationRecord> notifications(const std::string& run_id);
    // Pending notifications, oldest first, at most limit (start-up: what to deliver).
    std::vector<NotificationRecord> pendingNotifications(size_t limit);
    // How many notifications are in each state (indexed by model::NotifyState).
    std::vector<int64_t> notificationCounts();
    // Per workflow, the final state (succeeded or failed) of its latest top-level run that
    // succeeded or failed: what `recovery` compares with. One pass, at start-up.
    std::vector<std::pair<std::string, model::RunState>> lastOutcomes();

    // ---- reads: committed data, plus run ids not yet committed for runExists ----
    bool runExists(const std::string& id);
    std::optional<RunRecord> run(const std::string& id, bool with_tasks);
    std::vector<RunRecord> runs(const RunFilter& filter); // newest first
    std::vector<EventRecord> events(const std::string& run_id);
    int64_t countRuns();
    // The latest scheduled instant (epoch ms) of the workflow's runs that were scheduled firings
    // (started, queued or recorded as skipped), or std::nullopt when it has none.
    std::optional<int64_t> lastScheduledMs(const std::string& workflow);

    // When the workflow's latest run (top-level or child) that ended in `state` ended (epoch ms),
    // or std::nullopt when none did: seeds the metrics' last success and failure times at start.
    std::optional<int64_t> lastEndedMs(const std::string& workflow, model::RunState state);
    // Runs left queued, running or paused by a previous daemon process, oldest first (child runs
    // included: their parent_run says where they belong).
    std::vector<RunRecord> unfinishedRuns();
    struct PausedWorkflow {
        std::string workflow;
        int64_t since_ms = 0;
        std::string by;
    };
    std::vector<PausedWorkflow> pausedWorkflows(); // committed, by name
    // Every file version recorded for the workflow (committed), in no particular order.
    std::vector<FileVersion> fileVersions(const std::string& workflow);
    // Deadlines (committed): every workflow's mark (by name); a workflow's misses scheduled after
    // after_ms, newest first, at most limit; the miss of a run id (a firing's id), if any.
    std::map<std::string, int64_t> deadlineMarks();
    std::vector<DeadlineMissRecord> deadlineMisses(const std::string& workflow, int64_t after_ms, int limit);
    std::optional<DeadlineMissRecord> deadlineMiss(const std::string& run_id);
    // The top-level runs of a workflow's scheduled firings after after_ms, oldest first (by
    // scheduled instant), at most limit, without tasks.
    std::vector<RunRecord> scheduledRuns(const std::string& workflow, int64_t after_ms, int limit);
    // The plugin's latest `limit` health transitions, oldest first.
    std::vector<PluginEvent> pluginEvents(const std::string& plugin, int limit);
    // The direct child runs of run_id (runs whose parent_run is run_id), oldest first, without
    // tasks. Empty for an unknown run or one without children.
    std::vector<RunRecord> children(const std::string& run_id);

    // ---- history retention (used by app/housekeeping) ----
    // How much history of a workflow's top-level runs is kept: the newest keep_runs, and those
    // created less than keep_days ago; a run beyond either limit goes. Unset: no limit.
    struct Retention {
        std::optional<int> keep_runs;
        std::optional<int> keep_days;
    };
    struct PruneScan {
        int64_t now_ms = 0;
        int64_t min_age_ms = 0;   // a run that ended (or, never started, was created) more recently stays
        size_t max_runs = 200;    // ids returned at most
        size_t max_workflows = 64; // workflows looked at, at most
        std::string cursor;       // the next call starts after this workflow name; updated (round robin)
    };
    // Finished top-level runs beyond their workflow's rules (rules(workflow)), oldest first per
    // workflow: committed data, a bounded amount of it per call. Never picked: a run that is not
    // final, one that ended less than min_age_ms ago, and the run holding its workflow's latest
    // scheduled instant (catch-up after downtime starts from it). Event-loop thread.
    std::vector<std::string> prunableRuns(const std::function<Retention(const std::string&)>& rules,
                                          PruneScan& scan);
    // Deletes these top-level runs with their child runs, tasks and events, through the writer
    // thread like every write. A run that is no longer final when the deletion is applied, whose
    // tree has a run that is not, or that has writes waiting is left alone. From this call on
    // run() no longer finds them (so `retry` cannot revive a run being deleted).
    void pruneRuns(const std::vector<std::string>& run_ids);
    // The next `limit` recorded file versions after *cursor (in key order; an empty cursor starts
    // at the beginning and the end wraps to it) whose run is gone or that never had one.
    std::vector<FileVersion> orphanFileVersions(size_t limit, FileVersion* cursor);
    // Forgets these file versions (through the writer thread), unless a run with their run id
    // exists by then.
    void forgetFileVersions(std::vector<FileVersion> versions);
    // ---- end of history retention ----

    std::string lastError() const;
    // Why the store cannot write at the moment ("cannot write the state database PATH: database
    // or disk is full; free space on ..."), or nullopt while it can (see Errors above). Any
    // thread. The engine starts no new run and the control channel refuses changes meanwhile.
    std::optional<std::string> writeProblem() const;
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    struct InsertRun {
        RunRecord run; // without tasks
        std::string tasks; // TaskList::text()
    };
    struct UpdateRun {
        RunRecord run;
    };
    struct ReviveRun {
        RunRecord run; // without tasks
        std::string tasks;
    };
    struct WorkflowPause {
        std::string workflow;
        bool paused = false;
        int64_t since_ms = 0;
        std::string by;
    };
    struct Prune { // history retention: runs (top-level ids) and file versions to delete
        std::vector<std::string> run_ids;
        std::vector<FileVersion> file_versions;
    };
    struct DeadlineMark {
        std::string workflow;
        std::optional<int64_t> checked_ms;
    };
    struct NotificationWrite { // addNotification (insert) or updateNotification
        NotificationRecord n;
        bool insert = false;
    };
    using RunOp = std::variant<InsertRun, UpdateRun, ReviveRun, WorkflowPause, PluginEvent,
                               FileVersion, Prune, DeadlineMissRecord, DeadlineMark,
                               NotificationWrite>; // insert, update, ...
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    // What one batch changes in one run: the latest state of each task written (several updates
    // of a task collapse into one row) and its events, encoded as the elements of a JSON array.
    struct RunPart {
        std::vector<int32_t> slot; // by task order: index into tasks, or -1
        std::vector<std::pair<int, TaskRecord>> tasks;
        std::string events;
        int64_t last_event_seq = 0;
    };
    struct Batch {
        std::vector<RunOp> run_ops; // in the order written, applied before the tasks and events
        std::unordered_map<std::string, RunPart, StringHash, std::equal_to<>> parts;
        std::unordered_set<std::string> run_ids; // runs inserted by this batch
        uint64_t first_seq = 0;                  // first write in this batch
        uint64_t seq = 0;                        // last write in this batch
        size_t writes = 0;
        void clear(); // keeps the storage of runs that had writes, for the next batch
    };
    struct Waiter {
        uint64_t target; // durable once durable_seq_ reaches this
        uint64_t since;  // the caller's writes are those after this mark
        std::function<void(bool)> fn;
        bool answer_when_unwritable = false; // whenDurableOrUnwritable
    };
    class Conn;

    Store(std::unique_ptr<Conn> writer, std::unique_ptr<Conn> reader, std::filesystem::path path);
    // Writer mode: the pending batch, with the write counted; the caller holds mu_.
    Batch& pendingLocked();
    // Writer mode, after the first write of a batch: posts the kick that lets the writer take the
    // batch once the event-loop handler writing it has returned.
    void kick();
    RunPart& partLocked(std::string_view run_id);
    void enqueueRun(RunOp op);
    bool applyRun(Conn& c, const RunOp& op);
    bool applyPrune(Conn& c, const Prune& op);    // history retention
    bool applyNotification(Conn& c, const NotificationWrite& op); // notifications.cc
    bool hasWritesWaiting(const std::string& run_id); // history retention: writer thread
    std::optional<int64_t> runKey(Conn& c, std::string_view run_id); // logs and records a miss
    bool applyTask(Conn& c, int64_t run_key, int order, const TaskRecord& t);
    bool applyEvents(Conn& c, int64_t run_key, int64_t last_seq, const std::string& events);
    bool fail(const std::string& err);
    void writerLoop();
    // The -wal's size (in pages) from which the writer checkpoints it after a commit.
    static constexpr int kCheckpointFrames = 1000;
    static int walHook(void* self, sqlite3* db, const char* name, int frames); // writer thread
    void checkpoint(); // writer thread: a PASSIVE checkpoint of the -wal
    // Writes and commits the batch being written; false with *err (and *storage_error when the
    // database could not be written, so that the batch is worth retrying) when it did not commit.
    bool writeBatch(std::string* err, bool* storage_error);
    void setWriteProblemLocked(const std::string& problem); // "" when the store can write again
    void onUnwritable();
    void waitDurable(uint64_t since, std::function<void(bool)> fn, bool answer_when_unwritable, bool hurry = true);
    void onCommitted(uint64_t seq);
    bool failedBetweenLocked(uint64_t since, uint64_t until) const;

    std::unique_ptr<Conn> w_; // write connection: the writer thread's, or the caller's before it
    std::unique_ptr<Conn> r_; // read connection: the event loop's
    std::filesystem::path path_;
    int lock_fd_ = -1;        // flock on state_dir/taskhub.lock, held for the Store's lifetime

    // Writer mode.
    std::function<void(std::function<void()>)> post_;
    std::thread writer_;
    bool checkpoint_due_ = false;       // writer thread: the -wal reached kCheckpointFrames
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable flushed_cv_;
    Batch pending_;                     // guarded by mu_
    Batch writing_;                     // writer thread: the batch being committed
    int64_t next_event_seq_ = 1;        // guarded by mu_: the number of the next event
    std::unordered_set<std::string> committing_runs_; // guarded by mu_: run ids in the batch being written
    bool stopping_ = false;             // guarded by mu_
    bool urgent_ = false;               // guarded by mu_: a waiter wants the pending writes committed now
    bool kicked_ = false;               // guarded by mu_: the kick of the pending batch ran (see kick())
    uint64_t batches_written_ = 0;      // guarded by mu_: batchesWritten()
    uint64_t written_seq_ = 0;          // guarded by mu_: last write handed to the store
    uint64_t durable_seq_ = 0;          // guarded by mu_: last write committed (or failed)
    std::deque<std::pair<uint64_t, uint64_t>> failed_; // guarded by mu_: seq ranges of lost batches
    uint64_t forgotten_failures_until_ = 0;            // guarded by mu_: older failures dropped
    bool sync_failed_ = false;          // synchronous mode: a write failed since the last commit
    std::string last_error_;            // guarded by mu_
    std::string write_problem_;         // guarded by mu_: see writeProblem(); "" when writable
    // Event-loop thread only.
    std::deque<Waiter> waiters_;
    bool stop_waiting_while_unwritable_ = false; // stopWaitingWhileUnwritable()
    std::unordered_set<std::string> pruning_; // runs handed to pruneRuns() and not yet durable
};

} // namespace taskhub::store

#endif // TASKHUB_STORE_STORE_H

// Durable state in SQLite under the state directory: runs, their tasks and an event log.
//
// Durability: WAL journal with synchronous=FULL. Two modes:
//   - synchronous (after open()): writes join an open transaction on the calling thread and
//     commit() makes them durable. Used at start-up (recovery) and by tests.
//   - writer thread (after startWriter()): writes are queued as plain records and a writer
//     thread with its own connection commits them in batches (group commit: at once when idle,
//     at most every 20 ms under load), so
//     fsync never blocks the event loop. Several updates of one task within a batch collapse into
//     its latest state. whenDurable(fn) calls fn (through the poster given to startWriter) once
//     everything written so far is committed: the control channel answers a client only then, so
//     nothing acknowledged is ever lost and every answer reads its own writes.
//
// Threading: the write and read methods are for one thread (the event loop); the writer thread
// is internal. Reads use their own connection and see committed data only.
// Errors: open() throws StoreError with a message saying what to do; write errors after that are
// logged (STORE_WRITE_FAILED), reported to whenDurable callbacks, and kept in lastError().
#ifndef TASKHUB_STORE_STORE_H
#define TASKHUB_STORE_STORE_H

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "store/records.h"

struct sqlite3;
struct sqlite3_stmt;

namespace taskhub::store {

class StoreError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct RunFilter {
    std::optional<std::string> workflow;
    std::optional<std::string> state;
    size_t limit = 50;
    bool top_level_only = false; // leave out child runs (those with a parent_run)
};

class Store {
public:
    // 1: runs, tasks, events. 2: run params, parent_run, parent_task, depth; task outputs and
    // child_run (ADD COLUMN; a version 1 database is migrated when opened).
    static constexpr int kSchemaVersion = 2;

    // Opens (creating if needed) state_dir/taskhub.db and migrates it forward to kSchemaVersion
    // (in one transaction, logged as STORE_MIGRATING). Takes an exclusive lock on
    // state_dir/taskhub.lock first: a second daemon on the same state directory is refused before
    // it reads or writes anything. Refuses a database written by a newer schema version, and one
    // that is not a TaskHub database.
    static std::unique_ptr<Store> open(const std::filesystem::path& state_dir);
    ~Store(); // commits or flushes what is pending, stops the writer
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Switches to writer-thread mode (see above). post(fn) must run fn on the event-loop thread.
    void startWriter(std::function<void(std::function<void()>)> post);

    // ---- writes ----
    void insertRun(const RunRecord& run); // every field but tasks; params as a JSON object
    void updateRun(const RunRecord& run); // state, message, started, ended
    // order: the task's position in its workflow, which is the order tasks are listed in.
    // Writes every field, outputs (a JSON object in their order) and child_run included.
    void upsertTask(const std::string& run_id, int order, const TaskRecord& task);
    void addEvent(const EventRecord& event);

    // Synchronous mode: commits the open transaction. Writer mode: waits until everything
    // written so far is committed. Returns false when a write since the last commit() (sync) or
    // a write pending at the call (writer) was not stored.
    bool commit();
    // A position in the stream of writes: the number of writes handed to the store so far.
    uint64_t writeMark() const;
    // Calls fn(ok) on the event loop once every write made before this call is committed (at
    // once, through post, when nothing is pending). ok is false when any write made after
    // writeMark() returned `since` was lost (its batch failed). Writer mode only.
    void whenDurable(uint64_t since, std::function<void(bool ok)> fn);

    // ---- reads: committed data, plus run ids not yet committed for runExists ----
    bool runExists(const std::string& id);
    std::optional<RunRecord> run(const std::string& id, bool with_tasks);
    std::vector<RunRecord> runs(const RunFilter& filter); // newest first
    std::vector<EventRecord> events(const std::string& run_id);
    int64_t countRuns();

    // Runs left queued, running or paused by a previous daemon process, oldest first (child runs
    // included: their parent_run says where they belong).
    std::vector<RunRecord> unfinishedRuns();
    // The direct child runs of run_id (runs whose parent_run is run_id), oldest first, without
    // tasks. Empty for an unknown run or one without children.
    std::vector<RunRecord> children(const std::string& run_id);

    std::string lastError() const;
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    struct UpsertTask {
        std::string run_id;
        int order;
        TaskRecord task;
    };
    struct UpdateRun {
        RunRecord run;
    };
    using Op = std::variant<RunRecord, UpdateRun, UpsertTask, EventRecord>;
    struct Batch {
        std::vector<Op> ops;
        std::unordered_map<std::string, size_t> task_index; // "run\ntask" -> index in ops
        std::unordered_set<std::string> run_ids;            // runs inserted by this batch
        uint64_t first_seq = 0;                             // first write in this batch
        uint64_t seq = 0;                                   // last write in this batch
    };
    struct Waiter {
        uint64_t target; // durable once durable_seq_ reaches this
        uint64_t since;  // the caller's writes are those after this mark
        std::function<void(bool)> fn;
    };
    class Conn;

    Store(std::unique_ptr<Conn> writer, std::unique_ptr<Conn> reader, std::filesystem::path path);
    void enqueue(Op op);
    bool apply(Conn& c, const Op& op);
    void writerLoop();
    void onCommitted(uint64_t seq);
    bool failedBetweenLocked(uint64_t since, uint64_t until) const;

    std::unique_ptr<Conn> w_; // write connection: the writer thread's, or the caller's before it
    std::unique_ptr<Conn> r_; // read connection: the event loop's
    std::filesystem::path path_;
    int lock_fd_ = -1;        // flock on state_dir/taskhub.lock, held for the Store's lifetime

    // Writer mode.
    std::function<void(std::function<void()>)> post_;
    std::thread writer_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable flushed_cv_;
    Batch pending_;                     // guarded by mu_
    std::unordered_set<std::string> committing_runs_; // guarded by mu_: run ids in the batch being written
    bool stopping_ = false;             // guarded by mu_
    uint64_t written_seq_ = 0;          // guarded by mu_: last write handed to the store
    uint64_t durable_seq_ = 0;          // guarded by mu_: last write committed (or failed)
    std::deque<std::pair<uint64_t, uint64_t>> failed_; // guarded by mu_: seq ranges of lost batches
    uint64_t forgotten_failures_until_ = 0;            // guarded by mu_: older failures dropped
    bool sync_failed_ = false;          // synchronous mode: a write failed since the last commit
    std::string last_error_;            // guarded by mu_
    // Event-loop thread only.
    std::deque<Waiter> waiters_;
};

} // namespace taskhub::store

#endif // TASKHUB_STORE_STORE_H

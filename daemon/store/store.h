// Durable state in SQLite under the state directory: runs, their tasks and an event log.
//
// Durability: WAL journal with synchronous=FULL. Writes are grouped: every write joins the open
// transaction, and commit() makes all of them durable with one fsync. The engine calls commit()
// once per event-loop turn (group commit) and before it acknowledges a state change to a client,
// so nothing acknowledged is ever lost while many state changes share one fsync.
//
// Threading: not thread-safe; owned and used by the event-loop thread only.
// Errors: open() throws StoreError with a message saying what to do; write and read errors
// after that are logged and reported through lastError(), never thrown into the engine.
#ifndef TASKHUB_STORE_STORE_H
#define TASKHUB_STORE_STORE_H

#include <filesystem>
#include <memory>
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
};

class Store {
public:
    static constexpr int kSchemaVersion = 1;

    // Opens (creating if needed) state_dir/taskhub.db and migrates it. Takes an exclusive lock on
    // state_dir/taskhub.lock first: a second daemon on the same state directory is refused before
    // it reads or writes anything. Refuses a database written by a newer schema version, and one
    // that is not a TaskHub database.
    static std::unique_ptr<Store> open(const std::filesystem::path& state_dir);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // ---- writes: join the open transaction; durable after commit() ----
    void insertRun(const RunRecord& run);
    void updateRun(const RunRecord& run); // state, message, started, ended
    // order: the task's position in its workflow, which is the order tasks are listed in.
    void upsertTask(const std::string& run_id, int order, const TaskRecord& task);
    void addEvent(const EventRecord& event);
    // Commits the open transaction, if any. Returns false (and logs) on failure.
    bool commit();
    bool hasUncommitted() const noexcept { return in_tx_; }

    // ---- reads: see every write, committed or not ----
    bool runExists(const std::string& id);
    std::optional<RunRecord> run(const std::string& id, bool with_tasks);
    std::vector<RunRecord> runs(const RunFilter& filter); // newest first
    std::vector<EventRecord> events(const std::string& run_id);
    int64_t countRuns();

    // Runs left queued or running by a previous daemon process.
    std::vector<RunRecord> unfinishedRuns();

    const std::string& lastError() const noexcept { return last_error_; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    Store(sqlite3* db, std::filesystem::path path);
    class Stmt;
    Stmt& stmt(int which);
    void begin();
    bool check(int rc, const char* what);
    void migrate();

    sqlite3* db_;
    std::filesystem::path path_;
    std::vector<std::unique_ptr<Stmt>> stmts_;
    bool in_tx_ = false;
    int lock_fd_ = -1; // flock on state_dir/taskhub.lock, held for the Store's lifetime
    std::string last_error_;
};

} // namespace taskhub::store

#endif // TASKHUB_STORE_STORE_H

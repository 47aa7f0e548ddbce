// What the store's rooms share and nothing outside daemon/store/ sees: one SQLite connection with
// its prepared statements, and the helpers each room takes from another (schema.cc: migrate;
// open_checks.cc: the checks open() makes; rows.cc: how records are spelled in columns;
// connection.cc: the statements and how SQLite's errors are read).
#ifndef TASKHUB_STORE_INTERNAL_H
#define TASKHUB_STORE_INTERNAL_H

#include "store/store.h"

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::store {

inline constexpr int kApplicationId = 0x54484231; // "THB1"

// tasks.key = run key << kTaskKeyBits | position.
inline constexpr int kTaskKeyBits = 20;
static_assert(Store::kMaxTasksPerRun == 1 << kTaskKeyBits);

#define TASKHUB_RUN_COLUMNS                                                                      \
    "id, workflow, trigger, state, message, version, scheduled_ms, created_ms, started_ms, "    \
    "ended_ms, params, parent_run, parent_task, depth, lost, skip_cause, failures_absorbed"

#define TASKHUB_RUN_SELECT TASKHUB_RUN_COLUMNS ", key"

enum StmtId {
    kInsertRun,
    kUpdateRun,
    kReviveRun,
    kDeleteTasks,
    kPauseWorkflow,
    kResumeWorkflow,
    kSelectPauses,
    kRunKey,
    kUpsertTask,
    kInsertEvents,
    kRunExists,
    kSelectRun,
    kSelectTasks,
    kSelectEvents,
    kNextEventSeq,
    kCountRuns,
    kLastScheduled,
    kLastEnded,
    kUnfinished,
    kChildren,
    kInsertPluginEvent,
    kSelectPluginEvents,
    kInsertFileVersion,
    kSelectFileVersions,
    kInsertDeadlineMiss,
    kSetDeadlineMark,
    kDeleteDeadlineMark,
    kSelectDeadlineMarks,
    kSelectDeadlineMisses,
    kSelectDeadlineMissOfRun,
    kSelectScheduledRuns,
    kStmtCount
};

// The text of each StmtId (connection.cc).
extern const char* const kSql[kStmtCount];

// A prepared statement: bind, step, read columns.
class Stmt {
public:
    Stmt() = default;
    // The queries' and retention's own statements: throws StoreError when sql cannot be prepared
    // (their callers have no error path yet).
    Stmt(sqlite3* db, const char* sql) {
        if (std::string err; !prepare(db, sql, &err)) throw StoreError(err);
    }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    // Prepares sql on db, once. False: *err says why it could not be.
    bool prepare(sqlite3* db, const char* sql, std::string* err) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK) {
            *err = std::string("cannot prepare statement: ") + sqlite3_errmsg(db);
            return false;
        }
        return true;
    }
    Stmt& reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
        return *this;
    }
    // Resets without clearing the bindings: for a statement whose every parameter is bound anew.
    Stmt& resetKeepingBindings() {
        sqlite3_reset(s_);
        return *this;
    }
    Stmt& bind(int i, std::string_view v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    // For text that stays unchanged until the statement is reset (SQLite does not copy it).
    Stmt& bindRef(int i, std::string_view v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
        return *this;
    }
    Stmt& bind(int i, int64_t v) {
        sqlite3_bind_int64(s_, i, v);
        return *this;
    }
    Stmt& bindNull(int i) {
        sqlite3_bind_null(s_, i);
        return *this;
    }
    template <class T>
    Stmt& bind(int i, const std::optional<T>& v) {
        if (v) {
            bind(i, static_cast<int64_t>(*v));
        } else {
            sqlite3_bind_null(s_, i);
        }
        return *this;
    }
    int step() { return sqlite3_step(s_); }
    // Ends a read early, so that the statement does not hold its snapshot open.
    void finish() { sqlite3_reset(s_); }
    std::string text(int c) const {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
        return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
    }
    int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
    std::optional<int64_t> opt(int c) const {
        if (sqlite3_column_type(s_, c) == SQLITE_NULL) return std::nullopt;
        return i64(c);
    }

private:
    sqlite3_stmt* s_ = nullptr;
};

// One SQLite connection with its prepared statements; used by one thread at a time.
class Store::Conn {
public:
    Conn(sqlite3* db, const std::filesystem::path& path) : db_(db), path_(path) {}
    ~Conn() {
        stmts_.clear();
        sqlite3_close(db_);
    }
    // Prepares every StmtId. False: *err says why one could not be.
    bool prepare(std::string* err) {
        for (int i = 0; i < kStmtCount; ++i) {
            stmts_.push_back(std::make_unique<Stmt>());
            if (!stmts_.back()->prepare(db_, kSql[i], err)) return false;
        }
        return true;
    }
    Stmt& stmt(int which) { return stmts_[which]->reset(); }
    // For a statement whose caller binds every parameter (the hottest one, a task's write).
    Stmt& stmtRebound(int which) { return stmts_[which]->resetKeepingBindings(); }
    sqlite3* db() const { return db_; }

    // Returns an error message, or "" on success.
    std::string exec(const char* sql) {
        char* msg = nullptr;
        int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
        if (rc == SQLITE_OK) return "";
        noteError(rc);
        std::string m = msg ? msg : sqlite3_errmsg(db_);
        sqlite3_free(msg);
        return m;
    }
    bool check(int rc, const char* what, std::string* err) {
        if (rc == SQLITE_DONE || rc == SQLITE_ROW || rc == SQLITE_OK) return true;
        noteError(rc);
        if (err->empty()) *err = std::string(what) + ": " + sqlite3_errmsg(db_);
        return false;
    }

    bool in_tx = false; // synchronous mode: a transaction is open
    // The first failure since the writer cleared them: SQLite's primary result code and the
    // operating system's errno behind it (0 when none), so that the writer can tell a database
    // that cannot be written (retry) from a write that is wrong (drop).
    int error_code = SQLITE_OK;
    int system_errno = 0;
    bool quiet_storage_errors = false; // the writer thread reports them itself (STORE_UNWRITABLE)

private:
    void noteError(int rc) {
        if (error_code != SQLITE_OK) return;
        error_code = rc & 0xff;
        system_errno = sqlite3_system_errno(db_);
    }

    sqlite3* db_;
    std::filesystem::path path_;
    std::vector<std::unique_ptr<Stmt>> stmts_;
};

// ---- connection.cc ----
// Runs sql on db. False: *err says why, naming the database.
bool exec(sqlite3* db, const char* sql, const std::filesystem::path& path, std::string* err);
// The first column of the first row of sql ("" when there is no row). nullopt: *err says why.
std::optional<std::string> pragmaText(sqlite3* db, const char* sql, const std::filesystem::path& path,
                                      std::string* err);
// Integer pragmas read through the text form SQLite gives any value; no row reads as 0.
std::optional<int64_t> pragmaInt(sqlite3* db, const char* sql, const std::filesystem::path& path, std::string* err);
// SQLite results that say the database cannot be written at the moment, rather than that a write
// is wrong: a batch that failed with one is kept and tried again.
bool isStorageError(int code);
// What Store::writeProblem() says: the database, SQLite's error with the system's, what to do.
std::string unwritableMessage(const std::filesystem::path& db, int code, int sys_errno);
// A connection to path (busy timeout 5 s). nullptr: *err says why.
sqlite3* openConnection(const std::filesystem::path& path, int flags, std::string* err);

// ---- schema.cc ----
// Takes the database forward to Store::kSchemaVersion in one transaction, or refuses it: false
// and *err says why (the database is left as it was).
bool migrate(sqlite3* db, const std::filesystem::path& path, std::string* err);

// ---- open_checks.cc ----
// Opens `path` (a directory or a file of the state directory; a missing file is created when
// `create`) and takes away every permission of group and others. False: *err says why not.
bool makePrivate(const std::filesystem::path& path, bool directory, bool create, std::string* err);
// One daemon per state directory: the fd of the lock held on state_dir/taskhub.lock, or -1 and
// *err says why (another taskhubd holds it, or the file cannot be opened).
int lockStateDir(const std::filesystem::path& state_dir, std::string* err);
// What is wrong with the database file at path, or "" when nothing is seen. Reads only.
std::string databaseDamage(const std::filesystem::path& path);
// The message a damaged database is refused with: what is wrong and what to do.
std::string damagedMessage(const std::filesystem::path& path, const std::string& damage);

// ---- rows.cc ----
// The text of an empty NameValues (what nearly every task's outputs are).
inline constexpr std::string_view kEmptyJsonObject = "{}";
// NameValues as a JSON object text in their order, and back. The store writes these columns
// itself; a value that does not parse (edited by hand) reads as empty and is logged.
std::string toJsonObject(const NameValues& values);
NameValues fromJsonObject(const std::string& text, const char* what);
// A task's outputs column: plain outputs as JSON strings, typed ones (compact JSON text) as JSON
// values, in one object; and back, split again (an unreadable column reads as no outputs, logged).
std::string outputsToJson(const NameValues& plain, const NameValues& typed);
void outputsFromJson(const std::string& text, NameValues* plain, NameValues* typed);
// One event as an element of a block: [seq,ts_ms,"task","kind","detail"].
void appendEvent(std::string& out, int64_t seq, int64_t ts_ms, std::string_view task_id, std::string_view kind,
                 std::string_view detail);
// The events of one block, appended to out; a block that does not parse (edited by hand) is
// logged and left out.
void readEventBlock(const std::string& run_id, const std::string& text, std::vector<EventRecord>& out);
// A run from a row of TASKHUB_RUN_COLUMNS.
RunRecord readRun(const Stmt& s);
// A task from a row of kSelectTasks (its first 23 columns).
TaskRecord readTask(const Stmt& s);
// A task's usage and leftovers from the nine columns of schema 9 starting at `first`.
void readUsage(const Stmt& s, int first, TaskRecord& t);

// A counter for an INTEGER column (SQLite's are signed): values above INT64_MAX are stored as it.
inline int64_t clampToInt64(uint64_t v) {
    return v > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v);
}
inline std::optional<int64_t> clampToInt64(const std::optional<uint64_t>& v) {
    if (!v) return std::nullopt;
    return clampToInt64(*v);
}
// Logs a column's text that is no name of its enum (STORE_BAD_VALUE).
void logBadName(const char* what, const std::string& text);
// The value a column names; text that is no name of E (edited by hand) reads as `otherwise`
// and is logged. The store's edge: columns hold the names of daemon/model's tables.
template <class E>
E nameFromColumn(const std::string& text, E otherwise, const char* what) {
    if (auto v = model::parse<E>(text)) return *v;
    logBadName(what, text);
    return otherwise;
}

} // namespace taskhub::store

#endif // TASKHUB_STORE_INTERNAL_H

#include "store/store.h"

#include "common/failpoint.h"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <iterator>

namespace taskhub::store {

namespace json = boost::json;

namespace {

constexpr int kApplicationId = 0x54484231; // "THB1"

const char* kSchemaV1 = R"sql(
CREATE TABLE runs(
  id TEXT PRIMARY KEY,
  workflow TEXT NOT NULL,
  trigger TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  scheduled_ms INTEGER,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  ended_ms INTEGER);
CREATE INDEX runs_by_workflow ON runs(workflow);
CREATE INDEX runs_by_state ON runs(state);
CREATE TABLE tasks(
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  plugin TEXT NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  exit_code INTEGER,
  message TEXT NOT NULL DEFAULT '',
  started_ms INTEGER,
  ended_ms INTEGER,
  seq INTEGER NOT NULL,
  PRIMARY KEY(run_id, task_id)) WITHOUT ROWID;
CREATE TABLE events(
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL,
  task_id TEXT NOT NULL,
  ts_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '');
CREATE INDEX events_by_run ON events(run_id, id);
)sql";

// v2: run params and nesting, task outputs and child runs. ADD COLUMN with constant defaults only
// rewrites the schema, not the rows, so migrating a large history is instant.
const char* kSchemaV2 = R"sql(
ALTER TABLE runs ADD COLUMN params TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN parent_run TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN parent_task TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_by_parent ON runs(parent_run);
ALTER TABLE tasks ADD COLUMN outputs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN child_run TEXT NOT NULL DEFAULT '';
)sql";

// v3: integer keys and the event log in blocks, so that a task's write is one B-tree descent on
// an integer and a commit's events are one row per run (a row per event and text keys made the
// store most of the daemon's work on large runs).
//   runs.key: an integer key (AUTOINCREMENT: never reused); runs.id stays the run's name.
//   tasks.key = run key * 2^20 + the task's position in its workflow (kTaskKeyBits), so a run's
//     tasks are one range of keys in workflow order; the run id and position columns go.
//   event_blocks: per run and commit, the run's events of that commit as a JSON array of
//     [seq, ts_ms, task_id, kind, detail]. seq numbers events across all runs (it orders the
//     events of a run tree); the row's key is its last event's seq, so the next seq after a
//     restart is max(last_seq) + 1, found in one B-tree descent.
const char* kSchemaV3 = R"sql(
CREATE TABLE runs_v3(
  key INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  workflow TEXT NOT NULL,
  trigger TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  scheduled_ms INTEGER,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER,
  ended_ms INTEGER,
  params TEXT NOT NULL DEFAULT '{}',
  parent_run TEXT NOT NULL DEFAULT '',
  parent_task TEXT NOT NULL DEFAULT '',
  depth INTEGER NOT NULL DEFAULT 0);
INSERT INTO runs_v3(key, id, workflow, trigger, state, message, version, scheduled_ms, created_ms,
                    started_ms, ended_ms, params, parent_run, parent_task, depth)
  SELECT rowid, id, workflow, trigger, state, message, version, scheduled_ms, created_ms,
         started_ms, ended_ms, params, parent_run, parent_task, depth FROM runs;
CREATE TABLE tasks_v3(
  key INTEGER PRIMARY KEY,
  task_id TEXT NOT NULL,
  plugin TEXT NOT NULL,
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  exit_code INTEGER,
  message TEXT NOT NULL DEFAULT '',
  started_ms INTEGER,
  ended_ms INTEGER,
  outputs TEXT NOT NULL DEFAULT '{}',
  child_run TEXT NOT NULL DEFAULT '');
INSERT INTO tasks_v3
  SELECT r.rowid * 1048576 + t.seq, t.task_id, t.plugin, t.state, t.attempt, t.exit_code, t.message,
         t.started_ms, t.ended_ms, t.outputs, t.child_run
  FROM tasks t JOIN runs r ON r.id = t.run_id;
CREATE TABLE event_blocks(
  last_seq INTEGER PRIMARY KEY,
  run_key INTEGER NOT NULL,
  events TEXT NOT NULL);
INSERT INTO event_blocks(last_seq, run_key, events)
  SELECT e.id, r.rowid, json_array(json_array(e.id, e.ts_ms, e.task_id, e.kind, e.detail))
  FROM events e JOIN runs r ON r.id = e.run_id;
DROP TABLE events;
DROP TABLE tasks;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
ALTER TABLE tasks_v3 RENAME TO tasks;
CREATE INDEX runs_by_workflow ON runs(workflow);
CREATE INDEX runs_by_state ON runs(state);
CREATE INDEX runs_by_parent ON runs(parent_run);
CREATE INDEX runs_by_schedule ON runs(workflow, scheduled_ms);
CREATE INDEX event_blocks_by_run ON event_blocks(run_key, last_seq);
CREATE TABLE workflow_pauses(
  workflow TEXT PRIMARY KEY,
  since_ms INTEGER NOT NULL,
  by TEXT NOT NULL) WITHOUT ROWID;
)sql";

// 4: plugin health transitions.
constexpr const char* kSchemaV4 = R"sql(
CREATE TABLE plugin_events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  plugin TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  message TEXT NOT NULL);
CREATE INDEX plugin_events_by_plugin ON plugin_events(plugin, id);
)sql";

// 5: the file versions seen by file-drop triggers (exactly once per version).
constexpr const char* kSchemaV5 = R"sql(
CREATE TABLE file_versions(
  workflow TEXT NOT NULL,
  path TEXT NOT NULL,
  inode INTEGER NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  run_id TEXT NOT NULL,
  recorded_ms INTEGER NOT NULL,
  PRIMARY KEY(workflow, path, inode, size, mtime_ns)) WITHOUT ROWID;
)sql";

// 6: crash recovery. The process identity of a task's latest attempt; the attempts of a run
// that recovery found lost; facts about the daemon's previous start (meta: boot_id).
constexpr const char* kSchemaV6 = R"sql(
ALTER TABLE tasks ADD COLUMN pid INTEGER;
ALTER TABLE tasks ADD COLUMN pgid INTEGER;
ALTER TABLE tasks ADD COLUMN proc_start INTEGER;
ALTER TABLE runs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
CREATE TABLE meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL) WITHOUT ROWID;
)sql";

// tasks.key = run key << kTaskKeyBits | position.
constexpr int kTaskKeyBits = 20;
static_assert(Store::kMaxTasksPerRun == 1 << kTaskKeyBits);

// Every migration, in order: kMigrations[i] takes schema version i to i + 1.
const char* const kMigrations[] = {kSchemaV1, kSchemaV2, kSchemaV3, kSchemaV4, kSchemaV5, kSchemaV6};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

#define TASKHUB_RUN_COLUMNS                                                                      \
    "id, workflow, trigger, state, message, version, scheduled_ms, created_ms, started_ms, "    \
    "ended_ms, params, parent_run, parent_task, depth, lost"

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
    kUpdateTask,
    kInsertTask,
    kInsertEvents,
    kRunExists,
    kSelectRun,
    kSelectTasks,
    kSelectEvents,
    kNextEventSeq,
    kCountRuns,
    kLastScheduled,
    kUnfinished,
    kChildren,
    kInsertPluginEvent,
    kSelectPluginEvents,
    kInsertFileVersion,
    kSelectFileVersions,
    kStmtCount
};

const char* kSql[kStmtCount] = {
    "INSERT INTO runs(" TASKHUB_RUN_COLUMNS ") "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    "UPDATE runs SET state = ?2, message = ?3, started_ms = ?4, ended_ms = ?5, lost = ?6 WHERE id = ?1",
    "UPDATE runs SET trigger = ?2, state = ?3, message = ?4, version = ?5, created_ms = ?6, started_ms = ?7, "
    "ended_ms = ?8, params = ?9 WHERE id = ?1",
    "DELETE FROM tasks WHERE key >= ?1 AND key < ?2",
    "INSERT INTO workflow_pauses(workflow, since_ms, by) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(workflow) DO UPDATE SET since_ms = ?2, by = ?3",
    "DELETE FROM workflow_pauses WHERE workflow = ?1",
    "SELECT workflow, since_ms, by FROM workflow_pauses ORDER BY workflow",
    "SELECT key FROM runs WHERE id = ?1",
    "UPDATE tasks SET state = ?3, attempt = ?4, exit_code = ?5, message = ?6, started_ms = ?7, "
    "ended_ms = ?8, outputs = ?9, child_run = ?10, pid = ?12, pgid = ?13, proc_start = ?14 WHERE key = ?1",
    "INSERT INTO tasks(key, task_id, plugin, state, attempt, exit_code, message, started_ms, "
    "ended_ms, outputs, child_run, pid, pgid, proc_start) "
    "VALUES(?1, ?2, ?11, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, ?14)",
    "INSERT INTO event_blocks(last_seq, run_key, events) VALUES(?1, ?2, ?3)",
    "SELECT 1 FROM runs WHERE id = ?1",
    "SELECT " TASKHUB_RUN_SELECT " FROM runs WHERE id = ?1",
    "SELECT task_id, plugin, state, attempt, exit_code, message, started_ms, ended_ms, outputs, "
    "child_run, pid, pgid, proc_start FROM tasks WHERE key >= ?1 AND key < ?2 ORDER BY key",
    "SELECT events FROM event_blocks WHERE run_key = ?1 ORDER BY last_seq",
    "SELECT coalesce(max(last_seq), 0) + 1 FROM event_blocks",
    "SELECT count(*) FROM runs",
    "SELECT max(scheduled_ms) FROM runs WHERE workflow = ?1",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE state IN ('queued', 'running', 'paused') "
    "ORDER BY key",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE parent_run = ?1 ORDER BY key",
    "INSERT INTO plugin_events(plugin, at_ms, from_state, to_state, message) VALUES(?1, ?2, ?3, ?4, ?5)",
    "SELECT at_ms, from_state, to_state, message FROM (SELECT id, at_ms, from_state, to_state, message "
    "FROM plugin_events WHERE plugin = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
    "INSERT OR IGNORE INTO file_versions(workflow, path, inode, size, mtime_ns, run_id, recorded_ms) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    "SELECT path, inode, size, mtime_ns, run_id, recorded_ms FROM file_versions WHERE workflow = ?1",
};

} // namespace

class Stmt {
public:
    Stmt(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK) {
            throw StoreError(std::string("cannot prepare statement: ") + sqlite3_errmsg(db));
        }
    }
    ~Stmt() { sqlite3_finalize(s_); }
    Stmt& reset() {
        sqlite3_reset(s_);
        sqlite3_clear_bindings(s_);
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

namespace {

void exec(sqlite3* db, const char* sql, const std::filesystem::path& path) {
    char* msg = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
        std::string m = msg ? msg : "unknown error";
        sqlite3_free(msg);
        throw StoreError("state database " + path.string() + ": " + m);
    }
}

std::string pragmaText(sqlite3* db, const char* sql, const std::filesystem::path& path) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
        throw StoreError("state database " + path.string() + ": " + sqlite3_errmsg(db));
    }
    std::string v;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        v = p ? p : "";
    } else if (rc != SQLITE_DONE) {
        std::string m = sqlite3_errmsg(db);
        sqlite3_finalize(s);
        throw StoreError("state database " + path.string() + ": " + m);
    }
    sqlite3_finalize(s);
    return v;
}

// Integer pragmas read through the text form SQLite gives any value; no row reads as 0.
int64_t pragmaInt(sqlite3* db, const char* sql, const std::filesystem::path& path) {
    std::string text = pragmaText(db, sql, path);
    return text.empty() ? 0 : std::stoll(text);
}

// NameValues as a JSON object text in their order, and back. The store writes these columns
// itself; a value that does not parse (edited by hand) reads as empty and is logged.
std::string toJsonObject(const NameValues& values) {
    if (values.empty()) return "{}";
    json::object o;
    o.reserve(values.size());
    for (const auto& [name, value] : values) o[name] = value;
    return json::serialize(o);
}

NameValues fromJsonObject(const std::string& text, const char* what) {
    NameValues out;
    if (text == "{}") return out;
    json::error_code ec;
    // Params can carry bytes that are not UTF-8 (a dropped file's name); they are kept as they are.
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    json::value v = json::parse(text, ec, {}, opts);
    if (ec || !v.is_object()) {
        spdlog::error("STORE_BAD_JSON {} is not a JSON object: {}", what, text.substr(0, 200));
        return out;
    }
    out.reserve(v.get_object().size());
    for (const auto& [name, value] : v.get_object()) {
        if (value.is_string()) {
            out.emplace_back(name, value.get_string());
        } else {
            out.emplace_back(name, json::serialize(value));
        }
    }
    return out;
}

// Appends v as a JSON string. Bytes that are not valid UTF-8 become U+FFFD, so that every block
// parses (event details can carry a plugin's or a process's bytes).
void appendJsonString(std::string& out, std::string_view v) {
    static const char kHex[] = "0123456789abcdef";
    out += '"';
    const auto* p = reinterpret_cast<const unsigned char*>(v.data());
    const auto* end = p + v.size();
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            const auto* run = p;
            while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') ++p;
            out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
            continue;
        }
        if (c < 0x80) {
            switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\t': out += "\\t"; break;
            case '\r': out += "\\r"; break;
            default:
                out += "\\u00";
                out += kHex[c >> 4];
                out += kHex[c & 15];
            }
            ++p;
            continue;
        }
        // A multi-byte sequence: its length from the lead byte, then continuation bytes, no
        // overlong forms, no surrogates, nothing above U+10FFFF.
        size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = n != 0 && static_cast<size_t>(end - p) >= n;
        for (size_t i = 1; ok && i < n; ++i) ok = (p[i] & 0xc0) == 0x80;
        if (ok && n == 3) ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
        if (ok && n == 4) ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
        if (ok) {
            out.append(reinterpret_cast<const char*>(p), n);
            p += n;
        } else {
            out += "\xef\xbf\xbd";
            ++p;
        }
    }
    out += '"';
}

// One event as an element of a block: [seq,ts_ms,"task","kind","detail"].
void appendEvent(std::string& out, int64_t seq, int64_t ts_ms, std::string_view task_id, std::string_view kind,
                 std::string_view detail) {
    if (!out.empty()) out += ',';
    char num[24]; // an int64 needs at most 20
    out += '[';
    out.append(num, std::to_chars(num, num + sizeof num, seq).ptr);
    out += ',';
    out.append(num, std::to_chars(num, num + sizeof num, ts_ms).ptr);
    out += ',';
    appendJsonString(out, task_id);
    out += ',';
    appendJsonString(out, kind);
    out += ',';
    appendJsonString(out, detail);
    out += ']';
}

// The events of one block, appended to out; a block that does not parse (edited by hand) is
// logged and left out.
void readEventBlock(const std::string& run_id, const std::string& text, std::vector<EventRecord>& out) {
    json::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_array()) {
        spdlog::error("STORE_BAD_JSON event_blocks of run {} is not a JSON array: {}", run_id, text.substr(0, 200));
        return;
    }
    for (const auto& e : v.get_array()) {
        const auto* a = e.if_array();
        if (!a || a->size() != 5 || !(*a)[0].is_int64() || !(*a)[1].is_int64() || !(*a)[2].is_string() ||
            !(*a)[3].is_string() || !(*a)[4].is_string()) {
            spdlog::error("STORE_BAD_JSON an event of run {} is not [seq, ts_ms, task, kind, detail]: {}", run_id,
                          json::serialize(e).substr(0, 200));
            continue;
        }
        EventRecord r;
        r.seq = (*a)[0].get_int64();
        r.ts_ms = (*a)[1].get_int64();
        r.run_id = run_id;
        r.task_id = (*a)[2].get_string();
        r.kind = (*a)[3].get_string();
        r.detail = (*a)[4].get_string();
        out.push_back(std::move(r));
    }
}

RunRecord readRun(const Stmt& s) {
    RunRecord r;
    r.id = s.text(0);
    r.workflow = s.text(1);
    r.trigger = s.text(2);
    r.state = s.text(3);
    r.message = s.text(4);
    r.version = s.text(5);
    r.scheduled_ms = s.opt(6);
    r.created_ms = s.i64(7);
    r.started_ms = s.opt(8);
    r.ended_ms = s.opt(9);
    r.params = fromJsonObject(s.text(10), "runs.params");
    r.parent_run = s.text(11);
    r.parent_task = s.text(12);
    r.depth = static_cast<int>(s.i64(13));
    r.lost = static_cast<int>(s.i64(14));
    return r;
}

} // namespace


// One SQLite connection with its prepared statements; used by one thread at a time.
class Store::Conn {
public:
    Conn(sqlite3* db, const std::filesystem::path& path) : db_(db), path_(path) {}
    ~Conn() {
        stmts_.clear();
        sqlite3_close(db_);
    }
    void prepare() {
        for (int i = 0; i < kStmtCount; ++i) stmts_.push_back(std::make_unique<Stmt>(db_, kSql[i]));
    }
    Stmt& stmt(int which) { return stmts_[which]->reset(); }
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

namespace {

// SQLite results that say the database cannot be written at the moment, rather than that a write
// is wrong: a batch that failed with one is kept and tried again.
bool isStorageError(int code) {
    switch (code) {
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
        return true;
    default:
        return false;
    }
}

// What Store::writeProblem() says: the database, SQLite's error with the system's, what to do.
std::string unwritableMessage(const std::filesystem::path& db, int code, int sys_errno) {
    const std::string dir = db.parent_path().string();
    std::string what = sqlite3_errstr(code);
    if (sys_errno != 0) what += std::string(" (") + std::strerror(sys_errno) + ")";
    std::string todo;
    if (code == SQLITE_FULL || sys_errno == ENOSPC || sys_errno == EDQUOT) {
        todo = "free space on the file system holding " + dir;
    } else if (code == SQLITE_READONLY || code == SQLITE_PERM || code == SQLITE_CANTOPEN || sys_errno == EROFS ||
               sys_errno == EPERM || sys_errno == EACCES) {
        todo = "make " + dir + " and the taskhub.db* files in it writable for taskhubd (a read-write mount, "
               "no immutable attribute, permissions)";
    } else if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
        todo = "stop the other program that holds a write lock on " + db.string();
    } else {
        // SQLite's I/O errors rarely carry the system's reason: a read-only or immutable file
        // looks the same as a failing disk.
        todo = "make sure " + dir + " and the taskhub.db* files in it are writable for taskhubd (a read-write "
               "mount, no immutable attribute, permissions) and that its disk is healthy (dmesg)";
    }
    return "cannot write the state database " + db.string() + ": " + what + "; " + todo;
}

sqlite3* openConnection(const std::filesystem::path& path, int flags) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        throw StoreError("cannot open state database " + path.string() + ": " + m);
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

void migrate(sqlite3* db, const std::filesystem::path& path) {
    int64_t app = pragmaInt(db, "PRAGMA application_id", path);
    int64_t version = pragmaInt(db, "PRAGMA user_version", path);
    int64_t tables = pragmaInt(db, "SELECT count(*) FROM sqlite_master", path);
    if (app != kApplicationId && (app != 0 || tables != 0)) {
        throw StoreError(path.string() + " is not a TaskHub state database (application_id " +
                         std::to_string(app) + ")");
    }
    if (version > Store::kSchemaVersion) {
        throw StoreError(path.string() + " was written by a newer taskhubd (schema version " +
                         std::to_string(version) + ", this taskhubd knows up to " +
                         std::to_string(Store::kSchemaVersion) + "); refusing to modify it");
    }
    if (version == Store::kSchemaVersion) return;
    if (version > 0) {
        spdlog::info("STORE_MIGRATING {} from schema version {} to {}", path.string(), version,
                     Store::kSchemaVersion);
    }
    exec(db, "BEGIN IMMEDIATE", path);
    try {
        // Forward only, one step at a time, all in one transaction: a failure leaves the old
        // version whole.
        for (int64_t v = version; v < Store::kSchemaVersion; ++v) exec(db, kMigrations[v], path);
        exec(db, ("PRAGMA application_id=" + std::to_string(kApplicationId)).c_str(), path);
        exec(db, ("PRAGMA user_version=" + std::to_string(Store::kSchemaVersion)).c_str(), path);
        exec(db, "COMMIT", path);
    } catch (...) {
        sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
        throw;
    }
}

// The state directory and the database files are private to the daemon: they hold every run's
// params and outputs, which others may only see through the control socket's access rules.
// Opens `path` (a directory or a file of the state directory; a missing file is created when
// `create`) and takes away every permission of group and others, logging when there were any, so
// that the result does not depend on the umask or on how an older taskhubd left it.
void makePrivate(const std::filesystem::path& path, bool directory, bool create) {
    // The state directory itself may be a symbolic link the operator made; files in it may not.
    const int flags = O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    int fd = create ? ::open(path.c_str(), flags | O_CREAT, 0600) : ::open(path.c_str(), flags);
    if (fd < 0) {
        if (errno == ENOENT && !create) return;
        throw StoreError("cannot open " + path.string() + " to make it private to taskhubd: " + std::strerror(errno) +
                         (errno == ELOOP ? " (it is a symbolic link: keep the state files themselves in state_dir)"
                                         : ""));
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && (st.st_mode & 077) != 0) {
        const mode_t want = st.st_mode & 0700;
        if (::fchmod(fd, want) != 0) {
            const int err = errno;
            ::close(fd);
            throw StoreError("cannot make " + path.string() + " private to taskhubd (chmod go= " + path.string() +
                             "): " + std::strerror(err));
        }
        char from[8], to[8];
        std::snprintf(from, sizeof from, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        std::snprintf(to, sizeof to, "%04o", static_cast<unsigned>(want));
        spdlog::warn("STORE_PERMISSIONS_FIXED {} had mode {}, now {}: the state holds every run's params and "
                     "outputs, only taskhubd may read it",
                     path.string(), from, to);
    }
    ::close(fd);
}

// One daemon per state directory: a second one must not touch the first one's runs.
int lockStateDir(const std::filesystem::path& state_dir) {
    auto lock_path = state_dir / "taskhub.lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw StoreError("cannot open " + lock_path.string() + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
        ::close(fd);
        std::string pid = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "unknown";
        while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
        throw StoreError("state directory " + state_dir.string() + " is in use by another taskhubd (pid " + pid +
                         "); stop it first or give this one its own state_dir");
    }
    std::string pid = std::to_string(::getpid()) + "\n";
    // The pid is informational only; the lock itself is what counts.
    if (::ftruncate(fd, 0) == 0) {
        [[maybe_unused]] ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
    }
    return fd;
}

} // namespace

namespace {

off_t fileSize(const std::filesystem::path& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

uint32_t bigEndian32(const unsigned char* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// What is wrong with the database file at path, from its size and its SQLite header, or "".
// *after_crash: a -wal file with frames lies beside it, so the last process did not close the
// database (or something put a stray -wal there).
std::string headerDamage(const std::filesystem::path& path, bool* after_crash) {
    const off_t size = fileSize(path);
    const off_t wal = fileSize(path.string() + "-wal");
    *after_crash = wal > 0;
    if (size <= 0) {
        // Missing or empty: a new database (SQLite leaves an empty file when the process dies
        // before its first commit: nothing can have been lost). A -wal with frames beside it
        // cannot be its own, and replaying it would make some other database's pages ours.
        if (wal > 0) return "the database file is empty but a " + std::to_string(wal) + "-byte -wal file lies beside it";
        return "";
    }
    unsigned char h[100];
    ssize_t n = -1;
    if (int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
        n = ::pread(fd, h, sizeof h, 0);
        ::close(fd);
    }
    if (n < 0) return ""; // unreadable: SQLite says why when it opens it
    if (n < static_cast<ssize_t>(sizeof h)) {
        return "file is not a database: " + std::to_string(size) + " bytes, shorter than a SQLite header";
    }
    if (std::memcmp(h, "SQLite format 3", 16) != 0) return "file is not a database: it does not start with the SQLite header";
    uint32_t page = uint32_t{h[16]} << 8 | h[17];
    if (page == 1) page = 65536;
    if (page < 512 || (page & (page - 1)) != 0) return "its header is damaged (page size " + std::to_string(page) + ")";
    if (size % page != 0) {
        return "it is truncated: " + std::to_string(size) + " bytes is not a whole number of " + std::to_string(page) +
               "-byte pages";
    }
    // The header's page count is valid when its change counter matches "version valid for"; a
    // -wal being replayed may still hold pages beyond the end of the file.
    const uint32_t pages = bigEndian32(h + 28);
    const bool count_valid = pages != 0 && bigEndian32(h + 24) == bigEndian32(h + 92);
    if (count_valid && wal <= 0 && static_cast<uint64_t>(size) / page < pages) {
        return "it is truncated: its header says " + std::to_string(pages) + " pages, the file holds " +
               std::to_string(size / page);
    }
    return "";
}

// What is wrong with the database file at path, or "" when nothing is seen. Reads only, on a
// connection of its own that is read-only: closing a read-write connection would checkpoint a
// -wal file into the database, the very change a damaged database must be kept from.
std::string databaseDamage(const std::filesystem::path& path) {
    bool after_crash = false;
    if (std::string d = headerDamage(path, &after_crash); !d.empty()) return d;
    if (fileSize(path) <= 0) return "";
    // A read-only connection to a WAL database makes an empty -wal and a -shm: the ones it made
    // are removed again after the check.
    const std::string wal = path.string() + "-wal";
    const std::string shm = path.string() + "-shm";
    const bool had_wal = fileSize(wal) >= 0;
    const bool had_shm = fileSize(shm) >= 0;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
        std::string m = db ? sqlite3_errmsg(db) : "cannot open it";
        sqlite3_close(db);
        return m;
    }
    sqlite3_busy_timeout(db, 5000);
    // PRAGMA quick_check reads every page: 0.23 s for 100,000 runs (133 MB) from the page cache,
    // but 2.5 s from a cold disk (after a reboot or a power loss), more than the whole start-up
    // may take. So it runs for at most kQuickCheckBudget: a small database is checked whole, a
    // large one as far as the budget goes (what is left is checked by SQLite as it is read).
    // The header, the schema and, after a crash, the -wal (its pages must leave a TaskHub
    // database) are always checked.
    constexpr auto kQuickCheckBudget = std::chrono::milliseconds(500);
    std::string out;
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &s, nullptr);
    if (rc == SQLITE_OK) {
        // The check is one step of one statement (a progress handler is not called within it):
        // a watchdog interrupts it when the budget is spent.
        std::mutex m;
        std::condition_variable cv;
        bool finished = false;
        std::thread watchdog([&] {
            std::unique_lock lock(m);
            if (!cv.wait_for(lock, kQuickCheckBudget, [&] { return finished; })) sqlite3_interrupt(db);
        });
        rc = sqlite3_step(s);
        {
            std::lock_guard lock(m);
            finished = true;
        }
        cv.notify_one();
        watchdog.join(); // before finalize(), which clears an interrupt that came late
        if (rc == SQLITE_ROW) {
            auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
            if (std::string v = p ? p : ""; v != "ok") out = v;
        }
    }
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE && rc != SQLITE_INTERRUPT) out = sqlite3_errmsg(db);
    if (rc == SQLITE_INTERRUPT) {
        spdlog::info("STORE_CHECKED {}: PRAGMA quick_check stopped after {} ms (a large database or a cold disk); "
                     "the rest is checked as it is read",
                     path.string(), kQuickCheckBudget.count());
    }
    sqlite3_finalize(s);
    if (out.empty() && after_crash) {
        // A -wal from another database would make its pages ours when replayed.
        try {
            const int64_t app = pragmaInt(db, "PRAGMA application_id", path);
            const int64_t tables = pragmaInt(db, "SELECT count(*) FROM sqlite_master", path);
            if (app != kApplicationId && (app != 0 || tables != 0)) {
                out = "its -wal file does not belong to it: with it, the database is not a TaskHub state database "
                      "(application_id " + std::to_string(app) + ")";
            }
        } catch (const StoreError& e) {
            out = e.what();
        }
    }
    sqlite3_close(db);
    if (!had_wal && fileSize(wal) == 0) ::unlink(wal.c_str());
    if (!had_shm) ::unlink(shm.c_str());
    // quick_check's report names the schema and takes lines; one line reads better in a log.
    if (out.rfind("*** in database main ***", 0) == 0) out.erase(0, std::strlen("*** in database main ***"));
    for (auto& c : out) {
        if (c == '\n') c = ' ';
    }
    while (!out.empty() && out.front() == ' ') out.erase(0, 1);
    return out;
}

// The message a damaged database is refused with: what is wrong and what to do.
std::string damagedMessage(const std::filesystem::path& path, const std::string& damage) {
    std::string mv;
    for (const char* suffix : {"", "-wal", "-shm"}) {
        const std::string f = path.string() + suffix;
        if (fileSize(f) >= 0) mv += (mv.empty() ? "" : "; ") + std::string("mv ") + f + " " + f + ".damaged";
    }
    return path.string() + " is damaged (" + damage + "); taskhubd will not modify it. Restore it from a backup, "
           "or move it aside to start with an empty history: " + mv +
           " (`sqlite3 " + path.string() + ".damaged .recover` may save some of it)";
}

} // namespace

std::string Store::checkDatabase(const std::filesystem::path& state_dir) {
    const auto path = state_dir / "taskhub.db";
    std::string damage = databaseDamage(path);
    return damage.empty() ? "" : damagedMessage(path, damage);
}

std::unique_ptr<Store> Store::open(const std::filesystem::path& state_dir, const Options& options) {
    std::error_code ec;
    // Made 0700 here (mkdir's mode is the most the umask leaves); its parents as usual.
    const std::filesystem::path dir = state_dir.has_filename() ? state_dir : state_dir.parent_path();
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        throw StoreError("cannot create state directory " + state_dir.string() + ": " + std::strerror(errno));
    }
    makePrivate(state_dir, true, false);
    int lock_fd = lockStateDir(state_dir);
    auto path = state_dir / "taskhub.db";
    try {
        // SQLite gives the -wal and -shm files the database file's mode.
        makePrivate(path, false, true);
        for (const char* suffix : {"-wal", "-shm", "-journal"}) makePrivate(path.string() + suffix, false, false);
        // Detects a damaged file before anything is written to it.
        if (std::string damage = databaseDamage(path); !damage.empty()) throw StoreError(damagedMessage(path, damage));
        auto writer = std::make_unique<Conn>(openConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE), path);
        // SQLite falls back to reading a file it may not write; such a connection never writes,
        // even once the file is writable again.
        if (sqlite3_db_readonly(writer->db(), "main") == 1) {
            throw StoreError(unwritableMessage(path, SQLITE_READONLY, 0) + "; taskhubd cannot start until it can write it");
        }
        try {
            exec(writer->db(), "PRAGMA journal_mode=WAL; PRAGMA cache_size=-16384;", path);
            exec(writer->db(), options.sync_normal ? "PRAGMA synchronous=NORMAL" : "PRAGMA synchronous=FULL", path);
            migrate(writer->db(), path);
        } catch (const StoreError& e) {
            // A database that cannot be written (read-only file or file system, full disk) is
            // not damaged: say what to do about that instead.
            if (int code = sqlite3_errcode(writer->db()) & 0xff; isStorageError(code)) {
                throw StoreError(unwritableMessage(path, code, sqlite3_system_errno(writer->db())) +
                                 "; taskhubd cannot start until it can write it");
            }
            throw StoreError(std::string(e.what()) +
                             "\nThe state database was left untouched. If it is damaged, stop taskhubd, move " +
                             path.string() + " (and its -wal/-shm files) aside and start again to begin with an "
                             "empty history; `sqlite3 FILE .recover` may save the old one.");
        }
        writer->prepare();
        auto reader = std::make_unique<Conn>(openConnection(path, SQLITE_OPEN_READONLY), path);
        reader->prepare();
        std::unique_ptr<Store> store(new Store(std::move(writer), std::move(reader), path));
        store->lock_fd_ = lock_fd;
        auto& next = store->w_->stmt(kNextEventSeq);
        if (next.step() == SQLITE_ROW) store->next_event_seq_ = next.i64(0);
        next.finish();
        return store;
    } catch (...) {
        ::close(lock_fd);
        throw;
    }
}

Store::Store(std::unique_ptr<Conn> writer, std::unique_ptr<Conn> reader, std::filesystem::path path)
    : w_(std::move(writer)), r_(std::move(reader)), path_(std::move(path)) {}

Store::~Store() {
    if (writer_.joinable()) {
        {
            std::lock_guard lock(mu_);
            stopping_ = true;
        }
        cv_.notify_all();
        writer_.join(); // writes what is still pending first
    } else {
        commit();
    }
    // The writer closes last: the last connection to close checkpoints the -wal file into the
    // database and removes it, so that a clean stop leaves no -wal (open() checks more after a
    // crash, when one is left).
    r_.reset();
    w_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Store::startWriter(std::function<void(std::function<void()>)> post) {
    commit();
    post_ = std::move(post);
    // A checkpoint (copying the -wal's pages into the database, with an fsync of the database)
    // runs once the -wal holds kCheckpointFrames pages, as SQLite's automatic one would, but after
    // the commit that crossed that size has been reported durable, not inside it: a commit someone
    // waits for (an answer, an attempt about to start) never waits for one. The hook replaces
    // SQLite's automatic checkpoint.
    sqlite3_wal_hook(w_->db(), &Store::walHook, this);
    writer_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "taskhubd-store"); // as top -H and /proc show it
        writerLoop();
    });
}

int Store::walHook(void* self, sqlite3*, const char*, int frames) {
    if (frames >= kCheckpointFrames) static_cast<Store*>(self)->checkpoint_due_ = true;
    return SQLITE_OK;
}

void Store::checkpoint() {
    int rc = sqlite3_wal_checkpoint_v2(w_->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        spdlog::warn("STORE_CHECKPOINT_FAILED {}: {}; tried again after the next commit", path_.string(),
                     sqlite3_errmsg(w_->db()));
    }
}

bool Store::fail(const std::string& err) {
    if (w_->quiet_storage_errors && isStorageError(w_->error_code)) return false;
    spdlog::error("STORE_WRITE_FAILED {}", err);
    std::lock_guard lock(mu_);
    last_error_ = err;
    return false;
}

bool Store::applyRun(Conn& c, const RunOp& op) {
    std::string err;
    if (const auto* o = std::get_if<RunRecord>(&op)) {
        auto& s = c.stmt(kInsertRun);
        s.bind(1, o->id).bind(2, o->workflow).bind(3, o->trigger).bind(4, o->state).bind(5, o->message);
        s.bind(6, o->version).bind(7, o->scheduled_ms).bind(8, o->created_ms).bind(9, o->started_ms);
        s.bind(10, o->ended_ms).bind(11, toJsonObject(o->params)).bind(12, o->parent_run);
        s.bind(13, o->parent_task).bind(14, static_cast<int64_t>(o->depth)).bind(15, static_cast<int64_t>(o->lost));
        c.check(s.step(), "insert run", &err);
    } else if (const auto* u = std::get_if<UpdateRun>(&op)) {
        const auto& r = u->run;
        auto& s = c.stmt(kUpdateRun);
        s.bind(1, r.id).bind(2, r.state).bind(3, r.message).bind(4, r.started_ms).bind(5, r.ended_ms);
        s.bind(6, static_cast<int64_t>(r.lost));
        c.check(s.step(), "update run", &err);
    } else if (const auto* v = std::get_if<ReviveRun>(&op)) {
        const auto& r = v->run;
        auto key = runKey(c, r.id);
        if (!key) return false;
        auto& s = c.stmt(kReviveRun);
        s.bind(1, r.id).bind(2, r.trigger).bind(3, r.state).bind(4, r.message).bind(5, r.version);
        s.bind(6, r.created_ms).bind(7, r.started_ms).bind(8, r.ended_ms).bind(9, toJsonObject(r.params));
        if (c.check(s.step(), "revive run", &err)) {
            auto& d = c.stmt(kDeleteTasks);
            d.bind(1, *key << kTaskKeyBits).bind(2, (*key + 1) << kTaskKeyBits);
            c.check(d.step(), "revive run: delete its tasks", &err);
        }
    } else if (const auto* e = std::get_if<PluginEvent>(&op)) {
        auto& s = c.stmt(kInsertPluginEvent);
        s.bind(1, e->plugin).bind(2, e->at_ms).bind(3, e->from).bind(4, e->to).bind(5, e->message);
        c.check(s.step(), "record plugin event", &err);
    } else if (const auto* f = std::get_if<FileVersion>(&op)) {
        auto& s = c.stmt(kInsertFileVersion);
        s.bind(1, f->workflow).bind(2, f->path).bind(3, f->inode).bind(4, f->size).bind(5, f->mtime_ns);
        s.bind(6, f->run_id).bind(7, f->recorded_ms);
        c.check(s.step(), "record file version", &err);
    } else if (const auto* prune = std::get_if<Prune>(&op)) {
        return applyPrune(c, *prune);
    } else {
        const auto& p = std::get<WorkflowPause>(op);
        auto& s = c.stmt(p.paused ? kPauseWorkflow : kResumeWorkflow);
        s.bind(1, p.workflow);
        if (p.paused) s.bind(2, p.since_ms).bind(3, p.by);
        c.check(s.step(), p.paused ? "pause workflow" : "resume workflow", &err);
    }
    return err.empty() || fail(err);
}

std::optional<int64_t> Store::runKey(Conn& c, std::string_view run_id) {
    auto& s = c.stmt(kRunKey);
    s.bindRef(1, run_id);
    std::optional<int64_t> key;
    if (s.step() == SQLITE_ROW) key = s.i64(0);
    s.finish();
    if (!key) fail("write for unknown run " + std::string(run_id));
    return key;
}

bool Store::applyTask(Conn& c, int64_t run_key, int order, const TaskRecord& t) {
    // Nearly every write of a task changes a row written before (the engine writes every task of
    // a run when it creates the run): an UPDATE, and an INSERT only when it changed nothing.
    std::string err;
    const std::string outputs = toJsonObject(t.outputs);
    for (int which : {kUpdateTask, kInsertTask}) {
        auto& s = c.stmt(which);
        s.bind(1, (run_key << kTaskKeyBits) | order).bindRef(2, t.task_id).bindRef(3, t.state);
        s.bind(4, static_cast<int64_t>(t.attempt)).bind(5, t.exit_code).bindRef(6, t.message);
        s.bind(7, t.started_ms).bind(8, t.ended_ms).bindRef(9, outputs).bindRef(10, t.child_run);
        s.bind(12, t.pid).bind(13, t.pgid).bind(14, t.proc_start);
        if (which == kInsertTask) s.bindRef(11, t.plugin);
        bool ok = c.check(s.step(), which == kUpdateTask ? "update task" : "insert task", &err);
        s.reset(); // drops the references to the texts above
        if (!ok || (which == kUpdateTask && sqlite3_changes(c.db()) > 0)) break;
    }
    return err.empty() || fail(err);
}

bool Store::applyEvents(Conn& c, int64_t run_key, int64_t last_seq, const std::string& events) {
    std::string err;
    std::string block;
    block.reserve(events.size() + 2);
    block += '[';
    block += events;
    block += ']';
    auto& s = c.stmt(kInsertEvents);
    s.bind(1, last_seq).bind(2, run_key).bindRef(3, block);
    c.check(s.step(), "insert events", &err);
    s.reset();
    return err.empty() || fail(err);
}

// Synchronous mode: the write joins the open transaction (begun here when none is).
#define TASKHUB_SYNC_WRITE(apply_call)                                                             \
    do {                                                                                           \
        if (!w_->in_tx) {                                                                          \
            std::string err = w_->exec("BEGIN");                                                   \
            if (!err.empty()) spdlog::error("STORE_WRITE_FAILED begin transaction: {}", err);      \
            else w_->in_tx = true;                                                                 \
        }                                                                                          \
        if (!(apply_call)) sync_failed_ = true;                                                    \
    } while (0)

Store::Batch& Store::pendingLocked() {
    auto& b = pending_;
    b.seq = ++written_seq_;
    if (b.writes++ == 0) b.first_seq = b.seq;
    return b;
}

Store::RunPart& Store::partLocked(std::string_view run_id) {
    auto& parts = pending_.parts;
    auto it = parts.find(run_id);
    if (it == parts.end()) it = parts.emplace(std::string(run_id), RunPart{}).first;
    return it->second;
}

void Store::enqueueRun(RunOp op) {
    if (!writer_.joinable()) {
        TASKHUB_SYNC_WRITE(applyRun(*w_, op));
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& b = pendingLocked();
        if (auto* r = std::get_if<RunRecord>(&op)) b.run_ids.insert(r->id);
        b.run_ops.push_back(std::move(op));
        if (b.writes > 1) return; // the writer already knows there is work
    }
    cv_.notify_one();
}

void Store::insertRun(const RunRecord& run) { enqueueRun(run); }
void Store::updateRun(const RunRecord& run) { enqueueRun(UpdateRun{run}); }
void Store::reviveRun(const RunRecord& run) { enqueueRun(ReviveRun{run}); }
void Store::setWorkflowPaused(const std::string& workflow, bool paused, int64_t since_ms, const std::string& by) {
    enqueueRun(WorkflowPause{workflow, paused, since_ms, by});
}

void Store::addPluginEvent(const PluginEvent& event) { enqueueRun(event); }
void Store::recordFileVersion(const FileVersion& version) { enqueueRun(version); }

std::vector<Store::FileVersion> Store::fileVersions(const std::string& workflow) {
    auto& s = r_->stmt(kSelectFileVersions);
    s.bind(1, workflow);
    std::vector<FileVersion> out;
    while (s.step() == SQLITE_ROW) {
        out.push_back({workflow, s.text(0), s.i64(1), s.i64(2), s.i64(3), s.text(4), s.i64(5)});
    }
    return out;
}

std::string Store::exchangeMeta(const std::string& key, const std::string& value) {
    std::string old;
    {
        Stmt s(w_->db(), "SELECT value FROM meta WHERE key = ?1");
        s.bind(1, key);
        if (s.step() == SQLITE_ROW) old = s.text(0);
    }
    Stmt s(w_->db(), "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = ?2");
    s.bind(1, key).bind(2, value);
    std::string problem;
    TASKHUB_SYNC_WRITE(w_->check(s.step(), "store meta", &problem) || fail(problem));
    return old;
}

std::vector<Store::PluginEvent> Store::pluginEvents(const std::string& plugin, int limit) {
    auto& s = r_->stmt(kSelectPluginEvents);
    s.bind(1, plugin).bind(2, static_cast<int64_t>(limit));
    std::vector<PluginEvent> out;
    while (s.step() == SQLITE_ROW) out.push_back({plugin, s.i64(0), s.text(1), s.text(2), s.text(3)});
    return out;
}

std::vector<Store::PausedWorkflow> Store::pausedWorkflows() {
    auto& s = r_->stmt(kSelectPauses);
    std::vector<PausedWorkflow> out;
    while (s.step() == SQLITE_ROW) out.push_back({s.text(0), s.i64(1), s.text(2)});
    return out;
}

void Store::upsertTask(const std::string& run_id, int order, const TaskRecord& task) {
    if (!writer_.joinable()) {
        auto key = runKey(*w_, run_id);
        TASKHUB_SYNC_WRITE(key && applyTask(*w_, *key, order, task));
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& b = pendingLocked();
        auto& part = partLocked(run_id);
        auto o = static_cast<size_t>(order);
        if (part.slot.size() <= o) part.slot.resize(std::max(o + 1, part.slot.size() * 2), -1);
        if (part.slot[o] >= 0) {
            part.tasks[static_cast<size_t>(part.slot[o])].second = task; // the latest state is all that matters
        } else {
            part.slot[o] = static_cast<int32_t>(part.tasks.size());
            part.tasks.emplace_back(order, task);
        }
        if (b.writes > 1) return;
    }
    cv_.notify_one();
}

void Store::addEvent(const EventRecord& e) { addEvent(e.ts_ms, e.run_id, e.task_id, e.kind, e.detail); }

void Store::addEvent(int64_t ts_ms, std::string_view run_id, std::string_view task_id, std::string_view kind,
                     std::string_view detail) {
    if (!writer_.joinable()) {
        std::string one;
        int64_t seq = next_event_seq_++;
        appendEvent(one, seq, ts_ms, task_id, kind, detail);
        auto key = runKey(*w_, run_id);
        TASKHUB_SYNC_WRITE(key && applyEvents(*w_, *key, seq, one));
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& b = pendingLocked();
        auto& part = partLocked(run_id);
        part.last_event_seq = next_event_seq_++;
        appendEvent(part.events, part.last_event_seq, ts_ms, task_id, kind, detail);
        if (b.writes > 1) return;
    }
    cv_.notify_one();
}

#undef TASKHUB_SYNC_WRITE

void Store::Batch::clear() {
    run_ops.clear();
    run_ids.clear();
    for (auto it = parts.begin(); it != parts.end();) {
        auto& part = it->second;
        if (part.tasks.empty() && part.events.empty()) {
            it = parts.erase(it); // no writes for a whole batch: the run's storage goes
            continue;
        }
        for (const auto& t : part.tasks) part.slot[static_cast<size_t>(t.first)] = -1;
        part.tasks.clear();
        part.events.clear();
        ++it;
    }
    first_seq = seq = 0;
    writes = 0;
}

bool Store::writeBatch(std::string* err, bool* storage_error) {
    const Batch& batch = writing_;
    w_->error_code = SQLITE_OK;
    w_->system_errno = 0;
    // A batch is atomic: if any write fails, none of it is kept (a failed statement may already
    // have rolled the transaction back).
    *err = w_->exec("BEGIN");
    bool ok = err->empty();
    if (ok) {
        for (const auto& op : batch.run_ops) {
            if (!(ok = applyRun(*w_, op))) break; // applyRun() logged and recorded why
        }
        for (auto it = batch.parts.begin(); ok && it != batch.parts.end(); ++it) {
            const auto& [run_id, part] = *it;
            auto key = runKey(*w_, run_id);
            if (!(ok = key.has_value())) break;
            for (const auto& [order, task] : part.tasks) {
                if (!(ok = applyTask(*w_, *key, order, task))) break;
            }
            if (ok && !part.events.empty()) ok = applyEvents(*w_, *key, part.last_event_seq, part.events);
        }
        if (ok) {
            TASKHUB_FAILPOINT("store_commit");
            *err = w_->exec("COMMIT");
            ok = err->empty();
        }
        if (!ok && !sqlite3_get_autocommit(w_->db())) w_->exec("ROLLBACK");
    }
    *storage_error = !ok && isStorageError(w_->error_code);
    if (*storage_error && err->empty()) *err = sqlite3_errstr(w_->error_code);
    return ok;
}

void Store::writerLoop() {
    // Commits start at most this often: each fsync costs the same whatever the batch size, so
    // under load it is cheaper to let a few milliseconds of changes gather into one commit. An
    // idle store commits a single change at once.
    constexpr auto kMinCommitInterval = std::chrono::milliseconds(20);
    // A batch the database could not take is tried again this often; while taskhubd stops, only
    // this many times more, so that a full disk cannot keep it from exiting.
    constexpr auto kRetryInterval = std::chrono::seconds(1);
    constexpr int kRetriesWhileStopping = 3;
    w_->quiet_storage_errors = true; // reported here, once, as STORE_UNWRITABLE
    auto last_commit = std::chrono::steady_clock::now() - kMinCommitInterval;
    auto unwritable_since = last_commit;
    bool gave_up = false; // stopping, and a batch was given up: the later ones get one try each
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stopping_ || pending_.writes != 0; });
        if (pending_.writes == 0) break; // stopping and nothing left
        // Unless someone waits for these writes (an answer to a client, an attempt whose plugin
        // is called once its "starting" record is durable): then they are committed at once,
        // and what arrives during that commit makes up the next batch.
        const auto due = last_commit + kMinCommitInterval;
        if (!stopping_ && !urgent_ && std::chrono::steady_clock::now() < due) {
            cv_.wait_until(lock, due, [this] { return stopping_ || urgent_; });
        }
        urgent_ = false;
        last_commit = std::chrono::steady_clock::now();
        // The two batches take turns: the event loop fills one while this thread writes the
        // other, and each keeps its storage, so a busy run allocates nothing per write.
        std::swap(pending_, writing_);
        committing_runs_.swap(writing_.run_ids);
        lock.unlock();

        std::string err;
        bool storage_error = false;
        bool ok = writeBatch(&err, &storage_error);
        for (int tries_while_stopping = 0; !ok && storage_error;) {
            // The database cannot be written (disk full, read-only, I/O error): the batch was
            // rolled back and is kept, newer writes queue up behind it in pending_, and the same
            // batch is tried again until it commits, so nothing is lost or reordered.
            lock.lock();
            if (write_problem_.empty()) unwritable_since = std::chrono::steady_clock::now();
            setWriteProblemLocked(unwritableMessage(path_, w_->error_code, w_->system_errno));
            if (stopping_ && (gave_up || ++tries_while_stopping > kRetriesWhileStopping)) {
                gave_up = true;
                lock.unlock();
                break;
            }
            const bool was_stopping = stopping_;
            cv_.wait_for(lock, kRetryInterval, [&] { return stopping_ != was_stopping; });
            lock.unlock();
            ok = writeBatch(&err, &storage_error);
        }
        if (!ok) {
            spdlog::error("STORE_COMMIT_FAILED {} write(s) lost: {}{}", writing_.writes, err.empty() ? "a write failed" : err,
                          storage_error ? " (taskhubd is stopping and the state database still cannot be written)" : "");
        }
        const uint64_t first_seq = writing_.first_seq;
        const uint64_t seq = writing_.seq;
        writing_.clear();

        lock.lock();
        committing_runs_.clear();
        if (ok && !write_problem_.empty()) {
            const auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - unwritable_since).count();
            spdlog::info("STORE_WRITABLE {} can be written again after {:.1f} s; the changes kept meanwhile are "
                         "committed in order and new runs are accepted again",
                         path_.string(), secs);
            setWriteProblemLocked("");
        }
        if (!ok) {
            if (!err.empty()) last_error_ = err;
            failed_.emplace_back(first_seq, seq);
            if (failed_.size() > 1024) {
                forgotten_failures_until_ = failed_.front().second;
                failed_.pop_front();
            }
        }
        durable_seq_ = seq;
        flushed_cv_.notify_all();
        if (post_) post_([this, seq] { onCommitted(seq); });
        if (checkpoint_due_) {
            checkpoint_due_ = false;
            lock.unlock();
            checkpoint();
            lock.lock();
        }
    }
}

void Store::setWriteProblemLocked(const std::string& problem) {
    const bool was_writable = write_problem_.empty();
    write_problem_ = problem;
    // Logged once an outage: the text of later tries may differ in detail (the errno).
    if (problem.empty() || !was_writable) return;
    last_error_ = problem;
    spdlog::error("STORE_UNWRITABLE {}. taskhubd keeps the changes in memory and tries again every second; until "
                  "then it starts no new run and refuses changes (taskhubctl status shows this)",
                  problem);
    // Clients waiting for an answer hear about it now rather than when the disk has room again.
    if (post_) post_([this] { onUnwritable(); });
}

void Store::onUnwritable() {
    if (!writeProblem()) return; // writable again already
    std::deque<Waiter> keep;
    std::vector<std::function<void(bool)>> answer;
    for (auto& w : waiters_) {
        if (w.answer_when_unwritable) {
            answer.push_back(std::move(w.fn));
        } else {
            keep.push_back(std::move(w));
        }
    }
    waiters_ = std::move(keep);
    for (auto& fn : answer) fn(false);
}

bool Store::failedBetweenLocked(uint64_t since, uint64_t until) const {
    if (forgotten_failures_until_ > since) return true; // too old to tell: assume the worst
    for (const auto& [first, last] : failed_) {
        if (last > since && first <= until) return true;
    }
    return false;
}

void Store::onCommitted(uint64_t seq) {
    while (!waiters_.empty() && waiters_.front().target <= seq) {
        Waiter w = std::move(waiters_.front());
        waiters_.pop_front();
        bool ok;
        {
            std::lock_guard lock(mu_);
            ok = !failedBetweenLocked(w.since, w.target);
        }
        w.fn(ok);
    }
}

bool Store::commit() {
    if (!writer_.joinable()) {
        bool ok = !sync_failed_;
        sync_failed_ = false;
        if (!w_->in_tx) return ok;
        w_->in_tx = false;
        std::string err = w_->exec("COMMIT");
        if (err.empty()) return ok;
        spdlog::error("STORE_COMMIT_FAILED {}", err);
        w_->exec("ROLLBACK");
        std::lock_guard lock(mu_);
        last_error_ = err;
        return false;
    }
    std::unique_lock lock(mu_);
    const uint64_t since = durable_seq_;
    const uint64_t target = written_seq_;
    flushed_cv_.wait(lock, [&] { return durable_seq_ >= target; });
    return !failedBetweenLocked(since, target);
}

uint64_t Store::writeMark() const {
    std::lock_guard lock(mu_);
    return written_seq_;
}

void Store::whenDurable(uint64_t since, std::function<void(bool)> fn) { waitDurable(since, std::move(fn), false); }

void Store::whenDurableOrUnwritable(uint64_t since, std::function<void(bool)> fn) {
    waitDurable(since, std::move(fn), true);
}

void Store::stopWaitingWhileUnwritable() {
    stop_waiting_while_unwritable_ = true;
    for (auto& w : waiters_) w.answer_when_unwritable = true;
    onUnwritable();
}

void Store::waitDurable(uint64_t since, std::function<void(bool)> fn, bool answer_when_unwritable) {
    answer_when_unwritable = answer_when_unwritable || stop_waiting_while_unwritable_;
    uint64_t target;
    bool done;
    bool ok;
    {
        std::lock_guard lock(mu_);
        target = written_seq_;
        done = durable_seq_ >= target;
        ok = !failedBetweenLocked(since, target);
        if (!done && answer_when_unwritable && !write_problem_.empty()) {
            done = true;
            ok = false;
        }
        if (!done) urgent_ = true;
    }
    if (done) {
        post_([fn = std::move(fn), ok] { fn(ok); });
        return;
    }
    cv_.notify_one();
    waiters_.push_back({target, since, std::move(fn), answer_when_unwritable});
}

std::string Store::lastError() const {
    std::lock_guard lock(mu_);
    return last_error_;
}

std::optional<std::string> Store::writeProblem() const {
    std::lock_guard lock(mu_);
    if (write_problem_.empty()) return std::nullopt;
    return write_problem_;
}

bool Store::runExists(const std::string& id) {
    {
        std::lock_guard lock(mu_);
        if (pending_.run_ids.count(id) || committing_runs_.count(id)) return true;
    }
    if (!writer_.joinable() && w_->in_tx) {
        // Synchronous mode: the open transaction is visible on the write connection only.
        auto& s = w_->stmt(kRunExists);
        s.bind(1, id);
        bool found = s.step() == SQLITE_ROW;
        s.finish();
        return found;
    }
    auto& s = r_->stmt(kRunExists);
    s.bind(1, id);
    bool found = s.step() == SQLITE_ROW;
    s.finish();
    return found;
}

std::optional<RunRecord> Store::run(const std::string& id, bool with_tasks) {
    if (pruning_.count(id)) return std::nullopt; // being deleted by history retention
    auto& s = r_->stmt(kSelectRun);
    s.bind(1, id);
    if (s.step() != SQLITE_ROW) return std::nullopt;
    RunRecord r = readRun(s);
    const int64_t key = s.i64(15);
    s.finish();
    if (with_tasks) {
        auto& t = r_->stmt(kSelectTasks);
        t.bind(1, key << kTaskKeyBits).bind(2, (key + 1) << kTaskKeyBits);
        while (t.step() == SQLITE_ROW) {
            TaskRecord tr;
            tr.task_id = t.text(0);
            tr.plugin = t.text(1);
            tr.state = t.text(2);
            tr.attempt = static_cast<int>(t.i64(3));
            if (auto x = t.opt(4)) tr.exit_code = static_cast<int>(*x);
            tr.message = t.text(5);
            tr.started_ms = t.opt(6);
            tr.ended_ms = t.opt(7);
            tr.outputs = fromJsonObject(t.text(8), "tasks.outputs");
            tr.child_run = t.text(9);
            tr.pid = t.opt(10);
            tr.pgid = t.opt(11);
            tr.proc_start = t.opt(12);
            r.tasks.push_back(std::move(tr));
        }
    }
    return r;
}

std::vector<RunRecord> Store::runs(const RunFilter& f) {
    std::string sql = "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE 1";
    if (f.workflow) sql += " AND workflow = ?1";
    const bool lost = f.state == "lost";
    if (lost) sql += " AND lost > 0";
    else if (f.state) sql += " AND state = ?2";
    if (f.since_ms) sql += " AND created_ms >= ?4";
    if (f.until_ms) sql += " AND created_ms < ?5";
    if (f.top_level_only) sql += " AND parent_run = ''";
    sql += " ORDER BY key DESC LIMIT ?3";
    Stmt s(r_->db(), sql.c_str());
    if (f.workflow) s.bind(1, *f.workflow);
    if (f.state && !lost) s.bind(2, *f.state);
    s.bind(3, static_cast<int64_t>(f.limit));
    if (f.since_ms) s.bind(4, *f.since_ms);
    if (f.until_ms) s.bind(5, *f.until_ms);
    std::vector<RunRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readRun(s));
    return out;
}

std::vector<EventRecord> Store::events(const std::string& run_id) {
    std::vector<EventRecord> out;
    auto& k = r_->stmt(kRunKey);
    k.bind(1, run_id);
    if (k.step() != SQLITE_ROW) return out;
    const int64_t key = k.i64(0);
    k.finish();
    auto& s = r_->stmt(kSelectEvents);
    s.bind(1, key);
    while (s.step() == SQLITE_ROW) readEventBlock(run_id, s.text(0), out);
    return out;
}

int64_t Store::countRuns() {
    auto& s = r_->stmt(kCountRuns);
    int64_t n = s.step() == SQLITE_ROW ? s.i64(0) : 0;
    s.finish();
    return n;
}

std::optional<int64_t> Store::lastScheduledMs(const std::string& workflow) {
    auto& s = r_->stmt(kLastScheduled);
    s.bind(1, workflow);
    std::optional<int64_t> v;
    if (s.step() == SQLITE_ROW) v = s.opt(0);
    s.finish();
    return v;
}

std::vector<RunRecord> Store::unfinishedRuns() {
    auto& s = r_->stmt(kUnfinished);
    std::vector<RunRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readRun(s));
    return out;
}

std::vector<RunRecord> Store::children(const std::string& run_id) {
    auto& s = r_->stmt(kChildren);
    s.bind(1, run_id);
    std::vector<RunRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readRun(s));
    return out;
}

// ---- history retention (app/housekeeping) ----
//
// Reads pick the candidates on the event loop (a bounded amount per call, from committed data);
// the writer thread deletes them, checking again that each run tree is still final and has no
// write waiting, so that retention never races a run that `retry` or a late event revives.

namespace {

const char* kFinalStates = "('succeeded', 'failed', 'cancelled', 'skipped')";

} // namespace

std::vector<std::string> Store::prunableRuns(const std::function<Retention(const std::string&)>& rules,
                                             PruneScan& scan) {
    std::vector<std::string> out;
    Stmt next(r_->db(), "SELECT min(workflow) FROM runs WHERE workflow > ?1");
    Stmt boundary(r_->db(), "SELECT key FROM runs WHERE workflow = ?1 AND parent_run = '' "
                            "ORDER BY key DESC LIMIT 1 OFFSET ?2");
    const std::string candidates_sql =
        std::string("SELECT id, scheduled_ms, coalesce(ended_ms, created_ms) FROM runs "
                    "WHERE workflow = ?1 AND parent_run = '' AND state IN ") +
        kFinalStates + " AND (key <= ?2 OR created_ms < ?3) ORDER BY key LIMIT ?4";
    Stmt candidates(r_->db(), candidates_sql.c_str());
    Stmt latest(r_->db(), "SELECT max(scheduled_ms) FROM runs WHERE workflow = ?1");
    for (size_t looked = 0; looked < scan.max_workflows && out.size() < scan.max_runs; ++looked) {
        next.reset().bind(1, scan.cursor);
        const std::string wf = next.step() == SQLITE_ROW ? next.text(0) : std::string(); // "" for NULL: none left
        next.finish();
        if (wf.empty()) { // past the last workflow: the next call starts again at the first
            scan.cursor.clear();
            break;
        }
        // A workflow whose candidates fill the batch is looked at again by the next call.
        std::string previous = scan.cursor;
        scan.cursor = wf;
        const Retention rule = rules(wf);
        if (!rule.keep_runs && !rule.keep_days) continue;
        int64_t beyond_key = -1; // runs with a key up to this one are beyond keep_runs
        if (rule.keep_runs) {
            boundary.reset().bind(1, wf).bind(2, static_cast<int64_t>(*rule.keep_runs));
            if (boundary.step() == SQLITE_ROW) beyond_key = boundary.i64(0);
            boundary.finish();
        }
        const int64_t cutoff = rule.keep_days ? scan.now_ms - int64_t{*rule.keep_days} * 86'400'000 : INT64_MIN;
        if (beyond_key < 0 && !rule.keep_days) continue;
        latest.reset().bind(1, wf);
        std::optional<int64_t> latest_scheduled;
        if (latest.step() == SQLITE_ROW) latest_scheduled = latest.opt(0);
        latest.finish();
        candidates.reset().bind(1, wf).bind(2, beyond_key).bind(3, cutoff);
        candidates.bind(4, static_cast<int64_t>(scan.max_runs - out.size() + 1));
        while (out.size() < scan.max_runs && candidates.step() == SQLITE_ROW) {
            auto scheduled = candidates.opt(1);
            if (scheduled && scheduled == latest_scheduled) continue;
            if (candidates.i64(2) > scan.now_ms - scan.min_age_ms) continue;
            std::string id = candidates.text(0);
            if (!pruning_.count(id)) out.push_back(std::move(id));
        }
        candidates.finish();
        if (out.size() >= scan.max_runs) scan.cursor = std::move(previous);
    }
    return out;
}

void Store::pruneRuns(const std::vector<std::string>& run_ids) {
    if (run_ids.empty()) return;
    if (writer_.joinable()) {
        pruning_.insert(run_ids.begin(), run_ids.end());
        enqueueRun(Prune{run_ids, {}});
        whenDurable(writeMark(), [this, run_ids](bool) {
            for (const auto& id : run_ids) pruning_.erase(id);
        });
    } else {
        enqueueRun(Prune{run_ids, {}});
    }
}

void Store::forgetFileVersions(std::vector<FileVersion> versions) {
    if (!versions.empty()) enqueueRun(Prune{{}, std::move(versions)});
}

std::vector<Store::FileVersion> Store::orphanFileVersions(size_t limit, FileVersion* cursor) {
    // Looks at `limit` rows in key order (bounded work whatever the table holds) and returns
    // those without a run.
    Stmt s(r_->db(), "SELECT workflow, path, inode, size, mtime_ns, run_id, recorded_ms, "
                     "run_id = '' OR NOT EXISTS (SELECT 1 FROM runs WHERE id = run_id) "
                     "FROM file_versions WHERE (workflow, path, inode, size, mtime_ns) > (?1, ?2, ?3, ?4, ?5) "
                     "ORDER BY workflow, path, inode, size, mtime_ns LIMIT ?6");
    s.bind(1, cursor->workflow).bind(2, cursor->path).bind(3, cursor->inode).bind(4, cursor->size);
    s.bind(5, cursor->mtime_ns).bind(6, static_cast<int64_t>(limit));
    std::vector<FileVersion> out;
    size_t rows = 0;
    while (s.step() == SQLITE_ROW) {
        ++rows;
        FileVersion v{s.text(0), s.text(1), s.i64(2), s.i64(3), s.i64(4), s.text(5), s.i64(6)};
        *cursor = v;
        if (s.i64(7) != 0) out.push_back(std::move(v));
    }
    if (rows < limit) *cursor = FileVersion{}; // at the end: start again next time
    return out;
}

// Writer thread (or the caller, in synchronous mode).
bool Store::hasWritesWaiting(const std::string& run_id) {
    if (!writer_.joinable()) return false;
    auto busy = [&](const Batch& b) {
        auto it = b.parts.find(run_id);
        if (it != b.parts.end() && (!it->second.tasks.empty() || !it->second.events.empty())) return true;
        for (const auto& op : b.run_ops) {
            if (const auto* u = std::get_if<UpdateRun>(&op); u && u->run.id == run_id) return true;
            if (const auto* v = std::get_if<ReviveRun>(&op); v && v->run.id == run_id) return true;
        }
        return false;
    };
    if (busy(writing_)) return true; // this thread's own batch
    std::lock_guard lock(mu_);
    return busy(pending_);
}

bool Store::applyPrune(Conn& c, const Prune& op) {
    std::string err;
    if (!op.run_ids.empty()) {
        Stmt tree(c.db(), "WITH RECURSIVE tree(id, key, state) AS ("
                          "SELECT id, key, state FROM runs WHERE id = ?1 UNION ALL "
                          "SELECT r.id, r.key, r.state FROM runs r JOIN tree t ON r.parent_run = t.id) "
                          "SELECT id, key, state FROM tree");
        Stmt del_tasks(c.db(), "DELETE FROM tasks WHERE key >= ?1 AND key < ?2");
        Stmt del_events(c.db(), "DELETE FROM event_blocks WHERE run_key = ?1");
        Stmt del_run(c.db(), "DELETE FROM runs WHERE key = ?1");
        for (const auto& id : op.run_ids) {
            std::vector<int64_t> keys;
            bool keep = false;
            tree.reset().bind(1, id);
            for (int rc; !keep && (rc = tree.step()) == SQLITE_ROW;) {
                keep = !isFinalRunState(tree.text(2)) || hasWritesWaiting(tree.text(0));
                keys.push_back(tree.i64(1));
            }
            tree.finish();
            if (keep) continue;
            for (int64_t key : keys) {
                del_tasks.reset().bind(1, key << kTaskKeyBits).bind(2, (key + 1) << kTaskKeyBits);
                c.check(del_tasks.step(), "prune run: delete its tasks", &err);
                del_events.reset().bind(1, key);
                c.check(del_events.step(), "prune run: delete its events", &err);
                del_run.reset().bind(1, key);
                c.check(del_run.step(), "prune run", &err);
            }
        }
    }
    if (!op.file_versions.empty()) {
        Stmt del(c.db(), "DELETE FROM file_versions WHERE workflow = ?1 AND path = ?2 AND inode = ?3 AND size = ?4 "
                         "AND mtime_ns = ?5 AND NOT EXISTS (SELECT 1 FROM runs WHERE id = run_id)");
        for (const auto& v : op.file_versions) {
            del.reset().bind(1, v.workflow).bind(2, v.path).bind(3, v.inode).bind(4, v.size).bind(5, v.mtime_ns);
            c.check(del.step(), "forget file version", &err);
        }
    }
    return err.empty() || fail(err);
}

// ---- end of history retention ----

} // namespace taskhub::store

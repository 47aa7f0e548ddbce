// One SQLite connection's statements, and how the store opens connections and reads SQLite's
// errors.
#include "store/internal.h"

#include <cerrno>
#include <cstring>

namespace taskhub::store {

const char* const kSql[kStmtCount] = {
    "INSERT INTO runs(" TASKHUB_RUN_COLUMNS ", tasks) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?18, ?17)",
    "UPDATE runs SET state = ?2, message = ?3, started_ms = ?4, ended_ms = ?5, lost = ?6, failures_absorbed = ?7 "
    "WHERE id = ?1",
    "UPDATE runs SET trigger = ?2, state = ?3, message = ?4, version = ?5, created_ms = ?6, started_ms = ?7, "
    "ended_ms = ?8, params = ?9, skip_cause = ?10, tasks = ?11 WHERE id = ?1",
    "DELETE FROM tasks WHERE key >= ?1 AND key < ?2",
    "INSERT INTO workflow_pauses(workflow, since_ms, by) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(workflow) DO UPDATE SET since_ms = ?2, by = ?3",
    "DELETE FROM workflow_pauses WHERE workflow = ?1",
    "SELECT workflow, since_ms, by FROM workflow_pauses ORDER BY workflow",
    "SELECT key FROM runs WHERE id = ?1",
    "INSERT INTO tasks(key, task_id, plugin, state, attempt, exit_code, message, started_ms, "
    "ended_ms, outputs, child_run, pid, pgid, proc_start, kind, cpu_user_us, cpu_system_us, memory_peak, "
    "oom_kills, io_read_bytes, io_write_bytes, usage_source, leftovers_found, leftovers_action, handle, items) "
    "VALUES(?1, ?2, ?11, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, "
    "?23, ?24, ?25, ?26) ON CONFLICT(key) DO UPDATE SET state = ?3, attempt = ?4, exit_code = ?5, message = ?6, "
    "started_ms = ?7, ended_ms = ?8, outputs = ?9, child_run = ?10, pid = ?12, pgid = ?13, proc_start = ?14, "
    "cpu_user_us = ?16, cpu_system_us = ?17, memory_peak = ?18, oom_kills = ?19, io_read_bytes = ?20, "
    "io_write_bytes = ?21, usage_source = ?22, leftovers_found = ?23, leftovers_action = ?24, handle = ?25, "
    "items = ?26",
    "INSERT INTO event_blocks(last_seq, run_key, events) VALUES(?1, ?2, ?3)",
    "SELECT 1 FROM runs WHERE id = ?1",
    "SELECT " TASKHUB_RUN_SELECT ", tasks FROM runs WHERE id = ?1",
    "SELECT task_id, plugin, state, attempt, exit_code, message, started_ms, ended_ms, outputs, "
    "child_run, pid, pgid, proc_start, kind, cpu_user_us, cpu_system_us, memory_peak, oom_kills, io_read_bytes, "
    "io_write_bytes, usage_source, leftovers_found, leftovers_action, key, handle, items FROM tasks "
    "WHERE key >= ?1 AND key < ?2 ORDER BY key",
    "SELECT events FROM event_blocks WHERE run_key = ?1 ORDER BY last_seq",
    "SELECT coalesce(max(last_seq), 0) + 1 FROM event_blocks",
    "SELECT count(*) FROM runs",
    "SELECT max(scheduled_ms) FROM runs WHERE workflow = ?1",
    "SELECT max(ended_ms) FROM runs WHERE workflow = ?1 AND state = ?2",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE state IN ('queued', 'running', 'paused') "
    "ORDER BY key",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE parent_run = ?1 ORDER BY key",
    "INSERT INTO plugin_events(plugin, at_ms, from_state, to_state, message) VALUES(?1, ?2, ?3, ?4, ?5)",
    "SELECT at_ms, from_state, to_state, message FROM (SELECT id, at_ms, from_state, to_state, message "
    "FROM plugin_events WHERE plugin = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
    "INSERT OR IGNORE INTO file_versions(workflow, path, inode, size, mtime_ns, run_id, recorded_ms) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    "SELECT path, inode, size, mtime_ns, run_id, recorded_ms FROM file_versions WHERE workflow = ?1",
    "INSERT OR IGNORE INTO deadline_misses(workflow, scheduled_ms, run_id, due_ms, deadline_s, detected_ms, "
    "run_state, reason) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "INSERT INTO deadline_marks(workflow, checked_ms) VALUES(?1, ?2) "
    "ON CONFLICT(workflow) DO UPDATE SET checked_ms = max(checked_ms, ?2)",
    "DELETE FROM deadline_marks WHERE workflow = ?1",
    "SELECT workflow, checked_ms FROM deadline_marks ORDER BY workflow",
    "SELECT workflow, scheduled_ms, run_id, due_ms, deadline_s, detected_ms, run_state, reason "
    "FROM deadline_misses WHERE workflow = ?1 AND scheduled_ms > ?2 ORDER BY scheduled_ms DESC LIMIT ?3",
    "SELECT workflow, scheduled_ms, run_id, due_ms, deadline_s, detected_ms, run_state, reason "
    "FROM deadline_misses WHERE run_id = ?1",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE workflow = ?1 AND scheduled_ms > ?2 AND parent_run = '' "
    "ORDER BY scheduled_ms LIMIT ?3",
};

bool exec(sqlite3* db, const char* sql, const std::filesystem::path& path, std::string* err) {
    char* msg = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) != SQLITE_OK) {
        std::string m = msg ? msg : "unknown error";
        sqlite3_free(msg);
        *err = "state database " + path.string() + ": " + m;
        return false;
    }
    return true;
}

std::optional<std::string> pragmaText(sqlite3* db, const char* sql, const std::filesystem::path& path,
                                      std::string* err) {
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) {
        *err = "state database " + path.string() + ": " + sqlite3_errmsg(db);
        return std::nullopt;
    }
    std::string v;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        v = p ? p : "";
    } else if (rc != SQLITE_DONE) {
        std::string m = sqlite3_errmsg(db);
        sqlite3_finalize(s);
        *err = "state database " + path.string() + ": " + m;
        return std::nullopt;
    }
    sqlite3_finalize(s);
    return v;
}

// Integer pragmas read through the text form SQLite gives any value; no row reads as 0.
std::optional<int64_t> pragmaInt(sqlite3* db, const char* sql, const std::filesystem::path& path, std::string* err) {
    auto text = pragmaText(db, sql, path, err);
    if (!text) return std::nullopt;
    return text->empty() ? 0 : std::stoll(*text);
}

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

// SQLite's global settings, made before its first use (the first open initialises SQLite, and
// settings made after that are refused): no page cache allocated in bulk. By default each
// connection allocates 20 pages (87 KB) at its first read; without that, pages are allocated as
// they are read, and an idle daemon with a small database reads few.
[[maybe_unused]] const int kSqliteConfigured = sqlite3_config(SQLITE_CONFIG_PAGECACHE, nullptr, 0, 0);

sqlite3* openConnection(const std::filesystem::path& path, int flags, std::string* err) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
        std::string m = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
        sqlite3_close(db);
        *err = "cannot open state database " + path.string() + ": " + m;
        return nullptr;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

} // namespace taskhub::store

#include "store/store.h"

#include <boost/json.hpp>
#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
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

// Every migration, in order: kMigrations[i] takes schema version i to i + 1.
const char* const kMigrations[] = {kSchemaV1, kSchemaV2};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

#define TASKHUB_RUN_COLUMNS                                                                      \
    "id, workflow, trigger, state, message, version, scheduled_ms, created_ms, started_ms, "    \
    "ended_ms, params, parent_run, parent_task, depth"

enum StmtId {
    kInsertRun,
    kUpdateRun,
    kUpsertTask,
    kInsertEvent,
    kRunExists,
    kSelectRun,
    kSelectTasks,
    kSelectEvents,
    kCountRuns,
    kUnfinished,
    kChildren,
    kStmtCount
};

const char* kSql[kStmtCount] = {
    "INSERT INTO runs(" TASKHUB_RUN_COLUMNS ") "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    "UPDATE runs SET state = ?2, message = ?3, started_ms = ?4, ended_ms = ?5 WHERE id = ?1",
    "INSERT INTO tasks(run_id, task_id, plugin, state, attempt, exit_code, message, started_ms, "
    "ended_ms, seq, outputs, child_run) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
    "ON CONFLICT(run_id, task_id) DO UPDATE SET state = ?4, attempt = ?5, exit_code = ?6, "
    "message = ?7, started_ms = ?8, ended_ms = ?9, outputs = ?11, child_run = ?12",
    "INSERT INTO events(run_id, task_id, ts_ms, kind, detail) VALUES(?1, ?2, ?3, ?4, ?5)",
    "SELECT 1 FROM runs WHERE id = ?1",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE id = ?1",
    "SELECT task_id, plugin, state, attempt, exit_code, message, started_ms, ended_ms, outputs, "
    "child_run FROM tasks WHERE run_id = ?1 ORDER BY seq",
    "SELECT ts_ms, run_id, task_id, kind, detail, id FROM events WHERE run_id = ?1 ORDER BY id",
    "SELECT count(*) FROM runs",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE state IN ('queued', 'running', 'paused') "
    "ORDER BY rowid",
    "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE parent_run = ?1 ORDER BY rowid",
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
    Stmt& bind(int i, const std::string& v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
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
    json::value v = json::parse(text, ec);
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
        if (sqlite3_exec(db_, sql, nullptr, nullptr, &msg) == SQLITE_OK) return "";
        std::string m = msg ? msg : sqlite3_errmsg(db_);
        sqlite3_free(msg);
        return m;
    }
    bool check(int rc, const char* what, std::string* err) {
        if (rc == SQLITE_DONE || rc == SQLITE_ROW || rc == SQLITE_OK) return true;
        if (err->empty()) *err = std::string(what) + ": " + sqlite3_errmsg(db_);
        return false;
    }

    bool in_tx = false; // synchronous mode: a transaction is open

private:
    sqlite3* db_;
    std::filesystem::path path_;
    std::vector<std::unique_ptr<Stmt>> stmts_;
};

namespace {

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

// One daemon per state directory: a second one must not touch the first one's runs.
int lockStateDir(const std::filesystem::path& state_dir) {
    auto lock_path = state_dir / "taskhub.lock";
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
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

std::string taskKey(const std::string& run_id, const std::string& task_id) { return run_id + '\n' + task_id; }

} // namespace

std::unique_ptr<Store> Store::open(const std::filesystem::path& state_dir) {
    std::error_code ec;
    std::filesystem::create_directories(state_dir, ec);
    if (ec) throw StoreError("cannot create state directory " + state_dir.string() + ": " + ec.message());
    int lock_fd = lockStateDir(state_dir);
    auto path = state_dir / "taskhub.db";
    try {
        auto writer = std::make_unique<Conn>(openConnection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE), path);
        try {
            // Detects a damaged file before anything is written to it.
            std::string check = pragmaText(writer->db(), "PRAGMA quick_check(1)", path);
            if (check != "ok") throw StoreError("integrity check failed: " + check);
            exec(writer->db(), "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", path);
            migrate(writer->db(), path);
        } catch (const StoreError& e) {
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
    w_.reset();
    r_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

void Store::startWriter(std::function<void(std::function<void()>)> post) {
    commit();
    post_ = std::move(post);
    writer_ = std::thread([this] { writerLoop(); });
}

bool Store::apply(Conn& c, const Op& op) {
    std::string err;
    std::visit(
        [&](const auto& o) {
            using T = std::decay_t<decltype(o)>;
            if constexpr (std::is_same_v<T, RunRecord>) {
                auto& s = c.stmt(kInsertRun);
                s.bind(1, o.id).bind(2, o.workflow).bind(3, o.trigger).bind(4, o.state).bind(5, o.message);
                s.bind(6, o.version).bind(7, o.scheduled_ms).bind(8, o.created_ms).bind(9, o.started_ms);
                s.bind(10, o.ended_ms).bind(11, toJsonObject(o.params)).bind(12, o.parent_run);
                s.bind(13, o.parent_task).bind(14, static_cast<int64_t>(o.depth));
                c.check(s.step(), "insert run", &err);
            } else if constexpr (std::is_same_v<T, UpdateRun>) {
                const auto& r = o.run;
                auto& s = c.stmt(kUpdateRun);
                s.bind(1, r.id).bind(2, r.state).bind(3, r.message).bind(4, r.started_ms).bind(5, r.ended_ms);
                c.check(s.step(), "update run", &err);
            } else if constexpr (std::is_same_v<T, UpsertTask>) {
                const auto& t = o.task;
                auto& s = c.stmt(kUpsertTask);
                s.bind(1, o.run_id).bind(2, t.task_id).bind(3, t.plugin).bind(4, t.state);
                s.bind(5, static_cast<int64_t>(t.attempt)).bind(6, t.exit_code).bind(7, t.message);
                s.bind(8, t.started_ms).bind(9, t.ended_ms).bind(10, static_cast<int64_t>(o.order));
                s.bind(11, toJsonObject(t.outputs)).bind(12, t.child_run);
                c.check(s.step(), "update task", &err);
            } else {
                auto& s = c.stmt(kInsertEvent);
                s.bind(1, o.run_id).bind(2, o.task_id).bind(3, o.ts_ms).bind(4, o.kind).bind(5, o.detail);
                c.check(s.step(), "insert event", &err);
            }
        },
        op);
    if (err.empty()) return true;
    spdlog::error("STORE_WRITE_FAILED {}", err);
    std::lock_guard lock(mu_);
    last_error_ = err;
    return false;
}

void Store::enqueue(Op op) {
    if (!writer_.joinable()) {
        if (!w_->in_tx) {
            std::string err = w_->exec("BEGIN");
            if (!err.empty()) spdlog::error("STORE_WRITE_FAILED begin transaction: {}", err);
            else w_->in_tx = true;
        }
        if (!apply(*w_, op)) sync_failed_ = true;
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& b = pending_;
        b.seq = ++written_seq_;
        if (b.ops.empty()) b.first_seq = b.seq;
        if (auto* t = std::get_if<UpsertTask>(&op)) {
            auto [it, inserted] = b.task_index.emplace(taskKey(t->run_id, t->task.task_id), b.ops.size());
            if (!inserted) {
                b.ops[it->second] = std::move(op); // the task's latest state is all that matters
                return;
            }
        } else if (auto* r = std::get_if<RunRecord>(&op)) {
            b.run_ids.insert(r->id);
        }
        b.ops.push_back(std::move(op));
        if (b.ops.size() > 1) return; // the writer already knows there is work
    }
    cv_.notify_one();
}

void Store::insertRun(const RunRecord& run) { enqueue(run); }
void Store::updateRun(const RunRecord& run) { enqueue(UpdateRun{run}); }
void Store::upsertTask(const std::string& run_id, int order, const TaskRecord& task) {
    enqueue(UpsertTask{run_id, order, task});
}
void Store::addEvent(const EventRecord& event) { enqueue(event); }

void Store::writerLoop() {
    // Commits start at most this often: each fsync costs the same whatever the batch size, so
    // under load it is cheaper to let a few milliseconds of changes gather into one commit. An
    // idle store commits a single change at once.
    constexpr auto kMinCommitInterval = std::chrono::milliseconds(20);
    auto last_commit = std::chrono::steady_clock::now() - kMinCommitInterval;
    std::unique_lock lock(mu_);
    for (;;) {
        cv_.wait(lock, [this] { return stopping_ || !pending_.ops.empty(); });
        if (pending_.ops.empty()) break; // stopping and nothing left
        const auto due = last_commit + kMinCommitInterval;
        if (!stopping_ && std::chrono::steady_clock::now() < due) {
            cv_.wait_until(lock, due, [this] { return stopping_; });
        }
        last_commit = std::chrono::steady_clock::now();
        Batch batch = std::move(pending_);
        pending_ = Batch{};
        committing_runs_ = batch.run_ids;
        lock.unlock();

        // A batch is atomic: if any write fails, none of it is kept, and everyone waiting on it
        // hears so (a failed statement may already have rolled the transaction back).
        std::string err = w_->exec("BEGIN");
        bool ok = err.empty();
        if (ok) {
            for (const auto& op : batch.ops) {
                if (!apply(*w_, op)) { // apply() logged and recorded why
                    ok = false;
                    break;
                }
            }
            if (ok) {
                err = w_->exec("COMMIT");
                ok = err.empty();
            }
            if (!ok && !sqlite3_get_autocommit(w_->db())) w_->exec("ROLLBACK");
        }
        if (!ok) spdlog::error("STORE_COMMIT_FAILED {} write(s) lost: {}", batch.ops.size(), err.empty() ? "a write failed" : err);

        lock.lock();
        if (!ok) {
            if (!err.empty()) last_error_ = err;
            failed_.emplace_back(batch.first_seq, batch.seq);
            if (failed_.size() > 1024) {
                forgotten_failures_until_ = failed_.front().second;
                failed_.pop_front();
            }
        }
        committing_runs_.clear();
        durable_seq_ = batch.seq;
        flushed_cv_.notify_all();
        if (post_) post_([this, seq = batch.seq] { onCommitted(seq); });
    }
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

void Store::whenDurable(uint64_t since, std::function<void(bool)> fn) {
    uint64_t target;
    bool done;
    bool ok;
    {
        std::lock_guard lock(mu_);
        target = written_seq_;
        done = durable_seq_ >= target;
        ok = !failedBetweenLocked(since, target);
    }
    if (done) {
        post_([fn = std::move(fn), ok] { fn(ok); });
        return;
    }
    waiters_.push_back({target, since, std::move(fn)});
}

std::string Store::lastError() const {
    std::lock_guard lock(mu_);
    return last_error_;
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
    auto& s = r_->stmt(kSelectRun);
    s.bind(1, id);
    if (s.step() != SQLITE_ROW) return std::nullopt;
    RunRecord r = readRun(s);
    s.finish();
    if (with_tasks) {
        auto& t = r_->stmt(kSelectTasks);
        t.bind(1, id);
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
            r.tasks.push_back(std::move(tr));
        }
    }
    return r;
}

std::vector<RunRecord> Store::runs(const RunFilter& f) {
    std::string sql = "SELECT " TASKHUB_RUN_COLUMNS " FROM runs WHERE 1";
    if (f.workflow) sql += " AND workflow = ?1";
    if (f.state) sql += " AND state = ?2";
    if (f.top_level_only) sql += " AND parent_run = ''";
    sql += " ORDER BY rowid DESC LIMIT ?3";
    Stmt s(r_->db(), sql.c_str());
    if (f.workflow) s.bind(1, *f.workflow);
    if (f.state) s.bind(2, *f.state);
    s.bind(3, static_cast<int64_t>(f.limit));
    std::vector<RunRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readRun(s));
    return out;
}

std::vector<EventRecord> Store::events(const std::string& run_id) {
    auto& s = r_->stmt(kSelectEvents);
    s.bind(1, run_id);
    std::vector<EventRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back({s.i64(0), s.text(1), s.text(2), s.text(3), s.text(4), s.i64(5)});
    return out;
}

int64_t Store::countRuns() {
    auto& s = r_->stmt(kCountRuns);
    int64_t n = s.step() == SQLITE_ROW ? s.i64(0) : 0;
    s.finish();
    return n;
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

} // namespace taskhub::store

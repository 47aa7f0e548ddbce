// The store benchmarks' driver (bench_store_throughput.py, bench_recovery.py), linked with the
// real taskhub_store:
//
//   store_bench throughput DIR RUNS TASKS full|normal
//       RUNS runs of TASKS tasks each, written as the engine writes them (run created with its
//       task list, no task rows; per task ready, starting, running and succeeded upserts with their
//       events; run ended) through the store's writer thread, as fast as the writes can be handed
//       over; prints one JSON line: completions (tasks that succeeded), seconds until everything
//       was committed, commits, and the CPU time of the writer thread per completion.
//   store_bench inflight DIR RUNS TASKS full|normal INFLIGHT
//       The same runs and tasks, created first; then, as the engine runs them, INFLIGHT tasks at a
//       time each write "starting", wait until that is durable (as an attempt waits before its
//       plugin is called), then write running and succeeded with their events and make room for
//       the next task. Measures the task transitions only; one JSON line as above.
//   store_bench raw_sqlite DIR COMPLETIONS BATCH full|normal
//       The raw baseline: the same rows (a task upsert and an event row per state change) with
//       bare SQLite, prepared statements, BATCH completions per transaction; one JSON line.
//   store_bench generate DIR RUNS INTERRUPTED WORKFLOW VERSION
//       A history of RUNS finished runs (3 tasks, 8 events each) of WORKFLOW plus INTERRUPTED
//       runs left as a crash leaves them (run running, a task running, one starting, one
//       pending), written through the Store API in synchronous mode, so that the schema is
//       whatever this build's store writes. VERSION: the workflow's version as taskhubd shows
//       it, so that recovery can continue the interrupted runs.
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include <dirent.h>
#include <unistd.h>

#include "store/store.h"

using taskhub::store::RunRecord;
using taskhub::store::Store;
using taskhub::store::TaskRecord;

namespace {

using Clock = std::chrono::steady_clock;

int64_t nowMs() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// Stands in for the event loop: runs what the store posts, in order, on one thread.
class Loop {
public:
    Loop() : t_([this] { run(); }) {}
    ~Loop() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_one();
        t_.join();
    }
    void post(std::function<void()> fn) {
        {
            std::lock_guard lock(mu_);
            q_.push_back(std::move(fn));
        }
        cv_.notify_one();
    }
    std::thread::id thread() const { return t_.get_id(); }

private:
    void run() {
        std::unique_lock lock(mu_);
        for (;;) {
            cv_.wait(lock, [this] { return stop_ || !q_.empty(); });
            if (q_.empty()) return;
            auto fn = std::move(q_.front());
            q_.pop_front();
            lock.unlock();
            fn();
            lock.lock();
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> q_;
    bool stop_ = false;
    std::thread t_;
};

// CPU seconds (user + system) the store's writer thread ("taskhubd-store") has used so far; 0
// before it exists.
double writerCpuSeconds() {
    double total = 0;
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return 0;
    while (const dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        const std::string base = std::string("/proc/self/task/") + e->d_name;
        char comm[32] = {};
        if (FILE* f = std::fopen((base + "/comm").c_str(), "r")) {
            if (!std::fgets(comm, sizeof comm, f)) comm[0] = 0;
            std::fclose(f);
        }
        if (std::string(comm) != "taskhubd-store\n") continue;
        char stat[1024] = {};
        if (FILE* f = std::fopen((base + "/stat").c_str(), "r")) {
            if (!std::fgets(stat, sizeof stat, f)) stat[0] = 0;
            std::fclose(f);
        }
        // Fields 14 and 15 (utime, stime), counted after the command name's closing parenthesis.
        const char* p = std::strrchr(stat, ')');
        unsigned long long utime = 0, stime = 0;
        if (p && std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2) {
            total += static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
        }
    }
    ::closedir(d);
    return total;
}

RunRecord makeRun(const std::string& id, const std::string& workflow, int64_t t, const std::string& version = "bench") {
    RunRecord r;
    r.id = id;
    r.workflow = workflow;
    r.trigger = taskhub::model::TriggerSource::Manual;
    r.state = taskhub::model::RunState::Running;
    r.version = version;
    r.created_ms = t;
    r.started_ms = t;
    return r;
}

TaskRecord makeTask(int i, const std::string& state, int64_t t) {
    TaskRecord k;
    k.task_id = "t" + std::to_string(i);
    k.plugin = "shell";
    k.state = *taskhub::model::parse<taskhub::model::TaskState>(state); // the names below are all states
    if (state != "pending" && state != "ready") {
        k.attempt = 1;
        k.started_ms = t;
    }
    if (state == "succeeded") {
        k.exit_code = 0;
        k.ended_ms = t + 1;
        k.message = "exit status 0";
    }
    return k;
}

// A new run with its task list (TASKS tasks "tN" of the shell plugin), as the engine inserts it.
void insertRun(Store& s, const std::string& id, const std::string& workflow, int tasks, int64_t t,
               const std::string& version = "bench") {
    Store::TaskList list;
    list.reserve(static_cast<size_t>(tasks));
    for (int i = 0; i < tasks; ++i) list.add("t" + std::to_string(i), "shell", taskhub::model::TaskKind::Plugin);
    s.insertRun(makeRun(id, workflow, t, version), std::move(list));
}

// One run's writes, as the engine makes them for a run whose tasks all succeed.
void writeRun(Store& s, const std::string& id, const std::string& workflow, int tasks, int64_t t) {
    insertRun(s, id, workflow, tasks, t);
    s.addEvent(t, id, "", "run_created", "manual by bench");
    for (int i = 0; i < tasks; ++i) {
        const std::string task = "t" + std::to_string(i);
        s.upsertTask(id, i, makeTask(i, "ready", t));
        s.addEvent(t, id, task, "ready", "");
        s.upsertTask(id, i, makeTask(i, "starting", t));
        s.upsertTask(id, i, makeTask(i, "running", t));
        s.addEvent(t, id, task, "start", "attempt 1");
        s.upsertTask(id, i, makeTask(i, "succeeded", t));
        s.addEvent(t, id, task, "end", "succeeded: exit status 0");
    }
    RunRecord end = makeRun(id, workflow, t);
    end.state = taskhub::model::RunState::Succeeded;
    end.ended_ms = t + 2;
    s.updateRun(end);
    s.addEvent(t, id, "", "run_end", "succeeded");
}

int throughput(const std::filesystem::path& dir, int runs, int tasks, bool normal) {
    Store::Options opts;
    opts.sync_normal = normal;
    std::string err;
    auto store = Store::open(dir, opts, &err);
    if (!store) {
        std::fprintf(stderr, "store_bench: %s\n", err.c_str());
        return 1;
    }
    Loop loop;
    std::atomic<uint64_t> commits{0};
    store->startWriter([&](std::function<void()> fn) {
        ++commits; // the writer posts once per batch it wrote
        loop.post(std::move(fn));
    });
    const int64_t t = nowMs();
    const double cpu0 = writerCpuSeconds();
    const auto t0 = Clock::now();
    for (int r = 0; r < runs; ++r) writeRun(*store, "bench@" + std::to_string(r), "bench", tasks, t);
    const auto handed = Clock::now();
    if (!store->commit()) {
        std::fprintf(stderr, "store_bench: a commit failed: %s\n", store->lastError().c_str());
        return 1;
    }
    const auto t1 = Clock::now();
    const long long completions = static_cast<long long>(runs) * tasks;
    std::printf("{\"completions\": %lld, \"seconds\": %.6f, \"handover_seconds\": %.6f, \"commits\": %llu, "
                "\"writer_cpu_us_per_completion\": %.3f}\n",
                completions, std::chrono::duration<double>(t1 - t0).count(),
                std::chrono::duration<double>(handed - t0).count(), static_cast<unsigned long long>(commits.load()),
                (writerCpuSeconds() - cpu0) * 1e6 / static_cast<double>(completions));
    return 0;
}

// Completions with INFLIGHT tasks in flight, each waiting for its "starting" record (see the top).
int inflight(const std::filesystem::path& dir, int runs, int tasks, bool normal, int window) {
    Store::Options opts;
    opts.sync_normal = normal;
    std::string err;
    auto store = Store::open(dir, opts, &err);
    if (!store) {
        std::fprintf(stderr, "store_bench: %s\n", err.c_str());
        return 1;
    }
    const int64_t t = nowMs();
    for (int r = 0; r < runs; ++r) {
        insertRun(*store, "bench@" + std::to_string(r), "bench", tasks, t);
    }
    if (!store->commit()) return 1;
    Loop loop;
    std::atomic<uint64_t> commits{0};
    store->startWriter([&](std::function<void()> fn) {
        if (std::this_thread::get_id() != loop.thread()) ++commits; // the writer, once per batch
        loop.post(std::move(fn));
    });
    const int total = runs * tasks;
    int next = 0;                    // loop thread only
    std::atomic<int> completed{0};
    std::mutex mu;
    std::condition_variable done_cv;
    std::function<void()> startOne = [&] {
        if (next == total) return;
        const int n = next++;
        const std::string id = "bench@" + std::to_string(n / tasks);
        const int i = n % tasks;
        const uint64_t mark = store->writeMark();
        store->upsertTask(id, i, makeTask(i, "starting", t));
        store->whenDurable(mark, [&, id, i](bool) {
            const std::string task = "t" + std::to_string(i);
            store->upsertTask(id, i, makeTask(i, "running", t));
            store->addEvent(t, id, task, "start", "attempt 1");
            store->upsertTask(id, i, makeTask(i, "succeeded", t));
            store->addEvent(t, id, task, "end", "succeeded: exit status 0");
            if (completed.fetch_add(1) + 1 == total) {
                std::lock_guard lock(mu);
                done_cv.notify_all();
            }
            startOne();
        });
    };
    commits = 0;
    const double cpu0 = writerCpuSeconds();
    const auto t0 = Clock::now();
    loop.post([&] {
        for (int k = 0; k < window; ++k) startOne();
    });
    {
        std::unique_lock lock(mu);
        done_cv.wait(lock, [&] { return completed.load() == total; });
    }
    std::promise<bool> flushed;
    loop.post([&] { flushed.set_value(true); }); // the last completion's writes were made
    flushed.get_future().wait();
    if (!store->commit()) return 1;
    const auto t1 = Clock::now();
    std::printf("{\"completions\": %d, \"seconds\": %.6f, \"commits\": %llu, \"writer_cpu_us_per_completion\": %.3f}\n",
                total, std::chrono::duration<double>(t1 - t0).count(), static_cast<unsigned long long>(commits.load()),
                (writerCpuSeconds() - cpu0) * 1e6 / total);
    return 0;
}

void sqlOk(sqlite3* db, int rc, const char* what) {
    if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
        std::fprintf(stderr, "store_bench: %s: %s\n", what, sqlite3_errmsg(db));
        std::exit(1);
    }
}

int rawSqlite(const std::filesystem::path& dir, int completions, int batch, bool normal) {
    std::filesystem::create_directories(dir);
    const auto path = dir / "raw.db";
    sqlite3* db = nullptr;
    sqlOk(db, sqlite3_open(path.c_str(), &db), "open");
    sqlOk(db, sqlite3_exec(db, normal ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
                                      : "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
                           nullptr, nullptr, nullptr),
          "pragmas");
    sqlOk(db,
          sqlite3_exec(db,
                       "CREATE TABLE IF NOT EXISTS tasks(key INTEGER PRIMARY KEY, task_id TEXT, plugin TEXT, "
                       "state TEXT, attempt INTEGER, exit_code INTEGER, message TEXT, started_ms INTEGER, "
                       "ended_ms INTEGER);"
                       "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, key INTEGER, events TEXT);",
                       nullptr, nullptr, nullptr),
          "schema");
    sqlite3_stmt* task = nullptr;
    sqlite3_stmt* event = nullptr;
    sqlOk(db,
          sqlite3_prepare_v2(db,
                             "INSERT OR REPLACE INTO tasks VALUES(?1, 't', 'shell', ?2, 1, 0, 'exit status 0', ?3, ?3)",
                             -1, &task, nullptr),
          "prepare");
    sqlOk(db, sqlite3_prepare_v2(db, "INSERT INTO events(key, events) VALUES(?1, ?2)", -1, &event, nullptr), "prepare");
    const int64_t t = nowMs();
    const char* states[] = {"ready", "starting", "running", "succeeded"};
    const auto t0 = Clock::now();
    uint64_t commits = 0;
    for (int c = 0; c < completions;) {
        sqlOk(db, sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr), "begin");
        for (int b = 0; b < batch && c < completions; ++b, ++c) {
            // Within a batch the store collapses a task's states into its latest one and a run's
            // events into one row: one task row and one event row per completion.
            sqlite3_bind_int64(task, 1, c);
            sqlite3_bind_text(task, 2, states[3], -1, SQLITE_STATIC);
            sqlite3_bind_int64(task, 3, t);
            sqlOk(db, sqlite3_step(task), "task");
            sqlite3_reset(task);
            sqlite3_bind_int64(event, 1, c);
            sqlite3_bind_text(event, 2, "[[1,1,\"t\",\"ready\",\"\"],[2,1,\"t\",\"start\",\"attempt 1\"],[3,1,\"t\",\"end\",\"succeeded\"]]",
                              -1, SQLITE_STATIC);
            sqlOk(db, sqlite3_step(event), "event");
            sqlite3_reset(event);
        }
        sqlOk(db, sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr), "commit");
        ++commits;
    }
    const auto t1 = Clock::now();
    sqlite3_finalize(task);
    sqlite3_finalize(event);
    sqlite3_close(db);
    std::printf("{\"completions\": %d, \"seconds\": %.6f, \"commits\": %llu}\n", completions,
                std::chrono::duration<double>(t1 - t0).count(), static_cast<unsigned long long>(commits));
    return 0;
}

int generate(const std::filesystem::path& dir, int runs, int interrupted, const std::string& workflow,
             const std::string& version) {
    std::string err;
    auto store = Store::open(dir, &err);
    if (!store) {
        std::fprintf(stderr, "store_bench: %s\n", err.c_str());
        return 1;
    }
    const int64_t day = 24 * 3600 * 1000LL;
    const int64_t start = nowMs() - 30 * day;
    const int64_t step = 30 * day / (runs + interrupted + 1);
    int64_t t = start;
    for (int r = 0; r < runs; ++r, t += step) {
        writeRun(*store, workflow + "@hist-" + std::to_string(r), workflow, 3, t);
        if (r % 2000 == 1999 && !store->commit()) {
            std::fprintf(stderr, "store_bench: a commit failed: %s\n", store->lastError().c_str());
            return 1;
        }
    }
    for (int r = 0; r < interrupted; ++r, t += step) {
        // As a crash leaves a run: running, its first task running, the second starting, the third
        // not yet ready (no row: pending from the run's task list).
        const std::string id = workflow + "@crashed-" + std::to_string(r);
        insertRun(*store, id, workflow, 3, t, version);
        store->addEvent(t, id, "", "run_created", "manual by bench");
        store->upsertTask(id, 0, makeTask(0, "running", t));
        store->addEvent(t, id, "t0", "start", "attempt 1");
        store->upsertTask(id, 1, makeTask(1, "starting", t));
    }
    if (!store->commit()) {
        std::fprintf(stderr, "store_bench: a commit failed: %s\n", store->lastError().c_str());
        return 1;
    }
    std::printf("{\"runs\": %d, \"interrupted\": %d}\n", runs, interrupted);
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "throughput" && argc == 6) {
            return throughput(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::string(argv[5]) == "normal");
        }
        if (mode == "inflight" && argc == 7) {
            return inflight(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::string(argv[5]) == "normal",
                            std::atoi(argv[6]));
        }
        if (mode == "raw_sqlite" && argc == 6) {
            return rawSqlite(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), std::string(argv[5]) == "normal");
        }
        if (mode == "generate" && argc == 7) {
            return generate(argv[2], std::atoi(argv[3]), std::atoi(argv[4]), argv[5], argv[6]);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "store_bench: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr,
                 "usage: store_bench throughput DIR RUNS TASKS full|normal\n"
                 "       store_bench inflight DIR RUNS TASKS full|normal INFLIGHT\n"
                 "       store_bench raw_sqlite DIR COMPLETIONS BATCH full|normal\n"
                 "       store_bench generate DIR RUNS INTERRUPTED WORKFLOW VERSION\n");
    return 2;
}

// Reads: committed data through the read connection (and the write connection's open transaction
// in synchronous mode, for runExists).
#include "store/internal.h"

#include <spdlog/spdlog.h>

namespace taskhub::store {

std::vector<Store::FileVersion> Store::fileVersions(const std::string& workflow) {
    auto& s = r_->stmt(kSelectFileVersions);
    s.bind(1, workflow);
    std::vector<FileVersion> out;
    while (s.step() == SQLITE_ROW) {
        out.push_back({workflow, s.text(0), s.i64(1), s.i64(2), s.i64(3), s.text(4), s.i64(5)});
    }
    return out;
}

namespace {

DeadlineMissRecord readDeadlineMiss(const Stmt& s) {
    DeadlineMissRecord m{s.text(0), s.text(2), s.i64(1), s.i64(3), s.i64(4), s.i64(5), std::nullopt, s.text(7)};
    if (auto state = s.text(6); !state.empty()) m.run_state = model::parse<model::RunState>(state);
    return m;
}

} // namespace

std::map<std::string, int64_t> Store::deadlineMarks() {
    auto& s = r_->stmt(kSelectDeadlineMarks);
    std::map<std::string, int64_t> out;
    while (s.step() == SQLITE_ROW) out.emplace(s.text(0), s.i64(1));
    return out;
}

std::vector<DeadlineMissRecord> Store::deadlineMisses(const std::string& workflow, int64_t after_ms, int limit) {
    auto& s = r_->stmt(kSelectDeadlineMisses);
    s.bind(1, workflow).bind(2, after_ms).bind(3, static_cast<int64_t>(limit));
    std::vector<DeadlineMissRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readDeadlineMiss(s));
    return out;
}

std::optional<DeadlineMissRecord> Store::deadlineMiss(const std::string& run_id) {
    auto& s = r_->stmt(kSelectDeadlineMissOfRun);
    s.bind(1, run_id);
    std::optional<DeadlineMissRecord> out;
    if (s.step() == SQLITE_ROW) out = readDeadlineMiss(s);
    s.finish();
    return out;
}

std::vector<RunRecord> Store::scheduledRuns(const std::string& workflow, int64_t after_ms, int limit) {
    auto& s = r_->stmt(kSelectScheduledRuns);
    s.bind(1, workflow).bind(2, after_ms).bind(3, static_cast<int64_t>(limit));
    std::vector<RunRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readRun(s));
    return out;
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

namespace {

// The message of the tasks of a run recorded as skipped, which have no rows.
constexpr const char* kRunSkipped = "the run was skipped";

// The tasks of a run from its task list (schema 10): pending, or skipped in a skipped run. A list
// that does not parse (edited by hand) is logged and left out: the run's rows are all it has.
std::vector<TaskRecord> listedTasks(const RunRecord& run, const std::string& list) {
    if (list.empty()) return {};
    auto tasks = Store::TaskList::parse(list);
    if (!tasks) {
        spdlog::error("STORE_BAD_VALUE runs.tasks of run {} is not a task list (KIND LEN:ID LEN:PLUGIN ...): {}; "
                      "only its tasks that have rows are shown",
                      run.id, list.substr(0, 200));
        return {};
    }
    if (run.state == model::RunState::Skipped) {
        for (auto& t : *tasks) {
            t.state = model::TaskState::Skipped;
            t.message = kRunSkipped;
        }
    }
    return std::move(*tasks);
}

} // namespace

std::optional<RunRecord> Store::run(const std::string& id, bool with_tasks) {
    if (pruning_.count(id)) return std::nullopt; // being deleted by history retention
    auto& s = r_->stmt(kSelectRun);
    s.bind(1, id);
    if (s.step() != SQLITE_ROW) return std::nullopt;
    RunRecord r = readRun(s);
    const int64_t key = s.i64(17);
    const std::string list = with_tasks ? s.text(18) : std::string();
    s.finish();
    if (!with_tasks) return r;
    // Every task in workflow order: those with a row as written, the others from the list.
    r.tasks = listedTasks(r, list);
    auto& t = r_->stmt(kSelectTasks);
    t.bind(1, key << kTaskKeyBits).bind(2, (key + 1) << kTaskKeyBits);
    while (t.step() == SQLITE_ROW) {
        const auto order = static_cast<size_t>(t.i64(23) & (kMaxTasksPerRun - 1));
        if (order < r.tasks.size()) {
            r.tasks[order] = readTask(t);
        } else {
            r.tasks.push_back(readTask(t)); // a run without a list (schema 9 and before)
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

std::optional<int64_t> Store::lastEndedMs(const std::string& workflow, model::RunState state) {
    auto& s = r_->stmt(kLastEnded);
    s.bind(1, workflow);
    s.bind(2, model::name(state));
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

} // namespace taskhub::store

// History retention (used by app/housekeeping).
//
// Reads pick the candidates on the event loop (a bounded amount per call, from committed data);
// the writer thread deletes them, checking again that each run tree is still final and has no
// write waiting, so that retention never races a run that `retry` or a late event revives.
#include "store/internal.h"

namespace taskhub::store {

namespace {

// The final run states as an SQL list: ('succeeded', 'failed', ...).
std::string finalStatesSql() {
    std::string out;
    for (const auto& [state, text] : model::NameTable<model::RunState>::entries) {
        if (!model::isFinal(state)) continue;
        out += (out.empty() ? "('" : ", '") + std::string(text) + "'";
    }
    return out + ")";
}

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
        finalStatesSql() + " AND (key <= ?2 OR created_ms < ?3) ORDER BY key LIMIT ?4";
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
        Stmt del_notes(c.db(), "DELETE FROM notifications WHERE run_id = ?1 AND state <> 'pending'");
        for (const auto& id : op.run_ids) {
            std::vector<int64_t> keys;
            bool keep = false;
            tree.reset().bind(1, id);
            for (int rc; !keep && (rc = tree.step()) == SQLITE_ROW;) {
                const auto state = model::parse<model::RunState>(tree.text(2));
                keep = !state || !model::isFinal(*state) || hasWritesWaiting(tree.text(0));
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
            del_notes.reset().bind(1, id);
            c.check(del_notes.step(), "prune run: delete its notifications", &err);
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

} // namespace taskhub::store

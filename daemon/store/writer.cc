// Writes: synchronous (a transaction on the caller's thread) or through the group-commit writer
// thread, which commits batches and tells waiters when their writes are durable.
#include "store/internal.h"

#include "common/failpoint.h"

#include <spdlog/spdlog.h>
#include <pthread.h>

#include <chrono>

namespace taskhub::store {

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
    if (const auto* insert = std::get_if<InsertRun>(&op)) {
        const RunRecord* o = &insert->run;
        auto& s = c.stmt(kInsertRun);
        s.bind(1, o->id).bind(2, o->workflow).bind(3, model::name(o->trigger)).bind(4, model::name(o->state));
        s.bind(5, o->message);
        s.bind(6, o->version).bind(7, o->scheduled_ms).bind(8, o->created_ms).bind(9, o->started_ms);
        s.bind(10, o->ended_ms).bind(11, toJsonObject(o->params)).bind(12, o->parent_run);
        s.bind(13, o->parent_task).bind(14, static_cast<int64_t>(o->depth)).bind(15, static_cast<int64_t>(o->lost));
        s.bind(16, model::name(o->skip_cause)).bindRef(17, insert->tasks);
        s.bind(18, static_cast<int64_t>(o->failures_absorbed));
        c.check(s.step(), "insert run", &err);
        s.reset(); // drops the reference to the task list
    } else if (const auto* u = std::get_if<UpdateRun>(&op)) {
        const auto& r = u->run;
        auto& s = c.stmt(kUpdateRun);
        s.bind(1, r.id).bind(2, model::name(r.state)).bind(3, r.message).bind(4, r.started_ms).bind(5, r.ended_ms);
        s.bind(6, static_cast<int64_t>(r.lost)).bind(7, static_cast<int64_t>(r.failures_absorbed));
        c.check(s.step(), "update run", &err);
    } else if (const auto* v = std::get_if<ReviveRun>(&op)) {
        const auto& r = v->run;
        auto key = runKey(c, r.id);
        if (!key) return false;
        auto& s = c.stmt(kReviveRun);
        s.bind(1, r.id).bind(2, model::name(r.trigger)).bind(3, model::name(r.state)).bind(4, r.message).bind(5, r.version);
        s.bind(6, r.created_ms).bind(7, r.started_ms).bind(8, r.ended_ms).bind(9, toJsonObject(r.params));
        s.bind(10, model::name(r.skip_cause)).bindRef(11, v->tasks);
        const bool revived = c.check(s.step(), "revive run", &err);
        s.reset(); // drops the reference to the task list
        if (revived) {
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
    } else if (const auto* m = std::get_if<DeadlineMissRecord>(&op)) {
        auto& s = c.stmt(kInsertDeadlineMiss);
        s.bind(1, m->workflow).bind(2, m->scheduled_ms).bind(3, m->run_id).bind(4, m->due_ms).bind(5, m->deadline_s);
        s.bind(6, m->detected_ms).bind(7, m->run_state ? model::name(*m->run_state) : std::string_view(""))
            .bind(8, m->reason);
        c.check(s.step(), "record deadline miss", &err);
    } else if (const auto* k = std::get_if<DeadlineMark>(&op)) {
        auto& s = c.stmt(k->checked_ms ? kSetDeadlineMark : kDeleteDeadlineMark);
        s.bind(1, k->workflow);
        if (k->checked_ms) s.bind(2, *k->checked_ms);
        c.check(s.step(), "record deadline mark", &err);
    } else if (const auto* prune = std::get_if<Prune>(&op)) {
        return applyPrune(c, *prune);
    } else if (const auto* note = std::get_if<NotificationWrite>(&op)) {
        return applyNotification(c, *note);
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
    // One statement: the task's first write (when it leaves pending) inserts its row, every later
    // one updates it.
    std::string err;
    auto& s = c.stmtRebound(kUpsertTask); // every parameter is bound below
    s.bind(1, (run_key << kTaskKeyBits) | order).bindRef(2, t.task_id).bindRef(3, model::name(t.state));
    s.bind(4, static_cast<int64_t>(t.attempt)).bind(5, t.exit_code).bindRef(6, t.message);
    s.bind(7, t.started_ms).bind(8, t.ended_ms).bindRef(10, t.child_run);
    s.bindRef(11, t.plugin).bind(12, t.pid).bind(13, t.pgid).bind(14, t.proc_start).bindRef(15, model::name(t.kind));
    std::string outputs;
    if (t.outputs.empty() && t.json_outputs.empty()) {
        s.bindRef(9, kEmptyJsonObject);
    } else {
        outputs = outputsToJson(t.outputs, t.json_outputs);
        s.bindRef(9, outputs);
    }
    if (const auto& u = t.usage) {
        s.bind(16, clampToInt64(u->cpu_user_us)).bind(17, clampToInt64(u->cpu_system_us));
        s.bind(18, clampToInt64(u->memory_peak)).bind(19, clampToInt64(u->oom_kills));
        s.bind(20, clampToInt64(u->io_read_bytes)).bind(21, clampToInt64(u->io_write_bytes));
        s.bindRef(22, cgroup::toString(u->source));
    } else {
        for (int i = 16; i <= 21; ++i) s.bindNull(i);
        s.bindRef(22, "");
    }
    if (const auto& l = t.leftovers) {
        s.bind(23, static_cast<int64_t>(l->found)).bindRef(24, cgroup::toString(l->action));
    } else {
        s.bindNull(23).bindRef(24, "");
    }
    s.bindRef(25, t.handle).bindRef(26, t.items);
    c.check(s.step(), "write task", &err);
    // The references to the texts above stay bound but are never read: the next write binds every
    // parameter again before it steps.
    s.resetKeepingBindings();
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
        if (auto* r = std::get_if<InsertRun>(&op)) b.run_ids.insert(r->run.id);
        b.run_ops.push_back(std::move(op));
        if (b.writes > 1) return; // the kick is posted already
    }
    kick();
}

void Store::kick() {
    // Runs after the event-loop handler that made the batch's first write (and any handlers
    // queued before it), so that a writer woken by it takes at least all of that handler's writes.
    // A batch taken later (when the 20 ms since the last commit are up, or at once for a waiter)
    // may end within a handler's writes: the rest go into the next commit, in order.
    post_([this] {
        {
            std::lock_guard lock(mu_);
            if (pending_.writes == 0) return;
            kicked_ = true;
        }
        cv_.notify_one();
    });
}

namespace {

// A run's task list from its tasks.
Store::TaskList taskListOf(const std::vector<TaskRecord>& tasks) {
    Store::TaskList list;
    list.reserve(tasks.size());
    for (const auto& t : tasks) list.add(t.task_id, t.plugin, t.kind);
    return list;
}

// The run's fields, without its tasks.
RunRecord withoutTasks(const RunRecord& run) {
    if (run.tasks.empty()) return run;
    RunRecord copy = run;
    copy.tasks.clear();
    copy.tasks.shrink_to_fit();
    return copy;
}

} // namespace

void Store::insertRun(const RunRecord& run) { insertRun(run, taskListOf(run.tasks)); }
void Store::insertRun(const RunRecord& run, TaskList tasks) {
    enqueueRun(InsertRun{withoutTasks(run), std::move(tasks).release()});
}
void Store::updateRun(const RunRecord& run) { enqueueRun(UpdateRun{withoutTasks(run)}); }
void Store::reviveRun(const RunRecord& run) { reviveRun(run, taskListOf(run.tasks)); }
void Store::reviveRun(const RunRecord& run, TaskList tasks) {
    enqueueRun(ReviveRun{withoutTasks(run), std::move(tasks).release()});
}
void Store::setWorkflowPaused(const std::string& workflow, bool paused, int64_t since_ms, const std::string& by) {
    enqueueRun(WorkflowPause{workflow, paused, since_ms, by});
}

void Store::addPluginEvent(const PluginEvent& event) { enqueueRun(event); }
void Store::recordFileVersion(const FileVersion& version) { enqueueRun(version); }
void Store::recordDeadlineMiss(const DeadlineMissRecord& miss) { enqueueRun(miss); }
void Store::setDeadlineMark(const std::string& workflow, std::optional<int64_t> checked_ms) {
    enqueueRun(DeadlineMark{workflow, checked_ms});
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
    kick();
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
    kick();
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
        // Woken by the kick of the pending batch (its first writer's event-loop handler has
        // returned) or by someone waiting for the writes.
        cv_.wait(lock, [this] { return stopping_ || (pending_.writes != 0 && (kicked_ || urgent_)); });
        if (pending_.writes == 0) break; // stopping and nothing left
        // Unless someone waits for these writes (an answer to a client, an attempt whose plugin
        // is called once its "starting" record is durable): then they are committed at once,
        // and what arrives during that commit makes up the next batch.
        const auto due = last_commit + kMinCommitInterval;
        if (!stopping_ && !urgent_ && std::chrono::steady_clock::now() < due) {
            cv_.wait_until(lock, due, [this] { return stopping_ || urgent_; });
        }
        urgent_ = false;
        kicked_ = false;
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
        ++batches_written_;
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
    if (durable_seq_ < target) {
        urgent_ = true; // the kick cannot run while the caller blocks the event loop
        cv_.notify_one();
    }
    flushed_cv_.wait(lock, [&] { return durable_seq_ >= target; });
    return !failedBetweenLocked(since, target);
}

uint64_t Store::writeMark() const {
    std::lock_guard lock(mu_);
    return written_seq_;
}

bool Store::isDurable(uint64_t mark) const {
    std::lock_guard lock(mu_);
    return durable_seq_ >= mark;
}

uint64_t Store::batchesWritten() const {
    std::lock_guard lock(mu_);
    return batches_written_;
}

void Store::whenDurable(uint64_t since, std::function<void(bool)> fn) { waitDurable(since, std::move(fn), false); }

void Store::whenDurableOrUnwritable(uint64_t since, std::function<void(bool)> fn) {
    waitDurable(since, std::move(fn), true);
}

void Store::afterDurable(std::function<void(bool)> fn) { waitDurable(0, std::move(fn), false, false); }

void Store::stopWaitingWhileUnwritable() {
    stop_waiting_while_unwritable_ = true;
    for (auto& w : waiters_) w.answer_when_unwritable = true;
    onUnwritable();
}

void Store::waitDurable(uint64_t since, std::function<void(bool)> fn, bool answer_when_unwritable, bool hurry) {
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
        if (!done && hurry) urgent_ = true;
    }
    if (done) {
        post_([fn = std::move(fn), ok] { fn(ok); });
        return;
    }
    if (hurry) cv_.notify_one();
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

} // namespace taskhub::store

// The notifications table: daemon/notify's durable outbox (schema 8). Written through the writer
// thread like every write, so that a notification handed to the store before a run's final
// record is durable whenever that record is.
#include "store/internal.h"

namespace taskhub::store {

namespace {

constexpr const char* kNotificationColumns =
    "id, run_id, workflow, event, kind, target, state, attempts, next_attempt_ms, last_error, created_ms, "
    "sent_ms, payload, run_as, destination";

NotificationRecord readNotification(const Stmt& s) {
    NotificationRecord n;
    n.id = s.text(0);
    n.run_id = s.text(1);
    n.workflow = s.text(2);
    n.event = model::parse<model::NotifyEvent>(s.text(3)).value_or(model::NotifyEvent::Failure);
    n.kind = model::parse<model::NotifyKind>(s.text(4)).value_or(model::NotifyKind::Command);
    n.target = s.text(5);
    n.state = model::parse<model::NotifyState>(s.text(6)).value_or(model::NotifyState::Failed);
    n.attempts = static_cast<int>(s.i64(7));
    n.next_attempt_ms = s.i64(8);
    n.last_error = s.text(9);
    n.created_ms = s.i64(10);
    n.sent_ms = s.opt(11);
    n.payload = s.text(12);
    n.run_as = s.text(13);
    n.destination = s.text(14);
    return n;
}

std::string selectNotifications(const char* rest) {
    return std::string("SELECT ") + kNotificationColumns + " FROM notifications " + rest;
}

} // namespace

void Store::addNotification(const NotificationRecord& n) { enqueueRun(NotificationWrite{n, true}); }

void Store::updateNotification(const NotificationRecord& n) { enqueueRun(NotificationWrite{n, false}); }

bool Store::applyNotification(Conn& c, const NotificationWrite& op) {
    std::string err;
    const auto& n = op.n;
    if (op.insert) {
        Stmt s(c.db(), "INSERT OR IGNORE INTO notifications(id, run_id, workflow, event, kind, target, state, attempts, "
                       "next_attempt_ms, last_error, created_ms, sent_ms, payload, run_as, destination) "
                       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
        s.bind(1, n.id).bind(2, n.run_id).bind(3, n.workflow).bind(4, model::name(n.event)).bind(5, model::name(n.kind));
        s.bind(6, n.target).bind(7, model::name(n.state)).bind(8, static_cast<int64_t>(n.attempts));
        s.bind(9, n.next_attempt_ms).bind(10, n.last_error).bind(11, n.created_ms).bind(12, n.sent_ms);
        s.bind(13, n.payload).bind(14, n.run_as).bind(15, n.destination);
        c.check(s.step(), "record notification", &err);
    } else {
        Stmt s(c.db(), "UPDATE notifications SET state = ?2, attempts = ?3, next_attempt_ms = ?4, last_error = ?5, "
                       "sent_ms = ?6 WHERE id = ?1");
        s.bind(1, n.id).bind(2, model::name(n.state)).bind(3, static_cast<int64_t>(n.attempts));
        s.bind(4, n.next_attempt_ms).bind(5, n.last_error).bind(6, n.sent_ms);
        c.check(s.step(), "update notification", &err);
    }
    return err.empty() || fail(err);
}

std::vector<NotificationRecord> Store::notifications(const std::string& run_id) {
    Stmt s(r_->db(), selectNotifications("WHERE run_id = ?1 ORDER BY created_ms, id").c_str());
    s.bind(1, run_id);
    std::vector<NotificationRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readNotification(s));
    return out;
}

std::vector<NotificationRecord> Store::pendingNotifications(size_t limit) {
    Stmt s(r_->db(), selectNotifications("WHERE state = 'pending' ORDER BY created_ms, id LIMIT ?1").c_str());
    s.bind(1, static_cast<int64_t>(limit));
    std::vector<NotificationRecord> out;
    while (s.step() == SQLITE_ROW) out.push_back(readNotification(s));
    return out;
}

std::vector<int64_t> Store::notificationCounts() {
    std::vector<int64_t> out(model::NameTable<model::NotifyState>::entries.size(), 0);
    Stmt s(r_->db(), "SELECT state, count(*) FROM notifications GROUP BY state");
    while (s.step() == SQLITE_ROW) {
        if (auto st = model::parse<model::NotifyState>(s.text(0))) out[static_cast<size_t>(*st)] = s.i64(1);
    }
    return out;
}

std::vector<std::pair<std::string, model::RunState>> Store::lastOutcomes() {
    // SQLite takes the bare column `state` from the row that holds max(key).
    Stmt s(r_->db(), "SELECT workflow, state, max(key) FROM runs WHERE parent_run = '' AND state IN "
                     "('succeeded', 'failed') GROUP BY workflow");
    std::vector<std::pair<std::string, model::RunState>> out;
    while (s.step() == SQLITE_ROW) {
        if (auto st = model::parse<model::RunState>(s.text(1))) out.emplace_back(s.text(0), *st);
    }
    return out;
}

} // namespace taskhub::store

// The notifications table (schema 8): the notify module's durable outbox.
#include <catch2/catch.hpp>

#include <algorithm>

#include "store/store.h"
#include "store_support.h"
#include "test_support.h"

namespace taskhub::store {
namespace {

using model::NotifyEvent;
using model::NotifyState;
using testing::openStore;
using taskhub::testing::TempDir;

NotificationRecord note(const std::string& id, const std::string& run, int64_t created) {
    NotificationRecord n;
    n.id = id;
    n.run_id = run;
    n.workflow = "wf";
    n.event = NotifyEvent::Failure;
    n.kind = model::NotifyKind::Mail;
    n.target = "mail: root";
    n.created_ms = created;
    n.next_attempt_ms = created;
    n.payload = "{\"event\":\"failure\"}";
    return n;
}

RunRecord run(const std::string& id, model::RunState state, int64_t created) {
    RunRecord r;
    r.id = id;
    r.workflow = id.substr(0, id.find('@'));
    r.state = state;
    r.created_ms = created;
    return r;
}

TEST_CASE("a notification is recorded once per id, updated, and read back after a restart", "[store]") {
    TempDir dir;
    {
        auto s = openStore(dir.path);
        s->addNotification(note("wf@1/failure/aa", "wf@1", 10));
        auto again = note("wf@1/failure/aa", "wf@1", 99);
        again.target = "mail: someone-else";
        s->addNotification(again); // the same id: ignored
        s->addNotification(note("wf@1/failure/bb", "wf@1", 11));
        s->addNotification(note("wf@2/failure/aa", "wf@2", 12));
        auto sent = note("wf@1/failure/bb", "wf@1", 11);
        sent.state = NotifyState::Sent;
        sent.attempts = 2;
        sent.sent_ms = 20;
        sent.last_error = "no MTA: written to mbox";
        s->updateNotification(sent);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    auto of1 = s->notifications("wf@1");
    REQUIRE(of1.size() == 2);
    CHECK(of1[0].id == "wf@1/failure/aa");
    CHECK(of1[0].target == "mail: root");
    CHECK(of1[0].created_ms == 10);
    CHECK(of1[0].state == NotifyState::Pending);
    CHECK(of1[0].payload == "{\"event\":\"failure\"}");
    CHECK(of1[1].state == NotifyState::Sent);
    CHECK(of1[1].attempts == 2);
    CHECK(of1[1].sent_ms == 20);
    CHECK(of1[1].last_error == "no MTA: written to mbox");
    auto pending = s->pendingNotifications(10);
    REQUIRE(pending.size() == 2);
    CHECK(pending[0].id == "wf@1/failure/aa");
    CHECK(pending[1].id == "wf@2/failure/aa");
    CHECK(s->pendingNotifications(1).size() == 1);
    auto counts = s->notificationCounts();
    CHECK(counts[static_cast<size_t>(NotifyState::Pending)] == 2);
    CHECK(counts[static_cast<size_t>(NotifyState::Sent)] == 1);
    CHECK(counts[static_cast<size_t>(NotifyState::Failed)] == 0);
}

TEST_CASE("each workflow's last outcome is its latest succeeded or failed top-level run", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    s->insertRun(run("a@1", model::RunState::Failed, 1));
    s->insertRun(run("a@2", model::RunState::Succeeded, 2));
    s->insertRun(run("a@3", model::RunState::Cancelled, 3));
    s->insertRun(run("b@1", model::RunState::Succeeded, 1));
    s->insertRun(run("b@2", model::RunState::Failed, 2));
    auto child = run("c@1", model::RunState::Succeeded, 3);
    child.parent_run = "b@2";
    s->insertRun(child);
    REQUIRE(s->commit());
    auto outcomes = s->lastOutcomes();
    std::sort(outcomes.begin(), outcomes.end());
    REQUIRE(outcomes.size() == 2);
    CHECK(outcomes[0] == std::pair<std::string, model::RunState>{"a", model::RunState::Succeeded});
    CHECK(outcomes[1] == std::pair<std::string, model::RunState>{"b", model::RunState::Failed});
}

TEST_CASE("history retention deletes a pruned run's delivered notifications, not its pending ones", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    auto r = run("wf@1", model::RunState::Failed, 1);
    r.ended_ms = 2;
    s->insertRun(r);
    s->addNotification(note("wf@1/failure/aa", "wf@1", 3));
    auto sent = note("wf@1/success/bb", "wf@1", 3);
    sent.state = NotifyState::Sent;
    s->addNotification(sent);
    REQUIRE(s->commit());
    s->pruneRuns({"wf@1"});
    REQUIRE(s->commit());
    auto left = s->notifications("wf@1");
    REQUIRE(left.size() == 1);
    CHECK(left[0].state == NotifyState::Pending);
}

} // namespace
} // namespace taskhub::store

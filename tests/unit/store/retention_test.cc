// History retention: which finished runs keep_runs and keep_days give up, and that deleting one
// takes its child runs, tasks and events with it and nothing else.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "store/store.h"
#include "model_text.h"
#include "store_support.h"
#include "test_support.h"

using namespace taskhub::store;
using namespace taskhub::store::testing;
using taskhub::testing::TempDir;

namespace {

constexpr int64_t kDay = 86'400'000;
constexpr int64_t kNow = 1000 * kDay;

RunRecord finished(const std::string& id, const std::string& wf, int64_t created,
                   taskhub::model::RunState state = taskhub::model::RunState::Succeeded) {
    RunRecord r;
    r.id = id;
    r.workflow = wf;
    r.trigger = taskhub::model::TriggerSource::Manual;
    r.state = state;
    r.created_ms = created;
    r.started_ms = created;
    if (taskhub::model::isFinal(state)) r.ended_ms = created + 1000;
    return r;
}

// A run with one task and one event, committed.
void add(Store& s, const RunRecord& r) {
    s.insertRun(r);
    TaskRecord t;
    t.task_id = "t";
    t.plugin = "shell";
    t.state = taskhub::model::TaskState::Succeeded;
    t.attempt = 1;
    s.upsertTask(r.id, 0, t);
    s.addEvent({r.created_ms, r.id, "t", "start", "attempt 1"});
    REQUIRE(s.commit());
}

std::vector<std::string> prunable(Store& s, Store::Retention rule, int64_t min_age_ms = 0) {
    Store::PruneScan scan;
    scan.now_ms = kNow;
    scan.min_age_ms = min_age_ms;
    return s.prunableRuns([&](const std::string&) { return rule; }, scan);
}

} // namespace

using Ids = std::vector<std::string>;

TEST_CASE("keep_runs gives up the oldest finished top-level runs beyond the newest N", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    for (int i = 1; i <= 5; ++i) add(*s, finished("wf@" + std::to_string(i), "wf", kNow - 10 * kDay + i));
    add(*s, finished("other@1", "other", kNow - 10 * kDay));
    CHECK(prunable(*s, {2, std::nullopt}) == Ids{"wf@1", "wf@2", "wf@3"});
    CHECK(prunable(*s, {5, std::nullopt}).empty());
    CHECK(prunable(*s, {std::nullopt, std::nullopt}).empty()); // no limit: everything stays

    SECTION("a run that is not final, or ended within min_age, stays") {
        auto r = finished("wf@2", "wf", kNow - 10 * kDay + 2, taskhub::model::RunState::Running);
        s->updateRun(r);
        auto late = finished("wf@3", "wf", kNow - 10 * kDay + 3);
        late.ended_ms = kNow - 1000;
        s->updateRun(late);
        REQUIRE(s->commit());
        CHECK(prunable(*s, {2, std::nullopt}, 5000) == Ids{"wf@1"});
    }
    SECTION("the run holding its workflow's latest scheduled instant stays") {
        auto r = finished("sched@1", "sched", kNow - 10 * kDay);
        r.scheduled_ms = kNow - 10 * kDay;
        add(*s, r);
        add(*s, finished("sched@2", "sched", kNow - 9 * kDay)); // manual, newer
        add(*s, finished("sched@3", "sched", kNow - 8 * kDay));
        CHECK(prunable(*s, {1, std::nullopt}) == Ids{"sched@2", "wf@1", "wf@2", "wf@3", "wf@4"});
    }
    SECTION("the workflow's own rule applies to its runs") {
        Store::PruneScan scan;
        scan.now_ms = kNow;
        auto ids = s->prunableRuns(
            [](const std::string& wf) { return wf == "wf" ? Store::Retention{4, std::nullopt} : Store::Retention{}; },
            scan);
        CHECK(ids == Ids{"wf@1"});
    }
}

TEST_CASE("keep_days gives up finished runs created before the limit", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    add(*s, finished("wf@old", "wf", kNow - 8 * kDay));
    add(*s, finished("wf@young", "wf", kNow - 6 * kDay));
    add(*s, finished("wf@today", "wf", kNow - 1000 * 60));
    CHECK(prunable(*s, {std::nullopt, 7}) == Ids{"wf@old"});
    CHECK(prunable(*s, {std::nullopt, 5}) == Ids{"wf@old", "wf@young"});
    // Either limit gives a run up.
    CHECK(prunable(*s, {1, 7}) == Ids{"wf@old", "wf@young"});
}

TEST_CASE("a bounded amount per call, round robin over the workflows", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    for (const char* wf : {"a", "b", "c"}) {
        for (int i = 1; i <= 3; ++i) add(*s, finished(std::string(wf) + "@" + std::to_string(i), wf, kNow - kDay));
    }
    Store::PruneScan scan;
    scan.now_ms = kNow;
    scan.max_runs = 3;
    auto rule = [](const std::string&) { return Store::Retention{1, std::nullopt}; };
    CHECK(s->prunableRuns(rule, scan) == Ids{"a@1", "a@2", "b@1"});
    CHECK(scan.cursor == "a"); // b had more: the next call starts with it
    s->pruneRuns({"a@1", "a@2", "b@1"});
    REQUIRE(s->commit());
    CHECK(s->prunableRuns(rule, scan) == Ids{"b@2", "c@1", "c@2"});
    s->pruneRuns({"b@2", "c@1", "c@2"});
    REQUIRE(s->commit());
    CHECK(s->prunableRuns(rule, scan).empty()); // past the last workflow
    CHECK(scan.cursor.empty());
    CHECK(s->countRuns() == 3);
}

TEST_CASE("deleting a run takes its child runs, tasks and events, and nothing else", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    add(*s, finished("wf@1", "wf", kNow - 10 * kDay));
    auto child = finished("wf@1/sub.1", "inner", kNow - 10 * kDay);
    child.parent_run = "wf@1";
    child.parent_task = "sub";
    child.depth = 1;
    add(*s, child);
    auto grandchild = finished("wf@1/sub.1/deep.1", "leaf", kNow - 10 * kDay);
    grandchild.parent_run = child.id;
    grandchild.parent_task = "deep";
    grandchild.depth = 2;
    add(*s, grandchild);
    add(*s, finished("wf@2", "wf", kNow - 9 * kDay));
    REQUIRE(s->countRuns() == 4);

    s->pruneRuns({"wf@1"});
    REQUIRE(s->commit());
    CHECK(s->countRuns() == 1);
    CHECK_FALSE(s->run("wf@1", true));
    CHECK_FALSE(s->run(child.id, true));
    CHECK_FALSE(s->run(grandchild.id, true));
    CHECK(s->events("wf@1").empty());
    auto kept = s->run("wf@2", true);
    REQUIRE(kept);
    CHECK(kept->tasks.size() == 1);
    CHECK(s->events("wf@2").size() == 1);
    // A new run never takes over a deleted run's tasks or events (keys are never reused).
    add(*s, finished("wf@3", "wf", kNow));
    CHECK(s->run("wf@3", true)->tasks.size() == 1);
    CHECK(s->events("wf@3").size() == 1);
}

TEST_CASE("a run that is no longer final when the deletion is applied stays", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    add(*s, finished("wf@1", "wf", kNow - 10 * kDay));
    auto child = finished("wf@1/sub.1", "inner", kNow - 10 * kDay, taskhub::model::RunState::Running);
    child.parent_run = "wf@1";
    add(*s, finished("wf@2", "wf", kNow - 10 * kDay));
    add(*s, child);
    auto retried = finished("wf@2", "wf", kNow - 10 * kDay, taskhub::model::RunState::Running); // `retry` revived it
    s->updateRun(retried);
    s->pruneRuns({"wf@1", "wf@2"});
    REQUIRE(s->commit());
    CHECK(s->run("wf@1", false)); // its child run is still running
    CHECK(s->run("wf@2", false)->state == "running");
}

TEST_CASE("file versions whose run is gone are found, and forgotten only while it stays gone", "[store][retention]") {
    TempDir dir;
    auto s = openStore(dir.path);
    add(*s, finished("drop@kept", "drop", kNow));
    s->recordFileVersion({"drop", "/in/a.csv", 1, 10, 100, "drop@kept", kNow});
    s->recordFileVersion({"drop", "/in/b.csv", 2, 10, 100, "drop@deleted", kNow});
    s->recordFileVersion({"drop", "/in/c.csv", 3, 10, 100, "", kNow}); // passed over: no run
    REQUIRE(s->commit());
    Store::FileVersion cursor;
    auto orphans = s->orphanFileVersions(2, &cursor);
    REQUIRE(orphans.size() == 1);
    CHECK(orphans[0].path == "/in/b.csv");
    CHECK(cursor.path == "/in/b.csv");
    auto more = s->orphanFileVersions(2, &cursor);
    REQUIRE(more.size() == 1);
    CHECK(more[0].path == "/in/c.csv");
    CHECK(cursor.workflow.empty()); // at the end: the next call starts again
    orphans.push_back(more[0]);
    orphans.push_back({"drop", "/in/a.csv", 1, 10, 100, "drop@kept", kNow}); // has its run: kept
    s->forgetFileVersions(orphans);
    REQUIRE(s->commit());
    auto left = s->fileVersions("drop");
    REQUIRE(left.size() == 1);
    CHECK(left[0].path == "/in/a.csv");
}

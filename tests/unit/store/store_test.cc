// The store keeps runs, tasks and events across reopening, and refuses databases it must not
// touch.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "store/store.h"
#include "model_text.h"
#include "store_support.h"
#include "test_support.h"

using namespace taskhub::store;
using namespace taskhub::store::testing;
namespace fs = std::filesystem;
using taskhub::testing::TempDir;

namespace {

RunRecord makeRun(const std::string& id, const std::string& wf, int64_t created) {
    RunRecord r;
    r.id = id;
    r.workflow = wf;
    r.trigger = taskhub::model::TriggerSource::Manual;
    r.state = taskhub::model::RunState::Running;
    r.created_ms = created;
    r.started_ms = created;
    return r;
}

void sql(const fs::path& db, const std::string& statement) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    REQUIRE(sqlite3_exec(h, statement.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
}

// What schema 13 added (what a version 12 database lacks).
#define TASKHUB_DROP_SCHEMA_13 "ALTER TABLE runs DROP COLUMN failures_absorbed;"

// What schemas 12 and 13 added (what a version 11 database lacks).
#define TASKHUB_DROP_SCHEMA_12 TASKHUB_DROP_SCHEMA_13 " ALTER TABLE tasks DROP COLUMN items;"

// What schemas 11 and 12 added (what a version 10 database lacks).
#define TASKHUB_DROP_SCHEMA_11 TASKHUB_DROP_SCHEMA_12 " ALTER TABLE tasks DROP COLUMN handle;"

// What schemas 10 and 11 added (what a version 9 database lacks).
#define TASKHUB_DROP_SCHEMA_10 TASKHUB_DROP_SCHEMA_11 " ALTER TABLE runs DROP COLUMN tasks;"

// What schemas 9 and 10 added (what a version 8 database lacks).
const char* const kDropSchema9Columns =
    TASKHUB_DROP_SCHEMA_10
    " ALTER TABLE tasks DROP COLUMN cpu_user_us; ALTER TABLE tasks DROP COLUMN cpu_system_us; "
    "ALTER TABLE tasks DROP COLUMN memory_peak; ALTER TABLE tasks DROP COLUMN oom_kills; "
    "ALTER TABLE tasks DROP COLUMN io_read_bytes; ALTER TABLE tasks DROP COLUMN io_write_bytes; "
    "ALTER TABLE tasks DROP COLUMN usage_source; ALTER TABLE tasks DROP COLUMN leftovers_found; "
    "ALTER TABLE tasks DROP COLUMN leftovers_action;";


} // namespace

TEST_CASE("runs, tasks and events survive closing and reopening", "[store]") {
    TempDir dir;
    {
        auto s = openStore(dir.path);
        s->insertRun(makeRun("wf@1", "wf", 1000));
        s->insertRun(makeRun("wf@2", "wf", 2000));
        s->insertRun(makeRun("other@1", "other", 1500));
        TaskRecord t;
        t.task_id = "b";
        t.plugin = "shell";
        t.state = taskhub::model::TaskState::Failed;
        t.attempt = 2;
        t.exit_code = 3;
        t.message = "exit code 3";
        s->upsertTask("wf@2", 1, t);
        t.task_id = "a";
        t.state = taskhub::model::TaskState::Succeeded;
        t.exit_code = 0;
        s->upsertTask("wf@2", 0, t);
        s->addEvent({5, "wf@2", "a", "start", "attempt 1"});
        auto r = makeRun("wf@2", "wf", 2000);
        r.state = taskhub::model::RunState::Failed;
        r.message = "task 'b' failed";
        r.ended_ms = 2500;
        s->updateRun(r);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    CHECK(s->countRuns() == 3);
    auto run = s->run("wf@2", true);
    REQUIRE(run);
    CHECK(run->state == "failed");
    CHECK(run->message == "task 'b' failed");
    CHECK(run->ended_ms == 2500);
    REQUIRE(run->tasks.size() == 2);
    CHECK(run->tasks[0].task_id == "a"); // listed in workflow order
    CHECK(run->tasks[1].exit_code == 3);
    CHECK(run->tasks[1].attempt == 2);
    auto ev = s->events("wf@2");
    REQUIRE(ev.size() == 1);
    CHECK(ev[0].kind == "start");

    auto newest = s->runs({});
    REQUIRE(newest.size() == 3);
    CHECK(newest[0].id == "other@1"); // newest first, in creation order
    CHECK(s->runs({std::string("wf"), std::nullopt, 50}).size() == 2);
    CHECK(s->runs({std::nullopt, std::string("failed"), 50}).size() == 1);
    CHECK(s->unfinishedRuns().size() == 2);
    CHECK(s->runExists("wf@1"));
    CHECK_FALSE(s->runExists("wf@3"));
}

TEST_CASE("only committed writes are visible outside, and survive the process", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    s->insertRun(makeRun("kept", "wf", 1));
    REQUIRE(s->commit());
    s->insertRun(makeRun("pending", "wf", 2));
    sqlite3* other = nullptr;
    REQUIRE(sqlite3_open((dir.path / "taskhub.db").c_str(), &other) == SQLITE_OK);
    auto count = [&] {
        sqlite3_stmt* st = nullptr;
        sqlite3_prepare_v2(other, "SELECT count(*) FROM runs", -1, &st, nullptr);
        sqlite3_step(st);
        int n = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return n;
    };
    CHECK(count() == 1);
    REQUIRE(s->commit());
    CHECK(count() == 2);
    sqlite3_close(other);
}

TEST_CASE("lastEndedMs is when the workflow's latest run in that state ended", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    using taskhub::model::RunState;
    auto ended = [&](const std::string& id, const std::string& wf, RunState state, int64_t end) {
        auto r = makeRun(id, wf, end - 10);
        r.state = state;
        r.ended_ms = end;
        s->insertRun(r);
    };
    ended("wf@1", "wf", RunState::Succeeded, 1000);
    ended("wf@2", "wf", RunState::Succeeded, 3000);
    ended("wf@3", "wf", RunState::Failed, 2000);
    ended("wf@4", "wf", RunState::Cancelled, 9000);
    ended("other@1", "other", RunState::Succeeded, 7000);
    s->insertRun(makeRun("wf@5", "wf", 8000)); // running: no end
    REQUIRE(s->commit());
    CHECK(s->lastEndedMs("wf", RunState::Succeeded) == 3000);
    CHECK(s->lastEndedMs("wf", RunState::Failed) == 2000);
    CHECK(s->lastEndedMs("other", RunState::Failed) == std::nullopt);
    CHECK(s->lastEndedMs("none", RunState::Succeeded) == std::nullopt);
}

TEST_CASE("a second store on the same state directory is refused before it touches anything", "[store]") {
    TempDir dir;
    auto first = openStore(dir.path);
    CHECK_THAT(openRefusal(dir.path),
               Catch::Contains("is in use by another taskhubd (pid " + std::to_string(getpid()) + ")"));
    first.reset();
    CHECK(opens(dir.path));
}

TEST_CASE("a database from a newer taskhubd is refused and left untouched", "[store]") {
    TempDir dir;
    { openStore(dir.path); }
    sql(dir.path / "taskhub.db", "PRAGMA user_version=99");
    {
        std::string m = openRefusal(dir.path);
        CHECK(m.find("was written by a newer taskhubd (schema version 99, this taskhubd knows up to " +
                     std::to_string(Store::kSchemaVersion) + ")") != std::string::npos);
        CHECK(m.find("left untouched") != std::string::npos);
    }
}

namespace {

// The schema a taskhubd of schema version 1 created, as it created it.
const char* kV1Database = R"sql(
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
PRAGMA application_id = 1414021681;
PRAGMA user_version = 1;
INSERT INTO runs VALUES('old@1', 'old', 'cron', 'succeeded', 'all tasks succeeded', 'h1', 900, 1000, 1001, 1500);
INSERT INTO tasks VALUES('old@1', 'a', 'shell', 'succeeded', 1, 0, 'exit code 0', 1001, 1400, 0);
INSERT INTO events(run_id, task_id, ts_ms, kind, detail) VALUES('old@1', 'a', 1001, 'start', 'attempt 1');
)sql";

int64_t sqlInt(const fs::path& db, const std::string& query) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, query.c_str(), -1, &st, nullptr) == SQLITE_OK);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

} // namespace

TEST_CASE("a version 1 database is migrated to the current version when opened, keeping its history", "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    sql(db, kV1Database);
    REQUIRE(sqlInt(db, "PRAGMA user_version") == 1);
    {
        auto s = openStore(dir.path);
        auto run = s->run("old@1", true);
        REQUIRE(run);
        CHECK(run->state == "succeeded");
        CHECK(run->scheduled_ms == 900);
        CHECK(run->params.empty());
        CHECK(run->parent_run.empty());
        CHECK(run->parent_task.empty());
        CHECK(run->depth == 0);
        REQUIRE(run->tasks.size() == 1);
        CHECK(run->tasks[0].message == "exit code 0");
        CHECK(run->tasks[0].outputs.empty());
        CHECK(run->tasks[0].child_run.empty());
        auto ev = s->events("old@1");
        REQUIRE(ev.size() == 1);
        CHECK(ev[0].ts_ms == 1001);
        CHECK(ev[0].task_id == "a");
        CHECK(ev[0].kind == "start");
        CHECK(ev[0].detail == "attempt 1");
        CHECK(ev[0].seq == 1);

        // The migrated database takes the new fields, and numbers new events after the old ones.
        auto child = makeRun("old@1/a.1", "inner", 2000);
        child.trigger = taskhub::model::TriggerSource::Parent;
        child.parent_run = "old@1";
        child.parent_task = "a";
        child.depth = 1;
        s->insertRun(child);
        s->addEvent({2001, "old@1/a.1", "", "run_created", "parent old@1 task a"});
        REQUIRE(s->commit());
        REQUIRE(s->children("old@1").size() == 1);
        REQUIRE(s->events("old@1/a.1").size() == 1);
        CHECK(s->events("old@1/a.1")[0].seq == 2);
    }
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    for (const char* index : {"runs_by_workflow", "runs_by_state", "runs_by_parent", "runs_by_schedule", "event_blocks_by_run"}) {
        CHECK(sqlInt(db, std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '") +
                             index + "'") == 1);
    }
    CHECK(sqlInt(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('events', 'runs_v3', 'tasks_v3')") == 0);
    CHECK(sqlInt(db, "SELECT count(*) FROM runs WHERE params = '{}' AND depth = 0") == 1); // the old run
    // Opening again changes nothing.
    CHECK(opens(dir.path));
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
}

TEST_CASE("a migration that fails leaves the version 1 database as it was", "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    sql(db, kV1Database);
    sql(db, "ALTER TABLE tasks ADD COLUMN child_run INTEGER"); // collides with the v2 column
    CHECK_THAT(openRefusal(dir.path), Catch::Contains("duplicate column name: child_run") &&
                                                 Catch::Contains("left untouched"));
    CHECK(sqlInt(db, "PRAGMA user_version") == 1);
    CHECK(sqlInt(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'params'") == 0);
}

TEST_CASE("typed outputs share the outputs column as JSON values and read back split", "[store][json]") {
    TempDir dir;
    const NameValues typed = {{"files", R"(["a b.csv","c\"d"])"},
                              {"cfg", R"({"db":{"host":"h","port":5432},"ratio":1.5,"on":true,"x":null})"},
                              {"n", "-12"}, {"big", "1e+300"}};
    {
        auto s = openStore(dir.path);
        s->insertRun(makeRun("wf@1", "wf", 1000));
        TaskRecord t;
        t.task_id = "list";
        t.plugin = "shell";
        t.state = taskhub::model::TaskState::Succeeded;
        t.attempt = 1;
        t.outputs = {{"path", "[not json, a plain string]"}};
        t.json_outputs = typed;
        s->upsertTask("wf@1", 0, t);
        TaskRecord only_typed = t;
        only_typed.task_id = "cfg";
        only_typed.outputs.clear();
        s->upsertTask("wf@1", 1, only_typed);
        REQUIRE(s->commit());
    }
    // One object in the column: the plain output a string, the typed ones JSON values.
    const fs::path db = dir.path / "taskhub.db";
    CHECK(sqlInt(db, "SELECT json_type(outputs, '$.files') = 'array' AND json_type(outputs, '$.path') = 'text' "
                     "AND json_type(outputs, '$.cfg') = 'object' FROM tasks WHERE task_id = 'list'") == 1);
    auto s = openStore(dir.path);
    auto run = s->run("wf@1", true);
    REQUIRE(run);
    REQUIRE(run->tasks.size() == 2);
    CHECK(run->tasks[0].outputs == NameValues{{"path", "[not json, a plain string]"}});
    CHECK(run->tasks[0].json_outputs == typed);
    CHECK(run->tasks[1].outputs.empty());
    CHECK(run->tasks[1].json_outputs == typed);
}

TEST_CASE("params, outputs and nesting are stored in their order and read back", "[store]") {
    TempDir dir;
    {
        auto s = openStore(dir.path);
        auto parent = makeRun("wf@1", "wf", 1000);
        parent.params = {{"region", "eu"}, {"date", "2024-03-01"}, {"quote", "say \"hi\"\n\\ ok"}, {"empty", ""}};
        s->insertRun(parent);
        TaskRecord t;
        t.task_id = "sub";
        t.plugin = "";
        t.state = taskhub::model::TaskState::Succeeded;
        t.attempt = 2;
        t.outputs = {{"z", "last"}, {"a", "first"}, {"utf8", "gr\u00fc\u00dfe \xe2\x9c\x93"}};
        t.child_run = "wf@1/sub.2";
        s->upsertTask("wf@1", 0, t);
        for (int i = 1; i <= 2; ++i) {
            auto child = makeRun("wf@1/sub." + std::to_string(i), "inner", 1000 + i);
            child.trigger = taskhub::model::TriggerSource::Parent;
            child.parent_run = "wf@1";
            child.parent_task = "sub";
            child.depth = 1;
            child.params = {{"file", "/tmp/" + std::to_string(i)}};
            s->insertRun(child);
        }
        auto grandchild = makeRun("wf@1/sub.2/leaf.1", "leaf", 1100);
        grandchild.parent_run = "wf@1/sub.2";
        grandchild.parent_task = "leaf";
        grandchild.depth = 2;
        s->insertRun(grandchild);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    auto run = s->run("wf@1", true);
    REQUIRE(run);
    CHECK(run->params == NameValues{{"region", "eu"}, {"date", "2024-03-01"}, {"quote", "say \"hi\"\n\\ ok"}, {"empty", ""}});
    CHECK(run->depth == 0);
    REQUIRE(run->tasks.size() == 1);
    CHECK(run->tasks[0].outputs == NameValues{{"z", "last"}, {"a", "first"}, {"utf8", "gr\u00fc\u00dfe \xe2\x9c\x93"}});
    CHECK(run->tasks[0].child_run == "wf@1/sub.2");

    auto kids = s->children("wf@1");
    REQUIRE(kids.size() == 2); // direct children only, oldest first
    CHECK(kids[0].id == "wf@1/sub.1");
    CHECK(kids[1].id == "wf@1/sub.2");
    CHECK(kids[1].trigger == "parent");
    CHECK(kids[1].parent_run == "wf@1");
    CHECK(kids[1].parent_task == "sub");
    CHECK(kids[1].depth == 1);
    CHECK(kids[1].params == NameValues{{"file", "/tmp/2"}});
    CHECK(kids[1].tasks.empty());
    REQUIRE(s->children("wf@1/sub.2").size() == 1);
    CHECK(s->children("wf@1/sub.2")[0].depth == 2);
    CHECK(s->children("wf@1/sub.1").empty());
    CHECK(s->children("nope").empty());

    CHECK(s->runs({}).size() == 4);
    RunFilter top;
    top.top_level_only = true;
    REQUIRE(s->runs(top).size() == 1);
    CHECK(s->runs(top)[0].id == "wf@1");
}

TEST_CASE("writer mode keeps only a task's latest outputs and child run", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    s->startWriter([](std::function<void()>) {});
    s->insertRun(makeRun("wf@1", "wf", 1));
    TaskRecord t;
    t.task_id = "a";
    t.plugin = "noop";
    t.state = taskhub::model::TaskState::Running;
    s->upsertTask("wf@1", 0, t);
    t.state = taskhub::model::TaskState::Succeeded;
    t.outputs = {{"n", "1"}};
    t.child_run = "wf@1/a.1";
    s->upsertTask("wf@1", 0, t);
    REQUIRE(s->commit());
    auto run = s->run("wf@1", true);
    REQUIRE(run);
    REQUIRE(run->tasks.size() == 1);
    CHECK(run->tasks[0].outputs == NameValues{{"n", "1"}});
    CHECK(run->tasks[0].child_run == "wf@1/a.1");
    // A later attempt that publishes nothing clears the outputs.
    t.outputs.clear();
    s->upsertTask("wf@1", 0, t);
    REQUIRE(s->commit());
    CHECK(s->run("wf@1", true)->tasks[0].outputs.empty());
}

TEST_CASE("paused runs count as unfinished", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    auto r = makeRun("wf@1", "wf", 1);
    r.state = taskhub::model::RunState::Paused;
    s->insertRun(r);
    s->insertRun(makeRun("wf@2", "wf", 2));
    auto done = makeRun("wf@3", "wf", 3);
    done.state = taskhub::model::RunState::Succeeded;
    s->insertRun(done);
    REQUIRE(s->commit());
    auto unfinished = s->unfinishedRuns();
    REQUIRE(unfinished.size() == 2);
    CHECK(unfinished[0].id == "wf@1");
    CHECK(unfinished[1].id == "wf@2");
}

TEST_CASE("a foreign SQLite database is refused", "[store]") {
    TempDir dir;
    sql(dir.path / "taskhub.db", "CREATE TABLE mine(x)");
    CHECK_THAT(openRefusal(dir.path), Catch::Contains("is not a TaskHub state database"));
}

TEST_CASE("a corrupted database is refused with what to do", "[store]") {
    TempDir dir;
    std::ofstream(dir.path / "taskhub.db") << std::string(8192, 'x');
    CHECK_THAT(openRefusal(dir.path), Catch::Contains("move") && Catch::Contains("aside"));
    // Never replaced silently.
    std::ifstream in(dir.path / "taskhub.db");
    std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK(content == std::string(8192, 'x'));
}

namespace {

std::string fileText(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
}

} // namespace

TEST_CASE("a damaged database is refused untouched, and checkDatabase says the same", "[store]") {
    TempDir dir;
    const auto db = dir.path / "taskhub.db";
    CHECK(Store::checkDatabase(dir.path).empty()); // none yet
    {
        auto s = openStore(dir.path);
        for (int i = 0; i < 50; ++i) s->insertRun(makeRun("wf@" + std::to_string(i), "wf", i));
        REQUIRE(s->commit());
    }
    CHECK_FALSE(std::filesystem::exists(dir.path / "taskhub.db-wal")); // a clean close leaves none
    CHECK(Store::checkDatabase(dir.path).empty());
    const std::string whole = fileText(db);
    REQUIRE(whole.size() % 4096 == 0);

    auto refused = [&](const std::string& content, const std::string& what) {
        std::ofstream(db, std::ios::binary | std::ios::trunc) << content;
        const std::string said = Store::checkDatabase(dir.path);
        CHECK_THAT(said, Catch::Contains(db.string() + " is damaged (" + what) &&
                             Catch::Contains("taskhubd will not modify it") &&
                             Catch::Contains("mv " + db.string() + " " + db.string() + ".damaged"));
        CHECK_THAT(openRefusal(dir.path), Catch::Contains(said));
        CHECK(fileText(db) == content);
        CHECK_FALSE(std::filesystem::exists(dir.path / "taskhub.db-wal")); // the check made none
    };
    SECTION("not a database") { refused(std::string(whole.size(), 'x'), "file is not a database"); }
    SECTION("shorter than a header") { refused(whole.substr(0, 50), "file is not a database"); }
    SECTION("truncated mid-page") { refused(whole.substr(0, whole.size() - 100), "it is truncated"); }
    SECTION("truncated at a page boundary") {
        refused(whole.substr(0, whole.size() - 4096), "it is truncated: its header says");
    }
    SECTION("an empty file is a new database") {
        std::ofstream(db, std::ios::trunc).close();
        CHECK(Store::checkDatabase(dir.path).empty());
        auto s = openStore(dir.path);
        CHECK(s->countRuns() == 0);
    }
    SECTION("a -wal beside an empty file") {
        std::ofstream(db, std::ios::trunc).close();
        std::ofstream(dir.path / "taskhub.db-wal", std::ios::binary) << std::string(4096 + 32, 'w');
        CHECK_THAT(openRefusal(dir.path), Catch::Contains("the database file is empty but a 4128-byte -wal"));
        CHECK(fileText(dir.path / "taskhub.db-wal") == std::string(4096 + 32, 'w'));
    }
}

namespace {

// Stands in for the event loop: posted functions run when the test drains them.
struct FakeLoop {
    std::mutex mu;
    std::deque<std::function<void()>> queue;
    void post(std::function<void()> fn) {
        std::lock_guard lock(mu);
        queue.push_back(std::move(fn));
    }
    size_t drain() {
        size_t n = 0;
        for (;;) {
            std::function<void()> fn;
            {
                std::lock_guard lock(mu);
                if (queue.empty()) return n;
                fn = std::move(queue.front());
                queue.pop_front();
            }
            fn();
            ++n;
        }
    }
};

} // namespace

TEST_CASE("writer mode: batches commit off the caller's thread and barriers fire after them", "[store]") {
    TempDir dir;
    FakeLoop loop;
    {
        auto s = openStore(dir.path);
        s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
        const uint64_t mark = s->writeMark();
        s->insertRun(makeRun("wf@1", "wf", 1));
        CHECK(s->runExists("wf@1")); // pending writes count for run ids
        TaskRecord t;
        t.task_id = "a";
        t.plugin = "noop";
        using taskhub::model::TaskState;
        for (TaskState state : {TaskState::Pending, TaskState::Ready, TaskState::Running, TaskState::Succeeded}) {
            t.state = state;
            s->upsertTask("wf@1", 0, t);
        }
        bool durable = false;
        s->whenDurable(mark, [&](bool ok) { durable = ok; });
        REQUIRE(s->commit()); // blocks until the writer committed everything written so far
        loop.drain();
        CHECK(durable);
        auto run = s->run("wf@1", true);
        REQUIRE(run);
        REQUIRE(run->tasks.size() == 1);
        CHECK(run->tasks[0].state == "succeeded"); // only the latest state was needed

        // Nothing pending: the barrier still answers, through the loop.
        bool again = false;
        s->whenDurable(s->writeMark(), [&](bool ok) { again = ok; });
        CHECK_FALSE(again);
        loop.drain();
        CHECK(again);

        s->insertRun(makeRun("wf@2", "wf", 2)); // flushed by the destructor
    }
    auto reopened = openStore(dir.path);
    CHECK(reopened->countRuns() == 2);
}

TEST_CASE("writer mode: a batch with a failing write is lost whole, and its waiters hear so", "[store]") {
    TempDir dir;
    FakeLoop loop;
    auto s = openStore(dir.path);
    s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
    s->insertRun(makeRun("wf@1", "wf", 1));
    REQUIRE(s->commit());

    const uint64_t mark = s->writeMark();
    s->insertRun(makeRun("wf@2", "wf", 2));
    s->insertRun(makeRun("wf@1", "wf", 1)); // duplicate id: the batch fails
    std::optional<bool> durable;
    s->whenDurable(mark, [&](bool ok) { durable = ok; });
    // The waiter makes the writer commit at once, so the batch may have failed before commit()
    // is called (commit() then has nothing pending to report): the waiter is what hears it.
    s->commit();
    loop.drain();
    REQUIRE(durable);
    CHECK_FALSE(*durable);
    CHECK_FALSE(s->runExists("wf@2")); // atomic: nothing of the failed batch was kept
    CHECK(s->lastError().find("UNIQUE") != std::string::npos);

    // Later writes are not blamed for the earlier failure.
    const uint64_t later = s->writeMark();
    s->insertRun(makeRun("wf@3", "wf", 3));
    std::optional<bool> fine;
    s->whenDurable(later, [&](bool ok) { fine = ok; });
    CHECK(s->commit());
    loop.drain();
    REQUIRE(fine);
    CHECK(*fine);
}

TEST_CASE("events are numbered across runs and restarts, and read back per run in order", "[store][events]") {
    TempDir dir;
    FakeLoop loop;
    {
        auto s = openStore(dir.path);
        s->insertRun(makeRun("a@1", "a", 1));
        s->insertRun(makeRun("b@1", "b", 1));
        s->addEvent({10, "a@1", "", "run_created", "manual"}); // synchronous mode: 1
        REQUIRE(s->commit());
        s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
        // Interleaved across two runs within one batch, and over several batches.
        for (int i = 0; i < 3; ++i) {
            s->addEvent({20 + i, "a@1", "t", "ready", ""});
            s->addEvent({20 + i, "b@1", "u", "start", "attempt " + std::to_string(i + 1)});
        }
        REQUIRE(s->commit());
        s->addEvent({30, "b@1", "u", "end", "exit code 0"});
        REQUIRE(s->commit());
        loop.drain();
    }
    auto s = openStore(dir.path);
    auto a = s->events("a@1");
    auto b = s->events("b@1");
    REQUIRE(a.size() == 4);
    REQUIRE(b.size() == 4);
    CHECK(a[0].kind == "run_created");
    CHECK(a[0].seq == 1);
    std::vector<int64_t> seqs;
    for (const auto* list : {&a, &b}) {
        for (size_t i = 0; i < list->size(); ++i) {
            seqs.push_back((*list)[i].seq);
            if (i > 0) CHECK((*list)[i].seq > (*list)[i - 1].seq); // in the order they were added
        }
    }
    std::sort(seqs.begin(), seqs.end());
    CHECK(std::adjacent_find(seqs.begin(), seqs.end()) == seqs.end()); // unique across runs
    CHECK(seqs.front() == 1);
    CHECK(seqs.back() == 8);
    CHECK(a[1].seq + 1 == b[0].seq); // interleaved as added
    CHECK(b[3].kind == "end");
    CHECK(b[3].detail == "exit code 0");
    CHECK(b[3].ts_ms == 30);
    CHECK(b[1].detail == "attempt 2");
    CHECK(s->events("nope").empty());

    // After a restart, numbering continues after the highest number stored.
    s->insertRun(makeRun("c@1", "c", 2));
    s->addEvent({40, "c@1", "", "run_created", ""});
    REQUIRE(s->commit());
    REQUIRE(s->events("c@1").size() == 1);
    CHECK(s->events("c@1")[0].seq == 9);
}

TEST_CASE("event details keep any text; bytes that are not UTF-8 become U+FFFD", "[store][events]") {
    TempDir dir;
    auto s = openStore(dir.path);
    s->insertRun(makeRun("wf@1", "wf", 1));
    const std::string fine = "quote \" backslash \\ tab\t newline\n bell\x07 gr\u00fc\u00dfe \xe2\x9c\x93 \xf0\x9f\x98\x80";
    s->addEvent({1, "wf@1", "t\"1", "end", fine});
    s->addEvent({2, "wf@1", "t", "end", "cut \xe2\x9c"});           // truncated sequence at the end
    s->addEvent({3, "wf@1", "t", "end", "bad \xff\xfe lead"});       // bytes that never start one
    s->addEvent({4, "wf@1", "t", "end", "overlong \xc0\xaf and \xed\xa0\x80 surrogate"});
    REQUIRE(s->commit());
    auto ev = s->events("wf@1");
    REQUIRE(ev.size() == 4);
    CHECK(ev[0].detail == fine);
    CHECK(ev[0].task_id == "t\"1");
    CHECK(ev[1].detail == "cut \xef\xbf\xbd\xef\xbf\xbd");
    CHECK(ev[2].detail == "bad \xef\xbf\xbd\xef\xbf\xbd lead");
    CHECK(ev[3].detail == "overlong \xef\xbf\xbd\xef\xbf\xbd and \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate");
}

TEST_CASE("writer mode: the tasks of many runs and batches land in their runs, in workflow order", "[store]") {
    TempDir dir;
    FakeLoop loop;
    auto s = openStore(dir.path);
    s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
    const int kRuns = 5, kTasks = 300;
    for (int round = 0; round < 3; ++round) {
        for (int r = 0; r < kRuns; ++r) {
            if (round == 0) s->insertRun(makeRun("wf@" + std::to_string(r), "wf", r));
            // Written in reverse order, some twice within a batch.
            for (int t = kTasks - 1; t >= 0; --t) {
                TaskRecord rec;
                rec.task_id = "t" + std::to_string(t);
                rec.plugin = "noop";
                rec.state = round == 2 ? taskhub::model::TaskState::Succeeded : taskhub::model::TaskState::Running;
                rec.attempt = round + 1;
                s->upsertTask("wf@" + std::to_string(r), t, rec);
                if (t % 7 == 0) s->upsertTask("wf@" + std::to_string(r), t, rec);
            }
        }
        REQUIRE(s->commit());
    }
    loop.drain();
    for (int r = 0; r < kRuns; ++r) {
        auto run = s->run("wf@" + std::to_string(r), true);
        REQUIRE(run);
        REQUIRE(run->tasks.size() == static_cast<size_t>(kTasks));
        for (int t = 0; t < kTasks; ++t) {
            CHECK(run->tasks[static_cast<size_t>(t)].task_id == "t" + std::to_string(t));
            CHECK(run->tasks[static_cast<size_t>(t)].attempt == 3);
            CHECK(run->tasks[static_cast<size_t>(t)].state == "succeeded");
        }
    }
}

TEST_CASE("a task written for a run the store does not have is an error, not a stray row", "[store]") {
    TempDir dir;
    auto s = openStore(dir.path);
    TaskRecord t;
    t.task_id = "a";
    t.plugin = "noop";
    s->upsertTask("ghost@1", 0, t);
    CHECK_FALSE(s->commit());
    CHECK(s->lastError().find("unknown run ghost@1") != std::string::npos);
}

TEST_CASE("workflow pauses persist; a revived run keeps its id and key and loses its old tasks", "[store]") {
    TempDir dir;
    {
        auto s = openStore(dir.path);
        s->setWorkflowPaused("nightly", true, 1000, "uid 0 (root)");
        s->setWorkflowPaused("other", true, 2000, "uid 7 (ops)");
        s->setWorkflowPaused("other", false);
        auto skipped = makeRun("nightly@1", "nightly", 1500);
        skipped.state = taskhub::model::RunState::Skipped;
        skipped.message = std::string(taskhub::model::kPausedFiringMessage) + " (paused by uid 0 (root))";
        skipped.skip_cause = taskhub::model::SkipCause::Paused;
        skipped.ended_ms = 1500;
        s->insertRun(skipped);
        TaskRecord t;
        t.plugin = "noop";
        t.state = taskhub::model::TaskState::Skipped;
        for (const char* id : {"a", "b", "c"}) {
            t.task_id = id;
            s->upsertTask("nightly@1", static_cast<int>(id[0] - 'a'), t);
        }
        REQUIRE(s->commit());
        CHECK(s->lastScheduledMs("nightly") == std::nullopt); // makeRun has no scheduled instant

        auto revived = makeRun("nightly@1", "nightly", 3000);
        revived.trigger = taskhub::model::TriggerSource::Cron;
        revived.state = taskhub::model::RunState::Queued;
        revived.version = "v2";
        s->reviveRun(revived);
        t.task_id = "a";
        t.state = taskhub::model::TaskState::Pending;
        s->upsertTask("nightly@1", 0, t);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    auto pauses = s->pausedWorkflows();
    REQUIRE(pauses.size() == 1);
    CHECK(pauses[0].workflow == "nightly");
    CHECK(pauses[0].since_ms == 1000);
    CHECK(pauses[0].by == "uid 0 (root)");
    auto run = s->run("nightly@1", true);
    REQUIRE(run);
    CHECK(run->state == "queued");
    CHECK(run->version == "v2");
    CHECK(run->created_ms == 3000);
    CHECK_FALSE(run->ended_ms);
    REQUIRE(run->tasks.size() == 1);
    CHECK(run->tasks[0].state == "pending");
    CHECK(s->countRuns() == 1);
}

TEST_CASE("a version 4 database gains file_versions when opened; a file version is recorded once", "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    // What a version 4 database lacks: file_versions (5), the recovery columns and meta (6),
    // the kind and skip cause columns (7), the deadline tables (8) and the usage columns (9).
    sql(db, kDropSchema9Columns);
    sql(db, "DROP TABLE deadline_misses; DROP TABLE deadline_marks; "
            "ALTER TABLE tasks DROP COLUMN kind; ALTER TABLE runs DROP COLUMN skip_cause; "
            "DROP TABLE file_versions; DROP TABLE meta; ALTER TABLE tasks DROP COLUMN pid; "
            "ALTER TABLE tasks DROP COLUMN pgid; ALTER TABLE tasks DROP COLUMN proc_start; "
            "ALTER TABLE runs DROP COLUMN lost; PRAGMA user_version = 4;");
    REQUIRE(sqlInt(db, "SELECT count(*) FROM sqlite_master WHERE name = 'file_versions'") == 0);
    {
        auto s = openStore(dir.path);
        s->recordFileVersion({"w", "/in/a", 7, 10, 123456789, "w@file-1", 1000});
        s->recordFileVersion({"w", "/in/a", 7, 10, 123456789, "w@file-1", 2000}); // the same version
        s->recordFileVersion({"w", "/in/a", 7, 11, 123456790, "w@file-2", 3000}); // a new version
        s->recordFileVersion({"w", "/in/b", 8, 1, 5, "", 4000});                  // passed over
        s->recordFileVersion({"other", "/in/a", 7, 10, 123456789, "other@file-1", 5000});
        REQUIRE(s->commit());
        auto v = s->fileVersions("w");
        std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.run_id < b.run_id; });
        REQUIRE(v.size() == 3);
        CHECK(v[0].path == "/in/b");
        CHECK(v[0].run_id.empty());
        CHECK(v[1].run_id == "w@file-1");
        CHECK(v[1].recorded_ms == 1000);
        CHECK(v[1].inode == 7);
        CHECK(v[1].size == 10);
        CHECK(v[1].mtime_ns == 123456789);
        CHECK(v[2].run_id == "w@file-2");
        CHECK(s->fileVersions("none").empty());
    }
    CHECK(sqlInt(db, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name IN ('pid', 'pgid', 'proc_start')") == 3);
    CHECK(sqlInt(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'lost'") == 1);
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    CHECK(sqlInt(db, "SELECT count(*) FROM sqlite_master WHERE name IN ('deadline_misses', 'deadline_marks')") == 2);
    CHECK(sqlInt(db, "SELECT count(*) FROM sqlite_master WHERE name = 'notifications'") == 1);
    CHECK(Store::kSchemaVersion == 13);
    CHECK(sqlInt(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'tasks'") == 1);
}

TEST_CASE("deadline misses are recorded once per firing; marks move forward only and can be forgotten",
          "[store][deadline]") {
    using taskhub::model::RunState;
    TempDir dir;
    {
        auto s = openStore(dir.path);
        DeadlineMissRecord m{"wf", "wf@20260501T101000Z", 1000, 3000, 2, 3500, RunState::Running, "still running"};
        s->recordDeadlineMiss(m);
        m.reason = "recorded again";
        s->recordDeadlineMiss(m); // the same firing: ignored
        s->recordDeadlineMiss({"wf", "wf@20260501T102000Z", 2000, 4000, 2, 9000, std::nullopt,
                               "no run: taskhubd was not running at its scheduled instant"});
        s->setDeadlineMark("wf", 2000);
        s->setDeadlineMark("wf", 1000); // never back
        s->setDeadlineMark("gone", 5);
        s->setDeadlineMark("gone", std::nullopt);
        auto r = makeRun("wf@20260501T101000Z", "wf", 1000);
        r.trigger = taskhub::model::TriggerSource::Cron;
        r.scheduled_ms = 1000;
        s->insertRun(r);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    CHECK(s->deadlineMarks() == std::map<std::string, int64_t>{{"wf", 2000}});
    auto misses = s->deadlineMisses("wf", 0, 10);
    REQUIRE(misses.size() == 2);
    CHECK(misses[0].run_id == "wf@20260501T102000Z"); // newest first
    CHECK_FALSE(misses[0].run_state);
    CHECK(misses[1].reason == "still running");
    CHECK(misses[1].run_state == RunState::Running);
    CHECK(misses[1].due_ms == 3000);
    CHECK(misses[1].detected_ms == 3500);
    CHECK(s->deadlineMisses("wf", 1000, 10).size() == 1);
    CHECK(s->deadlineMiss("wf@20260501T101000Z")->scheduled_ms == 1000);
    CHECK_FALSE(s->deadlineMiss("wf@20260501T103000Z"));
    CHECK(s->scheduledRuns("wf", 0, 10).size() == 1);
    CHECK(s->scheduledRuns("wf", 1000, 10).empty());
}

namespace {

// The text of a column of one row, or "(none)" when the query finds no row.
std::string sqlText(const fs::path& db, const std::string& query) {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(h, query.c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string v = "(none)";
    if (sqlite3_step(st) == SQLITE_ROW) {
        auto p = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        v = p ? p : "";
    }
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

} // namespace

TEST_CASE("a version 6 database gains task kinds and skip causes from the text its daemon wrote", "[store][migration]") {
    using taskhub::model::SkipCause;
    using taskhub::model::TaskKind;
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    // A version 6 database: no kind or skip_cause columns (7), no deadline tables (8), no usage
    // columns (9). Its rows, as taskhubd 6 wrote them.
    sql(db, kDropSchema9Columns);
    sql(db, R"sql(
DROP TABLE deadline_misses;
DROP TABLE deadline_marks;
ALTER TABLE tasks DROP COLUMN kind;
ALTER TABLE runs DROP COLUMN skip_cause;
PRAGMA user_version = 6;
INSERT INTO runs(key, id, workflow, trigger, state, message, created_ms) VALUES
  (1, 'w@paused', 'w', 'cron', 'skipped', 'skipped: the workflow is paused (paused by uid 0 (root) at 2026-01-01T00:00:00Z)', 1),
  (2, 'w@overlap', 'w', 'cron', 'skipped', 'skipped: run w@paused is still active (overlap = skip)', 2),
  (3, 'w@queued', 'w', 'cron', 'skipped', 'skipped: run w@x is already queued (overlap = queue_one)', 3),
  (4, 'w@limit', 'w', 'cron', 'skipped', 'skipped: 3 runs are active, max_active_runs = 3 (overlap = allow)', 4),
  (5, 'w@ran', 'w', 'cron', 'succeeded', 'skipped: the workflow is paused, said a task', 5),
  (6, 'w@tasks', 'w', 'manual', 'skipped', 'every task was skipped', 6);
INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES
  (1048576 * 5 + 0, 'child', 'workflow:inner', 'succeeded', 1),
  (1048576 * 5 + 1, 'plain', 'shell', 'succeeded', 1),
  (1048576 * 5 + 2, 'named', 'workflowish', 'succeeded', 1);
)sql");
    REQUIRE(sqlInt(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'skip_cause'") == 0);
    auto check = [&](Store& s) {
        auto cause = [&](const char* id) {
            auto r = s.run(id, false);
            REQUIRE(r);
            return r->skip_cause;
        };
        CHECK(cause("w@paused") == SkipCause::Paused);
        CHECK(cause("w@overlap") == SkipCause::Overlap);
        CHECK(cause("w@queued") == SkipCause::Overlap);
        CHECK(cause("w@limit") == SkipCause::ActiveLimit);
        CHECK(cause("w@ran") == SkipCause::None); // not skipped: its message does not matter
        CHECK(cause("w@tasks") == SkipCause::None);
        auto ran = s.run("w@ran", true);
        REQUIRE(ran);
        REQUIRE(ran->tasks.size() == 3);
        CHECK(ran->tasks[0].kind == TaskKind::Workflow);
        CHECK(ran->tasks[0].plugin == "workflow:inner"); // the text stays as it was
        CHECK(ran->tasks[1].kind == TaskKind::Plugin);
        CHECK(ran->tasks[2].kind == TaskKind::Plugin);
    };
    {
        auto s = openStore(dir.path);
        check(*s);
    }
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    CHECK(sqlText(db, "SELECT skip_cause FROM runs WHERE id = 'w@paused'") == "paused");
    CHECK(sqlText(db, "SELECT skip_cause FROM runs WHERE id = 'w@limit'") == "active_limit");
    CHECK(sqlText(db, "SELECT skip_cause FROM runs WHERE id = 'w@ran'") == "");
    CHECK(sqlText(db, "SELECT kind FROM tasks WHERE task_id = 'child'") == "workflow");
    CHECK(sqlText(db, "SELECT kind FROM tasks WHERE task_id = 'plain'") == "plugin");
    // Opened again, the migrated database is taken as it is and reads the same.
    {
        auto s = openStore(dir.path);
        check(*s);
    }
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
}

TEST_CASE("a task's kind and a run's skip cause are stored as such, whatever the message says", "[store]") {
    using taskhub::model::SkipCause;
    using taskhub::model::TaskKind;
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    {
        auto s = openStore(dir.path);
        auto paused = makeRun("w@1", "w", 1000);
        paused.state = taskhub::model::RunState::Skipped;
        paused.message = "a message reworded since"; // catch-up reads the cause, not this
        paused.skip_cause = SkipCause::Paused;
        s->insertRun(paused);
        TaskRecord t;
        t.task_id = "child";
        t.plugin = "workflow:inner";
        t.kind = TaskKind::Workflow;
        s->upsertTask("w@1", 0, t);
        t.task_id = "plain";
        t.plugin = "workflow:looks-like-one"; // a plugin's name is no kind
        t.kind = TaskKind::Plugin;
        s->upsertTask("w@1", 1, t);
        REQUIRE(s->commit());
        auto r = s->run("w@1", true);
        REQUIRE(r);
        CHECK(r->skip_cause == SkipCause::Paused);
        REQUIRE(r->tasks.size() == 2);
        CHECK(r->tasks[0].kind == TaskKind::Workflow);
        CHECK(r->tasks[1].kind == TaskKind::Plugin);

        // Revived, the run takes the new record's cause (none: it runs).
        auto revived = makeRun("w@1", "w", 2000);
        revived.state = taskhub::model::RunState::Queued;
        s->reviveRun(revived);
        REQUIRE(s->commit());
        CHECK(s->run("w@1", false)->skip_cause == SkipCause::None);
    }
    CHECK(sqlText(db, "SELECT skip_cause FROM runs WHERE id = 'w@1'") == "");
    sql(db, "UPDATE runs SET skip_cause = 'overlap' WHERE id = 'w@1'");
    auto s = openStore(dir.path);
    CHECK(s->run("w@1", false)->skip_cause == SkipCause::Overlap);
    // Text that is no cause (edited by hand) reads as none, and is logged.
    sql(db, "UPDATE runs SET skip_cause = 'bogus' WHERE id = 'w@1'");
    CHECK(s->run("w@1", false)->skip_cause == SkipCause::None);
}

TEST_CASE("a task's usage and leftovers are stored with it and read back; absent ones stay absent", "[store][usage]") {
    using taskhub::cgroup::LeftoverReport;
    using taskhub::cgroup::Leftovers;
    using taskhub::cgroup::Usage;
    TempDir dir;
    const Usage cg{Usage::Source::Cgroup, 520'000, 30'000, 12'900'000, 1, 4096, 8192};
    const Usage ru{Usage::Source::Rusage, 7, 0, std::nullopt, std::nullopt, std::nullopt, std::nullopt};
    {
        auto s = openStore(dir.path);
        s->insertRun(makeRun("w@1", "w", 1000));
        TaskRecord t;
        t.plugin = "shell";
        t.task_id = "measured";
        t.usage = cg;
        t.leftovers = LeftoverReport{3, Leftovers::Keep};
        s->upsertTask("w@1", 0, t);
        t.task_id = "rusage";
        t.usage = ru;
        t.leftovers.reset();
        s->upsertTask("w@1", 1, t);
        t.task_id = "none";
        t.usage.reset();
        s->upsertTask("w@1", 2, t);
        // Counters above what SQLite's signed integers hold are kept at their maximum.
        t.task_id = "huge";
        t.usage = Usage{Usage::Source::Cgroup, UINT64_MAX, 0, UINT64_MAX, 0, 0, 0};
        s->upsertTask("w@1", 3, t);
        REQUIRE(s->commit());
        // An update replaces them: the row is the latest attempt's.
        t.task_id = "measured";
        t.usage = ru;
        t.leftovers.reset();
        s->upsertTask("w@1", 0, t);
        t.usage = cg;
        t.leftovers = LeftoverReport{3, Leftovers::Keep};
        s->upsertTask("w@1", 0, t);
        REQUIRE(s->commit());
    }
    auto s = openStore(dir.path);
    auto r = s->run("w@1", true);
    REQUIRE(r);
    REQUIRE(r->tasks.size() == 4);
    CHECK(r->tasks[0].usage == cg);
    REQUIRE(r->tasks[0].leftovers);
    CHECK(*r->tasks[0].leftovers == LeftoverReport{3, Leftovers::Keep});
    CHECK(r->tasks[1].usage == ru);
    CHECK_FALSE(r->tasks[1].leftovers);
    CHECK_FALSE(r->tasks[2].usage);
    CHECK_FALSE(r->tasks[2].leftovers);
    REQUIRE(r->tasks[3].usage);
    CHECK(r->tasks[3].usage->cpu_user_us == static_cast<uint64_t>(INT64_MAX));
    CHECK(r->tasks[3].usage->memory_peak == static_cast<uint64_t>(INT64_MAX));
}

TEST_CASE("a usage event's detail reads back as the attempt's usage; other text does not", "[store][usage]") {
    using taskhub::cgroup::Usage;
    const Usage u{Usage::Source::Cgroup, 1, 2, 3, 0, std::nullopt, std::nullopt};
    const std::string detail = usageDetail(4, u);
    CHECK(detail == R"({"attempt":4,"source":"cgroup","cpu_user_us":1,"cpu_system_us":2,"memory_peak":3,)"
                    R"("oom_kills":0,"io_read_bytes":null,"io_write_bytes":null})");
    auto back = parseUsageDetail(detail);
    REQUIRE(back);
    CHECK(back->first == 4);
    CHECK(back->second == u);
    CHECK_FALSE(parseUsageDetail("attempt 4"));
    CHECK_FALSE(parseUsageDetail("[]"));
    CHECK_FALSE(parseUsageDetail(R"({"attempt":"4","source":"cgroup"})"));
    CHECK_FALSE(parseUsageDetail(R"({"attempt":1,"source":"cgroup","cpu_user_us":-5})"));
}

TEST_CASE("a version 8 database gains the usage columns; its tasks read as not measured", "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    sql(db, kDropSchema9Columns);
    sql(db, "PRAGMA user_version = 8; "
            "INSERT INTO runs(key, id, workflow, trigger, state, created_ms) VALUES(1, 'w@1', 'w', 'manual', 'succeeded', 1); "
            "INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES(1048576, 'a', 'shell', 'succeeded', 2);");
    REQUIRE(sqlInt(db, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name = 'cpu_user_us'") == 0);
    {
        auto s = openStore(dir.path);
        auto r = s->run("w@1", true);
        REQUIRE(r);
        REQUIRE(r->tasks.size() == 1);
        CHECK(r->tasks[0].attempt == 2);
        CHECK_FALSE(r->tasks[0].usage);
        CHECK_FALSE(r->tasks[0].leftovers);
        TaskRecord t = r->tasks[0];
        t.usage = taskhub::cgroup::Usage{taskhub::cgroup::Usage::Source::Cgroup, 5, 6, std::nullopt, std::nullopt,
                                         std::nullopt, std::nullopt};
        s->upsertTask("w@1", 0, t);
        REQUIRE(s->commit());
        CHECK(s->run("w@1", true)->tasks[0].usage == t.usage);
    }
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    CHECK(sqlInt(db, "SELECT count(*) FROM pragma_table_info('tasks') WHERE name IN ('cpu_user_us', 'cpu_system_us', "
                     "'memory_peak', 'oom_kills', 'io_read_bytes', 'io_write_bytes', 'usage_source', "
                     "'leftovers_found', 'leftovers_action')") == 9);
    CHECK(sqlText(db, "SELECT usage_source FROM tasks") == "cgroup");
}

// ---- schema 10: a run's task list instead of a pending row per task ----

namespace {

TaskRecord listedTask(const std::string& id, const std::string& plugin,
                      taskhub::model::TaskKind kind = taskhub::model::TaskKind::Plugin) {
    TaskRecord t;
    t.task_id = id;
    t.plugin = plugin;
    t.kind = kind;
    return t;
}

// A run of three tasks: a (noop), b (shell), c (a workflow task).
RunRecord runWithTasks(const std::string& id, int64_t created) {
    RunRecord r = makeRun(id, "wf", created);
    r.tasks = {listedTask("a", "noop"), listedTask("b", "shell"),
               listedTask("c", "workflow:child", taskhub::model::TaskKind::Workflow)};
    return r;
}

} // namespace

TEST_CASE("a run's tasks are written with it; a task gets a row only when it leaves pending", "[store][tasklist]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    FakeLoop loop;
    {
        auto s = openStore(dir.path);
        s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
        s->insertRun(runWithTasks("wf@1", 1));
        TaskRecord b = listedTask("b", "shell");
        b.state = taskhub::model::TaskState::Running;
        b.attempt = 1;
        b.started_ms = 5;
        s->upsertTask("wf@1", 1, b);
        REQUIRE(s->commit());
        loop.drain();
        for (bool reopened : {false, true}) {
            INFO("reopened: " << reopened);
            auto check = [&](Store& store) {
                auto run = store.run("wf@1", true);
                REQUIRE(run);
                REQUIRE(run->tasks.size() == 3);
                CHECK(run->tasks[0].task_id == "a");
                CHECK(run->tasks[0].plugin == "noop");
                CHECK(run->tasks[0].state == "pending");
                CHECK(run->tasks[0].attempt == 0);
                CHECK(run->tasks[1].task_id == "b");
                CHECK(run->tasks[1].state == "running");
                CHECK(run->tasks[1].started_ms == 5);
                CHECK(run->tasks[2].task_id == "c");
                CHECK(run->tasks[2].plugin == "workflow:child");
                CHECK(run->tasks[2].kind == taskhub::model::TaskKind::Workflow);
                CHECK(run->tasks[2].state == "pending");
                CHECK(store.run("wf@1", false)->tasks.empty());
            };
            if (!reopened) {
                check(*s);
            } else {
                s.reset();
                check(*openStore(dir.path));
            }
        }
    }
    CHECK(sqlInt(db, "SELECT count(*) FROM tasks") == 1);
}

TEST_CASE("a run recorded as skipped reads its tasks as skipped without a row each", "[store][tasklist]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    {
        auto s = openStore(dir.path);
        auto skipped = runWithTasks("wf@1", 1);
        skipped.state = taskhub::model::RunState::Skipped;
        skipped.skip_cause = taskhub::model::SkipCause::Overlap;
        skipped.message = "skipped: run wf@0 is still active (overlap = skip)";
        skipped.ended_ms = 1;
        s->insertRun(skipped);
        REQUIRE(s->commit());
        auto run = s->run("wf@1", true);
        REQUIRE(run);
        REQUIRE(run->tasks.size() == 3);
        for (const auto& t : run->tasks) {
            CHECK(t.state == "skipped");
            CHECK(t.message == "the run was skipped");
        }
        CHECK(run->tasks[2].kind == taskhub::model::TaskKind::Workflow);

        // Revived (catch-up of a paused firing): the new task list, pending, no rows of the old.
        auto revived = makeRun("wf@1", "wf", 2);
        revived.state = taskhub::model::RunState::Queued;
        revived.tasks = {listedTask("x", "noop"), listedTask("y", "noop")};
        s->reviveRun(revived);
        REQUIRE(s->commit());
        run = s->run("wf@1", true);
        REQUIRE(run);
        REQUIRE(run->tasks.size() == 2);
        CHECK(run->tasks[0].task_id == "x");
        CHECK(run->tasks[1].task_id == "y");
        CHECK(run->tasks[1].state == "pending");
    }
    CHECK(sqlInt(db, "SELECT count(*) FROM tasks") == 0);
}

TEST_CASE("a task list keeps any bytes; a list that does not parse is logged and the rows still read",
          "[store][tasklist]") {
    Store::TaskList list;
    list.add("a", "plug in\nwith: 12:odd bytes", taskhub::model::TaskKind::Plugin);
    list.add("b-2", "", taskhub::model::TaskKind::Workflow);
    CHECK(list.size() == 2);
    auto tasks = Store::TaskList::parse(list.text());
    REQUIRE(tasks);
    REQUIRE(tasks->size() == 2);
    CHECK((*tasks)[0].plugin == "plug in\nwith: 12:odd bytes");
    CHECK((*tasks)[1].task_id == "b-2");
    CHECK((*tasks)[1].plugin.empty());
    CHECK((*tasks)[1].kind == taskhub::model::TaskKind::Workflow);
    for (const char* bad : {"x1:a1:b", "p1:a", "p9:a1:b", "p1:a1:bp", "p-1:a1:b", "p1a1:b"}) {
        INFO(bad);
        CHECK_FALSE(Store::TaskList::parse(bad));
    }
    CHECK(Store::TaskList::parse("")->empty());

    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    {
        auto s = openStore(dir.path);
        s->insertRun(runWithTasks("wf@1", 1));
        TaskRecord b = listedTask("b", "shell");
        b.state = taskhub::model::TaskState::Succeeded;
        s->upsertTask("wf@1", 1, b);
        REQUIRE(s->commit());
    }
    sql(db, "UPDATE runs SET tasks = 'p3:a' WHERE id = 'wf@1'"); // edited by hand
    auto run = openStore(dir.path)->run("wf@1", true);
    REQUIRE(run);
    REQUIRE(run->tasks.size() == 1);
    CHECK(run->tasks[0].task_id == "b");
    CHECK(run->tasks[0].state == "succeeded");
}

TEST_CASE("a version 9 database gains task lists; its runs keep their pending rows and read the same",
          "[store][migration][tasklist]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    sql(db, TASKHUB_DROP_SCHEMA_10 " PRAGMA user_version = 9; "
            "INSERT INTO runs(key, id, workflow, trigger, state, created_ms) VALUES(1, 'w@1', 'w', 'manual', 'running', 1); "
            "INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES(1048576, 'a', 'noop', 'succeeded', 1); "
            "INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES(1048577, 'b', 'noop', 'pending', 0); "
            "INSERT INTO tasks(key, task_id, plugin, state, attempt, kind) "
            "VALUES(1048578, 'c', 'workflow:x', 'pending', 0, 'workflow');");
    {
        auto s = openStore(dir.path);
        auto run = s->run("w@1", true);
        REQUIRE(run);
        REQUIRE(run->tasks.size() == 3);
        CHECK(run->tasks[0].state == "succeeded");
        CHECK(run->tasks[1].task_id == "b");
        CHECK(run->tasks[1].state == "pending");
        CHECK(run->tasks[2].kind == taskhub::model::TaskKind::Workflow);
        TaskRecord b = run->tasks[1];
        b.state = taskhub::model::TaskState::Running;
        s->upsertTask("w@1", 1, b); // the UPSERT updates the old row
        REQUIRE(s->commit());
        CHECK(s->run("w@1", true)->tasks[1].state == "running");
    }
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    CHECK(sqlInt(db, "SELECT count(*) FROM tasks") == 3);
}

TEST_CASE("writer mode: one event-loop turn's writes are committed together, once the turn's kick runs",
          "[store][writer]") {
    TempDir dir;
    FakeLoop loop;
    auto s = openStore(dir.path);
    s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
    const auto waitDurable = [&] {
        // No timing is asserted: the bound only keeps a broken writer from hanging the test.
        for (int i = 0; i < 10000 && !s->isDurable(s->writeMark()); ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return s->isDurable(s->writeMark());
    };
    const uint64_t before = s->batchesWritten();
    // One turn: a run, a task's end and the next one's start, their events.
    s->insertRun(runWithTasks("wf@1", 1));
    TaskRecord a = listedTask("a", "noop");
    a.state = taskhub::model::TaskState::Succeeded;
    s->upsertTask("wf@1", 0, a);
    s->addEvent(2, "wf@1", "a", "end", "succeeded");
    // The writer waits for the turn to end (the kick), however long the turn takes.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    TaskRecord b = listedTask("b", "shell");
    b.state = taskhub::model::TaskState::Running;
    s->upsertTask("wf@1", 1, b);
    s->addEvent(3, "wf@1", "b", "start", "attempt 1");
    CHECK_FALSE(s->isDurable(s->writeMark()));
    CHECK(s->batchesWritten() == before);
    CHECK(loop.drain() == 1); // one kick for the batch
    REQUIRE(waitDurable());
    CHECK(s->batchesWritten() == before + 1);
    auto run = s->run("wf@1", true);
    REQUIRE(run);
    CHECK(run->tasks[0].state == "succeeded");
    CHECK(run->tasks[1].state == "running");
    CHECK(s->events("wf@1").size() == 2);

    // A waiter does not wait for the kick: whenDurable wakes the writer at once.
    const uint64_t mark = s->writeMark();
    s->addEvent(4, "wf@1", "b", "end", "succeeded");
    bool durable = false;
    s->whenDurable(mark, [&](bool ok) { durable = ok; });
    REQUIRE(waitDurable());
    CHECK(s->batchesWritten() == before + 2);
    loop.drain();
    CHECK(durable);
}

TEST_CASE("a version 12 database gains failures_absorbed (0 for its runs); the count is written and read back",
          "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    sql(db, TASKHUB_DROP_SCHEMA_13 " PRAGMA user_version = 12; "
            "INSERT INTO runs(key, id, workflow, trigger, state, created_ms) VALUES(1, 'w@1', 'w', 'manual', 'succeeded', 1);");
    auto s = openStore(dir.path);
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    auto old = s->run("w@1", false);
    REQUIRE(old);
    CHECK(old->failures_absorbed == 0);

    RunRecord r;
    r.id = "w@2";
    r.workflow = "w";
    r.created_ms = 2;
    r.failures_absorbed = 2;
    s->insertRun(r);
    REQUIRE(s->commit());
    CHECK(s->run("w@2", true)->failures_absorbed == 2);
    r.failures_absorbed = 1; // a retry took one back
    r.state = taskhub::model::RunState::Running;
    s->updateRun(r);
    REQUIRE(s->commit());
    CHECK(s->run("w@2", false)->failures_absorbed == 1);
    CHECK(s->runs({}).front().failures_absorbed == 1);
}

TEST_CASE("a version 10 database gains attempt handles; a handle is written and read back", "[store][migration]") {
    TempDir dir;
    const fs::path db = dir.path / "taskhub.db";
    openStore(dir.path).reset();
    sql(db, TASKHUB_DROP_SCHEMA_11 " PRAGMA user_version = 10; "
            "INSERT INTO runs(key, id, workflow, trigger, state, created_ms) VALUES(1, 'w@1', 'w', 'manual', 'running', 1); "
            "INSERT INTO tasks(key, task_id, plugin, state, attempt) VALUES(1048576, 'a', 'slurm', 'running', 1);");
    auto s = openStore(dir.path);
    CHECK(sqlInt(db, "PRAGMA user_version") == Store::kSchemaVersion);
    auto run = s->run("w@1", true);
    REQUIRE(run);
    REQUIRE(run->tasks.size() == 1);
    CHECK(run->tasks[0].handle.empty()); // written before handles: none
    TaskRecord a = run->tasks[0];
    a.handle = "4242";
    s->upsertTask("w@1", 0, a);
    REQUIRE(s->commit());
    CHECK(s->run("w@1", true)->tasks[0].handle == "4242");
    a.handle.clear();
    s->upsertTask("w@1", 0, a);
    REQUIRE(s->commit());
    CHECK(s->run("w@1", true)->tasks[0].handle.empty());
}

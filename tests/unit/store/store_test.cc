// The store keeps runs, tasks and events across reopening, and refuses databases it must not
// touch.
#include <catch2/catch.hpp>

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <deque>
#include <functional>
#include <mutex>

#include "store/store.h"
#include "test_support.h"

using namespace taskhub::store;
namespace fs = std::filesystem;
using taskhub::testing::TempDir;

namespace {

RunRecord makeRun(const std::string& id, const std::string& wf, int64_t created) {
    RunRecord r;
    r.id = id;
    r.workflow = wf;
    r.trigger = "manual";
    r.state = "running";
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

} // namespace

TEST_CASE("runs, tasks and events survive closing and reopening", "[store]") {
    TempDir dir;
    {
        auto s = Store::open(dir.path);
        s->insertRun(makeRun("wf@1", "wf", 1000));
        s->insertRun(makeRun("wf@2", "wf", 2000));
        s->insertRun(makeRun("other@1", "other", 1500));
        TaskRecord t;
        t.task_id = "b";
        t.plugin = "shell";
        t.state = "failed";
        t.attempt = 2;
        t.exit_code = 3;
        t.message = "exit code 3";
        s->upsertTask("wf@2", 1, t);
        t.task_id = "a";
        t.state = "succeeded";
        t.exit_code = 0;
        s->upsertTask("wf@2", 0, t);
        s->addEvent({5, "wf@2", "a", "start", "attempt 1"});
        auto r = makeRun("wf@2", "wf", 2000);
        r.state = "failed";
        r.message = "task 'b' failed";
        r.ended_ms = 2500;
        s->updateRun(r);
        REQUIRE(s->commit());
    }
    auto s = Store::open(dir.path);
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
    auto s = Store::open(dir.path);
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

TEST_CASE("a second store on the same state directory is refused before it touches anything", "[store]") {
    TempDir dir;
    auto first = Store::open(dir.path);
    CHECK_THROWS_WITH(Store::open(dir.path),
                      Catch::Contains("is in use by another taskhubd (pid " + std::to_string(getpid()) + ")"));
    first.reset();
    CHECK_NOTHROW(Store::open(dir.path));
}

TEST_CASE("a database from a newer taskhubd is refused and left untouched", "[store]") {
    TempDir dir;
    { Store::open(dir.path); }
    sql(dir.path / "taskhub.db", "PRAGMA user_version=99");
    try {
        Store::open(dir.path);
        FAIL("expected StoreError");
    } catch (const StoreError& e) {
        std::string m = e.what();
        CHECK(m.find("was written by a newer taskhubd (schema version 99, this taskhubd knows up to 1)") !=
              std::string::npos);
        CHECK(m.find("left untouched") != std::string::npos);
    }
}

TEST_CASE("a foreign SQLite database is refused", "[store]") {
    TempDir dir;
    sql(dir.path / "taskhub.db", "CREATE TABLE mine(x)");
    CHECK_THROWS_WITH(Store::open(dir.path), Catch::Contains("is not a TaskHub state database"));
}

TEST_CASE("a corrupted database is refused with what to do", "[store]") {
    TempDir dir;
    std::ofstream(dir.path / "taskhub.db") << std::string(8192, 'x');
    CHECK_THROWS_WITH(Store::open(dir.path), Catch::Contains("move") && Catch::Contains("aside"));
    // Never replaced silently.
    std::ifstream in(dir.path / "taskhub.db");
    std::string content((std::istreambuf_iterator<char>(in)), {});
    CHECK(content == std::string(8192, 'x'));
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
        auto s = Store::open(dir.path);
        s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
        const uint64_t mark = s->writeMark();
        s->insertRun(makeRun("wf@1", "wf", 1));
        CHECK(s->runExists("wf@1")); // pending writes count for run ids
        TaskRecord t;
        t.task_id = "a";
        t.plugin = "noop";
        for (const char* state : {"pending", "ready", "running", "succeeded"}) {
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
    auto reopened = Store::open(dir.path);
    CHECK(reopened->countRuns() == 2);
}

TEST_CASE("writer mode: a batch with a failing write is lost whole, and its waiters hear so", "[store]") {
    TempDir dir;
    FakeLoop loop;
    auto s = Store::open(dir.path);
    s->startWriter([&](std::function<void()> fn) { loop.post(std::move(fn)); });
    s->insertRun(makeRun("wf@1", "wf", 1));
    REQUIRE(s->commit());

    const uint64_t mark = s->writeMark();
    s->insertRun(makeRun("wf@2", "wf", 2));
    s->insertRun(makeRun("wf@1", "wf", 1)); // duplicate id: the batch fails
    std::optional<bool> durable;
    s->whenDurable(mark, [&](bool ok) { durable = ok; });
    CHECK_FALSE(s->commit());
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

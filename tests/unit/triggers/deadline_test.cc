// Deadlines under a fake clock: which firings miss, when each is decided, and what a restart
// (a new watch over the same book) finds once and only once.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/time_util.h"
#include "config_support.h"
#include "trigger_support.h"
#include "triggers/deadline.h"

namespace {

using namespace taskhub;
using namespace std::chrono_literals;
using std::chrono::sys_seconds;
using triggers::DeadlineMiss;
using triggers::DeadlineWatch;
using triggers::FiringRun;

using testing::triggers_support::at;
using testing::triggers_support::workflow;

// The store, in memory: outlives each "daemon process" (watch).
struct Book final : triggers::DeadlineBook {
    std::map<std::string, sys_seconds> marks;
    std::vector<DeadlineMiss> misses;
    std::vector<FiringRun> runs;
    std::optional<sys_seconds> mark(const std::string& wf) override {
        auto it = marks.find(wf);
        if (it == marks.end()) return std::nullopt;
        return it->second;
    }
    void setMark(const std::string& wf, std::optional<sys_seconds> m) override {
        if (m) marks[wf] = std::max(marks.count(wf) ? marks[wf] : *m, *m);
        else marks.erase(wf);
    }
    std::vector<FiringRun> runsAfter(const std::string& wf, sys_seconds after, size_t) override {
        std::vector<FiringRun> out;
        for (const auto& r : runs) {
            if (r.workflow == wf && r.scheduled && *r.scheduled > after) out.push_back(r);
        }
        return out;
    }
    std::set<sys_seconds> missesAfter(const std::string& wf, sys_seconds after) override {
        std::set<sys_seconds> out;
        for (const auto& m : misses) {
            if (m.workflow == wf && m.scheduled > after) out.insert(m.scheduled);
        }
        return out;
    }
    void recordMiss(const DeadlineMiss& m) override { misses.push_back(m); }
    std::optional<sys_seconds> lastFiring(const std::string& wf) override {
        std::optional<sys_seconds> last;
        for (const auto& r : runs) {
            if (r.workflow == wf && r.scheduled && (!last || *r.scheduled > *last)) last = r.scheduled;
        }
        return last;
    }
    // A run as the engine reports it (and the store keeps it).
    FiringRun run(const std::string& wf, const char* scheduled, model::RunState state, const char* ended = nullptr,
                  std::string message = {}) {
        FiringRun r;
        r.workflow = wf;
        r.trigger = model::TriggerSource::Cron;
        r.scheduled = at(scheduled);
        r.state = state;
        if (ended) r.ended = std::chrono::system_clock::time_point(at(ended));
        r.message = std::move(message);
        for (auto& old : runs) {
            if (old.workflow == wf && old.scheduled == r.scheduled) {
                old = r;
                return r;
            }
        }
        runs.push_back(r);
        return r;
    }
};

// One daemon process: a watch on a fake clock over the book.
struct Daemon {
    boost::asio::io_context io;
    std::chrono::system_clock::time_point now;
    std::vector<std::string> heard; // from the miss callback
    std::unique_ptr<DeadlineWatch> watch;

    Daemon(Book& book, const char* start) : now(at(start)) {
        DeadlineWatch::Options o;
        o.daemon_start = at(start);
        o.clock = [this] { return now; };
        watch = std::make_unique<DeadlineWatch>(io, o, book, [this](const DeadlineMiss& m) {
            heard.push_back(m.run_id + " due " + formatIsoSeconds(m.due) + " " +
                            (m.run_state ? std::string(model::name(*m.run_state)) : "no run") + ": " + m.reason);
        });
    }
    void load(std::initializer_list<std::shared_ptr<const config::Workflow>> wfs) {
        std::map<std::string, std::shared_ptr<const config::Workflow>> m;
        for (const auto& w : wfs) m[w->name] = w;
        watch->setWorkflows(m);
    }
    void advanceTo(const char* iso) {
        now = std::chrono::system_clock::time_point(at(iso));
        watch->poll();
    }
    std::vector<std::string> take() { return std::exchange(heard, {}); }
};

const char* kEvery10 = "deadline = \"5m\"\n[[trigger]]\ncron = \"*/10 * * * *\"";

} // namespace

TEST_CASE("deadline: a workflow file's deadline needs a time trigger", "[triggers][deadline][config]") {
    config::testing::TempDir dir;
    auto ok = config::testing::loadText(dir, "a.toml", std::string(kEvery10) + "\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    REQUIRE(ok.workflow);
    CHECK(ok.workflow->deadline == 5min);
    auto reboot = config::testing::loadText(
        dir, "b.toml", "deadline = \"5m\"\n[[trigger]]\ncron = \"@reboot\"\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    CHECK_FALSE(reboot.workflow);
    CHECK(Catch::Detail::stringify(config::testing::messages(reboot)).find("'deadline' needs a cron, every or at trigger") !=
          std::string::npos);
    auto zero = config::testing::loadText(
        dir, "c.toml", "deadline = \"0s\"\n[[trigger]]\nevery = \"1m\"\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    CHECK_FALSE(zero.workflow);
    auto fraction = config::testing::loadText(
        dir, "d.toml", "deadline = \"1500ms\"\n[[trigger]]\nevery = \"1m\"\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    CHECK_FALSE(fraction.workflow);
}

TEST_CASE("deadline: in time, failed, still running, skipped; each decided once at S + deadline",
          "[triggers][deadline]") {
    Book book;
    auto wf = workflow("backup", kEvery10);
    Daemon d(book, "2026-05-01T10:01:00Z");
    d.load({wf});
    CHECK(book.marks.at("backup") == at("2026-05-01T10:01:00Z")); // earlier firings never count
    CHECK(d.watch->nextCheck() == at("2026-05-01T10:15:00Z"));

    // 10:10 succeeds at 10:14 (in time, after a failed attempt: only the run's end counts).
    d.watch->runChanged(book.run("backup", "2026-05-01T10:10:00Z", model::RunState::Running));
    d.watch->runChanged(book.run("backup", "2026-05-01T10:10:00Z", model::RunState::Succeeded, "2026-05-01T10:14:00Z"));
    d.advanceTo("2026-05-01T10:15:00Z");
    CHECK(d.take().empty());

    // 10:20 is still running at 10:25: the miss is at 10:25, not at the run's end.
    d.watch->runChanged(book.run("backup", "2026-05-01T10:20:00Z", model::RunState::Running));
    d.advanceTo("2026-05-01T10:24:59Z");
    CHECK(d.take().empty());
    d.advanceTo("2026-05-01T10:25:00Z");
    CHECK(d.take() == std::vector<std::string>{"backup@20260501T102000Z due 2026-05-01T10:25:00Z running: still running"});
    d.watch->runChanged(book.run("backup", "2026-05-01T10:20:00Z", model::RunState::Succeeded, "2026-05-01T10:26:00Z"));
    d.advanceTo("2026-05-01T10:26:00Z");
    CHECK(d.take().empty()); // decided once

    // 10:30 failed; 10:40 skipped (the workflow was paused); 10:50 not run at all.
    d.watch->runChanged(book.run("backup", "2026-05-01T10:30:00Z", model::RunState::Failed, "2026-05-01T10:31:00Z",
                                 "task t failed: exit code 1"));
    d.watch->runChanged(book.run("backup", "2026-05-01T10:40:00Z", model::RunState::Skipped, "2026-05-01T10:40:00Z",
                                 "skipped: the workflow is paused (paused by uid 0 (root) at 2026-05-01T10:35:00Z)"));
    d.advanceTo("2026-05-01T10:55:00Z");
    CHECK(d.take() == std::vector<std::string>{
                          "backup@20260501T103000Z due 2026-05-01T10:35:00Z failed: failed: task t failed: exit code 1",
                          "backup@20260501T104000Z due 2026-05-01T10:45:00Z skipped: skipped: the workflow is paused "
                          "(paused by uid 0 (root) at 2026-05-01T10:35:00Z)",
                          "backup@20260501T105000Z due 2026-05-01T10:55:00Z no run: no run: the firing was not run "
                          "(catch-up)"});
    CHECK(book.misses.size() == 4);
    CHECK(book.marks.at("backup") == at("2026-05-01T10:50:00Z"));
}

TEST_CASE("deadline: an outage across S and S + deadline is found after the restart, once", "[triggers][deadline]") {
    Book book;
    auto wf = workflow("backup", kEvery10);
    {
        Daemon d(book, "2026-05-01T10:01:00Z");
        d.load({wf});
        // 10:10 starts, then the daemon dies (kill -9) while it runs.
        d.watch->runChanged(book.run("backup", "2026-05-01T10:10:00Z", model::RunState::Running));
        d.advanceTo("2026-05-01T10:12:00Z");
        CHECK(d.take().empty());
    }
    {
        // Back at 10:33: 10:10 was still running at 10:15 (the store says running), 10:20 never
        // fired; 10:30 is not due yet.
        Daemon d(book, "2026-05-01T10:33:00Z");
        d.load({wf});
        CHECK(d.take() == std::vector<std::string>{
                              "backup@20260501T101000Z due 2026-05-01T10:15:00Z running: still running",
                              "backup@20260501T102000Z due 2026-05-01T10:25:00Z no run: no run: taskhubd was not "
                              "running at its scheduled instant"});
        // The catch-up run of 10:30 (fired after the watch took its view) succeeds in time.
        d.watch->runChanged(book.run("backup", "2026-05-01T10:30:00Z", model::RunState::Succeeded, "2026-05-01T10:34:00Z"));
        d.advanceTo("2026-05-01T10:35:00Z");
        CHECK(d.take().empty());
    }
    {
        Daemon d(book, "2026-05-01T10:36:00Z");
        d.load({wf});
        CHECK(d.take().empty()); // not again
    }
    CHECK(book.misses.size() == 2);
}

TEST_CASE("deadline: a miss recorded before a crash that lost the mark is not reported again", "[triggers][deadline]") {
    Book book;
    auto wf = workflow("backup", kEvery10);
    book.marks["backup"] = at("2026-05-01T10:00:00Z");
    DeadlineMiss m;
    m.workflow = "backup";
    m.run_id = "backup@20260501T101000Z";
    m.scheduled = at("2026-05-01T10:10:00Z");
    book.misses.push_back(m);
    Daemon d(book, "2026-05-01T10:22:00Z");
    d.load({wf});
    CHECK(d.take().empty());
    CHECK(book.marks.at("backup") == at("2026-05-01T10:10:00Z"));
}

TEST_CASE("deadline: a long outage is checked back over catchup_window and at most kMaxChecked firings",
          "[triggers][deadline]") {
    Book book;
    auto wf = workflow("tick", "deadline = \"1s\"\n[[trigger]]\nevery = \"1s\"\nstart_at = \"2026-05-01T00:00:00Z\"");
    book.marks["tick"] = at("2026-05-01T00:00:00Z");
    Daemon d(book, "2026-05-03T00:00:00Z");
    d.load({wf});
    // The newest kMaxChecked firings are checked; the newest of them is due a second later.
    CHECK(d.take().size() == DeadlineWatch::kMaxChecked - 1);
    CHECK(book.marks.at("tick") == at("2026-05-02T23:59:59Z"));
    d.advanceTo("2026-05-03T00:00:01Z");
    CHECK(d.take() == std::vector<std::string>{"tick@20260503T000000Z due 2026-05-03T00:00:01Z no run: no run: "
                                               "taskhubd was not running at its scheduled instant"});
}

TEST_CASE("deadline: removing the deadline forgets the mark; adding it again starts afresh", "[triggers][deadline]") {
    Book book;
    auto with = workflow("backup", kEvery10);
    auto without = workflow("backup", "[[trigger]]\ncron = \"*/10 * * * *\"");
    Daemon d(book, "2026-05-01T10:01:00Z");
    d.load({with});
    d.load({without});
    CHECK(book.marks.count("backup") == 0);
    d.advanceTo("2026-05-01T11:00:00Z");
    d.load({with});
    d.advanceTo("2026-05-01T11:05:00Z");
    CHECK(d.take() == std::vector<std::string>{}); // 11:00 was scheduled before it came back
    d.advanceTo("2026-05-01T11:15:00Z");
    CHECK(d.take().size() == 1);
    // Its file removed (no workflows loaded): the mark goes too.
    d.load({});
    CHECK(book.marks.count("backup") == 0);
}

// Time triggers: the plan of every/at/cron/jitter firings, the catch-up rules, and the scheduler
// under a fake clock (on time, late, a clock set back, a restart, a reload, @reboot).
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/time_util.h"
#include "config_support.h"
#include "trigger_support.h"
#include "triggers/plan.h"
#include "triggers/scheduler.h"
#include "triggers/zone_watch.h"

namespace {

using namespace taskhub;
using namespace std::chrono_literals;
using std::chrono::sys_seconds;
using triggers::PlannedFiring;
using triggers::Scheduler;

using testing::triggers_support::at;
using testing::triggers_support::workflow;

std::vector<std::string> isoList(const std::vector<PlannedFiring>& fs, bool due = false) {
    std::vector<std::string> out;
    for (const auto& f : fs) out.push_back(formatIsoSeconds(due ? f.due : f.scheduled));
    return out;
}

} // namespace

TEST_CASE("every: start_at fires, then each interval; without start_at one interval after the daemon's start",
          "[triggers][plan]") {
    auto anchored = workflow("a", "[[trigger]]\nevery = \"90s\"\nstart_at = \"2026-05-01T10:00:00Z\"");
    triggers::PlanContext ctx{at("2026-05-01T09:00:07Z")};
    CHECK(isoList(triggers::upcoming(*anchored, at("2026-05-01T09:59:59Z"), 3, ctx)) ==
          std::vector<std::string>{"2026-05-01T10:00:00Z", "2026-05-01T10:01:30Z", "2026-05-01T10:03:00Z"});
    // Strictly after: an instant on the grid is not its own successor.
    CHECK(isoList(triggers::upcoming(*anchored, at("2026-05-01T10:01:30Z"), 1, ctx)) ==
          std::vector<std::string>{"2026-05-01T10:03:00Z"});

    auto floating = workflow("f", "[[trigger]]\nevery = \"1h\"");
    CHECK(isoList(triggers::upcoming(*floating, at("2026-05-01T09:00:07Z"), 2, ctx)) ==
          std::vector<std::string>{"2026-05-01T10:00:07Z", "2026-05-01T11:00:07Z"});
}

TEST_CASE("at fires once; cron and at merge in time order; an instant of two triggers is listed for each",
          "[triggers][plan]") {
    auto wf = workflow("m", "[[trigger]]\ncron = \"0 12 * * *\"\n[[trigger]]\nat = \"2026-05-02T08:30:00+02:00\"");
    triggers::PlanContext ctx{};
    auto next = triggers::upcoming(*wf, at("2026-05-01T13:00:00Z"), 3, ctx);
    CHECK(isoList(next) ==
          std::vector<std::string>{"2026-05-02T06:30:00Z", "2026-05-02T12:00:00Z", "2026-05-03T12:00:00Z"});
    CHECK(next[0].trigger == 1);
    CHECK_FALSE(triggers::nextFiring(*wf, 1, at("2026-05-02T06:30:00Z"), ctx));
}

TEST_CASE("jitter delays every firing of a trigger by the same stable offset within [0, jitter]", "[triggers][plan]") {
    const std::string text = "[[trigger]]\ncron = \"0 3 * * *\"\njitter = \"10m\"";
    auto a = workflow("nightly-a", text);
    auto again = workflow("nightly-a", text);
    const auto& ta = a->triggers[0];
    CHECK(ta.jitter == 600s);
    CHECK(ta.jitter_offset >= 0s);
    CHECK(ta.jitter_offset <= 600s);
    CHECK(again->triggers[0].jitter_offset == ta.jitter_offset); // stable for a name
    // Spread: of many names, not all get the same offset.
    std::set<int64_t> offsets;
    for (int i = 0; i < 20; ++i) offsets.insert(workflow("wf" + std::to_string(i), text)->triggers[0].jitter_offset.count());
    CHECK(offsets.size() > 10);
    auto f = triggers::nextFiring(*a, 0, at("2026-05-01T00:00:00Z"), {});
    REQUIRE(f);
    CHECK(formatIsoSeconds(f->scheduled) == "2026-05-01T03:00:00Z");
    CHECK(f->due - f->scheduled == ta.jitter_offset);
    CHECK(ta.describe() == "cron \"0 3 * * *\" jitter 10m");
}

TEST_CASE("missed firings after a restart and what each catch-up policy runs", "[triggers][catchup]") {
    auto wf = workflow("c", "[[trigger]]\ncron = \"*/10 * * * *\"\n[[trigger]]\ncron = \"0 * * * *\"\n"
                            "[[trigger]]\nat = \"2026-05-01T09:55:00Z\"");
    const auto now = at("2026-05-01T10:05:00Z");
    triggers::MissedContext restart{true, at("2026-05-01T09:20:00Z")};
    auto missed = triggers::missedFirings(*wf, at("2026-05-01T09:20:00Z"), now, {}, restart, {}, 1000);
    // 09:30, 09:40, 09:50, 09:55 (at), 10:00 (both cron triggers: one firing).
    CHECK(isoList(missed) == std::vector<std::string>{"2026-05-01T09:30:00Z", "2026-05-01T09:40:00Z",
                                                       "2026-05-01T09:50:00Z", "2026-05-01T09:55:00Z",
                                                       "2026-05-01T10:00:00Z"});

    auto none = triggers::chooseCatchup(config::Catchup::None, missed, 1000);
    CHECK(none.run.empty());
    auto latest = triggers::chooseCatchup(config::Catchup::Latest, missed, 1000);
    CHECK(isoList(latest.run) == std::vector<std::string>{"2026-05-01T10:00:00Z"});
    auto all = triggers::chooseCatchup(config::Catchup::All, missed, 3);
    CHECK(all.dropped == 2); // the oldest go
    CHECK(isoList(all.run) ==
          std::vector<std::string>{"2026-05-01T09:50:00Z", "2026-05-01T09:55:00Z", "2026-05-01T10:00:00Z"});

    // A workflow that never fired misses only its one-off within the window.
    triggers::MissedContext fresh{true, std::nullopt};
    CHECK(isoList(triggers::missedFirings(*wf, now - 24h, now, {}, fresh, {}, 1000)) ==
          std::vector<std::string>{"2026-05-01T09:55:00Z"});

    // `every` without start_at continues the grid of the last recorded firing.
    auto every = workflow("e", "[[trigger]]\nevery = \"7m\"");
    triggers::MissedContext after_every{true, at("2026-05-01T09:41:13Z")};
    CHECK(isoList(triggers::missedFirings(*every, at("2026-05-01T09:41:13Z"), now, {}, after_every, {}, 1000)) ==
          std::vector<std::string>{"2026-05-01T09:48:13Z", "2026-05-01T09:55:13Z", "2026-05-01T10:02:13Z"});
}

namespace {

// A scheduler on a fake clock; firings are collected, not run.
struct Harness {
    boost::asio::io_context io;
    std::chrono::system_clock::time_point now;
    std::map<std::string, sys_seconds> recorded; // what the "store" holds
    std::vector<triggers::Firing> fired;
    std::unique_ptr<Scheduler> sched;

    explicit Harness(sys_seconds start, sys_seconds boot = sys_seconds{}) : now(start) {
        Scheduler::Options o;
        o.daemon_start = start;
        o.boot = boot;
        o.clock = [this] { return now; };
        sched = std::make_unique<Scheduler>(
            io, o, [this](const triggers::Firing& f) { fired.push_back(f); },
            [this](const std::string& wf) -> std::optional<sys_seconds> {
                auto it = recorded.find(wf);
                if (it == recorded.end()) return std::nullopt;
                return it->second;
            });
        if (std::string err; !sched->start(&err)) FAIL(err);
    }
    void load(std::initializer_list<std::shared_ptr<const config::Workflow>> wfs) {
        std::map<std::string, std::shared_ptr<const config::Workflow>> m;
        for (const auto& w : wfs) m[w->name] = w;
        sched->setWorkflows(m);
    }
    std::vector<std::string> take() {
        std::vector<std::string> out;
        for (const auto& f : fired) {
            out.push_back(f.workflow->name + " " + formatIsoSeconds(f.instant) + " " + f.label +
                          (f.note.empty() ? "" : " (" + f.note + ")") +
                          (f.skip_reason.empty() ? "" : " [" + f.skip_reason + "]"));
        }
        fired.clear();
        return out;
    }
    void advanceTo(const char* iso) {
        now = std::chrono::system_clock::time_point(at(iso)) + 1ms;
        sched->poll();
    }
};

} // namespace

TEST_CASE("scheduler: on time, a clock set back, a jump forward", "[triggers][scheduler]") {
    Harness h(at("2026-05-01T10:00:30Z"));
    auto wf = workflow("tick", "[[trigger]]\ncron = \"* * * * *\"");
    h.load({wf});
    CHECK(h.take().empty()); // never fired before: no catch-up
    CHECK(formatIsoSeconds(h.sched->nextFirings("tick").at(0)) == "2026-05-01T10:01:00Z");

    h.advanceTo("2026-05-01T10:01:00Z");
    h.advanceTo("2026-05-01T10:02:00Z");
    CHECK(h.take() == std::vector<std::string>{"tick 2026-05-01T10:01:00Z cron", "tick 2026-05-01T10:02:00Z cron"});

    // The clock is set back 30 minutes: nothing fires twice, and the next firing is still 10:03.
    h.advanceTo("2026-05-01T09:32:00Z");
    CHECK(h.take().empty());
    h.advanceTo("2026-05-01T10:02:30Z");
    CHECK(h.take().empty());
    h.advanceTo("2026-05-01T10:03:00Z");
    CHECK(h.take() == std::vector<std::string>{"tick 2026-05-01T10:03:00Z cron"});

    // The clock jumps 2 hours forward (or the machine slept): catchup = latest runs one.
    h.advanceTo("2026-05-01T12:03:20Z");
    CHECK(h.take() == std::vector<std::string>{
                          "tick 2026-05-01T12:03:00Z cron (catch-up of the latest of 120 missed firing(s) (woke "
                          "7160s late))"});
    h.advanceTo("2026-05-01T12:04:00Z");
    CHECK(h.take() == std::vector<std::string>{"tick 2026-05-01T12:04:00Z cron"});
}

TEST_CASE("scheduler: a restart catches up from the store's last firing, within the window", "[triggers][scheduler]") {
    auto all = workflow("all", "[[trigger]]\ncron = \"*/15 * * * *\"\n[policy]\ncatchup = \"all\"\ncatchup_window = \"1h\"");
    auto none = workflow("none", "[[trigger]]\ncron = \"*/15 * * * *\"\n[policy]\ncatchup = \"none\"");
    auto latest = workflow("latest", "[[trigger]]\ncron = \"*/15 * * * *\"");
    Harness h(at("2026-05-01T10:07:00Z"));
    h.recorded = {{"all", at("2026-05-01T07:00:00Z")}, {"none", at("2026-05-01T09:00:00Z")},
                  {"latest", at("2026-05-01T09:00:00Z")}};
    h.load({all, none, latest});
    CHECK(h.take() == std::vector<std::string>{
                          "all 2026-05-01T09:15:00Z cron (catch-up 1 of 4 missed firing(s) (taskhubd was not running))",
                          "all 2026-05-01T09:30:00Z cron (catch-up 2 of 4 missed firing(s) (taskhubd was not running))",
                          "all 2026-05-01T09:45:00Z cron (catch-up 3 of 4 missed firing(s) (taskhubd was not running))",
                          "all 2026-05-01T10:00:00Z cron (catch-up 4 of 4 missed firing(s) (taskhubd was not running))",
                          "latest 2026-05-01T10:00:00Z cron (catch-up of the latest of 4 missed firing(s) (taskhubd "
                          "was not running))"});
    // A reload does not catch up again, and keeps what was handled.
    h.load({all, none, latest});
    CHECK(h.take().empty());
    h.advanceTo("2026-05-01T10:15:00Z");
    auto simultaneous = h.take();
    std::sort(simultaneous.begin(), simultaneous.end());
    CHECK(simultaneous == std::vector<std::string>{"all 2026-05-01T10:15:00Z cron", "latest 2026-05-01T10:15:00Z cron",
                                               "none 2026-05-01T10:15:00Z cron"});
}

TEST_CASE("scheduler: @reboot fires once at start with the boot's instant; every and at carry their kind",
          "[triggers][scheduler]") {
    Harness h(at("2026-05-01T10:00:00Z"), at("2026-05-01T09:58:41Z"));
    auto boot = workflow("boot", "[[trigger]]\ncron = \"@reboot\"");
    auto mix = workflow("mix", "[[trigger]]\nevery = \"30s\"\n[[trigger]]\nat = \"2026-05-01T10:00:45Z\"");
    h.load({boot, mix});
    CHECK(h.take() == std::vector<std::string>{"boot 2026-05-01T09:58:41Z reboot"});
    h.load({boot, mix}); // a reload is not a boot
    CHECK(h.take().empty());
    CHECK(h.sched->nextFirings("boot").at(0) == sys_seconds{});
    h.advanceTo("2026-05-01T10:00:30Z");
    h.advanceTo("2026-05-01T10:00:45Z");
    h.advanceTo("2026-05-01T10:01:00Z");
    CHECK(h.take() == std::vector<std::string>{"mix 2026-05-01T10:00:30Z every", "mix 2026-05-01T10:00:45Z at",
                                               "mix 2026-05-01T10:01:00Z every"});
}

TEST_CASE("a change of the system zone file is noticed once per burst; other files are ignored", "[triggers][zone]") {
    config::testing::TempDir dir;
    boost::asio::io_context io;
    int calls = 0;
    triggers::ZoneWatch watch(io, [&] { ++calls; }, dir.path.string());
    dir.write("hosts", "127.0.0.1 localhost\n");
    io.run_for(400ms);
    CHECK(calls == 0);
    // What timedatectl does: a new symlink renamed over the old one, plus /etc/timezone.
    std::filesystem::create_symlink("/usr/share/zoneinfo/Europe/Berlin", dir.path / ".localtime.new");
    std::filesystem::rename(dir.path / ".localtime.new", dir.path / "localtime");
    dir.write("timezone", "Europe/Berlin\n");
    io.run_for(600ms);
    CHECK(calls == 1);
    watch.stop();
    io.restart();
    const auto t0 = std::chrono::steady_clock::now();
    io.run_for(5s); // returns at once when nothing is left waiting: shutdown is not held up
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
}

TEST_CASE("scheduler: a paused workflow's firings are recorded as skipped; resume runs what catch-up says",
          "[triggers][scheduler][pause]") {
    Harness h(at("2026-05-01T10:00:30Z"));
    auto wf = workflow("tick", "[[trigger]]\ncron = \"* * * * *\"");
    auto other = workflow("other", "[[trigger]]\ncron = \"* * * * *\"\n[policy]\ncatchup = \"none\"");
    h.load({wf, other});
    h.sched->pause("tick", {at("2026-05-01T10:00:40Z"), "uid 0 (root)"});
    h.sched->pause("other", {at("2026-05-01T10:00:40Z"), "uid 0 (root)"});
    REQUIRE(h.sched->paused("tick"));
    CHECK(h.sched->paused("tick")->by == "uid 0 (root)");
    h.advanceTo("2026-05-01T10:01:00Z");
    h.advanceTo("2026-05-01T10:02:00Z");
    auto during = h.take();
    std::sort(during.begin(), during.end());
    const std::string why = " [skipped: the workflow is paused (paused by uid 0 (root) at 2026-05-01T10:00:40Z)]";
    CHECK(during == std::vector<std::string>{"other 2026-05-01T10:01:00Z cron" + why, "other 2026-05-01T10:02:00Z cron" + why,
                                             "tick 2026-05-01T10:01:00Z cron" + why, "tick 2026-05-01T10:02:00Z cron" + why});
    h.now = std::chrono::system_clock::time_point(at("2026-05-01T10:02:30Z"));
    CHECK(h.sched->resume("tick"));
    CHECK(h.sched->resume("other"));
    CHECK_FALSE(h.sched->resume("tick"));
    CHECK(h.take() == std::vector<std::string>{
                          "tick 2026-05-01T10:02:00Z cron (catch-up of the latest of 2 missed firing(s) (the workflow "
                          "was paused))"});
    h.advanceTo("2026-05-01T10:03:00Z");
    auto after = h.take();
    std::sort(after.begin(), after.end());
    CHECK(after == std::vector<std::string>{"other 2026-05-01T10:03:00Z cron", "tick 2026-05-01T10:03:00Z cron"});
}

// A firing held back by jitter is pending between its scheduled and due instants: a restart, a
// reload or a catch-up in that time keeps it, and it fires once, at its due instant.
// "jittered": cron "* * * * *" with jitter 59s hashes to an offset of 51s (10s: 9s).
TEST_CASE("plan: a pending jittered firing (scheduled <= now < due) is still to come", "[triggers][plan][jitter]") {
    auto wf = workflow("jittered", "[[trigger]]\ncron = \"* * * * *\"\njitter = \"59s\"");
    REQUIRE(wf->triggers[0].jitter_offset == 51s);
    auto next = triggers::upcoming(*wf, at("2026-05-01T10:00:20Z"), 2, {});
    CHECK(isoList(next) == std::vector<std::string>{"2026-05-01T10:00:00Z", "2026-05-01T10:01:00Z"});
    CHECK(isoList(next, true) == std::vector<std::string>{"2026-05-01T10:00:51Z", "2026-05-01T10:01:51Z"});
    // At its due instant it is no longer to come (the scheduler fires it then).
    CHECK(isoList(triggers::upcoming(*wf, at("2026-05-01T10:00:51Z"), 1, {})) ==
          std::vector<std::string>{"2026-05-01T10:01:00Z"});
    // What the trigger handled already is not planned again.
    auto f = triggers::nextToCome(*wf, 0, at("2026-05-01T10:00:20Z"), at("2026-05-01T10:00:00Z"), {});
    REQUIRE(f);
    CHECK(formatIsoSeconds(f->scheduled) == "2026-05-01T10:01:00Z");
}

TEST_CASE("scheduler: a restart between a firing's scheduled and due instants keeps it", "[triggers][scheduler][jitter]") {
    auto wf = workflow("jittered", "[[trigger]]\ncron = \"* * * * *\"\njitter = \"59s\"");
    SECTION("it fired before") {
        Harness h(at("2026-05-01T10:00:20Z"));
        h.recorded = {{"jittered", at("2026-05-01T09:59:00Z")}};
        h.load({wf});
        CHECK(h.take().empty()); // nothing was missed: 10:00 is not due yet
        CHECK(formatIsoSeconds(h.sched->nextFirings("jittered").at(0)) == "2026-05-01T10:00:51Z");
        h.advanceTo("2026-05-01T10:00:50Z");
        CHECK(h.take().empty());
        h.advanceTo("2026-05-01T10:00:51Z");
        h.advanceTo("2026-05-01T10:01:51Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron", "jittered 2026-05-01T10:01:00Z cron"});
    }
    SECTION("it never fired") {
        Harness h(at("2026-05-01T10:00:20Z"));
        h.load({wf});
        CHECK(h.take().empty());
        h.advanceTo("2026-05-01T10:00:51Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron"});
    }
    SECTION("with firings missed before it: catch-up runs the missed, the pending one fires when due") {
        Harness h(at("2026-05-01T10:00:20Z"));
        h.recorded = {{"jittered", at("2026-05-01T09:57:00Z")}};
        h.load({wf});
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T09:59:00Z cron (catch-up of the latest of 2 "
                                                   "missed firing(s) (taskhubd was not running))"});
        h.advanceTo("2026-05-01T10:00:51Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron"});
    }
}

TEST_CASE("scheduler: a reload between a firing's scheduled and due instants keeps it", "[triggers][scheduler][jitter]") {
    const std::string trigger = "[[trigger]]\ncron = \"* * * * *\"\njitter = \"59s\"";
    Harness h(at("2026-05-01T09:59:30Z"));
    h.load({workflow("jittered", trigger)});
    h.advanceTo("2026-05-01T09:59:51Z");
    CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T09:59:00Z cron"});
    h.advanceTo("2026-05-01T10:00:20Z");
    CHECK(h.take().empty());

    SECTION("an edit that keeps the trigger") {
        h.load({workflow("jittered", "description = \"edited\"\n" + trigger)});
        CHECK(formatIsoSeconds(h.sched->nextFirings("jittered").at(0)) == "2026-05-01T10:00:51Z");
        h.advanceTo("2026-05-01T10:00:51Z");
        h.advanceTo("2026-05-01T10:01:51Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron", "jittered 2026-05-01T10:01:00Z cron"});
    }
    SECTION("an edit that shortens the jitter: the firing is due at once") {
        h.load({workflow("jittered", "[[trigger]]\ncron = \"* * * * *\"\njitter = \"10s\"")});
        h.advanceTo("2026-05-01T10:00:21Z");
        h.advanceTo("2026-05-01T10:01:09Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron", "jittered 2026-05-01T10:01:00Z cron"});
    }
    SECTION("an edit of the jitter after the firing fired does not fire it again") {
        h.advanceTo("2026-05-01T10:00:51Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:00:00Z cron"});
        h.load({workflow("jittered", "[[trigger]]\ncron = \"* * * * *\"\njitter = \"58s\"")}); // offset 8s
        h.advanceTo("2026-05-01T10:01:08Z");
        CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:01:00Z cron"});
    }
}

TEST_CASE("scheduler: a late wake-up's catch-up keeps another trigger's pending firing", "[triggers][scheduler][jitter]") {
    Harness h(at("2026-05-01T09:59:30Z"));
    auto wf = workflow("jittered", "[[trigger]]\ncron = \"* * * * *\"\njitter = \"59s\"\n"
                                   "[[trigger]]\ncron = \"15,45 * * * * *\"");
    h.load({wf});
    h.advanceTo("2026-05-01T09:59:51Z");
    CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T09:59:45Z cron", "jittered 2026-05-01T09:59:00Z cron"});
    // The machine sleeps from 09:59:52 to 10:03:20: the second trigger wakes late and catches
    // up; the first one's 10:03 firing is pending until 10:03:51.
    h.advanceTo("2026-05-01T10:03:20Z");
    auto caught = h.take();
    REQUIRE(caught.size() == 1);
    INFO(caught[0]);
    CHECK(caught[0].rfind("jittered 2026-05-01T10:03:15Z cron (catch-up of the latest of 10 missed", 0) == 0);
    h.advanceTo("2026-05-01T10:03:45Z");
    h.advanceTo("2026-05-01T10:03:51Z");
    CHECK(h.take() == std::vector<std::string>{"jittered 2026-05-01T10:03:45Z cron", "jittered 2026-05-01T10:03:00Z cron"});
}

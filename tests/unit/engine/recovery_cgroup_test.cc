// Recovery by cgroup (engine/recovery.cc, docs/reliability.md "Recovery by cgroup"): after a
// kill -9, the attempt cgroups the previous process left are told apart by what the store says of
// their attempts, against a fake cgroup Manager (the real one: tests/unit/cgroup; the whole chain:
// tests/system/test_containment.py).
#include "sim_harness.h"

#include <algorithm>

#include "cgroup/cgroup.h"

using namespace taskhub;
using namespace taskhub::testing::engine_sim;
using O = AttemptResult::Outcome;

namespace {

struct FakeManager;

struct FakeCgroup final : cgroup::AttemptCgroup {
    FakeManager* m = nullptr;
    cgroup::AttemptKey key_;
    std::filesystem::path path_;
    std::vector<pid_t> procs;
    int kills = 0;
    bool removed = false;
    ~FakeCgroup() override;
    const cgroup::AttemptKey& key() const override { return key_; }
    const std::filesystem::path& path() const override { return path_; }
    std::string relativePath() const override { return path_.string(); }
    int fd() const override { return -1; }
    bool populated() const override { return !procs.empty(); }
    std::vector<pid_t> pids() const override { return procs; }
    int signalAll(int) const override { return 0; }
    bool kill(std::string*) override {
        ++kills;
        procs.clear();
        return true;
    }
    bool freeze(bool, std::string*) override { return true; }
    bool frozen() const override { return false; }
    cgroup::Usage usage() const override {
        cgroup::Usage u;
        u.cpu_user_us = 520'000;
        u.cpu_system_us = 10'000;
        return u;
    }
    bool remove(std::string*) override;
};

struct FakeManager final : cgroup::Manager {
    std::vector<std::unique_ptr<FakeCgroup>> left; // what the previous process left
    std::map<std::string, int> kills;             // by cgroup name, of closed cgroups too
    std::set<std::string> removed;
    std::map<cgroup::AttemptCgroup*, std::function<void()>> empty_waits;
    std::filesystem::path dir = "/cg/taskhub-1";

    void leave(cgroup::AttemptKey key, const std::string& name, std::vector<pid_t> pids) {
        auto cg = std::make_unique<FakeCgroup>();
        cg->m = this;
        cg->key_ = std::move(key);
        cg->path_ = dir / "tasks" / name;
        cg->procs = std::move(pids);
        left.push_back(std::move(cg));
    }
    cgroup::Support support() const override { return {true, {}, "", ""}; }
    const std::filesystem::path& mount() const override { return dir; }
    const std::filesystem::path& base() const override { return dir; }
    std::string describe() const override { return "fake"; }
    std::unique_ptr<cgroup::AttemptCgroup> createAttempt(const cgroup::AttemptKey&, const cgroup::Limits&,
                                                         const std::string&, std::string*) override {
        return nullptr;
    }
    std::optional<std::filesystem::path> runnerCgroup(const std::string&, uid_t, gid_t, std::string*) override {
        return std::nullopt;
    }
    void whenEmpty(cgroup::AttemptCgroup& cg, std::function<void()> done) override { empty_waits[&cg] = std::move(done); }
    void whenFrozen(cgroup::AttemptCgroup&, std::chrono::milliseconds, std::function<void(bool)>) override {}
    void cancelWaits(cgroup::AttemptCgroup& cg) override { empty_waits.erase(&cg); }
    std::vector<std::unique_ptr<cgroup::AttemptCgroup>> existingAttempts() override {
        std::vector<std::unique_ptr<cgroup::AttemptCgroup>> out;
        for (auto& cg : left) out.push_back(std::move(cg));
        left.clear();
        return out;
    }
    void shutdown() override {}
};

FakeCgroup::~FakeCgroup() { m->kills[path_.filename().string()] += kills; }
bool FakeCgroup::remove(std::string*) {
    if (!procs.empty()) return false;
    m->removed.insert(path_.filename().string());
    return true;
}

std::string lostDetail(SimHarness& h, const std::string& run, const std::string& task) {
    for (const auto& e : h.events(run)) {
        if (e.kind == "lost" && e.task_id == task) return e.detail;
    }
    return "";
}

} // namespace

TEST_CASE("engine: recovery by cgroup kills lost attempts, leaves kept leftovers and removes strays",
          "[engine][recovery][cgroup]") {
    FakeManager manager;
    engine::EngineOptions options;
    options.cgroups = &manager;
    SimHarness h(options);
    h.add("crashed", fakeTask("a", "retries = 1") + fakeTask("k", "leftovers = \"keep\"") + fakeTask("s") +
                         fakeTask("n", "depends_on = [\"a\"]"));
    h.load();
    const std::string id = h.trigger("crashed");
    REQUIRE(h.plugin().started() == std::vector<std::string>{"a.1", "k.1", "s.1"});
    h.plugin().finish("k", O::Succeeded);
    h.plugin().finish("s", O::Succeeded);
    h.settle();

    // taskhubd is killed: a still runs; k kept its leftovers; s's leftovers were being killed; n's
    // first attempt had its cgroup before its starting record was committed; and a cgroup whose
    // name is no attempt's.
    h.restart();
    manager.leave({id, "a", 1}, "1.a", {101, 102});
    manager.leave({id, "k", 1}, "1.k", {201});
    manager.leave({id, "s", 1}, "1.s", {301});
    manager.leave({id, "n", 1}, "1.n", {401});
    manager.leave({}, "junk", {501});
    auto report = h.engine().recover(false);
    h.settle();

    CHECK(report.cgroups_removed == 4);
    CHECK(report.cgroups_kept == 1);
    CHECK(report.killed == 5);
    CHECK(manager.removed == std::set<std::string>{"1.a", "1.s", "1.n", "junk"});
    CHECK(manager.kills["1.a"] == 1);
    CHECK(manager.kills["1.s"] == 1);
    CHECK(manager.kills["junk"] == 1);
    CHECK(manager.kills["1.n"] == 1);

    // The lost attempt says what its cgroup held and cost; it is retried.
    CHECK(lostDetail(h, id, "a") == "attempt 1 was lost when taskhubd stopped: its cgroup 1.a still held 2 process(es), "
                                    "which were killed (cgroup.kill); it had used CPU 0.52 s user, 0.01 s system; "
                                    "retry 1 of 1");
    CHECK(lostDetail(h, id, "n") == "attempt 1 was lost when taskhubd stopped: taskhubd stopped before its start was "
                                    "committed; its cgroup 1.n held 1 process(es), which were killed (cgroup.kill); it "
                                    "had used CPU 0.52 s user, 0.01 s system; the task runs again as attempt 2");
    CHECK(h.plugin().started() == std::vector<std::string>{"a.2"});
    // The unrecorded attempt's number is not used again, and it costs n no retry (it has none).
    h.plugin().finish("a", O::Succeeded);
    h.settle();
    CHECK(h.plugin().started() == std::vector<std::string>{"a.2", "n.2"});

    // The kept cgroup is left alone until its last process exits, then removed.
    REQUIRE(manager.empty_waits.size() == 1);
    auto* kept = static_cast<FakeCgroup*>(manager.empty_waits.begin()->first);
    CHECK(kept->kills == 0);
    CHECK(kept->procs == std::vector<pid_t>{201});
    kept->procs.clear();
    auto emptied = std::move(manager.empty_waits.begin()->second);
    emptied();
    h.settle();
    CHECK(manager.removed.count("1.k") == 1);
}

TEST_CASE("engine: without unfinished runs, recovery by cgroup still removes what was left", "[engine][recovery][cgroup]") {
    FakeManager manager;
    engine::EngineOptions options;
    options.cgroups = &manager;
    SimHarness h(options);
    manager.leave({"gone@1", "t", 1}, "1.t.gone@1", {601});
    auto report = h.engine().recover(false);
    CHECK(report.runs == 0);
    CHECK(report.cgroups_removed == 1);
    CHECK(manager.removed == std::set<std::string>{"1.t.gone@1"});
    CHECK(manager.kills["1.t.gone@1"] == 1);
}

// plugin_host/containment.h: what the host does around a TH_CAP_CGROUP plugin's attempts, against
// a fake plugin and a fake cgroup Manager (the real one is tested in tests/unit/cgroup; the whole
// chain in tests/system/test_containment.py).
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <taskhub/plugin_api.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "plugin_host/containment.h"

using namespace taskhub;
using namespace taskhub::plugin_host;
using Outcome = AttemptResult::Outcome;

namespace {

struct FakeCgroup;

// Records what the host asked of the cgroups; tests empty them with drain().
struct FakeManager final : cgroup::Manager {
    std::vector<FakeCgroup*> live;
    std::vector<std::string> created; // "run/task/attempt runner"
    std::map<FakeCgroup*, std::function<void()>> empty_waits;
    std::map<FakeCgroup*, std::function<void(bool)>> frozen_waits;
    int removed = 0;              // cgroups removed
    std::string create_error; // non-empty: createAttempt fails with it
    std::vector<pid_t> next_pids; // the processes the next cgroup will hold once the plugin "forks"
    cgroup::Usage next_usage;
    std::filesystem::path mount_ = "/sys/fs/cgroup", base_ = "/sys/fs/cgroup/th";

    cgroup::Support support() const override { return {true, {}, "", ""}; }
    const std::filesystem::path& mount() const override { return mount_; }
    const std::filesystem::path& base() const override { return base_; }
    std::string describe() const override { return "fake"; }
    std::unique_ptr<cgroup::AttemptCgroup> createAttempt(const cgroup::AttemptKey& key, const cgroup::Limits&,
                                                         const std::string& runner_plugin, std::string* err) override;
    std::optional<std::filesystem::path> runnerCgroup(const std::string&, uid_t, gid_t, std::string*) override {
        return std::nullopt;
    }
    void whenEmpty(cgroup::AttemptCgroup& cg, std::function<void()> done) override;
    void whenFrozen(cgroup::AttemptCgroup& cg, std::chrono::milliseconds, std::function<void(bool)> done) override;
    void cancelWaits(cgroup::AttemptCgroup& cg) override;
    std::vector<std::unique_ptr<cgroup::AttemptCgroup>> existingAttempts() override { return {}; }
    void shutdown() override {}
};

struct FakeCgroup final : cgroup::AttemptCgroup {
    FakeManager& m;
    cgroup::AttemptKey key_;
    std::filesystem::path path_;
    std::vector<pid_t> procs;
    bool is_frozen = false;
    int kills = 0;
    std::vector<bool> freezes; // what was written to cgroup.freeze, in order
    bool removed = false;
    cgroup::Usage use;
    FakeCgroup(FakeManager& mgr, cgroup::AttemptKey k) : m(mgr), key_(std::move(k)) {
        path_ = m.base_ / "tasks" / cgroup::attemptCgroupName(key_);
        m.live.push_back(this);
    }
    ~FakeCgroup() override { std::erase(m.live, this); }
    const cgroup::AttemptKey& key() const override { return key_; }
    const std::filesystem::path& path() const override { return path_; }
    std::string relativePath() const override { return "/th/tasks/" + path_.filename().string(); }
    int fd() const override { return 42; }
    bool populated() const override { return !procs.empty(); }
    std::vector<pid_t> pids() const override { return procs; }
    int signalAll(int) const override { return static_cast<int>(procs.size()); }
    bool kill(std::string*) override {
        ++kills;
        procs.clear(); // the kernel empties it; the host must still wait for cgroup.events
        return true;
    }
    bool freeze(bool on, std::string*) override {
        freezes.push_back(on);
        is_frozen = on;
        return true;
    }
    bool frozen() const override { return is_frozen; }
    cgroup::Usage usage() const override { return use; }
    bool remove(std::string* err) override {
        if (!procs.empty()) {
            *err = "busy";
            return false;
        }
        removed = true;
        ++m.removed;
        return true;
    }
};

std::unique_ptr<cgroup::AttemptCgroup> FakeManager::createAttempt(const cgroup::AttemptKey& key, const cgroup::Limits&,
                                                                  const std::string& runner_plugin, std::string* err) {
    if (!create_error.empty()) {
        *err = create_error;
        return nullptr;
    }
    created.push_back(key.run_id + "/" + key.task_id + "/" + std::to_string(key.attempt) + " " + runner_plugin);
    auto cg = std::make_unique<FakeCgroup>(*this, key);
    cg->use = next_usage;
    return cg;
}
void FakeManager::whenEmpty(cgroup::AttemptCgroup& cg, std::function<void()> done) {
    empty_waits[static_cast<FakeCgroup*>(&cg)] = std::move(done);
}
void FakeManager::whenFrozen(cgroup::AttemptCgroup& cg, std::chrono::milliseconds, std::function<void(bool)> done) {
    frozen_waits[static_cast<FakeCgroup*>(&cg)] = std::move(done);
}
void FakeManager::cancelWaits(cgroup::AttemptCgroup& cg) {
    empty_waits.erase(static_cast<FakeCgroup*>(&cg));
    frozen_waits.erase(static_cast<FakeCgroup*>(&cg));
}

// A plugin whose attempts end when the test says so.
struct FakePlugin final : Plugin {
    PluginInfo info_;
    struct Started {
        AttemptSpec spec;
        Done done;
    };
    std::map<uint64_t, Started> started;
    std::vector<std::string> calls; // "cancel 1", "suspend 1", ...
    uint64_t next = 100;
    FakePlugin() {
        info_.name = "fake";
        info_.capabilities = TH_CAP_CGROUP | TH_CAP_CANCEL;
    }
    const PluginInfo& info() const override { return info_; }
    std::optional<config::PluginCatalog::Problem> validate(const std::string&) const override { return std::nullopt; }
    uint64_t start(const AttemptSpec& spec, Done done) override {
        started[++next] = {spec, std::move(done)};
        return next;
    }
    void cancel(uint64_t t) override { calls.push_back("cancel " + std::to_string(t)); }
    bool canSuspend() const override { return false; }
    void suspend(uint64_t t) override { calls.push_back("suspend " + std::to_string(t)); }
    void resume(uint64_t t) override { calls.push_back("resume " + std::to_string(t)); }
    size_t running() const override { return started.size(); }
    void checkHealth(std::chrono::milliseconds, HealthDone done) override { done({}); }
    void complete(uint64_t t, AttemptResult r) {
        auto done = std::move(started.at(t).done);
        started.erase(t);
        done(std::move(r));
    }
};

struct Fixture {
    boost::asio::io_context io;
    FakeManager manager;
    FakePlugin* plugin = nullptr;
    std::unique_ptr<ContainedPlugin> contained;
    std::vector<AttemptResult> results;

    explicit Fixture(ContainedPlugin::Options o = {}) {
        auto p = std::make_unique<FakePlugin>();
        plugin = p.get();
        o.manager = &manager;
        contained = std::make_unique<ContainedPlugin>(io, std::move(p), o);
    }
    uint64_t start(cgroup::Leftovers leftovers = cgroup::Leftovers::Kill, cgroup::Limits limits = {}) {
        AttemptSpec spec;
        spec.run_id = "wf@1";
        spec.task_id = "t";
        spec.attempt = 2;
        spec.leftovers = leftovers;
        spec.limits = limits;
        return contained->start(spec, [this](AttemptResult r) { results.push_back(std::move(r)); });
    }
    FakeCgroup& cg() {
        REQUIRE(manager.live.size() == 1);
        return *manager.live.front();
    }
    uint64_t innerToken() {
        REQUIRE(plugin->started.size() == 1);
        return plugin->started.begin()->first;
    }
    void run() {
        io.restart();
        io.poll();
    }
    // The cgroup reports "populated 0".
    void emptied(FakeCgroup& c) {
        auto it = manager.empty_waits.find(&c);
        REQUIRE(it != manager.empty_waits.end());
        auto fn = std::move(it->second);
        manager.empty_waits.erase(it);
        fn();
        run();
    }
};

} // namespace

TEST_CASE("an attempt starts in a cgroup of its own, named after it, and the plugin gets its descriptor") {
    Fixture f;
    f.start();
    REQUIRE(f.manager.created == std::vector<std::string>{"wf@1/t/2 "});
    const auto& spec = f.plugin->started.begin()->second.spec;
    CHECK(spec.cgroup_fd == 42);
    CHECK(spec.cgroup_path == "th/tasks/" + cgroup::attemptCgroupName({"wf@1", "t", 2})); // below the mount
    CHECK(f.contained->canSuspend());
    CHECK(f.contained->running() == 1);
}

TEST_CASE("an isolated plugin's attempt cgroups go below its runner's") {
    ContainedPlugin::Options o;
    o.isolated = true;
    Fixture f(o);
    f.start();
    CHECK(f.manager.created == std::vector<std::string>{"wf@1/t/2 fake"});
}

TEST_CASE("an attempt whose main process left nothing ends at once, measured by its cgroup, which is removed") {
    Fixture f;
    f.manager.next_usage.cpu_user_us = 510'000;
    f.start();
    FakeCgroup& cg = f.cg();
    AttemptResult plugin_result{Outcome::Succeeded, 0, ""};
    cgroup::Usage rusage;
    rusage.source = cgroup::Usage::Source::Rusage;
    rusage.cpu_user_us = 1;
    plugin_result.usage = rusage;
    f.plugin->complete(f.innerToken(), plugin_result);
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].outcome == Outcome::Succeeded);
    REQUIRE(f.results[0].usage);
    CHECK(f.results[0].usage->source == cgroup::Usage::Source::Cgroup);
    CHECK(f.results[0].usage->cpu_user_us == 510'000);
    CHECK_FALSE(f.results[0].leftovers);
    CHECK(f.manager.removed == 1);
    CHECK(f.manager.live.empty()); // and closed
    (void)cg;
    CHECK(f.contained->running() == 0);
}

TEST_CASE("leftovers after success are killed by default, and the attempt ends only when its cgroup is empty") {
    Fixture f;
    f.start();
    FakeCgroup& cg = f.cg();
    cg.procs = {4001, 4002};
    f.plugin->complete(f.innerToken(), {Outcome::Succeeded, 0, ""});
    f.run();
    CHECK(cg.kills == 1);
    CHECK(f.results.empty()); // waits for "populated 0"
    CHECK(f.contained->running() == 1);
    f.emptied(cg);
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].outcome == Outcome::Succeeded);
    REQUIRE(f.results[0].leftovers);
    CHECK(f.results[0].leftovers->found == 2);
    CHECK(f.results[0].leftovers->action == cgroup::Leftovers::Kill);
    CHECK(f.manager.removed == 1);
    CHECK(f.manager.live.empty());
}

TEST_CASE("leftovers = keep leaves them running; the cgroup is removed when they have exited") {
    Fixture f;
    f.start(cgroup::Leftovers::Keep);
    FakeCgroup& cg = f.cg();
    cg.procs = {4001};
    f.plugin->complete(f.innerToken(), {Outcome::Succeeded, 0, ""});
    REQUIRE(f.results.size() == 1);
    CHECK(cg.kills == 0);
    REQUIRE(f.results[0].leftovers);
    CHECK(f.results[0].leftovers->found == 1);
    CHECK(f.results[0].leftovers->action == cgroup::Leftovers::Keep);
    CHECK(f.contained->running() == 0);
    CHECK(f.contained->kept() == 1);
    CHECK_FALSE(cg.removed);
    cg.procs.clear();
    f.emptied(cg);
    CHECK(f.contained->kept() == 0);
    CHECK(f.manager.removed == 1);
    CHECK(f.manager.live.empty());
}

TEST_CASE("a cancelled attempt leaves nothing, whatever its leftovers say") {
    Fixture f;
    const uint64_t token = f.start(cgroup::Leftovers::Keep);
    FakeCgroup& cg = f.cg();
    cg.procs = {4001, 4002, 4003};
    f.contained->cancel(token);
    CHECK(f.plugin->calls == std::vector<std::string>{"cancel " + std::to_string(f.innerToken())});
    f.plugin->complete(f.innerToken(), {Outcome::Cancelled, std::nullopt, "cancelled"});
    f.run();
    CHECK(cg.kills == 1);
    CHECK(f.results.empty());
    f.emptied(cg);
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].outcome == Outcome::Cancelled);
    REQUIRE(f.results[0].leftovers);
    CHECK(f.results[0].leftovers->found == 3);
    CHECK(f.results[0].leftovers->action == cgroup::Leftovers::Kill);
}

TEST_CASE("an attempt lost with its runner leaves nothing either") {
    Fixture f;
    f.start(cgroup::Leftovers::Keep);
    FakeCgroup& cg = f.cg();
    cg.procs = {4001};
    f.plugin->complete(f.innerToken(), {Outcome::Failed, std::nullopt, "runner died", {}, true});
    f.run();
    CHECK(cg.kills == 1);
    f.emptied(cg);
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].transient);
}

TEST_CASE("when the plugin does not end a cancelled attempt, the host kills its cgroup after the backstop") {
    ContainedPlugin::Options o;
    o.kill_after = std::chrono::milliseconds(20);
    Fixture f(o);
    const uint64_t token = f.start();
    FakeCgroup& cg = f.cg();
    cg.procs = {4001};
    f.contained->cancel(token);
    f.run();
    CHECK(cg.kills == 0);
    f.io.restart();
    f.io.run_for(std::chrono::milliseconds(200));
    CHECK(cg.kills == 1);
    // The plugin then sees its process die and completes.
    f.plugin->complete(f.innerToken(), {Outcome::Cancelled, std::nullopt, "cancelled"});
    f.run();
    REQUIRE(f.results.size() == 1);
    CHECK_FALSE(f.results[0].leftovers);
}

TEST_CASE("a plugin that completes in time is not killed by the backstop") {
    ContainedPlugin::Options o;
    o.kill_after = std::chrono::milliseconds(20);
    Fixture f(o);
    const uint64_t token = f.start();
    f.contained->cancel(token);
    f.plugin->complete(f.innerToken(), {Outcome::Cancelled, std::nullopt, "cancelled"});
    f.io.restart();
    f.io.run_for(std::chrono::milliseconds(100));
    REQUIRE(f.results.size() == 1);
    CHECK(f.manager.live.empty());
}

TEST_CASE("suspend freezes the cgroup and resume thaws it; the plugin is never asked") {
    Fixture f;
    const uint64_t token = f.start();
    FakeCgroup& cg = f.cg();
    f.contained->suspend(token);
    CHECK(cg.freezes == std::vector<bool>{true});
    CHECK(f.manager.frozen_waits.count(&cg) == 1);
    f.contained->resume(token);
    CHECK(cg.freezes == std::vector<bool>{true, false});
    CHECK(f.plugin->calls.empty());
}

TEST_CASE("a frozen attempt is thawed before it is cancelled, so that it can act on SIGTERM") {
    Fixture f;
    const uint64_t token = f.start();
    FakeCgroup& cg = f.cg();
    f.contained->suspend(token);
    f.contained->cancel(token);
    CHECK(cg.freezes == std::vector<bool>{true, false});
    CHECK(f.plugin->calls == std::vector<std::string>{"cancel " + std::to_string(f.innerToken())});
}

TEST_CASE("an attempt whose cgroup cannot be created fails and never runs uncontained") {
    Fixture f;
    f.manager.create_error = "cannot create /sys/fs/cgroup/th/tasks/x: Permission denied";
    f.start();
    CHECK(f.plugin->started.empty());
    CHECK(f.results.empty()); // never inside start()
    f.run();
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].outcome == Outcome::Failed);
    CHECK(f.results[0].message == "not started: the attempt's cgroup could not be created: cannot create "
                                  "/sys/fs/cgroup/th/tasks/x: Permission denied");
}

TEST_CASE("an attempt its memory limit killed says so") {
    Fixture f;
    f.manager.next_usage.oom_kills = 1;
    cgroup::Limits limits;
    limits.memory_max = 256u << 20;
    limits.memory_max_text = "256M";
    f.start(cgroup::Leftovers::Kill, limits);
    f.plugin->complete(f.innerToken(), {Outcome::Failed, std::nullopt, "killed by signal 9 (SIGKILL)"});
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].message == "killed: memory limit 256M reached (oom_kill 1)");
}

TEST_CASE("a succeeded attempt keeps its message even when a child was OOM-killed") {
    Fixture f;
    f.manager.next_usage.oom_kills = 1;
    cgroup::Limits limits;
    limits.memory_max = 256u << 20;
    limits.memory_max_text = "256M";
    f.start(cgroup::Leftovers::Kill, limits);
    f.plugin->complete(f.innerToken(), {Outcome::Succeeded, 0, ""});
    REQUIRE(f.results.size() == 1);
    CHECK(f.results[0].message.empty());
}

TEST_CASE("PluginHost contains only plugins that declare TH_CAP_CGROUP, and only with a Manager") {
    boost::asio::io_context io;
    FakeManager manager;
    {
        PluginHost host(&io, nullptr);
        LoadPolicy policy;
        policy.cgroups = &manager;
        host.setLoadPolicy(policy);
        REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, {}));
        REQUIRE_FALSE(host.loadFile(std::string(FIXTURE_DIR) + "/fx_good.so", {}));
        CHECK(dynamic_cast<ContainedPlugin*>(host.find("shell")) != nullptr);
        CHECK(dynamic_cast<ContainedPlugin*>(host.find("fx_good")) == nullptr);
    }
    {
        PluginHost host(&io, nullptr);
        REQUIRE_FALSE(host.loadFile(SHELL_PLUGIN, {}));
        CHECK(dynamic_cast<ContainedPlugin*>(host.find("shell")) == nullptr);
    }
}

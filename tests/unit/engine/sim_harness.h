// The engine on fake plugins and simulated time, for tests: FakePlugin records each attempt and
// lets the test end it; SimHarness runs an engine over a real store with a FakeClock, so that a
// test moves time with advance() and does the work due now with settle(), never waiting on the
// wall clock.
#ifndef TASKHUB_TESTS_UNIT_ENGINE_SIM_HARNESS_H
#define TASKHUB_TESTS_UNIT_ENGINE_SIM_HARNESS_H

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <taskhub/plugin_api.h>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/workflow.h"
#include "engine/clock.h"
#include "engine/engine.h"
#include "engine/plugin_port.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"
#include "store/store.h"
#include "test_support.h"

namespace taskhub::testing::engine_sim {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using plugin_host::AttemptResult;

// A plugin that runs nothing: start() records the attempt, the test ends it with finish().
class FakePlugin final : public plugin_host::Plugin {
public:
    struct Attempt {
        uint64_t token = 0;
        std::string run_id;
        std::string task_id;
        uint32_t attempt = 0;
        Done done;
        bool cancelled = false; // cancel() was called
        bool suspended = false;
        bool ended = false;
    };

    explicit FakePlugin(std::string name) {
        info_.name = std::move(name);
        info_.capabilities = TH_CAP_NO_LOG | TH_CAP_SUSPEND;
    }

    const plugin_host::PluginInfo& info() const override { return info_; }
    std::optional<config::PluginCatalog::Problem> validate(const std::string&) const override { return std::nullopt; }
    uint64_t start(const plugin_host::AttemptSpec& spec, Done done) override {
        attempts.push_back({++next_token_, spec.run_id, spec.task_id, spec.attempt, std::move(done)});
        return attempts.back().token;
    }
    void cancel(uint64_t token) override { find(token).cancelled = true; }
    bool canSuspend() const override { return true; }
    void suspend(uint64_t token) override { find(token).suspended = true; }
    void resume(uint64_t token) override { find(token).suspended = false; }
    size_t running() const override {
        size_t n = 0;
        for (const auto& a : attempts) n += a.ended ? 0 : 1;
        return n;
    }
    void checkHealth(std::chrono::milliseconds, HealthDone done) override { done({}); }

    // Ends the latest attempt of task_id (in run_id, when given) as a plugin would (its done
    // callback).
    void finish(const std::string& task_id, AttemptResult::Outcome outcome, std::string message = {},
                const std::string& run_id = {}) {
        AttemptResult r;
        r.outcome = outcome;
        r.message = std::move(message);
        finishWith(task_id, std::move(r), run_id);
    }
    // The same with a whole result (usage, leftovers, ...).
    void finishWith(const std::string& task_id, AttemptResult r, const std::string& run_id = {}) {
        Attempt* a = latest(task_id, run_id);
        REQUIRE(a);
        REQUIRE_FALSE(a->ended);
        a->ended = true;
        auto done = std::move(a->done); // a may move when done starts another attempt
        done(std::move(r));
    }
    Attempt* latest(const std::string& task_id, const std::string& run_id = {}) {
        for (auto it = attempts.rbegin(); it != attempts.rend(); ++it) {
            if (it->task_id == task_id && (run_id.empty() || it->run_id == run_id)) return &*it;
        }
        return nullptr;
    }
    std::vector<std::string> started() const {
        std::vector<std::string> out;
        for (const auto& a : attempts) out.push_back(a.task_id + "." + std::to_string(a.attempt));
        return out;
    }

    std::vector<Attempt> attempts;

private:
    Attempt& find(uint64_t token) {
        for (auto& a : attempts) {
            if (a.token == token) return a;
        }
        FAIL("no attempt with token " << token);
        throw std::logic_error("unreachable");
    }
    plugin_host::PluginInfo info_;
    uint64_t next_token_ = 0;
};

// The engine's plugins: one fake, "noop" (workflows are loaded against the real noop plugin's
// catalog entry, so their task parameters are checked as usual).
class FakePlugins final : public engine::PluginPort {
public:
    plugin_host::Plugin* find(const std::string& name) const override { return name == "noop" ? &noop_ : nullptr; }
    std::optional<std::string> unavailable(const std::string& name) const override {
        return "plugin '" + name + "' is not loaded";
    }
    bool dispatchable(const std::string&) const override { return true; }
    const plugin_host::PluginHealth* health(const std::string&) const override { return nullptr; }
    FakePlugin& noop() { return noop_; }

private:
    mutable FakePlugin noop_{"noop"};
};

// Task ids in the order their attempts started (a task once per attempt), from a run's events.
inline std::vector<std::string> startedTasks(const std::vector<store::EventRecord>& events) {
    std::vector<std::string> order;
    for (const auto& e : events) {
        if (e.kind == "start") order.push_back(e.task_id);
    }
    return order;
}

class SimHarness {
public:
    explicit SimHarness(engine::EngineOptions options = {}) : pool_(1, 1, 1000ms), catalog_(&io_, &pool_) {
        std::string err;
        store_ = store::Store::open(dir_.path / "state", &err);
        INFO(err);
        REQUIRE(store_);
        REQUIRE_FALSE(catalog_.loadFile(TASKHUB_NOOP_PLUGIN_PATH, {}));
        options_ = std::move(options);
        options_.log_dir = dir_.path / "logs";
        store_->startWriter([this](std::function<void()> fn) { asio::post(io_, std::move(fn)); });
        std::filesystem::create_directories(dir_.path / "wf");
        restart();
    }
    ~SimHarness() {
        engine_.reset();
        pool_.stop();
    }

    // A new engine on the same store, as after taskhubd was killed: the old one's attempts are
    // left as the store recorded them.
    void restart() {
        engine_.reset();
        plugins_ = std::make_unique<FakePlugins>();
        engine_ = std::make_unique<engine::Engine>(io_, *store_, *plugins_, clock_, options_);
        engine_->setWorkflowLookup([this](const std::string& name) -> std::shared_ptr<const config::Workflow> {
            auto it = workflows_.find(name);
            return it == workflows_.end() ? nullptr : it->second;
        });
    }

    void add(const std::string& name, const std::string& toml) {
        std::ofstream(dir_.path / "wf" / (name + ".toml")) << toml;
    }
    void load() {
        auto set = config::loadWorkflowDir(dir_.path / "wf", {}, catalog_);
        std::string problems;
        for (const auto& p : set.problems) problems += p.str() + "\n";
        INFO(problems);
        REQUIRE(set.problems.empty());
        workflows_ = set.workflows;
    }

    std::shared_ptr<const config::Workflow> workflow(const std::string& name) const { return workflows_.at(name); }

    std::string trigger(const std::string& name) {
        auto r = engine_->trigger({.workflow = workflows_.at(name), .actor = "test"});
        INFO(r.error);
        REQUIRE(r.ok);
        settle();
        return r.run_id;
    }

    // Does the work that is due now: what the engine posted, and the store's answers that
    // launch attempts (each waits for its record to be durable).
    void settle() {
        for (int i = 0; i < 1000; ++i) {
            REQUIRE(store_->commit());
            io_.restart();
            if (io_.poll() == 0) return;
        }
        FAIL("the event loop never went idle");
    }

    // Ends every attempt now running with `outcome`, oldest first, and does what follows.
    // Returns how many it ended.
    size_t finishRunning(AttemptResult::Outcome outcome = AttemptResult::Outcome::Succeeded) {
        std::vector<std::pair<std::string, std::string>> open; // run, task
        for (const auto& a : plugin().attempts) {
            if (!a.ended) open.emplace_back(a.run_id, a.task_id);
        }
        for (const auto& [run, task] : open) {
            plugin().finish(task, outcome, {}, run);
            settle();
        }
        return open.size();
    }

    void advance(std::chrono::milliseconds d) {
        clock_.advance(d, [this] { settle(); });
        settle();
    }

    FakePlugin& plugin() { return plugins_->noop(); }
    engine::Engine& engine() { return *engine_; }
    engine::FakeClock& clock() { return clock_; }

    store::RunRecord record(const std::string& id) {
        REQUIRE(store_->commit());
        auto rec = store_->run(id, true);
        REQUIRE(rec);
        return *rec;
    }
    std::vector<store::EventRecord> events(const std::string& id) {
        REQUIRE(store_->commit());
        return store_->events(id);
    }
    std::vector<std::string> startOrder(const std::string& id) { return startedTasks(events(id)); }

private:
    taskhub::testing::TempDir dir_{"th-engine-sim"};
    asio::io_context io_{1};
    std::unique_ptr<store::Store> store_;
    pool::WorkerPool pool_;
    plugin_host::PluginHost catalog_; // for loading workflows only
    engine::FakeClock clock_;
    std::unique_ptr<FakePlugins> plugins_;
    engine::EngineOptions options_;
    std::map<std::string, std::shared_ptr<const config::Workflow>> workflows_;
    std::unique_ptr<engine::Engine> engine_;
};

inline const store::TaskRecord& simTask(const store::RunRecord& run, const std::string& id) {
    for (const auto& t : run.tasks) {
        if (t.task_id == id) return t;
    }
    FAIL("no task " << id);
    throw std::logic_error("unreachable");
}

inline std::string fakeTask(const std::string& id, const std::string& extra = "") {
    return "[[task]]\nid = \"" + id + "\"\nplugin = \"noop\"\n" + extra + "\n";
}

} // namespace taskhub::testing::engine_sim

#endif // TASKHUB_TESTS_UNIT_ENGINE_SIM_HARNESS_H

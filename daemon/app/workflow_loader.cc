#include "app/workflow_loader.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <condition_variable>
#include <chrono>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "config/workflow.h"

namespace taskhub::app {

namespace asio = boost::asio;

struct WorkflowLoader::State {
    asio::io_context& io;
    const config::PluginCatalog& plugins;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Work> jobs;
    bool stopping = false;
    std::thread thread;

    State(asio::io_context& i, const config::PluginCatalog& p) : io(i), plugins(p) {}
};

namespace {

// The catalog a job sees: validate() runs on the loop, the job's thread waits for it.
class LoopCatalog final : public config::PluginCatalog {
public:
    explicit LoopCatalog(std::shared_ptr<WorkflowLoader::State> s) : s_(std::move(s)) {}

    // What the plugin host knows of each plugin from loading it (its table, its isolation) does
    // not change while the daemon runs: these answer on the loader thread.
    std::optional<std::string> unavailable(const std::string& plugin) const override {
        return s_->plugins.unavailable(plugin);
    }
    std::vector<std::string> shellParams(const std::string& plugin) const override {
        return s_->plugins.shellParams(plugin);
    }
    std::optional<std::string> runAsUnsupported(const std::string& plugin) const override {
        return s_->plugins.runAsUnsupported(plugin);
    }
    std::optional<std::string> limitsUnsupported(const std::string& plugin) const override {
        return s_->plugins.limitsUnsupported(plugin);
    }

    std::optional<Problem> validate(const std::string& plugin, const std::string& params_json) const override {
        struct Call {
            bool done = false;
            std::optional<Problem> result;
        };
        auto call = std::make_shared<Call>();
        asio::post(s_->io, [call, s = s_, plugin, params_json] {
            {
                std::lock_guard lock(s->mu);
                if (s->stopping) return;
            }
            auto result = s->plugins.validate(plugin, params_json);
            std::lock_guard lock(s->mu);
            call->result = std::move(result);
            call->done = true;
            s->cv.notify_all();
        });
        std::unique_lock lock(s_->mu);
        s_->cv.wait(lock, [&] { return call->done || s_->stopping; });
        if (!call->done) return Problem{"", "taskhubd is shutting down"}; // the job's result is dropped
        return std::move(call->result);
    }

    // All calls of a file in one hand-over: the loop runs them in slices of at most about 2 ms
    // (posting the rest behind whatever else is waiting), so a 100,000-task file neither stalls
    // the loop nor pays a thread switch per task.
    std::vector<std::optional<Problem>> validateAll(const std::vector<ValidateCall>& calls) const override {
        struct Batch {
            // Copies: after stop() the loader thread may return (and free the workflow being
            // read) while a slice still runs on the loop.
            std::vector<std::pair<std::string, std::string>> calls;
            std::vector<std::optional<Problem>> answers;
            size_t next = 0;
            bool done = false;
        };
        auto batch = std::make_shared<Batch>();
        batch->calls.reserve(calls.size());
        for (const auto& c : calls) batch->calls.emplace_back(*c.plugin, *c.params_json);
        batch->answers.resize(calls.size());
        auto slice = std::make_shared<std::function<void()>>();
        *slice = [batch, s = s_, weak = std::weak_ptr<std::function<void()>>(slice)] {
            {
                std::lock_guard lock(s->mu);
                if (s->stopping) return;
            }
            const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(2);
            while (batch->next < batch->calls.size()) {
                const auto& c = batch->calls[batch->next];
                batch->answers[batch->next] = s->plugins.validate(c.first, c.second);
                ++batch->next;
                if (std::chrono::steady_clock::now() >= until) break;
            }
            if (batch->next < batch->calls.size()) {
                if (auto again = weak.lock()) asio::post(s->io, [again] { (*again)(); });
                return;
            }
            std::lock_guard lock(s->mu);
            batch->done = true;
            s->cv.notify_all();
        };
        asio::post(s_->io, [slice] { (*slice)(); });
        std::unique_lock lock(s_->mu);
        s_->cv.wait(lock, [&] { return batch->done || s_->stopping; });
        if (!batch->done) {
            // The job's result is dropped; every call answers so that the loader returns at once.
            return std::vector<std::optional<Problem>>(calls.size(), Problem{"", "taskhubd is shutting down"});
        }
        return std::move(batch->answers);
    }

private:
    std::shared_ptr<WorkflowLoader::State> s_;
};

} // namespace

WorkflowLoader::WorkflowLoader(asio::io_context& io, const config::PluginCatalog& plugins)
    : state_(std::make_shared<State>(io, plugins)) {
    state_->thread = std::thread([s = state_] {
        const LoopCatalog catalog(s);
        for (;;) {
            Work work;
            {
                std::unique_lock lock(s->mu);
                s->cv.wait(lock, [&s] { return s->stopping || !s->jobs.empty(); });
                if (s->stopping) return;
                work = std::move(s->jobs.front());
                s->jobs.pop_front();
            }
            auto then = work(catalog);
            std::lock_guard lock(s->mu);
            // Posted under the lock: stop() cannot pass between the check and the post, and a
            // result posted before stop() checks the flag again on the loop. The job goes along,
            // even when stopping, so that what it holds (a control client's reply, and with it the
            // client's session) is released on the loop's thread, never on this one.
            asio::post(s->io, [s, then = std::move(then), work = std::move(work)] {
                {
                    std::lock_guard l(s->mu);
                    if (s->stopping) return;
                }
                then();
            });
            if (s->stopping) return;
        }
    });
}

WorkflowLoader::~WorkflowLoader() {
    stop();
    if (state_->thread.joinable()) state_->thread.join();
}

void WorkflowLoader::add(Work work) {
    std::lock_guard lock(state_->mu);
    if (state_->stopping) return;
    state_->jobs.push_back(std::move(work));
    state_->cv.notify_all();
}

void WorkflowLoader::stop() {
    {
        std::lock_guard lock(state_->mu);
        state_->stopping = true;
        state_->jobs.clear();
        state_->cv.notify_all();
    }
}

} // namespace taskhub::app

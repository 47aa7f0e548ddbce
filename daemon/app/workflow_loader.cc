#include "app/workflow_loader.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <condition_variable>
#include <deque>
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

    std::optional<std::string> unavailable(const std::string& plugin) const override {
        return s_->plugins.unavailable(plugin);
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
            if (s->stopping) return;
            // Posted under the lock: stop() cannot pass between the check and the post, and a
            // result posted before stop() checks the flag again on the loop.
            asio::post(s->io, [s, then = std::move(then)] {
                {
                    std::lock_guard l(s->mu);
                    if (s->stopping) return;
                }
                then();
            });
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

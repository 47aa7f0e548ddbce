#include "triggers/scheduler.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/system_timer.hpp>
#include <spdlog/spdlog.h>

#include <queue>

#include "common/time_util.h"

namespace taskhub::triggers {

namespace asio = boost::asio;
using std::chrono::sys_seconds;

// A firing handled later than this after its instant counts as missed.
constexpr std::chrono::seconds kLateLimit{60};

struct Scheduler::Impl {
    struct Entry {
        sys_seconds when;
        uint64_t generation;
        std::shared_ptr<const config::Workflow> wf;
        size_t trigger;
        bool operator>(const Entry& o) const { return when > o.when; }
    };

    asio::io_context& io;
    FireFn fire;
    asio::system_timer timer;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
    uint64_t generation = 0; // entries of older setWorkflows() calls are dropped
    std::map<std::string, std::vector<sys_seconds>> next_by_workflow;
    bool stopped = false;

    Impl(asio::io_context& i, FireFn f) : io(i), fire(std::move(f)), timer(i) {}

    void plan(std::shared_ptr<const config::Workflow> wf, size_t t, sys_seconds after) {
        const auto& trig = wf->triggers[t];
        auto next = trig.cron.next(after, wf->zone, wf->dst);
        auto& slots = next_by_workflow[wf->name];
        slots.resize(wf->triggers.size());
        if (!next) {
            spdlog::warn("SCHED_NEVER_FIRES workflow {} trigger \"{}\" has no future firing", wf->name,
                         trig.cron_text);
            slots[t] = sys_seconds{};
            return;
        }
        slots[t] = *next;
        queue.push({*next, generation, std::move(wf), t});
    }

    void arm() {
        if (stopped) return;
        while (!queue.empty() && queue.top().generation != generation) queue.pop();
        if (queue.empty()) {
            timer.cancel();
            return;
        }
        timer.expires_at(std::chrono::system_clock::time_point(queue.top().when));
        timer.async_wait([this](const boost::system::error_code& ec) {
            if (ec) return;
            onTimer();
        });
    }

    void onTimer() {
        const auto now = std::chrono::system_clock::now();
        while (!queue.empty()) {
            const Entry& top = queue.top();
            if (top.generation != generation) {
                queue.pop();
                continue;
            }
            if (top.when > now) break;
            Entry e = top;
            queue.pop();
            if (now - e.when > kLateLimit) {
                // The loop did not run for a while (suspend, clock jump, overload). This version
                // has no catch-up, so missed firings are dropped, not run in a burst.
                const auto now_s = std::chrono::floor<std::chrono::seconds>(now);
                spdlog::warn("SCHED_FIRING_MISSED {} {}: woke {}s late; firings missed until now are "
                             "skipped (catch-up is not supported by this version)",
                             e.wf->name, formatIsoSeconds(e.when), (now_s - e.when).count());
                plan(e.wf, e.trigger, now_s);
                continue;
            }
            fire(Firing{e.wf, e.trigger, e.when});
            plan(e.wf, e.trigger, e.when);
        }
        arm();
    }
};

Scheduler::Scheduler(asio::io_context& io, FireFn fire) : impl_(std::make_unique<Impl>(io, std::move(fire))) {}

Scheduler::~Scheduler() = default;

void Scheduler::setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
    auto& im = *impl_;
    ++im.generation;
    im.next_by_workflow.clear();
    const auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    for (const auto& [name, wf] : wfs) {
        for (size_t t = 0; t < wf->triggers.size(); ++t) im.plan(wf, t, now);
    }
    im.arm();
}

void Scheduler::stop() {
    impl_->stopped = true;
    impl_->timer.cancel();
}

std::vector<sys_seconds> Scheduler::nextFirings(const std::string& workflow) const {
    auto it = impl_->next_by_workflow.find(workflow);
    if (it == impl_->next_by_workflow.end()) return {};
    return it->second;
}


} // namespace taskhub::triggers

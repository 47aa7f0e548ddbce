#include "triggers/deadline.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/system_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log.h"
#include "common/time_util.h"
#include "model/names.h"
#include "triggers/plan.h"

namespace taskhub::triggers {

namespace asio = boost::asio;
using std::chrono::sys_seconds;
using Kind = config::TriggerDef::Kind;

namespace {

bool countsForDeadline(model::TriggerSource t) {
    return t == model::TriggerSource::Cron || t == model::TriggerSource::Every || t == model::TriggerSource::At;
}

} // namespace

struct DeadlineWatch::Impl {
    struct Watched {
        std::shared_ptr<const config::Workflow> wf;
        sys_seconds mark{};             // firings scheduled at or before it are decided
        std::vector<sys_seconds> walked; // per trigger: firings up to here are in `firings` or decided
        // Firings after the mark not decided yet, with what is known of their run (if any).
        std::map<sys_seconds, std::optional<FiringRun>> firings;
        std::set<sys_seconds> recorded; // misses the book holds after the mark (a crash before the mark moved)
    };

    asio::io_context& io;
    Options opts;
    DeadlineBook& book;
    MissFn on_miss;
    asio::system_timer timer;
    std::map<std::string, Watched> watched;
    bool stopped = false;
    bool waiting = false;  // a wait for armed_at is pending
    sys_seconds armed_at{};
    uint64_t generation = 0;

    Impl(asio::io_context& i, Options o, DeadlineBook& b, MissFn m)
        : io(i), opts(std::move(o)), book(b), on_miss(std::move(m)), timer(i) {}

    std::chrono::system_clock::time_point clock() const {
        return opts.clock ? opts.clock() : std::chrono::system_clock::now();
    }
    PlanContext context() const { return PlanContext{opts.daemon_start}; }

    // The first firing after w.walked (over the triggers a deadline applies to), if any.
    std::optional<PlannedFiring> nextWalked(const Watched& w) const {
        std::optional<PlannedFiring> best;
        for (size_t t = 0; t < w.wf->triggers.size(); ++t) {
            if (!config::hasDeadline(w.wf->triggers[t].kind)) continue;
            auto f = nextFiring(*w.wf, t, w.walked[t], context());
            if (f && (!best || f->scheduled < best->scheduled)) best = f;
        }
        return best;
    }

    std::optional<sys_seconds> nextCheckOf(const Watched& w) const {
        std::optional<sys_seconds> at;
        if (!w.firings.empty()) at = w.firings.begin()->first + w.wf->deadline;
        if (auto f = nextWalked(w)) {
            const sys_seconds due = f->scheduled + w.wf->deadline;
            if (!at || due < *at) at = due;
        }
        return at;
    }

    // Why a firing whose due instant has passed missed it, or nullopt when it was met.
    std::optional<std::string> verdict(const std::optional<FiringRun>& run, sys_seconds scheduled,
                                       sys_seconds due) const {
        using model::RunState;
        if (!run) {
            return scheduled <= opts.daemon_start ? std::string("no run: taskhubd was not running at its scheduled instant")
                                                  : std::string("no run: the firing was not run (catch-up)");
        }
        switch (run->state) {
        case RunState::Succeeded:
            if (run->ended && *run->ended <= std::chrono::system_clock::time_point(due)) return std::nullopt;
            return std::string("succeeded only after its deadline");
        case RunState::Queued: return std::string("still queued");
        case RunState::Running: return std::string("still running");
        case RunState::Paused: return std::string("still paused (taskhubctl pause RUN)");
        case RunState::Failed: return "failed" + (run->message.empty() ? std::string() : ": " + run->message);
        case RunState::Cancelled: return "cancelled" + (run->message.empty() ? std::string() : ": " + run->message);
        case RunState::Skipped: return run->message.empty() ? std::string("skipped") : run->message;
        }
        return std::string("unknown");
    }

    // Firings scheduled at or before `upto` are passed over unchecked (after a long outage, a
    // suspend or a clock jump: see kMaxChecked).
    void passOver(const std::string& name, Watched& w, sys_seconds upto) {
        if (upto <= w.mark) return;
        w.mark = upto;
        w.firings.erase(w.firings.begin(), w.firings.upper_bound(w.mark));
        book.setMark(name, w.mark);
    }

    // The oldest scheduled instant still checked at `now`: the due instant within catchup_window.
    static sys_seconds oldestChecked(const config::Workflow& wf, sys_seconds now) {
        return now - wf.catchup_window - wf.deadline;
    }

    // Keeps the newest kMaxChecked of `found` (sorted, unique), passing over the rest.
    void bound(const std::string& name, Watched& w, std::vector<sys_seconds>& found) {
        if (found.size() <= kMaxChecked) return;
        const size_t dropped = found.size() - kMaxChecked;
        const sys_seconds upto = found[dropped - 1];
        spdlog::warn("DEADLINE_UNCHECKED {}: {} firing(s) scheduled from {} to {} are not checked against the "
                     "deadline (at most {} are checked at once)",
                     name, dropped, formatIsoSeconds(found.front()), formatIsoSeconds(upto), kMaxChecked);
        passOver(name, w, upto);
        found.erase(found.begin(), found.begin() + static_cast<std::ptrdiff_t>(dropped));
    }

    // Decides every firing of w due by now, oldest first, and moves the mark past them.
    void decide(const std::string& name, Watched& w, sys_seconds now) {
        logging::Context log_ctx({.workflow = name});
        const auto deadline = w.wf->deadline;
        const sys_seconds oldest = oldestChecked(*w.wf, now);
        // The walk: firings whose due instants passed join those known from runs. A gap longer
        // than catchup_window (the machine slept, the clock jumped) is passed over.
        bool gap = false;
        for (size_t t = 0; t < w.wf->triggers.size(); ++t) {
            if (!config::hasDeadline(w.wf->triggers[t].kind) || w.walked[t] >= oldest) continue;
            auto f = nextFiring(*w.wf, t, std::max(w.walked[t], w.mark), context());
            gap |= f && f->scheduled <= oldest;
            w.walked[t] = oldest;
        }
        if (gap && w.mark < oldest) {
            spdlog::warn("DEADLINE_UNCHECKED {}: firings scheduled from {} to {} are not checked against the deadline "
                         "(checked back at most catchup_window = {})",
                         name, formatIsoSeconds(w.mark), formatIsoSeconds(oldest), formatDuration(w.wf->catchup_window));
            passOver(name, w, oldest);
        }
        std::vector<sys_seconds> found;
        for (size_t t = 0; t < w.wf->triggers.size(); ++t) {
            if (!config::hasDeadline(w.wf->triggers[t].kind)) continue;
            for (size_t n = 0; n < 100 * kMaxChecked; ++n) {
                auto f = nextFiring(*w.wf, t, w.walked[t], context());
                if (!f || f->scheduled + deadline > now) break;
                w.walked[t] = f->scheduled;
                if (f->scheduled > w.mark) found.push_back(f->scheduled);
            }
        }
        std::sort(found.begin(), found.end());
        found.erase(std::unique(found.begin(), found.end()), found.end());
        bound(name, w, found);
        for (auto s : found) w.firings.try_emplace(s);
        const sys_seconds before = w.mark;
        while (!w.firings.empty() && w.firings.begin()->first + deadline <= now) {
            auto node = w.firings.extract(w.firings.begin());
            const sys_seconds scheduled = node.key();
            const sys_seconds due = scheduled + deadline;
            w.mark = std::max(w.mark, scheduled);
            auto why = verdict(node.mapped(), scheduled, due);
            if (!why) continue;
            if (w.recorded.erase(scheduled)) continue; // found before a crash; its mark was not written
            DeadlineMiss miss;
            miss.workflow = name;
            miss.run_id = name + "@" + formatCompactUtc(scheduled);
            miss.scheduled = scheduled;
            miss.due = due;
            miss.deadline = deadline;
            miss.detected = now;
            if (node.mapped()) miss.run_state = node.mapped()->state;
            miss.reason = std::move(*why);
            logging::Context miss_ctx({.workflow = name, .run_id = miss.run_id});
            spdlog::warn("DEADLINE_MISSED {}: firing {} (scheduled {}) has not succeeded within its deadline of {} "
                         "(due {}): {}",
                         name, miss.run_id, formatIsoSeconds(scheduled), formatDuration(deadline),
                         formatIsoSeconds(due), miss.reason);
            book.recordMiss(miss);
            if (on_miss) on_miss(miss);
        }
        while (!w.recorded.empty() && *w.recorded.begin() <= w.mark) w.recorded.erase(w.recorded.begin());
        if (w.mark != before) book.setMark(name, w.mark);
    }

    // A workflow seen with a deadline for the first time in this process: its firings since its
    // mark (the daemon was not running, or the deadline is new).
    void checkBack(const std::string& name, Watched& w, sys_seconds now) {
        logging::Context log_ctx({.workflow = name});
        const auto& wf = *w.wf;
        auto mark = book.mark(name);
        if (!mark) {
            w.mark = now;
            book.setMark(name, now);
            spdlog::info("DEADLINE_WATCHED {}: deadline {} from {} on (earlier firings do not count)", name,
                         formatDuration(wf.deadline), formatIsoSeconds(now));
        } else {
            w.mark = *mark;
        }
        // The firings since the mark as catch-up lists them after a restart (an `every` trigger
        // without start_at continues the grid of the last recorded firing, else of the mark).
        const auto recorded_last = book.lastFiring(name);
        const MissedContext restart{true, recorded_last ? recorded_last : w.mark};
        const sys_seconds oldest = oldestChecked(wf, now);
        if (w.mark < oldest && !missedFirings(wf, w.mark, oldest, {}, restart, context(), 1).empty()) {
            spdlog::warn("DEADLINE_UNCHECKED {}: firings scheduled from {} to {} are not checked against the "
                         "deadline (checked back at most catchup_window = {})",
                         name, formatIsoSeconds(w.mark), formatIsoSeconds(oldest), formatDuration(wf.catchup_window));
            passOver(name, w, oldest);
        }
        auto listed = missedFirings(wf, w.mark, now, {}, restart, context(), 100 * kMaxChecked);
        std::vector<sys_seconds> found;
        for (const auto& f : listed) {
            if (config::hasDeadline(wf.triggers[f.trigger].kind)) found.push_back(f.scheduled);
        }
        bound(name, w, found); // missedFirings lists them sorted, one per instant
        for (auto s : found) w.firings.try_emplace(s);
        for (auto& r : book.runsAfter(name, w.mark, 10 * kMaxChecked)) {
            if (r.top_level && countsForDeadline(r.trigger) && r.scheduled) w.firings[*r.scheduled] = std::move(r);
        }
        w.recorded = book.missesAfter(name, w.mark);
        // The live walk starts at now: later firings are found as their due instants pass.
        w.walked.assign(wf.triggers.size(), std::max(now, w.mark));
        for (size_t t = 0; t < wf.triggers.size(); ++t) w.walked[t] -= wf.triggers[t].jitter_offset;
    }

    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
        const auto now = std::chrono::floor<std::chrono::seconds>(clock());
        std::map<std::string, Watched> next;
        for (const auto& [name, wf] : wfs) {
            auto old = watched.find(name);
            if (wf->deadline.count() == 0 || !config::hasDeadlineTrigger(*wf)) {
                if (old != watched.end() || book.mark(name)) book.setMark(name, std::nullopt);
                continue;
            }
            if (old == watched.end()) {
                Watched w;
                w.wf = wf;
                checkBack(name, w, now);
                next.emplace(name, std::move(w));
                continue;
            }
            Watched w = std::move(old->second);
            if (w.wf != wf) {
                // A reload: triggers that stayed the same keep their walk; new or changed ones
                // start now (their earlier firings were another schedule's).
                const auto& was = *w.wf;
                std::vector<sys_seconds> walked(wf->triggers.size(), now);
                for (size_t t = 0; t < wf->triggers.size(); ++t) {
                    walked[t] = t < was.triggers.size() && was.triggers[t].describe() == wf->triggers[t].describe()
                                    ? w.walked[t]
                                    : now - wf->triggers[t].jitter_offset;
                }
                w.walked = std::move(walked);
                w.wf = wf;
            }
            next.emplace(name, std::move(w));
        }
        // A workflow whose file is gone forgets its mark: firings while it did not exist never
        // count, so one that comes back starts afresh.
        for (const auto& [name, w] : watched) {
            if (!wfs.count(name)) book.setMark(name, std::nullopt);
        }
        watched = std::move(next);
        onTimer();
    }

    void runChanged(const FiringRun& run) {
        if (!run.top_level || !countsForDeadline(run.trigger) || !run.scheduled) return;
        auto it = watched.find(run.workflow);
        if (it == watched.end() || *run.scheduled <= it->second.mark) return;
        it->second.firings[*run.scheduled] = run;
        arm();
    }

    void onTimer() {
        if (stopped) return;
        const auto now = std::chrono::floor<std::chrono::seconds>(clock());
        for (auto& [name, w] : watched) {
            auto at = nextCheckOf(w);
            if (at && *at <= now) decide(name, w, now);
        }
        arm();
    }

    std::optional<sys_seconds> earliest() const {
        std::optional<sys_seconds> best;
        for (const auto& [name, w] : watched) {
            auto at = nextCheckOf(w);
            if (at && (!best || *at < *best)) best = at;
        }
        return best;
    }

    void arm() {
        if (stopped) return;
        auto at = earliest();
        if (at && waiting && armed_at == *at) return;
        ++generation; // the wait armed before, if any, is cancelled and ignored
        waiting = false;
        if (!at) {
            timer.cancel();
            return;
        }
        armed_at = *at;
        waiting = true;
        timer.expires_at(std::chrono::system_clock::time_point(*at));
        timer.async_wait([this, g = generation](const boost::system::error_code& ec) {
            if (g != generation) return;
            waiting = false;
            if (!ec) onTimer();
        });
    }
};

DeadlineWatch::DeadlineWatch(asio::io_context& io, Options options, DeadlineBook& book, MissFn on_miss)
    : impl_(std::make_unique<Impl>(io, std::move(options), book, std::move(on_miss))) {}

DeadlineWatch::~DeadlineWatch() = default;

void DeadlineWatch::setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
    impl_->setWorkflows(wfs);
}

void DeadlineWatch::runChanged(const FiringRun& run) { impl_->runChanged(run); }

void DeadlineWatch::poll() { impl_->onTimer(); }

void DeadlineWatch::stop() {
    impl_->stopped = true;
    ++impl_->generation;
    impl_->timer.cancel();
}

std::optional<sys_seconds> DeadlineWatch::nextCheck() const { return impl_->earliest(); }

} // namespace taskhub::triggers

#include "triggers/scheduler.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <spdlog/spdlog.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <queue>
#include <set>
#include <system_error>

#include "common/log.h"
#include "common/time_util.h"
#include "model/states.h"
#include "triggers/plan.h"

namespace taskhub::triggers {

namespace asio = boost::asio;
using std::chrono::sys_seconds;
using Kind = config::TriggerDef::Kind;

struct Scheduler::Impl {
    struct Entry {
        sys_seconds due;
        sys_seconds scheduled;
        uint64_t generation; // of the workflow's plan (see plan_generation)
        std::shared_ptr<const config::Workflow> wf;
        size_t trigger;
        bool operator>(const Entry& o) const { return due != o.due ? due > o.due : trigger > o.trigger; }
    };
    // What the scheduler knows of a workflow across reloads.
    struct State {
        std::shared_ptr<const config::Workflow> wf;
        std::vector<sys_seconds> last;      // per trigger: the last scheduled instant handled
        std::vector<sys_seconds> next_due;  // per trigger: planned, for nextFirings()
        uint64_t plan_generation = 0;       // entries of older plans are dropped
    };

    asio::io_context& io;
    Options opts;
    FireFn fire;
    LastFiringFn last_firing;
    int tfd = -1;
    asio::posix::stream_descriptor timer;
    bool waiting = false;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<>> queue;
    std::map<std::string, State> states;
    std::map<std::string, Pause> pauses;
    bool stopped = false;

    Impl(asio::io_context& i, Options o, FireFn f, LastFiringFn l)
        : io(i), opts(o), fire(std::move(f)), last_firing(std::move(l)),
          timer(i) {}

    bool start(std::string* err) {
        const int fd = ::timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
        if (fd < 0) {
            *err = std::string("timerfd_create(CLOCK_REALTIME): ") + std::strerror(errno);
            return false;
        }
        tfd = fd;
        timer.assign(tfd);
        return true;
    }

    PlanContext context() const { return PlanContext{opts.daemon_start}; }
    std::chrono::system_clock::time_point clock() const {
        return opts.clock ? opts.clock() : std::chrono::system_clock::now();
    }

    void push(State& st, size_t t, const std::optional<PlannedFiring>& f) {
        st.next_due[t] = f ? f->due : sys_seconds{};
        if (f) queue.push({f->due, f->scheduled, st.plan_generation, st.wf, t});
    }

    // Plans every trigger of st's workflow afresh at `now`: its first firing due after now and
    // scheduled after what the trigger already handled, so a firing held back by jitter
    // (scheduled <= now < due) stays planned. lookback[t] (a reload: the trigger's jitter before
    // the edit) also keeps a firing that was pending under the old definition.
    void planAll(State& st, sys_seconds now, const std::vector<std::chrono::seconds>& lookback = {}) {
        ++st.plan_generation;
        st.next_due.assign(st.wf->triggers.size(), sys_seconds{});
        for (size_t t = 0; t < st.wf->triggers.size(); ++t) {
            if (st.wf->triggers[t].kind == Kind::Reboot) continue;
            push(st, t,
                 nextToCome(*st.wf, t, now, st.last[t], context(),
                            t < lookback.size() ? lookback[t] : std::chrono::seconds(0)));
        }
    }

    // Marks as handled every firing of st's triggers that was due by now; the ones pending
    // (scheduled <= now < due) are not, and planAll() plans them.
    void handledUntil(State& st, sys_seconds now) {
        for (size_t t = 0; t < st.last.size(); ++t) {
            st.last[t] = std::max(st.last[t], now - st.wf->triggers[t].jitter_offset);
        }
    }

    void fireOne(const State& st, const PlannedFiring& f, std::string note) {
        fire(Firing{st.wf, f.trigger, f.scheduled, config::toString(st.wf->triggers[f.trigger].kind), std::move(note), {}});
    }

    // Applies the workflow's catch-up policy to firings missed in (from, now].
    void catchUp(State& st, sys_seconds from, sys_seconds now, const MissedContext& m, const std::string& why,
                 bool include_handled = false) {
        const auto& wf = *st.wf;
        // Enough to count what catch-up "all" drops, bounded for a per-second trigger missed for
        // years. include_handled: also the firings handled (recorded as skipped) while paused.
        auto missed = missedFirings(wf, from, now, include_handled ? std::vector<sys_seconds>{} : st.last, m,
                                    context(), 100 * kMaxCatchup);
        handledUntil(st, now);
        if (missed.empty()) return;
        const size_t n = missed.size();
        const std::string span = formatIsoSeconds(missed.front().scheduled) +
                                 (n > 1 ? " to " + formatIsoSeconds(missed.back().scheduled) : "");
        const auto choice = chooseCatchup(wf.catchup, missed, kMaxCatchup);
        logging::Context log_ctx({.workflow = wf.name});
        if (choice.run.empty()) {
            spdlog::warn("SCHED_MISSED {}: {} firing(s) missed ({}; {}), not run (catchup = none)", wf.name, n, span,
                         why);
            return;
        }
        if (choice.dropped) {
            spdlog::warn("SCHED_CATCHUP_DROPPED {}: {} missed firing(s); the {} oldest are not run (catch-up runs at "
                         "most {})",
                         wf.name, n, choice.dropped, kMaxCatchup);
        }
        spdlog::warn("SCHED_CATCHUP {}: {} firing(s) missed ({}; {}); running {} (catchup = {})", wf.name, n, span,
                     why, choice.run.size(), config::toString(wf.catchup));
        for (size_t i = 0; i < choice.run.size(); ++i) {
            fireOne(st, choice.run[i],
                    wf.catchup == config::Catchup::Latest
                        ? "catch-up of the latest of " + std::to_string(n) + " missed firing(s) (" + why + ")"
                        : "catch-up " + std::to_string(i + 1) + " of " + std::to_string(choice.run.size()) +
                              " missed firing(s) (" + why + ")");
        }
    }

    void setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
        const auto now = std::chrono::floor<std::chrono::seconds>(clock());
        std::map<std::string, State> next;
        for (const auto& [name, wf] : wfs) {
            auto old = states.find(name);
            if (old != states.end() && old->second.wf == wf) {
                // The same definition (other files changed): its plan stands as it is.
                next.emplace_hint(next.end(), name, std::move(old->second));
                continue;
            }
            State st;
            st.wf = wf;
            st.last.assign(wf->triggers.size(), sys_seconds{});
            std::vector<std::chrono::seconds> lookback(wf->triggers.size(), std::chrono::seconds(0));
            const bool first_seen = old == states.end();
            if (!first_seen) {
                // A reload: what was handled stays handled (by the triggers that are the same,
                // in order). New or changed ones start after the latest instant the workflow
                // handled and after now, except for a firing held back by jitter: one pending
                // under the trigger's old definition or under its new one stays planned.
                const State& was = old->second;
                st.plan_generation = was.plan_generation;
                const sys_seconds latest = was.last.empty() ? now : *std::max_element(was.last.begin(), was.last.end());
                for (size_t t = 0; t < st.last.size(); ++t) {
                    const bool existed = t < was.last.size();
                    if (existed) lookback[t] = was.wf->triggers[t].jitter_offset;
                    st.last[t] = existed && wf->triggers[t].describe() == was.wf->triggers[t].describe()
                                     ? was.last[t]
                                     : std::max(latest, now - std::max(lookback[t], wf->triggers[t].jitter_offset));
                }
            }
            auto& placed = next[name] = std::move(st);
            if (first_seen) {
                std::optional<sys_seconds> recorded = last_firing ? last_firing(name) : std::nullopt;
                if (recorded) {
                    for (auto& l : placed.last) l = *recorded;
                }
                const sys_seconds window_start = now - wf->catchup_window;
                const sys_seconds from = recorded ? std::max(*recorded, window_start) : window_start;
                if (pauses.count(name)) {
                    // What was missed is decided at resume (from the start of the pause).
                    spdlog::info("SCHED_PAUSED {}: paused since {} by {}; catch-up waits for resume", name,
                                 formatIsoSeconds(pauses[name].since), pauses[name].by);
                    handledUntil(placed, now);
                } else {
                    catchUp(placed, from, now, MissedContext{true, recorded}, "taskhubd was not running");
                }
                for (size_t t = 0; t < wf->triggers.size(); ++t) {
                    if (wf->triggers[t].kind != Kind::Reboot) continue;
                    // Once per boot: the run id says so.
                    fire(Firing{wf, t, opts.boot, "reboot", {}, pausedReason(name)});
                }
            }
            planAll(placed, now, lookback);
            for (size_t t = 0; t < wf->triggers.size(); ++t) {
                // cron::CronExpr::next() looks 8 years ahead.
                if (wf->triggers[t].kind == Kind::Cron && placed.next_due[t] == sys_seconds{}) {
                    spdlog::warn("SCHED_NEVER_FIRES {}: trigger #{} {} has no firing in the next 8 years", name, t,
                                 wf->triggers[t].describe());
                }
            }
        }
        states = std::move(next); // entries of workflows no longer loaded are dropped when popped
        arm();
    }

    void arm() {
        if (stopped) return;
        while (!queue.empty() && !current(queue.top())) queue.pop();
        if (tfd < 0) return; // no timer (start() failed or was not called): poll() fires what is due
        itimerspec spec{};
        if (!queue.empty()) {
            spec.it_value.tv_sec = queue.top().due.time_since_epoch().count();
            if (spec.it_value.tv_sec <= 0) spec.it_value.tv_nsec = 1; // 0 would disarm it
        }
        if (::timerfd_settime(tfd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &spec, nullptr) != 0) {
            spdlog::error("SCHED_TIMER_FAILED timerfd_settime: {}", std::strerror(errno));
        }
        if (queue.empty() || waiting) return;
        waiting = true;
        timer.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            waiting = false;
            if (ec || stopped) return;
            uint64_t expirations = 0;
            if (::read(tfd, &expirations, sizeof expirations) < 0 && errno == ECANCELED) {
                spdlog::info("SCHED_CLOCK_SET the system clock was set; re-planning");
            }
            onTimer();
        });
    }

    // The skip reason of a firing of a paused workflow; empty when it is not paused.
    std::string pausedReason(const std::string& workflow) const {
        auto p = pauses.find(workflow);
        if (p == pauses.end()) return {};
        return pausedFiringReason(p->second);
    }

    // True when the entry belongs to the workflow's current plan.
    bool current(const Entry& e) const {
        auto it = states.find(e.wf->name);
        return it != states.end() && it->second.wf == e.wf && it->second.plan_generation == e.generation;
    }

    void onTimer() {
        const auto now_tp = clock();
        const auto now = std::chrono::floor<std::chrono::seconds>(now_tp);
        std::set<std::string> caught_up; // workflows re-planned by a catch-up in this wake-up
        while (!queue.empty()) {
            Entry e = queue.top();
            if (!current(e)) {
                queue.pop();
                continue;
            }
            if (std::chrono::system_clock::time_point(e.due) > now_tp) break;
            queue.pop();
            State& st = states.at(e.wf->name);
            if (e.scheduled <= st.last[e.trigger]) continue; // handled already (the clock went back)
            if (now - e.due >= kLateLimit && !pauses.count(e.wf->name)) {
                // Nothing could fire it on time: the machine slept, the clock jumped forward, or
                // the loop was stalled. Missed firings follow the catch-up rules.
                if (caught_up.insert(e.wf->name).second) {
                    // From the window's start: what each trigger handled bounds the rest (another
                    // trigger's firing scheduled before this one may be due after it: jitter).
                    catchUp(st, now - st.wf->catchup_window, now, MissedContext{},
                            "woke " + std::to_string((now - e.due).count()) + "s late");
                    planAll(st, now);
                }
                continue;
            }
            st.last[e.trigger] = e.scheduled;
            fire(Firing{st.wf, e.trigger, e.scheduled, config::toString(st.wf->triggers[e.trigger].kind), {},
                        pausedReason(e.wf->name)});
            push(st, e.trigger, nextFiring(*st.wf, e.trigger, e.scheduled, context()));
        }
        arm();
    }
};

Scheduler::Scheduler(asio::io_context& io, Options options, FireFn fire, LastFiringFn last_firing)
    : impl_(std::make_unique<Impl>(io, options, std::move(fire), std::move(last_firing))) {}

Scheduler::~Scheduler() = default;

bool Scheduler::start(std::string* err) { return impl_->start(err); }

void Scheduler::setWorkflows(const std::map<std::string, std::shared_ptr<const config::Workflow>>& wfs) {
    impl_->setWorkflows(wfs);
}

void Scheduler::stop() {
    impl_->stopped = true;
    boost::system::error_code ec;
    impl_->timer.cancel(ec);
}

void Scheduler::poll() { impl_->onTimer(); }

void Scheduler::restorePauses(std::map<std::string, Pause> pauses) { impl_->pauses = std::move(pauses); }

void Scheduler::pause(const std::string& workflow, Pause p) {
    spdlog::info("SCHED_PAUSED {}: paused by {}", workflow, p.by);
    impl_->pauses[workflow] = std::move(p);
}

bool Scheduler::resume(const std::string& workflow) {
    auto& im = *impl_;
    auto p = im.pauses.find(workflow);
    if (p == im.pauses.end()) return false;
    const Pause pause = p->second;
    im.pauses.erase(p);
    auto st = im.states.find(workflow);
    if (st == im.states.end()) return true;
    const auto now = std::chrono::floor<std::chrono::seconds>(im.clock());
    const sys_seconds from = std::max(pause.since - std::chrono::seconds(1), now - st->second.wf->catchup_window);
    spdlog::info("SCHED_RESUMED {}: paused since {} by {}", workflow, formatIsoSeconds(pause.since), pause.by);
    im.catchUp(st->second, from, now, MissedContext{}, "the workflow was paused", true);
    im.planAll(st->second, now);
    im.arm();
    return true;
}

std::optional<Scheduler::Pause> Scheduler::paused(const std::string& workflow) const {
    auto p = impl_->pauses.find(workflow);
    if (p == impl_->pauses.end()) return std::nullopt;
    return p->second;
}

std::vector<sys_seconds> Scheduler::nextFirings(const std::string& workflow) const {
    auto it = impl_->states.find(workflow);
    if (it == impl_->states.end()) return {};
    return it->second.next_due;
}

std::optional<Scheduler::Next> Scheduler::earliestFiring() const {
    std::optional<Next> best;
    for (const auto& [name, st] : impl_->states) {
        if (impl_->pauses.count(name)) continue;
        for (const auto& due : st.next_due) {
            if (due == sys_seconds{}) continue;
            if (!best || due < best->due) best = Next{name, due};
        }
    }
    return best;
}

const Scheduler::Options& Scheduler::options() const { return impl_->opts; }

std::string pausedFiringReason(const Scheduler::Pause& p) {
    return std::string(model::kPausedFiringMessage) + " (paused by " + p.by + " at " + formatIsoSeconds(p.since) +
           ")";
}

sys_seconds bootInstant(const std::string& state_dir) {
    std::string boot_id;
    {
        std::ifstream in("/proc/sys/kernel/random/boot_id");
        std::getline(in, boot_id);
    }
    long long btime = -1;
    {
        std::ifstream in("/proc/stat");
        std::string key;
        while (in >> key) {
            if (key == "btime") {
                in >> btime;
                break;
            }
            in.ignore(1 << 20, '\n');
        }
    }
    if (boot_id.empty() || btime < 0) {
        spdlog::warn("SCHED_BOOT_UNKNOWN cannot read the boot id or boot time from /proc; @reboot triggers fire "
                     "at every start of taskhubd");
        return std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    }
    // The kernel derives btime from the current clock, so it moves when the clock is stepped:
    // the first value seen in this boot is kept.
    const std::string file = state_dir + "/boot";
    {
        std::ifstream in(file);
        std::string id;
        long long t = -1;
        if (in >> id >> t && id == boot_id && t >= 0) return sys_seconds(std::chrono::seconds(t));
    }
    std::ofstream out(file, std::ios::trunc);
    out << boot_id << ' ' << btime << '\n';
    if (!out) spdlog::warn("SCHED_BOOT_NOT_SAVED cannot write {}: {}", file, std::strerror(errno));
    return sys_seconds(std::chrono::seconds(btime));
}

} // namespace taskhub::triggers

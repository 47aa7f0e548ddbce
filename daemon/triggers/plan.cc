#include "triggers/plan.h"

#include <algorithm>

namespace taskhub::triggers {

using std::chrono::sys_seconds;

std::optional<PlannedFiring> nextFiring(const config::Workflow& wf, size_t t, sys_seconds after,
                                        const PlanContext& ctx) {
    using Kind = config::TriggerDef::Kind;
    const auto& trig = wf.triggers.at(t);
    std::optional<sys_seconds> scheduled;
    switch (trig.kind) {
    case Kind::Cron: scheduled = trig.cron->next(after, wf.zone, wf.dst); break;
    case Kind::Reboot: break; // once per boot, decided by the scheduler at start
    case Kind::File: break;   // fires on file drops (triggers/file_watch.h), not on a clock
    case Kind::At:
        if (trig.at > after) scheduled = trig.at;
        break;
    case Kind::Every: {
        // start_at itself fires; the daemon's start does not (the first firing is one interval
        // after it).
        const sys_seconds first = trig.start_at ? *trig.start_at : ctx.daemon_start + trig.every;
        if (first > after) {
            scheduled = first;
        } else {
            const auto k = (after - first) / trig.every + 1;
            scheduled = first + k * trig.every;
        }
        break;
    }
    }
    if (!scheduled) return std::nullopt;
    return PlannedFiring{t, *scheduled, *scheduled + trig.jitter_offset};
}

std::optional<PlannedFiring> nextToCome(const config::Workflow& wf, size_t t, sys_seconds now, sys_seconds handled,
                                        const PlanContext& ctx, std::chrono::seconds lookback) {
    // due = scheduled + jitter_offset, so due > now is scheduled > now - jitter_offset.
    const auto back = std::max(wf.triggers.at(t).jitter_offset, lookback);
    return nextFiring(wf, t, std::max(handled, now - back), ctx);
}

std::vector<PlannedFiring> upcoming(const config::Workflow& wf, sys_seconds now, size_t n, const PlanContext& ctx) {
    std::vector<PlannedFiring> out;
    if (n == 0) return out;
    // Each trigger's next n firings, merged: n per trigger is enough for the first n overall.
    for (size_t t = 0; t < wf.triggers.size(); ++t) {
        std::optional<PlannedFiring> f = nextToCome(wf, t, now, sys_seconds{}, ctx);
        for (size_t i = 0; f && i < n; ++i) {
            out.push_back(*f);
            f = nextFiring(wf, t, f->scheduled, ctx);
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const PlannedFiring& a, const PlannedFiring& b) {
        return a.due != b.due ? a.due < b.due : a.trigger < b.trigger;
    });
    if (out.size() > n) out.resize(n);
    return out;
}

std::vector<PlannedFiring> missedFirings(const config::Workflow& wf, sys_seconds from, sys_seconds now,
                                         const std::vector<sys_seconds>& last, const MissedContext& why,
                                         const PlanContext& ctx, size_t cap) {
    using Kind = config::TriggerDef::Kind;
    std::vector<PlannedFiring> out;
    for (size_t t = 0; t < wf.triggers.size(); ++t) {
        const auto& trig = wf.triggers[t];
        if (trig.kind == Kind::Reboot) continue;
        PlanContext c = ctx;
        if (why.restart) {
            if (!why.last_recorded && trig.kind != Kind::At) continue;
            if (trig.kind == Kind::Every && !trig.start_at) c.daemon_start = *why.last_recorded;
        }
        sys_seconds after = t < last.size() ? std::max(from, last[t]) : from;
        for (size_t n = 0; n < cap; ++n) {
            auto f = nextFiring(wf, t, after, c);
            if (!f || f->due > now) break;
            out.push_back(*f);
            after = f->scheduled;
        }
    }
    std::sort(out.begin(), out.end(), [](const PlannedFiring& a, const PlannedFiring& b) {
        return a.scheduled != b.scheduled ? a.scheduled < b.scheduled : a.trigger < b.trigger;
    });
    out.erase(std::unique(out.begin(), out.end(),
                          [](const PlannedFiring& a, const PlannedFiring& b) { return a.scheduled == b.scheduled; }),
              out.end());
    return out;
}

CatchupChoice chooseCatchup(config::Catchup policy, const std::vector<PlannedFiring>& missed, size_t max_all) {
    CatchupChoice out;
    if (missed.empty()) return out;
    switch (policy) {
    case config::Catchup::None: break;
    case config::Catchup::Latest: out.run.push_back(missed.back()); break;
    case config::Catchup::All:
        out.dropped = missed.size() > max_all ? missed.size() - max_all : 0;
        out.run.assign(missed.begin() + static_cast<std::ptrdiff_t>(out.dropped), missed.end());
        break;
    }
    return out;
}

} // namespace taskhub::triggers

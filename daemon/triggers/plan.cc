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

std::vector<PlannedFiring> upcoming(const config::Workflow& wf, sys_seconds after, size_t n,
                                    const PlanContext& ctx) {
    std::vector<PlannedFiring> out;
    if (n == 0) return out;
    // Each trigger's next n firings, merged: n per trigger is enough for the first n overall.
    for (size_t t = 0; t < wf.triggers.size(); ++t) {
        sys_seconds from = after;
        for (size_t i = 0; i < n; ++i) {
            auto f = nextFiring(wf, t, from, ctx);
            if (!f) break;
            out.push_back(*f);
            from = f->scheduled;
        }
    }
    std::stable_sort(out.begin(), out.end(), [](const PlannedFiring& a, const PlannedFiring& b) {
        return a.due != b.due ? a.due < b.due : a.trigger < b.trigger;
    });
    if (out.size() > n) out.resize(n);
    return out;
}

} // namespace taskhub::triggers

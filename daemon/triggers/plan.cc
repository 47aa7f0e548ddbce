#include "triggers/plan.h"

#include <algorithm>

namespace taskhub::triggers {

using std::chrono::sys_seconds;

std::optional<PlannedFiring> nextFiring(const config::Workflow& wf, size_t t, sys_seconds after,
                                        const PlanContext&) {
    const auto& trig = wf.triggers.at(t);
    auto next = trig.cron.next(after, wf.zone, wf.dst);
    if (!next) return std::nullopt;
    return PlannedFiring{t, *next, *next};
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

// `backfill`: the runs a workflow's time triggers would have fired in a past range, created as
// queued backfill runs (engine::Engine::trigger) with the ids the scheduler gives its firings.
#include "app/daemon_services.h"

#include <date/tz.h>
#include <spdlog/spdlog.h>

#include "common/log.h"
#include "common/time_util.h"
#include "engine/engine.h"
#include "store/store.h"
#include "triggers/backfill.h"
#include "triggers/dst_note.h"
#include "triggers/scheduler.h"

namespace taskhub::app {

using std::chrono::sys_seconds;

control::BackfillOutcome DaemonServices::backfill(const control::BackfillRequest& req,
                                                  const control::Caller& caller) {
    control::BackfillOutcome out;
    const auto refuse = [&out](const char* code, std::string error) {
        out.code = code;
        out.error = std::move(error);
        return out;
    };
    auto it = running().find(req.workflow);
    if (it == running().end()) return refuse("not_found", unknownWorkflow(req.workflow));
    const config::Workflow& wf = *it->second;
    out.workflow = wf.name;
    out.timezone = wf.timezone;
    out.overlap = config::toString(wf.overlap);
    out.max_active = req.max_active;
    out.dry_run = req.dry_run;
    if (shutting_down_) return refuse("unavailable", "taskhubd is shutting down; no backfill is started");
    if (auto p = m_.scheduler->paused(wf.name); p && !req.dry_run) {
        return refuse("conflict", "workflow '" + wf.name + "' is paused (since " + formatIsoSeconds(p->since) +
                                      " by " + p->by + "); resume it first (`taskhubctl resume " + wf.name +
                                      "`), or look with --dry-run");
    }
    if (req.max_active > 1 && wf.overlap != config::Overlap::Allow) {
        return refuse("bad_request", "--max-active " + std::to_string(req.max_active) + ": workflow '" + wf.name +
                                         "' has overlap = " + out.overlap +
                                         ", so its runs never run at once and a backfill runs one at a time; "
                                         "--max-active above 1 needs overlap = allow");
    }
    std::string err;
    auto from = triggers::parseRangeTime(req.from, wf.zone, triggers::RangeEnd::From, &err);
    if (!from) return refuse("bad_request", "--from: " + err);
    auto to = triggers::parseRangeTime(req.to, wf.zone, triggers::RangeEnd::To, &err);
    if (!to) return refuse("bad_request", "--to: " + err);
    const auto local = [&wf](sys_seconds t) { return date::format("%FT%T%Ez", date::make_zoned(wf.zone, t)); };
    const auto ms = [](sys_seconds t) { return int64_t{t.time_since_epoch().count()} * 1000; };
    out.from_ms = ms(*from);
    out.to_ms = ms(*to);
    if (*from > *to) {
        return refuse("bad_request", "--from " + local(*from) + " is after --to " + local(*to) +
                                         "; give the earlier time as --from");
    }
    const sys_seconds now{std::chrono::seconds(nowMillis() / 1000)};
    if (*to > now) {
        return refuse("bad_request", "--to " + local(*to) + " is in the future (now is " + local(now) +
                                         "); a backfill makes up for past firings only, the scheduler fires the "
                                         "rest: give --to " + local(now) + " or earlier");
    }
    size_t max = triggers::kMaxBackfillInstants;
    if (req.max_instants != 0) max = std::min(max, req.max_instants);
    auto range = triggers::firingsBetween(wf, *from, *to, max);
    out.left_out = range.left_out;
    if (range.triggers_used == 0) {
        std::string list;
        for (const auto& t : wf.triggers) list += (list.empty() ? "" : ", ") + t.describe();
        return refuse("bad_request", "workflow '" + wf.name + "' has no time trigger with fixed instants to backfill (" +
                                         (list.empty() ? std::string("no triggers") : list) +
                                         "); backfill takes cron, at and every with start_at, not @reboot, file "
                                         "drops or every without start_at");
    }
    if (range.over) {
        return refuse("bad_request", "the range " + local(*from) + " to " + local(*to) + " holds " +
                                         (range.count_capped ? "more than " : "") + std::to_string(range.count) +
                                         " firings of workflow '" + wf.name + "'; a backfill creates at most " +
                                         std::to_string(max) + " (give a narrower range and backfill it in parts)");
    }
    for (const auto& f : range.firings) {
        const auto& trig = wf.triggers[f.trigger];
        control::BackfillInstant i;
        i.run_id = wf.name + "@" + formatCompactUtc(f.scheduled);
        i.scheduled_ms = ms(f.scheduled);
        i.local = local(f.scheduled);
        i.trigger = config::toString(trig.kind);
        i.trigger_index = f.trigger;
        const auto facts = triggers::dstFacts(trig.cron ? &*trig.cron : nullptr, wf.zone, f.scheduled, wf.dst);
        i.dst = triggers::dstNoteName(facts.note);
        i.dst_text = triggers::dstNoteText(facts, i.local);
        if (m_.store->runExists(i.run_id)) {
            i.recorded = true;
            if (auto r = m_.store->run(i.run_id, false)) i.state = model::nameString(r->state);
        }
        out.instants.push_back(std::move(i));
    }
    size_t n = 0;
    for (auto& i : out.instants) {
        if (i.recorded) continue;
        ++n;
        if (req.dry_run) continue;
        auto r = m_.engine->trigger(
            {.workflow = it->second,
             .source = model::parse<model::TriggerSource>(i.trigger).value_or(model::TriggerSource::Cron),
             .scheduled = sys_seconds(std::chrono::seconds(i.scheduled_ms / 1000)),
             .actor = caller.actor,
             .note = "backfill " + std::to_string(n) + " of the range " + local(*from) + " to " + local(*to),
             .backfill_max_active = req.max_active});
        if (r.duplicate) {
            i.recorded = true; // recorded a moment ago (the scheduler fired it)
            continue;
        }
        if (!r.ok) {
            // The engine refuses new runs only while it stops or the store cannot be written:
            // what was created so far stays, and the answer says where it stopped.
            return refuse("unavailable", "backfill of '" + wf.name + "' stopped at " + i.run_id + " after " +
                                             std::to_string(out.created) + " run(s) created: " + r.error);
        }
        i.state = model::nameString(r.state);
        ++out.created;
    }
    if (req.dry_run) out.created = n;
    for (const auto& i : out.instants) out.recorded += i.recorded;
    if (!req.dry_run) {
        logging::Context log_ctx({.workflow = wf.name});
        spdlog::info("CTRL_BACKFILL {} by {}: {} run(s) created, {} instant(s) already recorded, {} to {}, "
                     "max_active {}",
                     wf.name, caller.actor, out.created, out.recorded, formatIsoSeconds(*from),
                     formatIsoSeconds(*to), req.max_active);
    }
    out.ok = true;
    return out;
}

} // namespace taskhub::app

// `backfill WORKFLOW --from T1 --to T2`: make up for a workflow's time firings in a past range.
// The daemon works out the instants (in the workflow's zone, with its DST policy) and creates
// the runs; this prints what it did, or with --dry-run what it would do.
#include <iostream>
#include <string>
#include <vector>

#include "commands.h"
#include "render.h"

namespace taskhub::ctl {

namespace json = boost::json;

namespace {

// The most runs of one backfill that run at once, as the daemon takes it.
constexpr int kMaxActiveLimit = 1000;

int cmdBackfill(const Context& ctx, const Invocation& in) {
    std::string err;
    const auto from = in.value("--from");
    const auto to = in.value("--to");
    if (!from || !to) {
        return usageError("backfill needs --from T1 and --to T2 (the range's first and last instants, both "
                          "included)", in.command->name);
    }
    const auto max_active = countOption(in, "--max-active", 1, kMaxActiveLimit, &err);
    if (!max_active) return usageError(err, in.command->name);
    json::object a;
    a["workflow"] = in.args[0];
    a["from"] = *from;
    a["to"] = *to;
    a["max_active"] = *max_active;
    a["dry_run"] = in.has("--dry-run");
    json::value d;
    if (int code = 0; !request(ctx, "backfill", a, &d, &code)) return code;
    if (ctx.globals.json) return emitJson(d), 0;
    const bool dry = d.as_object().at("dry_run").as_bool();
    std::cout << (dry ? "dry run: " : "") << "backfill of " << field(d, "workflow") << " in " << field(d, "timezone")
              << " (overlap = " << field(d, "overlap") << ", max-active " << field(d, "max_active") << "), "
              << shortTime(field(d, "from")) << " to " << shortTime(field(d, "to")) << " (both included)\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& i : arrayField(d, "instants")) {
        const bool recorded = i.as_object().at("recorded").as_bool();
        std::string state = recorded ? "recorded (" + field(i, "state") + "), left alone"
                            : dry    ? "would create"
                                     : "created, " + field(i, "state");
        const std::string note = field(i, "dst_text");
        rows.push_back({field(i, "local"), shortTime(field(i, "scheduled")), field(i, "run"), state,
                        note.empty() ? "" : note});
    }
    if (!rows.empty()) table({"LOCAL", "SCHEDULED", "RUN", "STATE", "NOTE"}, rows);
    for (const auto& l : arrayField(d, "left_out")) {
        std::cout << "left out: trigger " << str(l) << " (every without start_at has no fixed instants)\n";
    }
    std::cout << (dry ? "would create " : "created ") << field(d, "created") << " run(s); " << field(d, "recorded")
              << " instant(s) already recorded, left alone\n";
    return 0;
}

} // namespace

std::vector<Command> backfillCommands() {
    return {
        {"backfill", "WORKFLOW", 1, 1, "one argument: WORKFLOW", Section::Daemon,
         "(--from and --to are required) create the runs a workflow's time triggers (cron, at, every with start_at) would have fired with scheduled "
         "instants from --from to --to, both included, with the scheduler's run ids; instants already recorded are "
         "left alone and listed. The runs wait queued and start oldest first as the workflow's overlap policy admits "
         "them (docs/scheduling.md, \"Backfill\")",
         {{"--from", {}, "TIME", "an ISO 8601 time, like 2026-03-29T00:00:00+01:00", false,
           "the first instant: ISO 8601 with an offset, or a wall time or date (its midnight) in the workflow's zone",
           Values::Text},
          {"--to", {}, "TIME", "an ISO 8601 time, like 2026-03-29T00:00:00+01:00", false,
           "the last instant (included), as --from; not after now", Values::Text},
          {"--max-active", {}, "N", "a number", false,
           "at most N of the workflow's runs at once while backfill runs start (default 1; above 1 only with "
           "overlap = allow)", Values::Text},
          {"--dry-run", {}, {}, {}, false,
           "list the instants (those already recorded marked, DST notes as `next` gives them) and create nothing"}},
         cmdBackfill, {Values::Workflow}},
    };
}

} // namespace taskhub::ctl

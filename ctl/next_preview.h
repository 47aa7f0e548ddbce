// The offline half of `taskhubctl next`: the firings of one cron expression in a time zone, each
// with what a DST change did to it, so that users can check a schedule around a change before
// they deploy it. Pure (no clock, no I/O) and exact: it calls the daemon's own CronExpr::next(),
// so the preview is what taskhubd would fire.
//
// Threading: pure functions; callable from any thread.
#ifndef TASKHUB_CTL_NEXT_PREVIEW_H
#define TASKHUB_CTL_NEXT_PREVIEW_H

#include <array>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cron/cron.h"
#include "triggers/dst_note.h"

namespace date {
class time_zone;
}

namespace taskhub::ctl {

// What a DST change did to a firing (triggers/dst_note.h, shared with `backfill --dry-run`).
using triggers::DstNote;
using triggers::dstNoteName;

struct PreviewFiring {
    std::chrono::sys_seconds instant;
    std::string local; // the instant in the zone: "2026-03-29T03:00:00+02:00"
    DstNote dst = DstNote::None;
    // DstNote::Gap: the first skipped wall time the firing stands for, "2026-03-29T02:30:00"
    // (no offset: that wall time does not exist). Empty otherwise.
    std::string skipped_wall;
};

// The zone named name (IANA, e.g. "Europe/Berlin", or a link like "UTC"). On failure returns
// nullptr and sets *err to one line naming the zone, with the closest known names when there
// are some, and what is expected.
const date::time_zone* findZone(std::string_view name, std::string* err);

// Every zone name of the system's tz database (/usr/share/zoneinfo), links like "UTC" included.
std::vector<std::string> zoneNames();

// The first n firings of expr strictly after `after` in zone tz under policy, in order; fewer
// when the expression stops matching (CronExpr::next() looks 8 years ahead from each firing).
std::vector<PreviewFiring> previewFirings(const cron::CronExpr& expr, const date::time_zone* tz,
                                          std::chrono::sys_seconds after, size_t n,
                                          const cron::DstPolicy& policy);

// t in zone tz as ISO 8601 with the zone's offset: "2026-10-25T02:30:00+01:00".
std::string formatIsoLocal(std::chrono::sys_seconds t, const date::time_zone* tz);

// For people: "DST gap: for 02:30, skipped by the jump", "DST fold: 1st pass of 02:30"; "" for None.
std::string dstNoteText(const PreviewFiring& f);

// The names of --dst-gap and --dst-fold values (the workflow keys dst_gap and dst_fold use the
// same), in enumerator order; the parsers below, the names and the shell completion read them.
inline constexpr std::array<std::pair<cron::DstPolicy::Gap, std::string_view>, 2> kDstGapNames{{
    {cron::DstPolicy::Gap::RunAfter, "run_after"},
    {cron::DstPolicy::Gap::Skip, "skip"},
}};
inline constexpr std::array<std::pair<cron::DstPolicy::Fold, std::string_view>, 3> kDstFoldNames{{
    {cron::DstPolicy::Fold::First, "first"},
    {cron::DstPolicy::Fold::Second, "second"},
    {cron::DstPolicy::Fold::Both, "both"},
}};

// On an unknown name return false and set *err to what is accepted.
bool parseDstGap(std::string_view text, cron::DstPolicy::Gap* out, std::string* err);
bool parseDstFold(std::string_view text, cron::DstPolicy::Fold* out, std::string* err);
const char* dstGapName(cron::DstPolicy::Gap gap);
const char* dstFoldName(cron::DstPolicy::Fold fold);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_NEXT_PREVIEW_H

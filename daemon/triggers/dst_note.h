// What a DST change did to one firing of a time trigger: the facts `taskhubctl next --cron`
// shows for a preview and `taskhubctl backfill --dry-run` shows for the instants it would create.
// Pure (no clock, no I/O): it asks the daemon's own CronExpr::next(), so the note describes what
// taskhubd fires. A library of its own (taskhub_dst_note), so that taskhubctl links it without
// the rest of the triggers module.
//
// Threading: pure functions; callable from any thread.
#ifndef TASKHUB_TRIGGERS_DST_NOTE_H
#define TASKHUB_TRIGGERS_DST_NOTE_H

#include <chrono>
#include <optional>
#include <string>

#include "cron/cron.h"

namespace date {
class time_zone;
}

namespace taskhub::triggers {

// Only facts are reported: a firing that stands for wall times a spring-forward jump skipped, or
// a firing whose wall time occurs twice that day.
enum class DstNote {
    None,
    Gap,        // fired at the first instant after a jump, for wall times the jump skipped
    FoldFirst,  // the wall time occurs twice (fall-back); this is the first pass
    FoldSecond, // ... the second pass
};

struct DstFacts {
    DstNote note = DstNote::None;
    // DstNote::Gap: the first skipped wall time the firing stands for, "2026-03-29T02:30:00" (no
    // offset: that wall time does not exist). Empty otherwise.
    std::string skipped_wall;
};

// The DST facts of a firing at instant t in zone tz. expr: the cron expression that fired it
// under policy (only cron firings can stand for skipped wall times), or nullptr for an `every` or
// `at` trigger's firing (only the fold is reported for those).
DstFacts dstFacts(const cron::CronExpr* expr, const date::time_zone* tz, std::chrono::sys_seconds t,
                  const cron::DstPolicy& policy);

// Stable names for JSON: "gap", "fold_first", "fold_second"; "" for None.
const char* dstNoteName(DstNote note);
// For people: "DST gap: stands for 02:30, which the jump skipped", "DST fold: 1st pass of 02:30";
// "" for None. local: the firing in its zone as ISO 8601 ("2026-10-25T02:30:00+02:00").
std::string dstNoteText(const DstFacts& facts, const std::string& local);

} // namespace taskhub::triggers

#endif // TASKHUB_TRIGGERS_DST_NOTE_H

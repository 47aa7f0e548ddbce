// taskhubctl's renderer: the daemon's answers as text for a terminal. Tables padded to their
// widest cell, daemon text with its control characters shown as \xNN, times and durations
// shortened, and the views of a run (its detail, events, attempts, progress, a live frame and
// the lines of changes `watch` prints). --json output is printed here too.
#ifndef TASKHUB_CTL_RENDER_H
#define TASKHUB_CTL_RENDER_H

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::ctl {

// ---- JSON ----

// v indented by two spaces per level (objects' keys in their order), no newline at the end.
void printJson(const boost::json::value& v, const std::string& indent = "");
// v as compact JSON text that is valid UTF-8: a run's params and outputs may hold bytes that are
// not (a dropped file's name), which would make the text unreadable for a strict parser; each
// such byte becomes U+FFFD.
std::string jsonText(const boost::json::value& v);
// printJson and a newline: what --json prints.
void emitJson(const boost::json::value& v);

// ---- text and values ----

// Text from the daemon as it may be shown on a terminal: control characters (C0, DEL and C1,
// e.g. in a dropped file's name or a task's message) are written as \xNN, so that no value can
// move the cursor, retitle the window or hide other output; the Unicode line and paragraph
// separators and bidi controls (which reorder what follows) are written as \u{XXXX}. `logs` alone prints what the task
// wrote as it is, as cat would.
std::string terminalSafe(std::string_view s);
// A JSON value as a cell: a string made terminalSafe, "-" for null, else its JSON text. A state is
// coloured where it is printed (term.h, paintState()).
std::string str(const boost::json::value& v);
// str() of obj[key]; "-" when obj is no object or lacks key.
std::string field(const boost::json::value& obj, const char* key);
// obj[key] when it is an array, else an empty one.
const boost::json::array& arrayField(const boost::json::value& o, const char* key);
// "a, b, c" of a JSON array of strings; "-" when empty.
std::string joinStrings(const boost::json::value& arr);
// "name=value, ..." of a run's or workflow's params; "" when it has none.
std::string paramsText(const boost::json::value& run);
// A run's state with the failures it absorbed (tasks with on_failure = "continue" that failed):
// "succeeded (1 absorbed)", else the state alone.
std::string runStateText(const boost::json::value& run);

// An instant from the daemon ("2026-11-22T10:23:17.123Z") for people: in the display zone with
// its offset ("2026-11-22 11:23:17 +01:00"; term.h, displayZone()); text that is no instant as
// it is.
std::string shortTime(const std::string& iso);
// Milliseconds since the epoch of "2026-11-22T10:23:17.123Z" (or "2026-11-22T10:23:17Z"); -1
// when it is not such a time.
int64_t isoToMs(const std::string& iso);
// 950ms, 4.1s, 3m07s, 2h05m.
std::string formatMs(int64_t ms);
// From started to ended; "running" while it lasts, "-" before it started.
std::string duration(const boost::json::value& o);
// The daemon's duration_ms (up to now while it lasts), as text; "-" before it started.
std::string elapsed(const boost::json::value& o);

// What an attempt cost (a task's or an attempt's "usage" object of `show --json`; null: not
// measured): CPU time user + system ("0.52s"), peak memory ("12.3M"); "-" when unknown.
std::string cpuText(const boost::json::value& usage);
std::string memoryText(const boost::json::value& usage);
// A "usage" event's detail for people: "attempt 1: cpu 0.52s (user 0.40s, system 0.12s), memory
// peak 12.3M, oom kills 0 (cgroup)"; the detail itself when it is no usage object.
std::string usageEventText(const std::string& detail);

// True when state names a final run (task) state in the domain model's names.
bool runEnded(std::string_view state);
bool taskEnded(std::string_view state);

// ---- tables ----

// Lines of a table, columns padded to the widest cell (in display columns: UTF-8, wide characters
// and colour escapes counted as a terminal shows them; term.h) plus two spaces, no trailing spaces.
std::vector<std::string> tableLines(const std::vector<std::string>& head,
                                    const std::vector<std::vector<std::string>>& rows);
// tableLines on stdout.
void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows);

// ---- run views ----

// A child run's id relative to the root of its tree: "<root>/sub.1/inner.1" -> "sub.1/inner.1".
std::string relativeRunId(const std::string& root, const std::string& id);
// What a task row says besides its state: its message, else why it waits.
std::string taskNote(const boost::json::value& t);
// A run's header lines and its tasks (child runs indented under their workflow task).
void printRunDetail(const boost::json::value& run);
// "progress: 3/7 tasks done (2 succeeded, 1 skipped); 2 running, 2 pending; run running, 4.1s"
std::string progressLine(const boost::json::value& run);
// The events of the whole tree in the store's recording order, one line each.
void printEvents(const std::string& root, const boost::json::value& run);
// Every attempt of the tasks (in the whole tree) that ran more than once, from the event log:
// when it started, how long it took and how it ended ("failed: exit code 1; retry 1 of 2 in 5s").
void printAttempts(const std::string& root, const boost::json::value& run);
// Prints what changed since the last poll: one line (or, with json_lines, one JSON object) per
// run or task whose state or attempt changed. seen maps "run\ntask" to "state#attempt".
void printChanges(bool json_lines, const std::string& root, const boost::json::value& run,
                  std::map<std::string, std::string>& seen);
// Redraws the run's view in place: the previous frame (`drawn` lines) is overwritten.
void redraw(const boost::json::value& run, size_t& drawn);

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_RENDER_H

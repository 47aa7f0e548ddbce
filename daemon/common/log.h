// Logging for the daemon. Every message that an operator may act on starts with a stable id in
// the form MODULE_WHAT (e.g. "ENGINE_RUN_FAILED"), so log lines can be searched and documented.
// This header is cheap; spdlog itself is only included by log.cc and by .cc files that log.
//
// Where lines go (init()'s Target; taskhubd --log-target, docs/operations.md "Logging"):
// - a terminal on stderr: readable lines with the time (auto and stderr);
// - the journal (journal, or auto when stderr is the journal per $JOURNAL_STREAM or the journal
//   socket exists): one native-protocol entry per line (common/journal.h) with PRIORITY,
//   MESSAGE, SYSLOG_IDENTIFIER=taskhubd, MESSAGE_ID and TASKHUB_LOG_ID (from the line's id) and
//   the TASKHUB_* fields of the current Context. A line the journal does not take is written to
//   stderr as below, so it is never lost silently;
// - otherwise stderr, each line "<N>LEVEL MESSAGE": N is the syslog priority (sd-daemon(3)), so
//   that systemd's stream reader or a log collector maps priorities.
//
// Fields of the run, task and attempt a line is about: a call site opens a Context for the
// lines it logs, on the thread that logs them (the sink runs synchronously on that thread):
//
//     logging::Context ctx({.workflow = run.workflow, .run_id = run.id, .task = task.id, .attempt = 2});
//     spdlog::warn("ENGINE_TASK_FAILED {} task {}: {}", ...);   // carries TASKHUB_WORKFLOW=... etc.
//
// Contexts nest (the inner one replaces the outer for its lifetime) and cost two pointer stores;
// the views must outlive the Context. Empty fields (and attempt 0) are not sent. Only the
// journal target sends them; the stderr targets print the message alone.
#ifndef TASKHUB_COMMON_LOG_H
#define TASKHUB_COMMON_LOG_H

#include <optional>
#include <string>
#include <string_view>

namespace taskhub::logging {

enum class Target { Auto, Journal, Stderr };
// "auto", "journal" or "stderr".
std::optional<Target> parseTarget(std::string_view text);

// Configures the default logger for the target. level: trace|debug|info|warn|error.
void init(const std::string& level, Target target = Target::Auto);

// True when lines go to the journal (so task output forwarding, log_to_journal, has a place).
bool journalActive();

// What a line is about: the journal fields TASKHUB_WORKFLOW, TASKHUB_RUN_ID, TASKHUB_TASK and
// TASKHUB_ATTEMPT.
struct Fields {
    std::string_view workflow = {};
    std::string_view run_id = {};
    std::string_view task = {};
    int attempt = 0;
};

// A scoped, thread-local Fields for the lines logged on this thread while it lives (see above).
class Context {
public:
    explicit Context(const Fields& fields);
    ~Context();
    Context(const Context&) = delete;
    Context& operator=(const Context&) = delete;
    // The innermost Context of this thread, or null.
    static const Fields* current();

private:
    Fields fields_;
    const Fields* previous_;
};

// Task output for the journal (log_to_journal = true): sends one line a task printed as an entry
// with PRIORITY=6, SYSLOG_IDENTIFIER=taskhub-task, MESSAGE=line and the TASKHUB_* fields of
// `fields`. The caller cuts lines at kTaskLineMax bytes. All tasks together may forward
// kTaskLinesBurst lines at once and kTaskLinesPerSecond on average (a token bucket): a line
// beyond that is not forwarded (it is still in the task's log file), and once lines flow again a
// JOURNAL_TASK_LINES_DROPPED warning says how many were not. False when the line was not
// forwarded (no journal target, over the bound, or the journal refused it).
bool forwardTaskLine(const Fields& fields, std::string_view line);
constexpr size_t kTaskLineMax = 4096;
constexpr double kTaskLinesPerSecond = 100;
constexpr double kTaskLinesBurst = 1000;

} // namespace taskhub::logging

#endif // TASKHUB_COMMON_LOG_H

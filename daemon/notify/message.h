// What a notification says, built from the run's facts: the JSON document every target gets (a
// command on stdin, a webhook as its body, the outbox as its payload), a command's environment,
// and a mail (RFC 5322 headers and a plain-text body). Pure: no I/O but the log reader the mail
// is given, so it is tested on its own.
//
// Every value in the facts may come from a hostile task (messages, log output) or a workflow
// file: each builder bounds and escapes it for where it lands (JSON, environment, mail headers).
#ifndef TASKHUB_NOTIFY_MESSAGE_H
#define TASKHUB_NOTIFY_MESSAGE_H

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/notify_event.h"

namespace taskhub::notify {

// Bounds on what one notification carries.
inline constexpr size_t kMaxMessageBytes = 4096;  // a run's or a task's message
inline constexpr size_t kMaxFailedTasks = 20;     // failed tasks listed (the count says how many failed)
inline constexpr size_t kMaxMailBodyBytes = 64 * 1024;
inline constexpr size_t kMaxLogTailBytes = 8 * 1024; // of each failed task's log, in a mail

struct FailedTask {
    std::string id;
    std::string message;
    std::string log; // path of its latest attempt's log ("" when it never started)
};

struct Facts {
    std::string notification_id;
    model::NotifyEvent event = model::NotifyEvent::Failure;
    std::string run_id;      // a deadline: the firing id "<workflow>@<instant>"
    std::string workflow;
    std::string state;       // the run's final state ("" when there is no run: a deadline)
    std::string trigger;     // cron, every, at, reboot, manual, file, ""
    std::string message;     // the run's message (why it failed)
    std::optional<int64_t> scheduled_ms;
    std::optional<int64_t> started_ms;
    std::optional<int64_t> ended_ms;
    std::optional<int64_t> deadline_ms; // deadline_missed: when the firing should have succeeded
    size_t failed_count = 0;            // failed tasks; failed holds the first kMaxFailedTasks
    std::vector<FailedTask> failed;
    bool sample = false;                // `taskhubctl notify test`
};

// Cuts text to at most max bytes without splitting a UTF-8 sequence; "" stays "".
std::string cutUtf8(const std::string& text, size_t max);

// The facts as one JSON object (docs/operations.md, "Notifications": the fields).
std::string factsJson(const Facts& f);
// Reads factsJson()'s output back. false with *err when it is not such a document.
bool parseFacts(const std::string& json, Facts* out, std::string* err);

// The environment of a command target, "NAME=value" each: PATH, TASKHUB_NOTIFICATION_ID,
// TASKHUB_EVENT, TASKHUB_RUN_ID, TASKHUB_WORKFLOW, TASKHUB_STATE, TASKHUB_TRIGGER,
// TASKHUB_MESSAGE, TASKHUB_SCHEDULED, TASKHUB_STARTED, TASKHUB_ENDED (ISO 8601, "" when unknown),
// TASKHUB_DURATION (seconds), TASKHUB_DEADLINE, TASKHUB_FAILED_COUNT, TASKHUB_FAILED_TASKS
// (ids, space-separated) and TASKHUB_FAILED_TASK_<n>_ID, _MESSAGE, _LOG for n = 1.., and
// TASKHUB_SAMPLE=1 for a sample. Control characters in values (CR, LF, ...) become spaces.
std::vector<std::string> commandEnvironment(const Facts& f);

// "[taskhub] nightly-backup failed: run nightly-backup@20261206T023000Z" (ASCII; see headerText).
std::string mailSubject(const Facts& f);

struct MailOptions {
    std::string from;
    std::vector<std::string> to;
    int log_lines = 20;
    int64_t now_ms = 0;                  // the Date header
    std::string hostname = "localhost";  // the right side of the Message-ID
};
// Reads the last max_bytes of a file (a task log); nullopt when it cannot be read.
using LogReader = std::function<std::optional<std::string>(const std::string& path, size_t max_bytes)>;

// The whole mail as `sendmail -t -oi` reads it: From, To, Subject, Date, Message-ID (derived from
// the notification id, so that a resent notification is recognisable), MIME headers
// (text/plain; charset=UTF-8, 8bit), X-TaskHub-Event, X-TaskHub-Notification-Id, a blank line,
// then the body: workflow, run, state, trigger, times, each failed task with its message and the
// last log_lines lines of its log. The body is at most kMaxMailBodyBytes; a cut is said in it.
std::string composeMail(const Facts& f, const MailOptions& o, const LogReader& read_log);

// Text for a header value: control characters (CR and LF included) become spaces; a value with
// bytes beyond ASCII is RFC 2047 encoded (=?UTF-8?B?...?=).
std::string headerText(const std::string& text);

// One message in mbox format: a "From SENDER DATE" line, the message with each line that begins
// with "From " (after any '>') quoted with one more '>', and a blank line after it.
std::string mboxEntry(const std::string& sender, int64_t now_ms, const std::string& message);

// The id of a notification: "<run>/<event>/<8 hex digits of key>" (key: the target, plus when the
// run ended for a run's outcome), stable across restarts.
std::string notificationId(const std::string& run_id, model::NotifyEvent e, const std::string& key);

} // namespace taskhub::notify

#endif // TASKHUB_NOTIFY_MESSAGE_H

// Where notifications go ([[notify]] in a workflow file or in taskhub.toml) and how they are
// delivered ([notifications] in taskhub.toml). The syntax is in docs/workflow-format.md
// ("Notifications") and docs/operations.md ("[notifications]").
#ifndef TASKHUB_CONFIG_NOTIFY_TARGET_H
#define TASKHUB_CONFIG_NOTIFY_TARGET_H

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "model/notify_event.h"

namespace taskhub::config {

// One [[notify]] table: the events it is for and exactly one target.
struct NotifyTarget {
    size_t line = 0;
    std::vector<model::NotifyEvent> on; // never empty, no duplicates, never Test
    model::NotifyKind kind = model::NotifyKind::Command;
    // command: the shell text (run by /bin/sh -c); mail: the addresses as written; webhook: the URL.
    std::string value;
    std::vector<std::string> mail_to; // mail: the addresses, each checked (no spaces, no CR/LF, ...)

    bool wants(model::NotifyEvent e) const;
    // "command: /usr/local/bin/page", "mail: ops@example.org", "webhook: https://...": for people
    // and the outbox's target column.
    std::string describe() const;
};

// The events a [[notify]] without `on` is for: what an operator wants to hear of without asking.
inline constexpr model::NotifyEvent kDefaultNotifyEvents[] = {
    model::NotifyEvent::Failure, model::NotifyEvent::Lost, model::NotifyEvent::DeadlineMissed};

// [notifications] in taskhub.toml.
struct NotificationSettings {
    std::string sendmail = "/usr/sbin/sendmail"; // run as `sendmail -t -oi`
    std::string mail_from;                       // default: taskhub@<hostname>
    std::chrono::milliseconds timeout{30'000};   // one delivery attempt
    int retries = 5;                             // further attempts after the first
    std::chrono::milliseconds retry_delay{30'000}; // doubled after each retry, at most 1 h
    size_t max_pending = 1000;                   // undelivered notifications held, at most
    int log_lines = 20;                          // last lines of each failed task's log in mails
};

// A mail address as [[notify]] and [notifications] accept it: "user", "user@host" (no display
// names, no spaces, no control characters, no <>()",;\ ); false with *why otherwise.
bool mailAddressUsable(const std::string& address, std::string* why);

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_NOTIFY_TARGET_H

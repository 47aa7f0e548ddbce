// [[notify]] tables (a workflow file's own, and taskhub.toml's default) and taskhub.toml's
// [notifications] settings.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>

#include "config/notify_target.h"
#include "config/workflow_load.h"

namespace taskhub::config {

using namespace detail;

namespace {

const std::set<std::string> kNotifyKeys = {"on", "command", "mail", "webhook"};
const std::set<std::string> kNotificationsKeys = {"sendmail", "mail_from", "timeout", "retries",
                                                  "retry_delay", "max_pending", "log_lines"};
constexpr size_t kMaxCommandBytes = 4096;
constexpr size_t kMaxUrlBytes = 8192;
constexpr size_t kMaxAddresses = 50;
constexpr size_t kMaxNotifyTables = 32;

std::string eventChoices() {
    std::string out;
    for (const auto& [e, name] : model::NameTable<model::NotifyEvent>::entries) {
        if (e == model::NotifyEvent::Test) continue;
        out += (out.empty() ? "" : ", ") + std::string(name);
    }
    return out;
}

bool hasControl(const std::string& s) {
    return std::any_of(s.begin(), s.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7f;
    });
}

// http:// or https://, a host, no spaces or control characters: the webhook client checks the
// rest (checkWebhookUrl) when it sends.
bool urlUsable(const std::string& url, std::string* why) {
    std::string rest;
    if (url.rfind("https://", 0) == 0) rest = url.substr(8);
    else if (url.rfind("http://", 0) == 0) rest = url.substr(7);
    else {
        *why = "must start with https:// or http://";
        return false;
    }
    if (url.size() > kMaxUrlBytes) {
        *why = "is longer than " + std::to_string(kMaxUrlBytes) + " bytes";
        return false;
    }
    if (hasControl(url) || url.find(' ') != std::string::npos) {
        *why = "contains spaces or control characters (percent-encode them)";
        return false;
    }
    const size_t end = rest.find_first_of("/?#");
    std::string host = rest.substr(0, end);
    if (auto at = host.rfind('@'); at != std::string::npos) host = host.substr(at + 1);
    if (host.empty() || host[0] == ':') {
        *why = "has no host (expected like https://hooks.example.org/taskhub)";
        return false;
    }
    return true;
}

} // namespace

bool mailAddressUsable(const std::string& address, std::string* why) {
    if (address.empty()) {
        *why = "an address is empty";
        return false;
    }
    if (address.size() > 254) {
        *why = "address \"" + address.substr(0, 40) + "...\" is longer than 254 characters";
        return false;
    }
    for (char ch : address) {
        const auto c = static_cast<unsigned char>(ch);
        if (c <= 0x20 || c >= 0x7f || std::string_view("<>()\",;\\[]:").find(ch) != std::string_view::npos) {
            *why = "address \"" + address + "\" contains a character mail addresses here may not (write plain "
                   "user or user@host, ASCII, without spaces, quotes, brackets or display names)";
            return false;
        }
    }
    if (address.front() == '@' || address.back() == '@' || address.front() == '-' ||
        std::count(address.begin(), address.end(), '@') > 1) {
        *why = "\"" + address + "\" is not an address (expected user or user@host)";
        return false;
    }
    return true;
}

bool NotifyTarget::wants(model::NotifyEvent e) const { return std::find(on.begin(), on.end(), e) != on.end(); }

std::string NotifyTarget::describe() const { return model::nameString(kind) + ": " + value; }

namespace detail {

bool loadNotify(const Value& v, std::vector<NotifyTarget>* out, Reporter& r) {
    if (!v.is_array()) {
        r.add(v, "'notify' must be an array of tables ([[notify]]), found " + typeName(v));
        return false;
    }
    if (v.as_array().size() > kMaxNotifyTables) {
        r.add(v, "at most " + std::to_string(kMaxNotifyTables) + " [[notify]] tables are allowed, found " +
                     std::to_string(v.as_array().size()));
        return false;
    }
    bool opt_out = false;
    size_t index = 0;
    for (const auto& t : v.as_array()) {
        ++index;
        const std::string where = "[[notify]] #" + std::to_string(index);
        if (!t.is_table()) {
            r.add(t, where + " must be a table, found " + typeName(t));
            continue;
        }
        NotifyTarget target;
        target.line = r.lineOf(t);
        std::optional<std::vector<model::NotifyEvent>> on;
        std::vector<std::string> targets;
        bool ok = true;
        for (const auto& [key, kv] : t.as_table()) {
            const std::string what = where + " '" + key + "'";
            if (key == "on") {
                auto names = getStringArray(kv, what, r);
                if (!names) {
                    ok = false;
                    continue;
                }
                std::vector<model::NotifyEvent> events;
                for (const auto& n : *names) {
                    auto e = model::parse<model::NotifyEvent>(n);
                    if (!e || *e == model::NotifyEvent::Test) {
                        r.add(kv, what + ": unknown event \"" + n + "\" (events: " + eventChoices() + ")");
                        ok = false;
                    } else if (std::find(events.begin(), events.end(), *e) == events.end()) {
                        events.push_back(*e);
                    }
                }
                on = std::move(events);
            } else if (key == "command" || key == "mail" || key == "webhook") {
                targets.push_back(key);
                auto s = getString(kv, what, r);
                if (!s) {
                    ok = false;
                    continue;
                }
                target.value = *s;
                std::string why;
                if (key == "command") {
                    target.kind = model::NotifyKind::Command;
                    if (s->empty() || s->size() > kMaxCommandBytes || s->find('\0') != std::string::npos) {
                        r.add(kv, what + " must be a shell command of 1 to " + std::to_string(kMaxCommandBytes) +
                                      " bytes without NUL (it is run by /bin/sh -c; the run's facts are in its "
                                      "environment, never in its text)");
                        ok = false;
                    }
                } else if (key == "mail") {
                    target.kind = model::NotifyKind::Mail;
                    size_t start = 0;
                    while (start <= s->size()) {
                        size_t comma = s->find(',', start);
                        if (comma == std::string::npos) comma = s->size();
                        std::string a = s->substr(start, comma - start);
                        a.erase(0, a.find_first_not_of(' '));
                        a.erase(a.find_last_not_of(' ') + 1);
                        if (!mailAddressUsable(a, &why)) {
                            r.add(kv, what + ": " + why + " (expected \"ops@example.org\" or \"a@x.org, b@x.org\")");
                            ok = false;
                            break;
                        }
                        target.mail_to.push_back(a);
                        start = comma + 1;
                    }
                    if (ok && target.mail_to.size() > kMaxAddresses) {
                        r.add(kv, what + " lists more than " + std::to_string(kMaxAddresses) +
                                      " addresses (use a mailing list)");
                        ok = false;
                    }
                } else {
                    target.kind = model::NotifyKind::Webhook;
                    if (!urlUsable(*s, &why)) {
                        r.add(kv, what + " \"" + s->substr(0, 80) + "\" " + why);
                        ok = false;
                    }
                }
            } else {
                r.add(kv, "unknown key '" + key + "' in " + where + didYouMean(key, kNotifyKeys) +
                              " (accepted: " + joinKeys(kNotifyKeys) + ")");
                ok = false;
            }
        }
        if (!ok) continue;
        if (on && on->empty()) {
            if (!targets.empty()) {
                r.add(t, where + " has on = [] and a " + targets.front() +
                             ": it would never send; to turn notifications off write only on = [], to send give "
                             "the events (" + eventChoices() + ")");
                continue;
            }
            opt_out = true;
            continue;
        }
        if (targets.size() != 1) {
            r.add(t, where + (targets.empty() ? " has no target" : " has " + std::to_string(targets.size()) + " targets") +
                         ": give exactly one of command, mail or webhook (or only on = [] to turn "
                         "notifications off)");
            continue;
        }
        if (on) {
            target.on = std::move(*on);
        } else {
            target.on.assign(std::begin(kDefaultNotifyEvents), std::end(kDefaultNotifyEvents));
        }
        out->push_back(std::move(target));
    }
    if (opt_out && !out->empty()) {
        r.add(v, "[[notify]] with only on = [] turns notifications off, but other [[notify]] tables send: remove "
                 "one or the other");
        return false;
    }
    return r.ok();
}

void loadNotificationSettings(const Value& v, NotificationSettings& n, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[notifications] must be a table, found " + typeName(v));
        return;
    }
    for (const auto& [key, nv] : v.as_table()) {
        const std::string what = "'notifications." + key + "'";
        if (key == "sendmail") {
            if (auto s = getString(nv, what, r)) {
                if (s->empty() || (*s)[0] != '/' || hasControl(*s)) {
                    r.add(nv, what + " must be an absolute path, like \"/usr/sbin/sendmail\"");
                } else {
                    n.sendmail = *s;
                }
            }
        } else if (key == "mail_from") {
            if (auto s = getString(nv, what, r)) {
                std::string why;
                if (!mailAddressUsable(*s, &why)) r.add(nv, what + ": " + why);
                else n.mail_from = *s;
            }
        } else if (key == "timeout") {
            if (auto d = getDuration(nv, what, r)) {
                if (d->count() < 100 || *d > std::chrono::hours(1)) r.add(nv, what + " must be between 100ms and 1h");
                else n.timeout = *d;
            }
        } else if (key == "retries") {
            if (auto i = getInt(nv, what, r, 0, 100)) n.retries = static_cast<int>(*i);
        } else if (key == "retry_delay") {
            if (auto d = getDuration(nv, what, r)) {
                if (d->count() < 100 || *d > std::chrono::hours(1)) r.add(nv, what + " must be between 100ms and 1h");
                else n.retry_delay = *d;
            }
        } else if (key == "max_pending") {
            if (auto i = getInt(nv, what, r, 1, 1'000'000)) n.max_pending = static_cast<size_t>(*i);
        } else if (key == "log_lines") {
            if (auto i = getInt(nv, what, r, 0, 1000)) n.log_lines = static_cast<int>(*i);
        } else {
            r.add(nv, "unknown key '" + key + "' in [notifications]" + didYouMean(key, kNotificationsKeys) +
                          " (accepted: " + joinKeys(kNotificationsKeys) + ")");
        }
    }
}

std::string defaultMailFrom() {
    char host[HOST_NAME_MAX + 1] = {};
    if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "taskhub";
    std::string h(host);
    std::string why;
    return mailAddressUsable("taskhub@" + h, &why) ? "taskhub@" + h : "taskhub";
}

const std::set<std::string>& notifyKeys() { return kNotifyKeys; }

const std::set<std::string>& notificationSettingsKeys() { return kNotificationsKeys; }

} // namespace detail

} // namespace taskhub::config

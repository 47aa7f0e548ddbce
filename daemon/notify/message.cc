#include "notify/message.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/time_util.h"

namespace taskhub::notify {

namespace json = boost::json;

namespace {

std::string iso(const std::optional<int64_t>& ms) { return ms ? formatIsoMillis(*ms) : std::string(); }

// Control characters (and DEL) become spaces: for environment values and headers.
std::string oneLine(const std::string& text) {
    std::string out = text;
    for (auto& ch : out) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c == 0x7f) ch = ' ';
    }
    return out;
}

// Keeps the text valid UTF-8: a byte that does not start or continue a valid sequence becomes '?'.
std::string validUtf8(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = n > 0 && i + n <= s.size();
        for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) >> 6) == 0x2;
        if (ok) {
            out.append(s, i, n);
            i += n;
        } else {
            out += '?';
            ++i;
        }
    }
    return out;
}

json::value optMs(const std::optional<int64_t>& ms) { return ms ? json::value(formatIsoMillis(*ms)) : json::value(nullptr); }

std::optional<int64_t> msOf(const json::object& o, const char* key) {
    auto it = o.find(key);
    if (it == o.end() || !it->value().is_string()) return std::nullopt;
    // formatIsoMillis()'s form, "2026-12-06T02:30:00.100Z": whole seconds, then milliseconds.
    std::string text(it->value().as_string());
    int64_t ms = 0;
    if (text.size() == 24 && text[19] == '.' && text[23] == 'Z') {
        ms = std::atoi(text.substr(20, 3).c_str());
        text = text.substr(0, 19) + "Z";
    }
    std::string err;
    auto t = parseIsoInstant(text, &err);
    if (!t) return std::nullopt;
    return std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count() + ms;
}

std::string str(const json::object& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

std::string durationText(const Facts& f) {
    if (!f.started_ms || !f.ended_ms) return "";
    const int64_t ms = std::max<int64_t>(0, *f.ended_ms - *f.started_ms);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lld.%03lld", static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000));
    return buf;
}

std::string eventVerb(const Facts& f) {
    switch (f.event) {
    case model::NotifyEvent::Failure: return f.state.empty() ? "failed" : f.state;
    case model::NotifyEvent::Success: return "succeeded";
    case model::NotifyEvent::Recovery: return "recovered";
    case model::NotifyEvent::DeadlineMissed: return "missed its deadline";
    case model::NotifyEvent::Lost: return "lost attempts";
    case model::NotifyEvent::Test: return "test notification (sample)";
    }
    return "?";
}

// The last `lines` lines of text.
std::string lastLines(const std::string& text, int lines) {
    if (lines <= 0) return "";
    size_t end = text.size();
    if (end > 0 && text[end - 1] == '\n') --end;
    size_t pos = end;
    int n = 0;
    while (pos > 0) {
        size_t nl = text.rfind('\n', pos - 1);
        if (nl == std::string::npos) {
            pos = 0;
            break;
        }
        if (++n == lines) {
            pos = nl + 1;
            break;
        }
        pos = nl;
    }
    return text.substr(pos, end - pos);
}

const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
    std::string out;
    for (size_t i = 0; i < in.size(); i += 3) {
        uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
        if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += i + 1 < in.size() ? kB64[(v >> 6) & 63] : '=';
        out += i + 2 < in.size() ? kB64[v & 63] : '=';
    }
    return out;
}

std::string rfc2822Date(int64_t ms) {
    std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    return buf;
}

} // namespace

std::string cutUtf8(const std::string& text, size_t max) {
    if (text.size() <= max) return text;
    size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(text[n]) >> 6) == 0x2) --n;
    return text.substr(0, n);
}

std::string notificationId(const std::string& run_id, model::NotifyEvent e, const std::string& target) {
    uint32_t h = 2166136261u; // FNV-1a
    for (unsigned char ch : target) {
        h ^= ch;
        h *= 16777619u;
    }
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", h);
    return run_id + "/" + model::nameString(e) + "/" + buf;
}

std::string factsJson(const Facts& f) {
    json::object o;
    o["notification_id"] = f.notification_id;
    o["event"] = model::name(f.event);
    o["sample"] = f.sample;
    o["run_id"] = f.run_id;
    o["workflow"] = f.workflow;
    o["state"] = f.state;
    o["trigger"] = f.trigger;
    o["message"] = validUtf8(cutUtf8(f.message, kMaxMessageBytes));
    o["scheduled"] = optMs(f.scheduled_ms);
    o["started"] = optMs(f.started_ms);
    o["ended"] = optMs(f.ended_ms);
    o["deadline"] = optMs(f.deadline_ms);
    o["failed_count"] = f.failed_count;
    json::array failed;
    for (size_t i = 0; i < f.failed.size() && i < kMaxFailedTasks; ++i) {
        const auto& t = f.failed[i];
        json::object jt;
        jt["id"] = t.id;
        jt["message"] = validUtf8(cutUtf8(t.message, kMaxMessageBytes));
        jt["log"] = t.log;
        failed.push_back(std::move(jt));
    }
    o["failed_tasks"] = std::move(failed);
    return json::serialize(o);
}

bool parseFacts(const std::string& text, Facts* out, std::string* err) {
    json::error_code ec;
    auto v = json::parse(text, ec);
    if (ec || !v.is_object()) {
        *err = "the notification's payload is not a JSON object";
        return false;
    }
    const auto& o = v.as_object();
    Facts f;
    f.notification_id = str(o, "notification_id");
    auto e = model::parse<model::NotifyEvent>(str(o, "event"));
    if (!e) {
        *err = "the notification's payload has no known event";
        return false;
    }
    f.event = *e;
    if (auto it = o.find("sample"); it != o.end() && it->value().is_bool()) f.sample = it->value().as_bool();
    f.run_id = str(o, "run_id");
    f.workflow = str(o, "workflow");
    f.state = str(o, "state");
    f.trigger = str(o, "trigger");
    f.message = str(o, "message");
    f.scheduled_ms = msOf(o, "scheduled");
    f.started_ms = msOf(o, "started");
    f.ended_ms = msOf(o, "ended");
    f.deadline_ms = msOf(o, "deadline");
    if (auto it = o.find("failed_count"); it != o.end() && it->value().is_number()) {
        f.failed_count = static_cast<size_t>(it->value().to_number<double>());
    }
    if (auto it = o.find("failed_tasks"); it != o.end() && it->value().is_array()) {
        for (const auto& t : it->value().as_array()) {
            if (!t.is_object() || f.failed.size() >= kMaxFailedTasks) continue;
            f.failed.push_back({str(t.as_object(), "id"), str(t.as_object(), "message"), str(t.as_object(), "log")});
        }
    }
    *out = std::move(f);
    return true;
}

std::vector<std::string> commandEnvironment(const Facts& f) {
    std::vector<std::string> env;
    auto add = [&env](const std::string& name, const std::string& value) {
        env.push_back(name + "=" + oneLine(cutUtf8(value, kMaxMessageBytes)));
    };
    env.push_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    add("TASKHUB_NOTIFICATION_ID", f.notification_id);
    add("TASKHUB_EVENT", model::nameString(f.event));
    add("TASKHUB_RUN_ID", f.run_id);
    add("TASKHUB_WORKFLOW", f.workflow);
    add("TASKHUB_STATE", f.state);
    add("TASKHUB_TRIGGER", f.trigger);
    add("TASKHUB_MESSAGE", f.message);
    add("TASKHUB_SCHEDULED", iso(f.scheduled_ms));
    add("TASKHUB_STARTED", iso(f.started_ms));
    add("TASKHUB_ENDED", iso(f.ended_ms));
    add("TASKHUB_DURATION", durationText(f));
    add("TASKHUB_DEADLINE", iso(f.deadline_ms));
    add("TASKHUB_FAILED_COUNT", std::to_string(f.failed_count));
    std::string ids;
    for (size_t i = 0; i < f.failed.size() && i < kMaxFailedTasks; ++i) {
        const auto& t = f.failed[i];
        ids += (ids.empty() ? "" : " ") + t.id;
        const std::string p = "TASKHUB_FAILED_TASK_" + std::to_string(i + 1) + "_";
        add(p + "ID", t.id);
        add(p + "MESSAGE", t.message);
        add(p + "LOG", t.log);
    }
    add("TASKHUB_FAILED_TASKS", ids);
    if (f.sample) add("TASKHUB_SAMPLE", "1");
    return env;
}

std::string headerText(const std::string& text) {
    std::string line = oneLine(text);
    const bool ascii = std::all_of(line.begin(), line.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x80; });
    if (ascii) return line;
    // RFC 2047: encoded words of at most 75 characters, split between whole UTF-8 sequences.
    line = validUtf8(line);
    std::string out;
    size_t i = 0;
    while (i < line.size()) {
        size_t n = std::min<size_t>(45, line.size() - i);
        while (i + n < line.size() && n > 0 && (static_cast<unsigned char>(line[i + n]) >> 6) == 0x2) --n;
        if (n == 0) n = 1;
        if (!out.empty()) out += "\r\n ";
        out += "=?UTF-8?B?" + base64(std::string_view(line).substr(i, n)) + "?=";
        i += n;
    }
    return out;
}

std::string mailSubject(const Facts& f) {
    std::string s = "[taskhub] ";
    if (f.sample) s += "SAMPLE ";
    s += f.workflow + " " + eventVerb(f) + ": ";
    s += f.event == model::NotifyEvent::DeadlineMissed ? "firing " + f.run_id : "run " + f.run_id;
    return cutUtf8(s, 300);
}

std::string composeMail(const Facts& f, const MailOptions& o, const LogReader& read_log) {
    std::string to;
    for (const auto& a : o.to) to += (to.empty() ? "" : ", ") + a;
    std::string h;
    h += "From: " + headerText(o.from) + "\n";
    h += "To: " + headerText(to) + "\n";
    h += "Subject: " + headerText(mailSubject(f)) + "\n";
    h += "Date: " + rfc2822Date(o.now_ms) + "\n";
    // Derived from the notification id (its characters limited to a safe set), so a resend after
    // a crash carries the same Message-ID and mail clients can tell.
    std::string local;
    for (char ch : f.notification_id) {
        local += (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == '_') ? ch : '.';
    }
    h += "Message-ID: <" + cutUtf8(local, 200) + "@" + headerText(o.hostname) + ">\n";
    h += "MIME-Version: 1.0\n";
    h += "Content-Type: text/plain; charset=UTF-8\n";
    h += "Content-Transfer-Encoding: 8bit\n";
    h += "Auto-Submitted: auto-generated\n";
    h += "X-TaskHub-Event: " + model::nameString(f.event) + "\n";
    h += "X-TaskHub-Notification-Id: " + headerText(f.notification_id) + "\n";

    std::string b;
    if (f.sample) b += "This is a SAMPLE notification sent by `taskhubctl notify test`; no run happened.\n\n";
    b += "Workflow:   " + f.workflow + "\n";
    b += std::string(f.event == model::NotifyEvent::DeadlineMissed ? "Firing:     " : "Run:        ") + f.run_id + "\n";
    b += "Event:      " + model::nameString(f.event) + "\n";
    if (!f.state.empty()) b += "State:      " + f.state + "\n";
    if (!f.trigger.empty()) b += "Trigger:    " + f.trigger + "\n";
    if (f.scheduled_ms) b += "Scheduled:  " + iso(f.scheduled_ms) + "\n";
    if (f.deadline_ms) b += "Deadline:   " + iso(f.deadline_ms) + "\n";
    if (f.started_ms) b += "Started:    " + iso(f.started_ms) + "\n";
    if (f.ended_ms) b += "Ended:      " + iso(f.ended_ms) + "\n";
    if (auto d = durationText(f); !d.empty()) b += "Duration:   " + d + " s\n";
    if (!f.message.empty()) b += "Message:    " + cutUtf8(f.message, kMaxMessageBytes) + "\n";
    if (f.failed_count > 0) {
        b += "\nFailed tasks: " + std::to_string(f.failed_count) +
             (f.failed_count > f.failed.size() ? " (the first " + std::to_string(f.failed.size()) + " below)" : "") +
             "\n";
    }
    for (const auto& t : f.failed) {
        b += "\n--- task " + t.id + ": " + cutUtf8(t.message, kMaxMessageBytes) + "\n";
        if (t.log.empty() || o.log_lines <= 0) continue;
        auto content = read_log ? read_log(t.log, kMaxLogTailBytes) : std::nullopt;
        if (!content) {
            b += "(log " + t.log + " cannot be read)\n";
            continue;
        }
        b += "last " + std::to_string(o.log_lines) + " lines of " + t.log + ":\n";
        b += lastLines(*content, o.log_lines) + "\n";
    }
    b += "\n-- \ntaskhubd: `taskhubctl show " + f.run_id + "` has the details.\n";
    b = validUtf8(b);
    if (b.size() > kMaxMailBodyBytes) {
        const std::string note = "\n[... the mail is cut here: its body is limited to " +
                                 std::to_string(kMaxMailBodyBytes / 1024) + " KiB; see taskhubctl show " + f.run_id +
                                 " and taskhubctl logs]\n";
        b = cutUtf8(b, kMaxMailBodyBytes - std::min(note.size(), kMaxMailBodyBytes)) + note;
    }
    return h + "\n" + b;
}

std::string mboxEntry(const std::string& sender, int64_t now_ms, const std::string& message) {
    std::time_t t = static_cast<std::time_t>(now_ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char date[64];
    std::strftime(date, sizeof date, "%a %b %e %H:%M:%S %Y", &tm);
    std::string out = "From " + oneLine(sender.empty() ? "taskhub" : sender) + " " + date + "\n";
    size_t pos = 0;
    while (pos < message.size()) {
        size_t nl = message.find('\n', pos);
        std::string_view line(message.data() + pos, (nl == std::string::npos ? message.size() : nl) - pos);
        size_t gt = 0;
        while (gt < line.size() && line[gt] == '>') ++gt;
        if (line.substr(gt).rfind("From ", 0) == 0) out += '>';
        out += line;
        out += '\n';
        if (nl == std::string::npos) break;
        pos = nl + 1;
    }
    out += '\n';
    return out;
}

} // namespace taskhub::notify

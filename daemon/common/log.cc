#include "common/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>

#include "common/journal.h"

namespace taskhub::logging {

namespace {

thread_local const Fields* t_current = nullptr;

// Writes all of text to stderr in as few write()s as it takes (one, for a line of usual size).
void writeStderr(std::string_view text) {
    while (!text.empty()) {
        ssize_t n = ::write(STDERR_FILENO, text.data(), text.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        text.remove_prefix(static_cast<size_t>(n));
    }
}

// "<N>LEVEL MESSAGE\n"; each further line of a message that holds newlines gets "<N>" too, so no
// text can start a line with a priority of its own.
std::string prefixedLine(spdlog::level::level_enum level, std::string_view message) {
    const std::string prefix = "<" + std::to_string(journal::syslogPriority(static_cast<int>(level))) + ">";
    const auto name = spdlog::level::to_string_view(level);
    std::string out;
    out.reserve(prefix.size() + name.size() + message.size() + 8);
    out += prefix;
    out.append(name.data(), name.size());
    out += ' ';
    size_t start = 0;
    while (true) {
        const size_t nl = message.find('\n', start);
        out.append(message.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
        out += '\n';
        if (nl == std::string_view::npos) break;
        start = nl + 1;
        if (start == message.size()) break;
        out += prefix;
    }
    return out;
}

void appendContext(std::string* entry, const Fields& f) {
    if (!f.workflow.empty()) journal::appendField(entry, "TASKHUB_WORKFLOW", f.workflow);
    if (!f.run_id.empty()) journal::appendField(entry, "TASKHUB_RUN_ID", f.run_id);
    if (!f.task.empty()) journal::appendField(entry, "TASKHUB_TASK", f.task);
    if (f.attempt > 0) journal::appendField(entry, "TASKHUB_ATTEMPT", std::to_string(f.attempt));
}

// The journal connection, shared by the logger's sink and forwardTaskLine(). The mutex is never
// held while logging.
struct Journal {
    std::mutex mu;
    journal::Socket socket;
    bool active = false;
    // forwardTaskLine()'s token bucket and what it held back.
    double tokens = kTaskLinesBurst;
    std::chrono::steady_clock::time_point refilled = std::chrono::steady_clock::now();
    uint64_t dropped = 0;
};

Journal& theJournal() {
    static Journal j;
    return j;
}

class PrefixSink final : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        writeStderr(prefixedLine(msg.level, std::string_view(msg.payload.data(), msg.payload.size())));
    }
    void flush_() override {}
};

class JournalSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        const std::string_view message(msg.payload.data(), msg.payload.size());
        std::string entry;
        entry.reserve(message.size() + 256);
        journal::appendField(&entry, "PRIORITY", std::to_string(journal::syslogPriority(static_cast<int>(msg.level))));
        journal::appendField(&entry, "SYSLOG_IDENTIFIER", "taskhubd");
        if (const auto id = journal::logIdOf(message); !id.empty()) {
            journal::appendField(&entry, "MESSAGE_ID", journal::messageId(id));
            journal::appendField(&entry, "TASKHUB_LOG_ID", id);
        }
        if (const Fields* f = Context::current()) appendContext(&entry, *f);
        journal::appendField(&entry, "MESSAGE", message);
        std::string err;
        Journal& j = theJournal();
        bool sent;
        {
            std::lock_guard lock(j.mu);
            sent = j.socket.send(entry, &err);
        }
        // Not taken: the line goes to stderr (under systemd, the journal's stream) instead.
        if (!sent) writeStderr(prefixedLine(msg.level, message));
    }
    void flush_() override {}
};

} // namespace

std::optional<Target> parseTarget(std::string_view text) {
    if (text == "auto") return Target::Auto;
    if (text == "journal") return Target::Journal;
    if (text == "stderr") return Target::Stderr;
    return std::nullopt;
}

void init(const std::string& level, Target target) {
    const bool tty = isatty(STDERR_FILENO) != 0;
    const std::string path = journal::socketPath();
    bool journal = target == Target::Journal;
    if (target == Target::Auto && !tty) journal = journal::stderrIsJournal() || ::access(path.c_str(), F_OK) == 0;
    std::shared_ptr<spdlog::logger> logger;
    if (journal) {
        Journal& j = theJournal();
        std::string err;
        std::lock_guard lock(j.mu);
        // Without a socket each line falls back to stderr (JournalSink), as when sending fails.
        if (!j.socket.open(path, &err)) writeStderr("<4>warning " + err + "; logging to stderr\n");
        j.active = true;
        logger = std::make_shared<spdlog::logger>("taskhubd", std::make_shared<JournalSink>());
    } else if (tty) {
        logger = spdlog::stderr_color_mt("taskhubd");
        logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ %v");
    } else {
        logger = std::make_shared<spdlog::logger>("taskhubd", std::make_shared<PrefixSink>());
    }
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
}

bool journalActive() {
    Journal& j = theJournal();
    std::lock_guard lock(j.mu);
    return j.active;
}

Context::Context(const Fields& fields) : fields_(fields), previous_(t_current) { t_current = &fields_; }

Context::~Context() { t_current = previous_; }

const Fields* Context::current() { return t_current; }

bool forwardTaskLine(const Fields& fields, std::string_view line) {
    Journal& j = theJournal();
    uint64_t dropped = 0;
    bool sent = false;
    {
        std::lock_guard lock(j.mu);
        if (!j.active) return false;
        const auto now = std::chrono::steady_clock::now();
        const double elapsed = std::chrono::duration<double>(now - j.refilled).count();
        j.refilled = now;
        j.tokens = std::min(kTaskLinesBurst, j.tokens + elapsed * kTaskLinesPerSecond);
        if (j.tokens < 1) {
            ++j.dropped;
            return false;
        }
        j.tokens -= 1;
        std::string entry;
        entry.reserve(line.size() + 200);
        journal::appendField(&entry, "PRIORITY", "6");
        journal::appendField(&entry, "SYSLOG_IDENTIFIER", "taskhub-task");
        appendContext(&entry, fields);
        journal::appendField(&entry, "MESSAGE", line);
        std::string err;
        sent = j.socket.send(entry, &err);
        if (sent) std::swap(dropped, j.dropped);
        else ++j.dropped;
    }
    if (dropped > 0) {
        spdlog::warn("JOURNAL_TASK_LINES_DROPPED {} line(s) of task output were not forwarded to the journal (over "
                     "{} lines a second, or refused by it); they are in the tasks' log files",
                     dropped, static_cast<int>(kTaskLinesPerSecond));
    }
    return sent;
}

} // namespace taskhub::logging

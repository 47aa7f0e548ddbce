// taskhubctl: the command-line client. Talks to taskhubd over its Unix socket (JSON lines, see
// docs/control-protocol.md), except `validate`, `next --cron` and `plugin check`, which work offline. Prints tables by default and
// the response data as JSON with --json. Exit status: 0 success, 1 the command failed (or a
// waited-for or watched run did not succeed), 2 usage error, 3 the daemon could not be reached.
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <date/tz.h>

#include "common/time_util.h"
#include "common/trust.h"
#include "config/daemon_config.h"
#include "config/workflow.h"
#include "next_preview.h"
#include "plugin_check.h"
#include "plugin_host/plugin_host.h"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace taskhub;

namespace {

const char* kUsage = R"(usage: taskhubctl [--socket PATH] [--config FILE] [--json] COMMAND [ARGS]

commands (through the daemon):
  status                        daemon state and counters
  list                          workflows with next firing and last run; files that failed to load
  show NAME                     a workflow, or a run (NAME = run id) with its tasks, child runs
                                (indented under their workflow task) and events
  run WORKFLOW [--param NAME=VALUE]... [--wait | --follow]
                                trigger a workflow now, with params; --wait blocks until the run
                                ends, --follow shows it live as `watch` does; both exit 1 unless
                                it succeeded
  watch RUN                     live view of a run's tasks and child runs until it ends; exit 1
                                unless it succeeded (plain lines of changes when not a terminal)
  runs [WORKFLOW] [--state S] [--since TIME] [--until TIME] [--limit N] [--all]
                                runs, newest first; child runs of nested workflows with --all
                                or when their WORKFLOW is named; --state lost: runs in which
                                recovery after a crash found lost attempts; --since/--until:
                                created at or after / before TIME, an ISO 8601 time
                                (2026-11-22T10:00:00Z, 2026-11-22) or a duration back from
                                now (90m, 2h, 7d)
  pause RUN [--freeze]          start no new task of the run (and its child runs); --freeze also
                                stops the processes of running tasks until `resume`
  resume RUN                    resume a paused run
  pause WORKFLOW                pause the workflow's schedule: its firings are recorded as skipped
  resume WORKFLOW               resume it; the firings since the pause follow its catch-up rules
  cancel RUN [--task ID]        cancel a queued, running or paused run, or one of its tasks
  retry RUN [--task ID] [--downstream]
                                re-run the failed and cancelled tasks of a finished run (or task
                                ID) as new attempts; --downstream also re-runs the tasks below
  logs RUN TASK [--attempt N] [-f]
                                a task's output (latest attempt by default); -f, --follow:
                                then its further output as it comes, until the attempt ends
  wait RUN                      block until a run ends; exit 1 unless it succeeded
  reload                        re-read the workflows directory
  plugins                       loaded plugins: version, ABI, isolation, health state and its
                                last message, running tasks; refused plugin files and why
  plugin show NAME [--limit N]  one plugin's details and its health transitions (latest N,
                                default 50)
  next WORKFLOW [-n N]          the next N (default 5, at most 10000) firings of a loaded
                                workflow's time triggers, in the workflow's zone
offline:
  validate FILE...              check workflow files (plugins from the config's plugin_dirs;
                                workflow tasks against the other FILEs and its workflows_dir)
  next --cron EXPR [--tz ZONE] [--from TIME] [-n N] [--dst-gap run_after|skip]
       [--dst-fold first|second|both] [--name WORKFLOW]
                                the next N (default 5, at most 10000) firings of a cron
                                expression strictly after TIME (ISO 8601 with an offset, like
                                2026-03-29T00:00:00+01:00; default now) in ZONE (an IANA name;
                                default: the config's timezone, else the system zone, as
                                taskhubd does), each in local time and UTC, marking firings a
                                DST change moved or repeated; --dst-gap and --dst-fold as the
                                workflow keys dst_gap and dst_fold (default run_after, first);
                                --name: the workflow name that H fields are hashed from
  plugin check PATH.so [--params JSON] [--config-json JSON] [--timeout DUR]
                                load a plugin as taskhubd does and run it once: negotiation,
                                create (with the settings JSON), validate and one execute of
                                the task parameters JSON (cancelled after DUR, default 10s),
                                a health check; exit 1 unless every step passed

options:
  --socket PATH   control socket (default: $TASKHUB_SOCKET, else the config's socket,
                  else /run/taskhub/taskhub.sock)
  --config FILE   daemon config (default /etc/taskhub/taskhub.toml)
  --json          print the response as JSON (watch, run --follow: one JSON line per change)
)";

struct Globals {
    std::optional<std::string> socket;
    std::optional<std::string> config;
    bool json = false;
};

[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr, "taskhubctl: %s\n%s", why.c_str(), kUsage);
    std::exit(2);
}

[[noreturn]] void fail(const std::string& why, int code = 1) {
    std::fprintf(stderr, "taskhubctl: %s\n", why.c_str());
    std::exit(code);
}

std::string socketPath(const Globals& g) {
    if (g.socket) return *g.socket;
    if (const char* env = std::getenv("TASKHUB_SOCKET"); env && *env) return env;
    std::string cfgPath = g.config.value_or(config::kDefaultConfigPath);
    std::error_code ec;
    if (g.config || fs::exists(cfgPath, ec)) {
        try {
            return config::loadDaemonConfig(cfgPath).socket.string();
        } catch (const config::ConfigError& e) {
            fail("cannot read " + cfgPath + " to find the socket: " + e.what() + " (use --socket)", 2);
        }
    }
    return config::kDefaultSocketPath;
}

// Sends one request and returns the response's data; exits with a message on any error.
json::value call(const Globals& g, const std::string& cmd, json::object args) {
    std::string path = socketPath(g);
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(std::string("socket: ") + std::strerror(errno), 3);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) fail("socket path too long: " + path, 2);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        fail("cannot connect to " + path + ": " + std::strerror(errno) +
                 " (is taskhubd running? choose the socket with --socket or TASKHUB_SOCKET)",
             3);
    }
    json::object req;
    req["proto"] = 1;
    req["cmd"] = cmd;
    req["args"] = std::move(args);
    std::string line = json::serialize(req) + "\n";
    // A daemon that refuses the connection (a [control] limit) sends one error line and closes,
    // possibly before the request is sent: then the reason is read below, not the send error.
    int send_errno = 0;
    for (size_t off = 0; off < line.size();) {
        ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            send_errno = errno;
            break;
        }
        off += static_cast<size_t>(n);
    }
    std::string response;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        response.append(buf, static_cast<size_t>(n));
        if (response.back() == '\n') break;
    }
    ::close(fd);
    if (response.empty() && send_errno != 0) fail(std::string("cannot send request: ") + std::strerror(send_errno), 3);
    if (response.empty()) fail("taskhubd closed the connection without answering", 3);
    json::error_code ec;
    // Run params can hold bytes that are not UTF-8 (a dropped file's name).
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    auto v = json::parse(response, ec, {}, opts);
    if (ec || !v.is_object()) fail("unreadable response from taskhubd: " + response, 3);
    auto& o = v.as_object();
    if (!o.contains("ok") || !o["ok"].is_bool() || !o["ok"].as_bool()) {
        std::string msg = "request failed";
        if (o.contains("error") && o["error"].is_object()) {
            auto& e = o["error"].as_object();
            if (e.contains("message") && e["message"].is_string()) msg = std::string(e["message"].as_string());
        }
        fail(msg);
    }
    return o["data"];
}

// ---- output helpers ----

void printJson(const json::value& v, std::string indent = "") {
    const std::string in2 = indent + "  ";
    if (v.is_object()) {
        const auto& o = v.as_object();
        if (o.empty()) {
            std::cout << "{}";
            return;
        }
        std::cout << "{\n";
        size_t i = 0;
        for (const auto& kv : o) {
            std::cout << in2 << json::serialize(json::string(kv.key())) << ": ";
            printJson(kv.value(), in2);
            std::cout << (++i < o.size() ? ",\n" : "\n");
        }
        std::cout << indent << "}";
    } else if (v.is_array()) {
        const auto& a = v.as_array();
        if (a.empty()) {
            std::cout << "[]";
            return;
        }
        std::cout << "[\n";
        for (size_t i = 0; i < a.size(); ++i) {
            std::cout << in2;
            printJson(a[i], in2);
            std::cout << (i + 1 < a.size() ? ",\n" : "\n");
        }
        std::cout << indent << "]";
    } else {
        std::cout << json::serialize(v);
    }
}

void emitJson(const json::value& v) {
    printJson(v);
    std::cout << "\n";
}

// Text from the daemon as it may be shown on a terminal: control characters (C0, DEL and C1,
// e.g. in a dropped file's name or a task's message) are written as \xNN, so that no value can
// move the cursor, retitle the window or hide other output. `logs` alone prints what the task
// wrote as it is, as cat would.
std::string terminalSafe(std::string_view s) {
    static const char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        const bool c1 = c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                        static_cast<unsigned char>(s[i + 1]) <= 0x9f;
        if (c < 0x20 || c == 0x7f || c1) {
            if (c1) c = static_cast<unsigned char>(s[++i]);
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

std::string str(const json::value& v) {
    if (v.is_string()) return terminalSafe(v.as_string());
    if (v.is_null()) return "-";
    return json::serialize(v);
}

std::string field(const json::value& obj, const char* key) {
    if (!obj.is_object()) return "-";
    auto* p = obj.as_object().if_contains(key);
    return p ? str(*p) : "-";
}

// "2026-11-22T10:23:17.123Z" -> "2026-11-22 10:23:17"
std::string shortTime(const std::string& iso) {
    if (iso.size() < 19 || iso == "-") return iso;
    std::string s = iso.substr(0, 19);
    s[10] = ' ';
    return s + "Z";
}

int64_t isoToMs(const std::string& iso) {
    if (iso.size() < 23) return -1;
    std::tm tm{};
    if (!strptime(iso.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm)) return -1;
    return static_cast<int64_t>(timegm(&tm)) * 1000 + std::atoi(iso.substr(20, 3).c_str());
}

std::string formatMs(int64_t ms) {
    char buf[32];
    if (ms < 1000) std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
    else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
    else if (ms < 3'600'000)
        std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                      static_cast<long long>((ms / 1000) % 60));
    else
        std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                      static_cast<long long>((ms / 60'000) % 60));
    return buf;
}

// From started to ended; "running" while it lasts, "-" before it started.
std::string duration(const json::value& o) {
    int64_t a = isoToMs(field(o, "started"));
    int64_t b = isoToMs(field(o, "ended"));
    if (a < 0) return "-";
    if (b < 0) return "running";
    return formatMs(b - a);
}

// Lines of a table, columns padded to the widest cell.
std::vector<std::string> tableLines(const std::vector<std::string>& head,
                                    const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w(head.size());
    for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    std::vector<std::string> lines;
    auto line = [&](const std::vector<std::string>& r) {
        std::string out;
        for (size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
        }
        while (!out.empty() && out.back() == ' ') out.pop_back();
        lines.push_back(out);
    };
    line(head);
    for (const auto& r : rows) line(r);
    return lines;
}

void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    for (const auto& l : tableLines(head, rows)) std::cout << l << "\n";
}

// The daemon's duration_ms (up to now while it lasts), as text; "-" before it started.
std::string elapsed(const json::value& o) {
    const auto* d = o.is_object() ? o.as_object().if_contains("duration_ms") : nullptr;
    if (!d || d->is_null()) return "-";
    if (d->is_int64()) return formatMs(d->as_int64());
    if (d->is_uint64()) return formatMs(static_cast<int64_t>(d->as_uint64()));
    return duration(o);
}

const json::array& arrayField(const json::value& o, const char* key) {
    static const json::array empty;
    const auto* p = o.is_object() ? o.as_object().if_contains(key) : nullptr;
    return p && p->is_array() ? p->as_array() : empty;
}

bool isFinalState(const std::string& s) {
    return s == "succeeded" || s == "failed" || s == "cancelled" || s == "skipped";
}

// A child run's id relative to the root of its tree: "<root>/sub.1/inner.1" -> "sub.1/inner.1".
std::string relativeRunId(const std::string& root, const std::string& id) {
    if (id.size() > root.size() + 1 && id.compare(0, root.size(), root) == 0 && id[root.size()] == '/')
        return id.substr(root.size() + 1);
    return id;
}

// What a task row says besides its state: its message, else why it waits.
std::string taskNote(const json::value& t) {
    std::string msg = field(t, "message");
    if (msg == "-") msg.clear();
    std::string waiting = field(t, "waiting");
    if (waiting != "-" && !waiting.empty()) msg += (msg.empty() ? "" : "; ") + waiting;
    return msg;
}

// One row per task; the child runs of a workflow task follow it, indented, with their tasks.
// Columns: TASK, STATE, ATTEMPT, EXIT, DURATION, MESSAGE.
void treeRows(const std::string& root, const json::value& run, const std::string& indent,
              std::vector<std::vector<std::string>>& rows) {
    const auto& children = arrayField(run, "children");
    for (const auto& t : arrayField(run, "tasks")) {
        rows.push_back({indent + field(t, "id"), field(t, "state"), field(t, "attempt"), field(t, "exit_code"),
                        elapsed(t), taskNote(t)});
        for (const auto& c : children) {
            if (field(c, "parent_task") != field(t, "id")) continue;
            std::string msg = field(c, "message");
            rows.push_back({indent + "  run " + relativeRunId(root, field(c, "id")), field(c, "state"), "-", "-",
                            elapsed(c), field(c, "workflow") + (msg.empty() || msg == "-" ? "" : ": " + msg)});
            treeRows(root, c, indent + "    ", rows);
        }
    }
}

const std::vector<std::string> kTaskHead = {"TASK", "STATE", "ATTEMPT", "EXIT", "DURATION", "MESSAGE"};

std::string paramsText(const json::value& run) {
    const auto* p = run.is_object() ? run.as_object().if_contains("params") : nullptr;
    if (!p || !p->is_object() || p->as_object().empty()) return "";
    std::string out;
    for (const auto& kv : p->as_object()) {
        out += (out.empty() ? "" : ", ") + std::string(kv.key()) + "=" + str(kv.value());
    }
    return out;
}

void printRunDetail(const json::value& run) {
    std::cout << "run       " << field(run, "id") << "\n"
              << "workflow  " << field(run, "workflow") << " (" << field(run, "trigger") << ")\n"
              << "state     " << field(run, "state") << "\n";
    if (!field(run, "message").empty() && field(run, "message") != "-")
        std::cout << "message   " << field(run, "message") << "\n";
    if (std::string params = paramsText(run); !params.empty()) std::cout << "params    " << params << "\n";
    if (std::string parent = field(run, "parent_run"); !parent.empty() && parent != "-")
        std::cout << "parent    " << parent << " (task " << field(run, "parent_task") << ")\n";
    if (std::string lost = field(run, "lost"); lost != "0" && lost != "-")
        std::cout << "lost      " << lost << " attempt(s) interrupted by a taskhubd crash (events: lost, recovered)\n";
    std::cout << "started   " << shortTime(field(run, "started")) << "\n"
              << "ended     " << shortTime(field(run, "ended")) << "\n"
              << "duration  " << elapsed(run) << "\n\n";
    std::vector<std::vector<std::string>> rows;
    treeRows(field(run, "id"), run, "", rows);
    for (const auto& l : tableLines(kTaskHead, rows)) std::cout << l << "\n";
}

// Task counts over the whole tree, by state.
void countTasks(const json::value& run, std::map<std::string, int>& counts) {
    for (const auto& t : arrayField(run, "tasks")) ++counts[field(t, "state")];
    for (const auto& c : arrayField(run, "children")) countTasks(c, counts);
}

// "progress: 3/7 tasks done (2 succeeded, 1 skipped); 2 running, 2 pending; run running, 4.1s"
std::string progressLine(const json::value& run) {
    std::map<std::string, int> counts;
    countTasks(run, counts);
    int total = 0, done = 0;
    std::string doneText, activeText;
    for (const auto& [state, n] : counts) {
        total += n;
        if (isFinalState(state)) {
            done += n;
            doneText += (doneText.empty() ? "" : ", ") + std::to_string(n) + " " + state;
        }
    }
    static const char* kActive[] = {"running", "frozen", "retrying", "ready", "pending"};
    for (const char* state : kActive) {
        if (auto it = counts.find(state); it != counts.end()) {
            activeText += (activeText.empty() ? "" : ", ") + std::to_string(it->second) + " " + state;
        }
    }
    return "progress: " + std::to_string(done) + "/" + std::to_string(total) + " tasks done" +
           (doneText.empty() ? "" : " (" + doneText + ")") + (activeText.empty() ? "" : "; " + activeText) +
           "; run " + field(run, "state") + ", " + elapsed(run);
}

json::object args() { return json::object(); }

// ---- commands ----

int cmdStatus(const Globals& g) {
    auto d = call(g, "status", args());
    if (g.json) return emitJson(d), 0;
    std::cout << "taskhubd " << field(d, "version") << " (pid " << field(d, "pid") << "), up "
              << field(d, "uptime_s") << "s" << (d.as_object().at("shutting_down").as_bool() ? ", SHUTTING DOWN" : "")
              << "\n"
              << "config          " << field(d, "config") << "\n"
              << "state           " << field(d, "state_dir") << "\n"
              << "workflows       " << field(d, "workflows") << " loaded, " << field(d, "workflow_errors")
              << " file(s) with errors\n"
              << "plugins         " << field(d, "plugins") << " loaded, " << field(d, "plugins_refused")
              << " refused, " << field(d, "plugins_unhealthy") << " unhealthy\n"
              << "runs            " << field(d, "active_runs") << " active, " << field(d, "queued_runs")
              << " queued, " << field(d, "runs_started") << " started since start\n"
              << "tasks           " << field(d, "running_tasks") << " running, " << field(d, "waiting_tasks")
              << " waiting for a slot\n"
              << "worker threads  " << field(d, "worker_threads") << " of max " << field(d, "worker_threads_max")
              << "\n";
    // Older daemons do not send store_problem.
    if (auto it = d.as_object().find("store_problem"); it != d.as_object().end() && it->value().is_string()) {
        std::cout << "STORE           " << str(it->value())
                  << "\n                no new runs and no changes until then; reads keep working\n";
    }
    return 0;
}

// "a, b, c" of a JSON array of strings; "-" when empty.
std::string joinStrings(const json::value& arr) {
    std::string out;
    if (arr.is_array()) {
        for (const auto& v : arr.as_array()) out += (out.empty() ? "" : ", ") + str(v);
    }
    return out.empty() ? "-" : out;
}

int cmdPlugins(const Globals& g) {
    auto d = call(g, "plugins", args());
    if (g.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& p : arrayField(d, "plugins")) {
        rows.push_back({field(p, "name"), field(p, "version"), field(p, "abi"), field(p, "isolation"),
                        field(p, "state"), field(p, "running"), shortTime(field(p, "since")), field(p, "message")});
    }
    table({"PLUGIN", "VERSION", "ABI", "ISOLATION", "STATE", "RUNNING", "SINCE", "MESSAGE"}, rows);
    const auto& refused = arrayField(d, "refused");
    if (!refused.empty()) {
        std::cout << "\nrefused (" << refused.size() << "):\n";
        for (const auto& r : refused) std::cout << "  " << field(r, "file") << ": " << field(r, "reason") << "\n";
    }
    return 0;
}

int cmdPluginShow(const Globals& g, const std::string& name, int history) {
    json::object a;
    a["name"] = name;
    if (history > 0) a["history"] = history;
    auto d = call(g, "plugin_show", a);
    if (g.json) return emitJson(d), 0;
    const auto& h = d.as_object().at("health");
    const std::string limit = field(d, "max_concurrency") == "0" ? "unlimited" : field(d, "max_concurrency");
    std::cout << "plugin         " << field(d, "name") << " " << field(d, "version") << " (ABI " << field(d, "abi")
              << ")\n"
              << "description    " << field(d, "description") << "\n"
              << "file           " << field(d, "file") << "\n"
              << "capabilities   " << joinStrings(d.as_object().at("capabilities")) << "\n"
              << "threads        " << field(d, "thread_safety") << "\n"
              << "isolation      " << field(d, "isolation") << "\n"
              << "state          " << field(d, "state") << " since " << shortTime(field(d, "since")) << "\n"
              << "message        " << field(d, "message") << "\n"
              << "last check     " << shortTime(field(d, "last_check")) << " (" << field(d, "checks")
              << " checks, " << field(d, "failures") << " failed in a row)\n"
              << "health checks  every " << formatMs(h.as_object().at("interval_ms").to_number<int64_t>())
              << ", timeout " << formatMs(h.as_object().at("timeout_ms").to_number<int64_t>())
              << ", unhealthy after " << field(h, "unhealthy_after") << ", healthy after "
              << field(h, "healthy_after") << ", on_unhealthy = " << field(h, "on_unhealthy") << "\n"
              << "running        " << field(d, "running") << " task(s), max_concurrency " << limit << "\n";
    const auto& hist = arrayField(d, "history");
    std::cout << "\nhealth transitions (" << hist.size() << (hist.empty() ? "" : ", oldest first") << "):\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : hist) {
        rows.push_back({shortTime(field(t, "at")), field(t, "from") + " -> " + field(t, "to"), field(t, "message")});
    }
    if (!rows.empty()) table({"TIME", "CHANGE", "WHY"}, rows);
    return 0;
}

int cmdList(const Globals& g) {
    auto d = call(g, "list", args());
    if (g.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : d.as_object().at("workflows").as_array()) {
        // NEXT: the earliest next firing over all triggers (a watch trigger has none).
        std::string triggers, next;
        int64_t next_ms = -1;
        for (const auto& t : w.as_object().at("triggers").as_array()) {
            triggers += (triggers.empty() ? "" : ", ") + field(t, "text");
            const std::string at = field(t, "next");
            if (int64_t ms = isoToMs(at); ms >= 0 && (next_ms < 0 || ms < next_ms)) {
                next_ms = ms;
                next = shortTime(at);
            }
        }
        const auto& last = w.as_object().at("last_run");
        if (!w.as_object().at("paused").is_null()) next = "paused";
        rows.push_back({field(w, "name"), triggers.empty() ? "(manual)" : triggers, next.empty() ? "-" : next,
                        last.is_null() ? "-" : field(last, "state") + " " + shortTime(field(last, "created"))});
    }
    table({"WORKFLOW", "TRIGGERS", "NEXT", "LAST RUN"}, rows);
    const auto& errors = d.as_object().at("errors").as_array();
    if (!errors.empty()) {
        std::cout << "\nfiles with errors (" << errors.size() << "):\n";
        for (const auto& e : errors) std::cout << "  " << field(e, "message") << "\n";
    }
    return 0;
}

// The `show` data of a run as one tree, the root's events merged in, as `show --json` prints it.
json::value fetchRunTree(const Globals& g, const std::string& id) {
    json::object a;
    a["name"] = id;
    auto d = call(g, "show", a);
    const auto& o = d.as_object();
    if (o.at("kind").as_string() != "run") {
        fail("'" + id + "' is a workflow, not a run id (start and follow a run with `run " + id + " --follow`)");
    }
    json::value run = o.at("run");
    run.as_object()["events"] = o.at("events");
    return run;
}

void printEvents(const std::string& root, const json::value& run) {
    struct Row {
        std::string time, who, kind, detail;
        int64_t seq;
    };
    std::vector<Row> rows;
    auto collect = [&](auto& self, const json::value& node) -> void {
        std::string label = field(node, "id") == root ? "" : relativeRunId(root, field(node, "id")) + "/";
        for (const auto& e : arrayField(node, "events")) {
            std::string task = field(e, "task");
            rows.push_back({field(e, "time"), task.empty() ? (label.empty() ? "(run)" : label + "(run)") : label + task,
                            field(e, "kind"), field(e, "detail"),
                            e.as_object().contains("seq") && e.at("seq").is_int64() ? e.at("seq").as_int64() : 0});
        }
        for (const auto& c : arrayField(node, "children")) self(self, c);
    };
    collect(collect, run);
    // The store's recording order across the whole tree: a child's events come before the parent
    // task's end that they caused, even within one millisecond.
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.seq < b.seq; });
    for (const auto& r : rows) {
        std::cout << "  " << shortTime(r.time) << "  " << r.who << "  " << r.kind
                  << (r.detail.empty() ? "" : "  " + r.detail) << "\n";
    }
}

// Every attempt of the tasks (in the whole tree) that ran more than once, from the event log:
// when it started, how long it took and how it ended ("failed: exit code 1; retry 1 of 2 in 5s").
void printAttempts(const std::string& root, const json::value& run) {
    struct Attempt {
        std::string number, started, ended, outcome;
    };
    struct Event {
        int64_t seq;
        std::string task, kind, time, detail;
    };
    std::vector<Event> events;
    auto collect = [&](auto& self, const json::value& node) -> void {
        std::string label = field(node, "id") == root ? "" : relativeRunId(root, field(node, "id")) + "/";
        for (const auto& e : arrayField(node, "events")) {
            if (field(e, "task").empty() || field(e, "task") == "-") continue;
            events.push_back({e.as_object().contains("seq") && e.at("seq").is_int64() ? e.at("seq").as_int64() : 0,
                              label + field(e, "task"), field(e, "kind"), field(e, "time"), field(e, "detail")});
        }
        for (const auto& c : arrayField(node, "children")) self(self, c);
    };
    collect(collect, run);
    std::stable_sort(events.begin(), events.end(), [](const Event& a, const Event& b) { return a.seq < b.seq; });
    std::vector<std::string> order;
    std::map<std::string, std::vector<Attempt>> attempts;
    for (const auto& e : events) {
        auto& list = attempts[e.task];
        if (e.kind == "start") {
            if (list.empty()) order.push_back(e.task);
            // "attempt 2" or "attempt 2: child run ..."
            std::string n = e.detail.rfind("attempt ", 0) == 0 ? e.detail.substr(8, e.detail.find(':') - 8) : "?";
            list.push_back({n, e.time, "", ""});
        } else if (!list.empty() && list.back().ended.empty() &&
                   (e.kind == "end" || e.kind == "cancelled" || e.kind == "lost")) {
            list.back().ended = e.time;
            list.back().outcome = e.detail;
        }
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& task : order) {
        const auto& list = attempts[task];
        if (list.size() < 2) continue;
        for (const auto& at : list) {
            int64_t a = isoToMs(at.started), b = isoToMs(at.ended);
            rows.push_back({task, at.number, shortTime(at.started), a < 0 ? "-" : b < 0 ? "running" : formatMs(b - a),
                            at.ended.empty() ? "" : at.outcome});
        }
    }
    if (rows.empty()) return;
    std::cout << "\nATTEMPTS (tasks that ran more than once)\n";
    for (const auto& l : tableLines({"TASK", "ATTEMPT", "STARTED", "DURATION", "OUTCOME"}, rows)) {
        std::cout << "  " << l << "\n";
    }
}

int cmdShow(const Globals& g, const std::string& name) {
    json::object a;
    a["name"] = name;
    auto d = call(g, "show", a);
    const auto& o = d.as_object();
    if (o.at("kind").as_string() == "run") {
        json::value run = o.at("run");
        run.as_object()["events"] = o.at("events");
        if (g.json) return emitJson(run), 0;
        printRunDetail(run);
        bool outputs = false;
        auto printOutputs = [&](auto& self, const json::value& node, const std::string& label) -> void {
            for (const auto& t : arrayField(node, "tasks")) {
                const auto* out = t.as_object().if_contains("outputs");
                if (!out || !out->is_object()) continue;
                for (const auto& kv : out->as_object()) {
                    if (!outputs) std::cout << "\nOUTPUTS\n";
                    outputs = true;
                    std::cout << "  " << label << field(t, "id") << "." << std::string(kv.key()) << " = "
                              << str(kv.value()) << "\n";
                }
            }
            for (const auto& c : arrayField(node, "children")) {
                self(self, c, relativeRunId(field(run, "id"), field(c, "id")) + "/");
            }
        };
        printOutputs(printOutputs, run, "");
        printAttempts(field(run, "id"), run);
        std::cout << "\nEVENTS\n";
        printEvents(field(run, "id"), run);
        return 0;
    }
    const auto& w = o.at("workflow");
    if (g.json) return emitJson(w), 0;
    std::cout << "workflow     " << field(w, "name") << "\n"
              << "file         " << field(w, "file") << "\n";
    if (!field(w, "description").empty()) std::cout << "description  " << field(w, "description") << "\n";
    std::cout << "timezone     " << field(w, "timezone") << "\n"
              << "policy       overlap=" << field(w, "overlap") << " on_failure=" << field(w, "on_failure") << "\n"
              << "version      " << field(w, "version") << "\n";
    if (std::string params = paramsText(w); !params.empty()) std::cout << "params       " << params << "\n";
    for (const auto& t : w.as_object().at("triggers").as_array()) {
        if (field(t, "kind") == "file") {
            std::cout << "trigger      " << field(t, "text") << ", " << field(t, "state") << "\n";
        } else {
            std::cout << "trigger      " << field(t, "text") << ", next " << shortTime(field(t, "next")) << "\n";
        }
    }
    if (const auto& p = w.as_object().at("paused"); !p.is_null()) {
        std::cout << "paused       since " << shortTime(field(p, "since")) << " by " << field(p, "by")
                  << " (firings are recorded as skipped; `taskhubctl resume " << field(w, "name") << "`)\n";
    }
    const auto& last = w.as_object().at("last_run");
    if (!last.is_null()) {
        std::cout << "last run     " << field(last, "id") << " " << field(last, "state") << "\n";
    }
    std::cout << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& t : w.as_object().at("tasks").as_array()) {
        std::string deps;
        for (const auto& dep : t.as_object().at("depends_on").as_array()) deps += (deps.empty() ? "" : ",") + str(dep);
        std::string wf = field(t, "workflow");
        std::string run_as = field(t, "run_as");
        rows.push_back({field(t, "id"), wf.empty() || wf == "-" ? field(t, "plugin") : "workflow " + wf,
                        deps.empty() ? "-" : deps, run_as.empty() ? "-" : run_as,
                        json::serialize(t.as_object().at("params"))});
    }
    table({"TASK", "RUNS", "DEPENDS ON", "RUN AS", "PARAMS"}, rows);
    return 0;
}

// Exit status of a run that has ended: 0 when it succeeded, else 1 with the reason on stderr
// (in the table format; --json carries it in the data).
int runExitStatus(const Globals& g, const json::value& run) {
    std::string state = field(run, "state");
    if (state == "succeeded") return 0;
    if (!g.json) std::fprintf(stderr, "taskhubctl: run %s %s: %s\n", field(run, "id").c_str(), state.c_str(),
                              field(run, "message").c_str());
    return 1;
}

int finishedRun(const Globals& g, const json::value& run) {
    if (g.json) emitJson(run);
    else printRunDetail(run);
    return runExitStatus(g, run);
}

// ---- watch ----

std::string clockNow() {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[16];
    std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
    return buf;
}

std::string isoNow() {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    std::time_t t = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[40];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    char out[48];
    std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
    return out;
}

// Prints what changed since the last poll: one line (or, with --json, one JSON object) per run or
// task whose state or attempt changed. seen maps "run\ntask" to "state#attempt".
void printChanges(const Globals& g, const std::string& root, const json::value& run,
                  std::map<std::string, std::string>& seen) {
    std::string id = field(run, "id");
    std::string label = id == root ? "" : relativeRunId(root, id) + "/";
    auto changed = [&](const std::string& key, const std::string& now) {
        auto& before = seen[key];
        if (before == now) return false;
        before = now;
        return true;
    };
    auto emit = [&](const std::string& task, const json::value& o, bool is_task) {
        std::string state = field(o, "state");
        std::string note = is_task ? taskNote(o) : field(o, "message");
        if (note == "-") note.clear();
        if (g.json) {
            json::object line;
            line["time"] = isoNow();
            line["run"] = id;
            line["task"] = task;
            line["state"] = state;
            const auto* attempt = is_task ? o.as_object().if_contains("attempt") : nullptr;
            line["attempt"] = attempt ? *attempt : json::value(nullptr);
            const auto* d = o.as_object().if_contains("duration_ms");
            line["duration_ms"] = d ? *d : json::value(nullptr);
            line["message"] = note;
            std::cout << json::serialize(line) << "\n";
            return;
        }
        std::string text = clockNow() + "  ";
        if (is_task) text += label + task + "  " + state + "  attempt " + field(o, "attempt");
        else text += "run " + (label.empty() ? id : label.substr(0, label.size() - 1)) + "  " + state;
        if (isFinalState(state)) text += "  " + elapsed(o);
        if (!note.empty()) text += "  " + note;
        std::cout << text << "\n";
    };
    // In the order things happen: a run (or workflow task) starts before what it contains, and
    // ends after it.
    const bool ended = isFinalState(field(run, "state"));
    if (!ended && changed(id + "\n", field(run, "state"))) emit("", run, false);
    for (const auto& t : arrayField(run, "tasks")) {
        const bool task_ended = isFinalState(field(t, "state"));
        auto children = [&] {
            for (const auto& c : arrayField(run, "children")) {
                if (field(c, "parent_task") == field(t, "id")) printChanges(g, root, c, seen);
            }
        };
        if (task_ended) children();
        if (changed(id + "\n" + field(t, "id"), field(t, "state") + "#" + field(t, "attempt"))) {
            emit(field(t, "id"), t, true);
        }
        if (!task_ended) children();
    }
    if (ended && changed(id + "\n", field(run, "state"))) emit("", run, false);
}

struct TerminalSize {
    size_t rows = 24;
    size_t cols = 80;
};

TerminalSize terminalSize() {
    TerminalSize size;
    struct winsize ws {};
    if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0) {
        size.rows = ws.ws_row;
        size.cols = ws.ws_col;
    }
    return size;
}

// Redraws the run's view in place: the previous frame (`drawn` lines) is overwritten.
void redraw(const json::value& run, size_t& drawn) {
    std::vector<std::string> lines;
    lines.push_back("run " + field(run, "id") + "  (" + field(run, "workflow") + ")");
    std::vector<std::vector<std::string>> rows;
    treeRows(field(run, "id"), run, "", rows);
    for (auto& l : tableLines(kTaskHead, rows)) lines.push_back(std::move(l));
    lines.push_back("");
    lines.push_back(progressLine(run));
    auto size = terminalSize();
    if (size.rows > 2 && lines.size() > size.rows - 1) {
        size_t hidden = lines.size() - (size.rows - 2);
        std::string progress = lines.back();
        lines.resize(size.rows - 3);
        lines.push_back("... " + std::to_string(hidden) + " more line(s) (the terminal is too small)");
        lines.push_back(progress);
    }
    std::string out;
    if (drawn > 0) out += "\x1b[" + std::to_string(drawn) + "F"; // to the start of the previous frame
    for (auto& l : lines) {
        if (l.size() >= size.cols) l.resize(size.cols - 1);
        out += "\x1b[2K" + l + "\n";
    }
    out += "\x1b[J"; // clear what the previous frame had below
    std::cout << out << std::flush;
    drawn = lines.size();
}

constexpr auto kWatchPoll = std::chrono::milliseconds(300);

// Follows a run until it ends: a redrawn view on a terminal, lines of changes otherwise.
// Exit status as for `wait`.
int watchRun(const Globals& g, const std::string& id) {
    const bool tty = !g.json && ::isatty(STDOUT_FILENO);
    std::map<std::string, std::string> seen;
    size_t drawn = 0;
    for (;;) {
        json::value run = fetchRunTree(g, id);
        bool ended = isFinalState(field(run, "state"));
        if (tty) {
            redraw(run, drawn);
        } else {
            printChanges(g, field(run, "id"), run, seen);
            if (ended && !g.json) std::cout << progressLine(run) << "\n";
            std::cout << std::flush;
        }
        if (ended) return runExitStatus(g, run);
        std::this_thread::sleep_for(kWatchPoll);
    }
}

enum class Follow { None, Wait, Watch };

int cmdRun(const Globals& g, const std::string& wf, const std::vector<std::pair<std::string, std::string>>& params,
           Follow follow) {
    json::object a;
    a["workflow"] = wf;
    a["wait"] = follow == Follow::Wait;
    if (!params.empty()) {
        json::object p;
        for (const auto& [name, value] : params) p[name] = value;
        a["params"] = std::move(p);
    }
    auto run = call(g, "run", a);
    if (follow == Follow::Wait) return finishedRun(g, run);
    // A firing skipped by the overlap policy did not run: that is a failure, in either format.
    if (field(run, "state") == "skipped") {
        if (g.json) emitJson(run);
        else std::cout << field(run, "id") << " " << field(run, "state") << "\n";
        std::fprintf(stderr, "taskhubctl: %s\n", field(run, "message").c_str());
        return 1;
    }
    if (follow == Follow::Watch) return watchRun(g, field(run, "id"));
    if (g.json) emitJson(run);
    else std::cout << field(run, "id") << " " << field(run, "state") << "\n";
    return 0;
}

int cmdWait(const Globals& g, const std::string& id) {
    json::object a;
    a["run"] = id;
    return finishedRun(g, call(g, "wait", a));
}

// A --since/--until value: an ISO 8601 time (with an offset, or a date: midnight UTC) or a
// duration back from now ("2h", "7d"), as the ISO 8601 instant the daemon takes.
std::string timeArg(const char* option, const std::string& text) {
    std::string err;
    if (!text.empty() && text[0] >= '0' && text[0] <= '9' && text.find('-') == std::string::npos) {
        if (auto d = parseDuration(text, &err)) {
            auto now = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
            return formatIsoSeconds(now - std::chrono::ceil<std::chrono::seconds>(*d));
        }
        usage(std::string(option) + ": " + err);
    }
    std::string iso = text.size() == 10 ? text + "T00:00:00Z" : text; // a date alone
    if (auto t = parseIsoInstant(iso, &err)) return formatIsoSeconds(*t);
    usage(std::string(option) + " needs an ISO 8601 time (2026-11-22T10:00:00Z, 2026-11-22) or a duration back "
                                "from now (2h, 7d): " + err);
}

int cmdRuns(const Globals& g, const std::optional<std::string>& wf, const std::optional<std::string>& state,
            const std::optional<std::string>& since, const std::optional<std::string>& until, int limit, bool all) {
    json::object a;
    if (wf) a["workflow"] = *wf;
    if (state) a["state"] = *state;
    if (since) a["since"] = timeArg("--since", *since);
    if (until) a["until"] = timeArg("--until", *until);
    a["limit"] = limit;
    a["all"] = all;
    auto d = call(g, "runs", a);
    if (g.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& r : d.as_array()) {
        rows.push_back({field(r, "id"), field(r, "workflow"), field(r, "trigger"), field(r, "state"),
                        shortTime(field(r, "started")), duration(r), field(r, "message")});
    }
    table({"RUN", "WORKFLOW", "TRIGGER", "STATE", "STARTED", "DURATION", "MESSAGE"}, rows);
    return 0;
}

// Sends a change (cancel, pause, resume, retry) and prints `done` or the run as JSON.
int change(const Globals& g, const char* cmd, json::object a, const std::string& done) {
    auto run = call(g, cmd, std::move(a));
    if (g.json) return emitJson(run), 0;
    std::cout << done << " (run " << field(run, "state") << ")\n";
    return 0;
}

int cmdCancel(const Globals& g, const std::string& id, const std::optional<std::string>& task) {
    json::object a;
    a["run"] = id;
    if (task) a["task"] = *task;
    return change(g, "cancel", std::move(a),
                  task ? "cancelling task " + *task + " of " + id : "cancelling " + id);
}

// A run id always has an '@'; a workflow name never has one.
bool isRunId(const std::string& name) { return name.find('@') != std::string::npos; }

// Pausing or resuming a workflow's schedule: the answer is the workflow.
int workflowChange(const Globals& g, const char* cmd, const std::string& name, const std::string& done) {
    json::object a;
    a["workflow"] = name;
    auto w = call(g, cmd, std::move(a));
    if (g.json) return emitJson(w), 0;
    std::cout << done << "\n";
    return 0;
}

int cmdPause(const Globals& g, const std::string& id, bool freeze) {
    if (!isRunId(id)) {
        if (freeze) {
            std::cerr << "taskhubctl: --freeze applies to runs (NAME@...); pausing workflow '" << id
                      << "' stops its schedule and touches no running task\n";
            return 2;
        }
        return workflowChange(g, "pause", id,
                              "paused workflow " + id + ": its firings are recorded as skipped until `taskhubctl "
                              "resume " + id + "`");
    }
    json::object a;
    a["run"] = id;
    a["freeze"] = freeze;
    return change(g, "pause", std::move(a),
                  "paused " + id + (freeze ? "; running tasks frozen" : "; running tasks go on"));
}

int cmdResume(const Globals& g, const std::string& id) {
    if (!isRunId(id)) {
        return workflowChange(g, "resume", id,
                              "resumed workflow " + id + "; missed firings follow its catch-up policy (see "
                              "`taskhubctl runs " + id + "`)");
    }
    json::object a;
    a["run"] = id;
    return change(g, "resume", std::move(a), "resumed " + id);
}

int cmdRetry(const Globals& g, const std::string& id, const std::optional<std::string>& task, bool downstream) {
    json::object a;
    a["run"] = id;
    if (task) a["task"] = *task;
    a["downstream"] = downstream;
    std::string what = task ? "task " + *task : "the failed and cancelled tasks";
    return change(g, "retry", std::move(a),
                  "retrying " + what + (downstream ? " and the tasks downstream" : "") + " of " + id);
}

constexpr auto kLogPoll = std::chrono::milliseconds(300);

// With follow: the output so far, then what the attempt writes, polled from the position the
// last answer ended at, until the attempt has ended and everything it wrote is shown. The
// attempt is fixed by the first answer, so a retry's next attempt is not mixed in.
int cmdLogs(const Globals& g, const std::string& run, const std::string& task, int attempt, bool follow) {
    json::object a;
    a["run"] = run;
    a["task"] = task;
    if (attempt > 0) a["attempt"] = attempt;
    auto d = call(g, "logs", a);
    if (g.json) {
        if (!follow) return emitJson(d), 0;
        std::cout << json::serialize(d) << "\n" << std::flush;
    } else {
        if (d.as_object().at("truncated").as_bool()) std::cout << "[... earlier output not shown ...]\n";
        std::cout << std::string_view(d.as_object().at("content").as_string()) << std::flush;
    }
    if (!follow) return 0;
    a["attempt"] = d.as_object().at("attempt");
    for (;;) {
        const bool active = d.as_object().at("active").as_bool();
        const bool got = !d.as_object().at("content").as_string().empty();
        if (!active && !got) return 0;
        if (active && !got) std::this_thread::sleep_for(kLogPoll);
        a["offset"] = d.as_object().at("next_offset");
        d = call(g, "logs", a);
        if (g.json) {
            if (!d.as_object().at("content").as_string().empty()) std::cout << json::serialize(d) << "\n";
        } else {
            std::cout << std::string_view(d.as_object().at("content").as_string());
        }
        std::cout << std::flush;
    }
}

int cmdReload(const Globals& g) {
    auto d = call(g, "reload", args());
    if (g.json) return emitJson(d), 0;
    std::cout << "loaded " << field(d, "loaded") << " workflow(s), " << field(d, "failed") << " file(s) with problems\n";
    for (const auto& p : d.as_object().at("problems").as_array()) std::cout << "  " << str(p) << "\n";
    return 0;
}

int cmdValidate(const Globals& g, const std::vector<std::string>& files) {
    std::string cfgPath = g.config.value_or(config::kDefaultConfigPath);
    config::DaemonConfig cfg;
    try {
        cfg = config::loadDaemonConfig(cfgPath);
    } catch (const config::ConfigError& e) {
        for (const auto& p : e.problems()) std::fprintf(stderr, "%s\n", p.str().c_str());
        fail("validate needs the daemon config to find the plugins (use --config FILE)", 2);
    }
    // The plugin host logs for the daemon's journal; here a refused plugin is a warning on stderr
    // and stdout carries only the findings.
    spdlog::set_level(spdlog::level::off);
    plugin_host::PluginHost plugins(nullptr, nullptr);
    plugin_host::LoadPolicy policy;
    policy.default_isolation = cfg.default_isolation; // which plugins may use run_as depends on it
    plugins.setLoadPolicy(policy);
    plugins.loadDirectories(cfg.plugin_dirs, cfg.plugins);
    for (const auto& r : plugins.refused()) {
        std::fprintf(stderr, "taskhubctl: warning: plugin %s refused: %s\n", r.file.c_str(), r.reason.c_str());
    }
    // Workflow tasks are checked against the other files given and the daemon's workflows_dir.
    std::vector<fs::path> paths(files.begin(), files.end());
    config::WorkflowDefaults defaults{cfg.timezone, {}, {}, cfg.workflow_limits};
    defaults.default_run_as = cfg.default_run_as;
    auto loads = config::validateWorkflowFiles(paths, cfg.workflows_dir, defaults, plugins);
    json::array results;
    int bad = 0;
    for (size_t i = 0; i < files.size() && i < loads.size(); ++i) {
        const auto& f = files[i];
        const auto& load = loads[i];
        // Only the daemon enforces who may write a workflow (a user may check the syntax of a file
        // in their home); here it is a warning, judged as taskhubd running as root would.
        if (std::string why; !trust::openTrusted(f, trust::Kind::RegularFile, trust::Owners{0}, &why)) {
            std::fprintf(stderr, "taskhubctl: warning: %s: taskhubd running as root would refuse this file: %s\n",
                         f.c_str(), why.c_str());
        }
        json::object r;
        r["file"] = f;
        r["ok"] = load.workflow != nullptr;
        json::array problems;
        for (const auto& p : load.problems) {
            json::object po;
            po["line"] = p.line;
            po["message"] = p.message;
            po["text"] = p.str();
            problems.push_back(std::move(po));
            if (!g.json) std::cout << p.str() << "\n";
        }
        r["problems"] = std::move(problems);
        json::array warnings;
        for (const auto& w : load.workflow ? load.workflow->warnings : std::vector<config::Diagnostic>{}) {
            warnings.push_back(json::object{{"line", w.line}, {"message", w.message}, {"text", w.str()}});
            if (!g.json) std::cout << w.file << ":" << w.line << ": warning: " << w.message << "\n";
        }
        r["warnings"] = std::move(warnings);
        if (!load.workflow) ++bad;
        else if (!g.json) std::cout << f << ": ok (" << load.workflow->tasks.size() << " task(s))\n";
        results.push_back(std::move(r));
    }
    if (g.json) emitJson(results);
    return bad ? 1 : 0;
}

// ---- next ----

// The zone taskhubd gives a workflow that names none: the config's `timezone`, else the system
// zone. The config is read when --config is given or the default file exists.
const date::time_zone* defaultZone(const Globals& g) {
    std::string cfgPath = g.config.value_or(config::kDefaultConfigPath);
    std::error_code ec;
    if (g.config || fs::exists(cfgPath, ec)) {
        try {
            std::string zone = config::loadDaemonConfig(cfgPath).timezone;
            if (!zone.empty()) return date::locate_zone(zone);
        } catch (const config::ConfigError& e) {
            fail("cannot read " + cfgPath + " to find the default time zone: " + e.what() + " (use --tz)", 2);
        }
    }
    try {
        return date::current_zone();
    } catch (const std::exception& e) {
        fail(std::string("cannot determine the system time zone: ") + e.what() + " (use --tz)", 2);
    }
}

struct OfflineNext {
    std::string cron;
    std::optional<std::string> tz;
    std::optional<std::string> from;
    size_t n = 5;
    cron::DstPolicy policy;
    std::string name; // hash key of H fields
};

int cmdNextOffline(const Globals& g, const OfflineNext& a) {
    std::string err;
    auto expr = cron::CronExpr::parse(a.cron, &err, a.name);
    if (!expr) {
        // H picks its values from the workflow's name, which only --name can tell offline.
        bool hashes = a.cron.find('H') != std::string::npos;
        fail("cron \"" + a.cron + "\": " + err + (hashes && a.name.empty() ? "; give the workflow's name with --name" : ""),
             2);
    }
    const date::time_zone* tz = nullptr;
    if (a.tz) {
        tz = ctl::findZone(*a.tz, &err);
        if (!tz) fail("--tz: " + err, 2);
    } else {
        tz = defaultZone(g);
    }
    auto after = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
    if (a.from) {
        auto t = parseIsoInstant(*a.from, &err);
        if (!t) fail("--from: " + err, 2);
        after = *t;
    }
    if (expr->isReboot()) {
        fail("cron \"" + a.cron + "\" fires once each time the machine boots, when taskhubd starts; "
             "it has no instants to show", 1);
    }
    auto firings = ctl::previewFirings(*expr, tz, after, a.n, a.policy);
    const std::string zone(tz->name());
    if (g.json) {
        json::array out;
        for (const auto& f : firings) {
            json::object o;
            o["utc"] = formatIsoSeconds(f.instant);
            o["local"] = f.local;
            o["zone"] = zone;
            o["dst"] = f.dst == ctl::DstNote::None ? json::value(nullptr) : json::value(ctl::dstNoteName(f.dst));
            if (f.dst == ctl::DstNote::Gap) o["skipped_wall"] = f.skipped_wall;
            out.push_back(std::move(o));
        }
        emitJson(out);
        return 0;
    }
    std::cout << "cron \"" << a.cron << "\" in " << zone << " (dst_gap " << ctl::dstGapName(a.policy.gap)
              << ", dst_fold " << ctl::dstFoldName(a.policy.fold) << "), after "
              << ctl::formatIsoLocal(after, tz) << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : firings) rows.push_back({f.local, formatIsoSeconds(f.instant), ctl::dstNoteText(f)});
    if (!rows.empty()) table({"LOCAL", "UTC", "NOTE"}, rows);
    if (firings.empty()) {
        std::cout << "no firing within 8 years after " << ctl::formatIsoLocal(after, tz) << "\n";
    } else if (firings.size() < a.n) {
        std::cout << "no further firing within 8 years after the last one\n";
    }
    return 0;
}

int cmdNextWorkflow(const Globals& g, const std::string& wf, size_t n) {
    json::object a;
    a["workflow"] = wf;
    a["n"] = n;
    auto d = call(g, "next", a);
    if (g.json) return emitJson(d), 0;
    std::cout << "workflow " << field(d, "workflow") << " in " << field(d, "timezone") << "\n";
    std::vector<std::vector<std::string>> rows;
    for (const auto& f : arrayField(d, "firings")) {
        rows.push_back({field(f, "local"), shortTime(field(f, "scheduled")), shortTime(field(f, "due")),
                        "#" + field(f, "trigger") + " " + field(f, "trigger_text")});
    }
    if (!rows.empty()) table({"LOCAL", "SCHEDULED (UTC)", "DUE (UTC)", "TRIGGER"}, rows);
    if (std::string note = field(d, "note"); !note.empty() && note != "-") std::cout << note << "\n";
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    Globals g;
    std::vector<std::string> pos;
    // Command options as given, in order; flags have an empty value.
    std::vector<std::pair<std::string, std::string>> opts;
    static const std::set<std::string> kValueOptions = {"--state", "--since", "--until", "--limit", "--attempt", "--task", "--param",
                                                        "--cron", "--tz", "--from", "-n", "--dst-gap",
                                                        "--dst-fold", "--name"};
    static const std::set<std::string> kFlags = {"--wait", "--follow", "--freeze", "--downstream", "--all"};
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        std::optional<std::string> inline_value;
        if (a.rfind("--", 0) == 0 && a.find('=') != std::string::npos) {
            inline_value = a.substr(a.find('=') + 1);
            a = a.substr(0, a.find('='));
        }
        auto value = [&](const char* what) -> std::string {
            if (inline_value) return *inline_value;
            if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0) usage(a + " needs a value: " + what);
            return argv[++i];
        };
        if (a == "--socket") g.socket = value("the socket path");
        else if (a == "--config") g.config = value("the config file");
        else if (a == "--json") g.json = true;
        else if (kFlags.count(a)) {
            if (inline_value) usage(a + " takes no value");
            opts.emplace_back(a, "");
        } else if (a == "--param") opts.emplace_back(a, value("NAME=VALUE"));
        else if (a == "--task") opts.emplace_back(a, value("a task id"));
        else if (a == "--state") opts.emplace_back(a, value("a run state, or lost"));
        else if (a == "--since" || a == "--until") opts.emplace_back(a, value("an ISO 8601 time or a duration like 2h"));
        else if (a == "-f") opts.emplace_back("--follow", "");
        else if (a == "--limit" || a == "--attempt" || a == "-n") opts.emplace_back(a, value("a number"));
        else if (a == "--cron") opts.emplace_back(a, value("a cron expression, like \"30 2 * * *\""));
        else if (a == "--tz") opts.emplace_back(a, value("an IANA time zone, like Europe/Berlin"));
        else if (a == "--from") opts.emplace_back(a, value("an ISO 8601 time with an offset, like 2026-03-29T00:00:00+01:00"));
        else if (a == "--dst-gap") opts.emplace_back(a, value("run_after or skip"));
        else if (a == "--dst-fold") opts.emplace_back(a, value("first, second or both"));
        else if (a == "--name") opts.emplace_back(a, value("a workflow name"));
        else if (a == "--params") opts.emplace_back(a, value("a JSON object of task parameters"));
        else if (a == "--config-json") opts.emplace_back(a, value("a JSON object of plugin settings"));
        else if (a == "--timeout") opts.emplace_back(a, value("a duration, like 10s"));
        else if (a == "-h" || a == "--help") {
            std::printf("%s", kUsage);
            return 0;
        } else if (a.size() > 1 && a[0] == '-') usage("unknown option '" + a + "'");
        else pos.push_back(a);
    }
    if (pos.empty()) usage("missing command");
    const std::string cmd = pos[0];
    // Options each command takes; anything else given is a usage error naming them. The plugin
    // subcommands each have their own ("plugin show", "plugin check").
    const std::string optionsOf = cmd == "plugin" && pos.size() > 1 ? cmd + " " + pos[1] : cmd;
    static const std::map<std::string, std::vector<std::string>> kCommandOptions = {
        {"run", {"--param", "--wait", "--follow"}},
        {"runs", {"--state", "--since", "--until", "--limit", "--all"}},
        {"logs", {"--attempt", "--follow"}},
        {"pause", {"--freeze"}},
        {"cancel", {"--task"}},
        {"retry", {"--task", "--downstream"}},
        {"next", {"-n", "--cron", "--tz", "--from", "--dst-gap", "--dst-fold", "--name"}},
        {"plugin show", {"--limit"}},
        {"plugin check", {"--params", "--config-json", "--timeout"}},
    };
    {
        auto it = kCommandOptions.find(optionsOf);
        std::vector<std::string> allowed = it == kCommandOptions.end() ? std::vector<std::string>{} : it->second;
        std::set<std::string> given;
        for (const auto& [name, v] : opts) {
            if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
                std::string list;
                for (const auto& o : allowed) list += (list.empty() ? "" : ", ") + o;
                usage(optionsOf + " does not take " + name +
                      (list.empty() ? " (it takes no options)" : " (its options: " + list + ")"));
            }
            if (name != "--param" && !given.insert(name).second) usage(name + " given twice");
        }
    }
    auto has = [&](const char* name) {
        return std::any_of(opts.begin(), opts.end(), [&](const auto& o) { return o.first == name; });
    };
    auto opt = [&](const char* name) -> std::optional<std::string> {
        for (const auto& [n, v] : opts) {
            if (n == name) return v;
        }
        return std::nullopt;
    };
    auto need = [&](size_t n, const char* what) {
        if (pos.size() != n + 1) usage(cmd + " takes " + what);
    };
    auto intOpt = [&](const char* name, int def, long max = 100'000) {
        auto v = opt(name);
        if (!v) return def;
        char* end = nullptr;
        long n = std::strtol(v->c_str(), &end, 10);
        if (v->empty() || !end || *end || n <= 0 || n > max) {
            usage(std::string(name) + " needs a number from 1 to " + std::to_string(max) + ", found '" + *v + "'");
        }
        return static_cast<int>(n);
    };
    auto taskOpt = [&]() -> std::optional<std::string> {
        auto v = opt("--task");
        if (v && v->empty()) usage("--task needs a task id, found an empty one");
        return v;
    };
    if (cmd == "status") return need(0, "no arguments"), cmdStatus(g);
    if (cmd == "list") return need(0, "no arguments"), cmdList(g);
    if (cmd == "show") return need(1, "one argument: a workflow name or a run id"), cmdShow(g, pos[1]);
    if (cmd == "run") {
        need(1, "one argument: WORKFLOW");
        if (has("--wait") && has("--follow")) usage("run takes --wait or --follow, not both");
        std::vector<std::pair<std::string, std::string>> params;
        for (const auto& [name, v] : opts) {
            if (name != "--param") continue;
            auto eq = v.find('=');
            if (eq == std::string::npos || eq == 0) {
                usage("--param needs NAME=VALUE (like --param date=2026-11-22), found '" + v + "'");
            }
            std::string pname = v.substr(0, eq);
            for (const auto& p : params) {
                if (p.first == pname) usage("--param " + pname + " given twice");
            }
            params.emplace_back(pname, v.substr(eq + 1));
        }
        Follow follow = has("--wait") ? Follow::Wait : has("--follow") ? Follow::Watch : Follow::None;
        return cmdRun(g, pos[1], params, follow);
    }
    if (cmd == "watch") return need(1, "one argument: RUN"), watchRun(g, pos[1]);
    if (cmd == "wait") return need(1, "one argument: RUN"), cmdWait(g, pos[1]);
    if (cmd == "runs") {
        if (pos.size() > 2) usage("runs takes at most one argument: WORKFLOW");
        return cmdRuns(g, pos.size() == 2 ? std::optional<std::string>(pos[1]) : std::nullopt, opt("--state"),
                       opt("--since"), opt("--until"), intOpt("--limit", 50), has("--all"));
    }
    if (cmd == "pause") return need(1, "one argument: RUN or WORKFLOW"), cmdPause(g, pos[1], has("--freeze"));
    if (cmd == "resume") return need(1, "one argument: RUN or WORKFLOW"), cmdResume(g, pos[1]);
    if (cmd == "cancel") return need(1, "one argument: RUN"), cmdCancel(g, pos[1], taskOpt());
    if (cmd == "retry") return need(1, "one argument: RUN"), cmdRetry(g, pos[1], taskOpt(), has("--downstream"));
    if (cmd == "logs") return need(2, "two arguments: RUN TASK"), cmdLogs(g, pos[1], pos[2], intOpt("--attempt", 0), has("--follow"));
    if (cmd == "reload") return need(0, "no arguments"), cmdReload(g);
    if (cmd == "next") {
        if (pos.size() > 2) usage("next takes at most one argument: WORKFLOW");
        const auto n = static_cast<size_t>(intOpt("-n", 5, 10'000));
        if (pos.size() == 2) {
            if (has("--cron")) usage("next takes WORKFLOW or --cron EXPR, not both");
            for (const char* o : {"--tz", "--from", "--dst-gap", "--dst-fold", "--name"}) {
                if (has(o)) {
                    usage(std::string(o) + " goes with --cron EXPR; next WORKFLOW uses the workflow's own zone and "
                                           "DST settings, from now");
                }
            }
            return cmdNextWorkflow(g, pos[1], n);
        }
        if (!has("--cron")) usage("next takes WORKFLOW (through the daemon) or --cron EXPR (offline)");
        OfflineNext a;
        a.cron = *opt("--cron");
        a.tz = opt("--tz");
        a.from = opt("--from");
        a.n = n;
        a.name = opt("--name").value_or("");
        std::string err;
        if (auto v = opt("--dst-gap"); v && !ctl::parseDstGap(*v, &a.policy.gap, &err)) usage("--dst-gap: " + err);
        if (auto v = opt("--dst-fold"); v && !ctl::parseDstFold(*v, &a.policy.fold, &err)) usage("--dst-fold: " + err);
        return cmdNextOffline(g, a);
    }
    if (cmd == "plugins") return need(0, "no arguments"), cmdPlugins(g);
    if (cmd == "plugin" && pos.size() > 1 && pos[1] == "show") {
        if (pos.size() != 3) usage("plugin show takes one argument: NAME");
        return cmdPluginShow(g, pos[2], intOpt("--limit", 0));
    }
    if (cmd == "plugin" && pos.size() > 1 && pos[1] == "check") {
        if (pos.size() != 3) usage("plugin check takes one argument: PATH.so");
        ctl::PluginCheckOptions o;
        std::string err;
        if (!ctl::parsePluginCheckOptions(pos[2], opt("--params"), opt("--config-json"), opt("--timeout"), &o, &err)) {
            usage(err);
        }
        auto report = ctl::runPluginCheck(o);
        if (g.json) emitJson(ctl::pluginCheckJson(report));
        else std::cout << ctl::formatPluginCheck(report);
        if (report.abandoned) {
            std::cout.flush();
            ::_exit(1); // the attempt still runs plugin code: no destructors, no exit handlers
        }
        return report.passed() ? 0 : 1;
    }
    if (cmd == "plugin") usage("plugin takes show NAME or check PATH.so");
    if (cmd == "validate") {
        if (pos.size() < 2) usage("validate takes one or more FILEs");
        return cmdValidate(g, std::vector<std::string>(pos.begin() + 1, pos.end()));
    }
    usage("unknown command '" + cmd + "'");
}

// taskhubctl: the command-line client. Talks to taskhubd over its Unix socket (JSON lines, see
// docs/control-protocol.md), except `validate`, which works offline. Prints tables by default and
// the response data as JSON with --json. Exit status: 0 success, 1 the command failed (or a
// waited-for run did not succeed), 2 usage error, 3 the daemon could not be reached.
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "config/daemon_config.h"
#include "config/workflow.h"
#include "plugin_host/plugin_host.h"

namespace json = boost::json;
namespace fs = std::filesystem;
using namespace taskhub;

namespace {

const char* kUsage = R"(usage: taskhubctl [--socket PATH] [--config FILE] [--json] COMMAND [ARGS]

commands (through the daemon):
  status                        daemon state and counters
  list                          workflows with next firing and last run; files that failed to load
  show NAME                     a workflow, or a run (NAME = run id) with its tasks and events
  run WORKFLOW [--wait]         trigger a workflow now; --wait blocks until the run ends and
                                exits 1 unless it succeeded
  runs [WORKFLOW] [--state S] [--limit N]
                                runs, newest first
  cancel RUN                    cancel a queued or running run
  logs RUN TASK [--attempt N]   a task's output (latest attempt by default)
  wait RUN                      block until a run ends; exit 1 unless it succeeded
  reload                        re-read the workflows directory
offline:
  validate FILE...              check workflow files (plugins from the config's plugin_dirs)

options:
  --socket PATH   control socket (default: $TASKHUB_SOCKET, else the config's socket,
                  else /run/taskhub/taskhub.sock)
  --config FILE   daemon config (default /etc/taskhub/taskhub.toml)
  --json          print the response as JSON
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
    for (size_t off = 0; off < line.size();) {
        ssize_t n = ::send(fd, line.data() + off, line.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail(std::string("cannot send request: ") + std::strerror(errno), 3);
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
    if (response.empty()) fail("taskhubd closed the connection without answering", 3);
    json::error_code ec;
    auto v = json::parse(response, ec);
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

std::string str(const json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
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

std::string duration(const json::value& o) {
    int64_t a = isoToMs(field(o, "started"));
    int64_t b = isoToMs(field(o, "ended"));
    if (a < 0) return "-";
    if (b < 0) return "running";
    int64_t ms = b - a;
    char buf[32];
    if (ms < 1000) std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(ms));
    else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000);
    else std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                       static_cast<long long>((ms / 1000) % 60));
    return buf;
}

void table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    std::vector<size_t> w(head.size());
    for (size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size());
    auto line = [&](const std::vector<std::string>& r) {
        std::string out;
        for (size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size()) out += std::string(w[i] - r[i].size() + 2, ' ');
        }
        std::cout << out << "\n";
    };
    line(head);
    for (const auto& r : rows) line(r);
}

void printRunDetail(const json::value& run) {
    std::cout << "run       " << field(run, "id") << "\n"
              << "workflow  " << field(run, "workflow") << " (" << field(run, "trigger") << ")\n"
              << "state     " << field(run, "state") << "\n";
    if (!field(run, "message").empty() && field(run, "message") != "-")
        std::cout << "message   " << field(run, "message") << "\n";
    std::cout << "started   " << shortTime(field(run, "started")) << "\n"
              << "ended     " << shortTime(field(run, "ended")) << "\n"
              << "duration  " << duration(run) << "\n\n";
    std::vector<std::vector<std::string>> rows;
    if (auto* tasks = run.as_object().if_contains("tasks"); tasks && tasks->is_array()) {
        for (const auto& t : tasks->as_array()) {
            rows.push_back({field(t, "id"), field(t, "state"), field(t, "attempt"), field(t, "exit_code"),
                            duration(t), field(t, "message")});
        }
    }
    table({"TASK", "STATE", "ATTEMPT", "EXIT", "DURATION", "MESSAGE"}, rows);
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
              << " refused\n"
              << "runs            " << field(d, "active_runs") << " active, " << field(d, "queued_runs")
              << " queued, " << field(d, "runs_started") << " started since start\n"
              << "tasks           " << field(d, "running_tasks") << " running, " << field(d, "waiting_tasks")
              << " waiting for a slot\n"
              << "worker threads  " << field(d, "worker_threads") << " of max " << field(d, "worker_threads_max")
              << "\n";
    return 0;
}

int cmdList(const Globals& g) {
    auto d = call(g, "list", args());
    if (g.json) return emitJson(d), 0;
    std::vector<std::vector<std::string>> rows;
    for (const auto& w : d.as_object().at("workflows").as_array()) {
        std::string triggers, next;
        for (const auto& t : w.as_object().at("triggers").as_array()) {
            triggers += (triggers.empty() ? "" : ", ") + field(t, "cron");
            if (next.empty() || next == "-") next = shortTime(field(t, "next"));
        }
        const auto& last = w.as_object().at("last_run");
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

int cmdShow(const Globals& g, const std::string& name) {
    json::object a;
    a["name"] = name;
    auto d = call(g, "show", a);
    if (g.json) {
        const auto& o = d.as_object();
        if (o.at("kind").as_string() == "run") {
            json::value run = o.at("run");
            run.as_object()["events"] = o.at("events");
            emitJson(run);
        } else {
            emitJson(o.at("workflow"));
        }
        return 0;
    }
    const auto& o = d.as_object();
    if (o.at("kind").as_string() == "run") {
        printRunDetail(o.at("run"));
        std::cout << "\nEVENTS\n";
        for (const auto& e : o.at("events").as_array()) {
            std::cout << "  " << shortTime(field(e, "time")) << "  " << (field(e, "task").empty() ? "(run)" : field(e, "task"))
                      << "  " << field(e, "kind") << (field(e, "detail").empty() ? "" : "  " + field(e, "detail")) << "\n";
        }
        return 0;
    }
    const auto& w = o.at("workflow");
    std::cout << "workflow     " << field(w, "name") << "\n"
              << "file         " << field(w, "file") << "\n";
    if (!field(w, "description").empty()) std::cout << "description  " << field(w, "description") << "\n";
    std::cout << "timezone     " << field(w, "timezone") << "\n"
              << "policy       overlap=" << field(w, "overlap") << " on_failure=" << field(w, "on_failure") << "\n"
              << "version      " << field(w, "version") << "\n";
    for (const auto& t : w.as_object().at("triggers").as_array()) {
        std::cout << "trigger      cron \"" << field(t, "cron") << "\", next " << shortTime(field(t, "next")) << "\n";
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
        rows.push_back({field(t, "id"), field(t, "plugin"), deps.empty() ? "-" : deps,
                        json::serialize(t.as_object().at("params"))});
    }
    table({"TASK", "PLUGIN", "DEPENDS ON", "PARAMS"}, rows);
    return 0;
}

int finishedRun(const Globals& g, const json::value& run) {
    if (g.json) emitJson(run);
    else printRunDetail(run);
    std::string state = field(run, "state");
    if (state == "succeeded") return 0;
    if (!g.json) std::fprintf(stderr, "taskhubctl: run %s %s: %s\n", field(run, "id").c_str(), state.c_str(),
                              field(run, "message").c_str());
    return 1;
}

int cmdRun(const Globals& g, const std::string& wf, bool wait) {
    json::object a;
    a["workflow"] = wf;
    a["wait"] = wait;
    auto run = call(g, "run", a);
    if (wait) return finishedRun(g, run);
    if (g.json) emitJson(run);
    else std::cout << field(run, "id") << " " << field(run, "state") << "\n";
    // A firing skipped by the overlap policy did not run: that is a failure, in either format.
    if (field(run, "state") == "skipped") {
        std::fprintf(stderr, "taskhubctl: %s\n", field(run, "message").c_str());
        return 1;
    }
    return 0;
}

int cmdWait(const Globals& g, const std::string& id) {
    json::object a;
    a["run"] = id;
    return finishedRun(g, call(g, "wait", a));
}

int cmdRuns(const Globals& g, const std::optional<std::string>& wf, const std::optional<std::string>& state, int limit) {
    json::object a;
    if (wf) a["workflow"] = *wf;
    if (state) a["state"] = *state;
    a["limit"] = limit;
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

int cmdCancel(const Globals& g, const std::string& id) {
    json::object a;
    a["run"] = id;
    auto run = call(g, "cancel", a);
    if (g.json) return emitJson(run), 0;
    std::cout << "cancelling " << field(run, "id") << "\n";
    return 0;
}

int cmdLogs(const Globals& g, const std::string& run, const std::string& task, int attempt) {
    json::object a;
    a["run"] = run;
    a["task"] = task;
    if (attempt > 0) a["attempt"] = attempt;
    auto d = call(g, "logs", a);
    if (g.json) return emitJson(d), 0;
    if (d.as_object().at("truncated").as_bool()) std::cout << "[... earlier output not shown ...]\n";
    std::cout << str(d.as_object().at("content"));
    return 0;
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
    plugins.loadDirectories(cfg.plugin_dirs, cfg.plugins);
    for (const auto& r : plugins.refused()) {
        std::fprintf(stderr, "taskhubctl: warning: plugin %s refused: %s\n", r.file.c_str(), r.reason.c_str());
    }
    json::array results;
    int bad = 0;
    for (const auto& f : files) {
        auto load = config::loadWorkflowFile(f, {cfg.timezone}, plugins);
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
        if (!load.workflow) ++bad;
        else if (!g.json) std::cout << f << ": ok (" << load.workflow->tasks.size() << " task(s))\n";
        results.push_back(std::move(r));
    }
    if (g.json) emitJson(results);
    return bad ? 1 : 0;
}

} // namespace

int main(int argc, char** argv) {
    Globals g;
    std::vector<std::string> pos;
    std::map<std::string, std::string> opts;
    bool wait = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "--socket") g.socket = value();
        else if (a == "--config") g.config = value();
        else if (a == "--json") g.json = true;
        else if (a == "--wait") wait = true;
        else if (a == "--state" || a == "--limit" || a == "--attempt") opts[a] = value();
        else if (a == "-h" || a == "--help") {
            std::printf("%s", kUsage);
            return 0;
        } else if (a.size() > 1 && a[0] == '-') usage("unknown option '" + a + "'");
        else pos.push_back(a);
    }
    if (pos.empty()) usage("missing command");
    const std::string cmd = pos[0];
    auto need = [&](size_t n, const char* what) {
        if (pos.size() != n + 1) usage(cmd + " takes " + what);
    };
    auto intOpt = [&](const char* name, int def) {
        auto it = opts.find(name);
        if (it == opts.end()) return def;
        char* end = nullptr;
        long v = std::strtol(it->second.c_str(), &end, 10);
        if (!end || *end || v <= 0 || v > 100'000) usage(std::string(name) + " needs a number from 1 to 100000");
        return static_cast<int>(v);
    };
    if (cmd == "status") return need(0, "no arguments"), cmdStatus(g);
    if (cmd == "list") return need(0, "no arguments"), cmdList(g);
    if (cmd == "show") return need(1, "one argument: a workflow name or a run id"), cmdShow(g, pos[1]);
    if (cmd == "run") return need(1, "one argument: WORKFLOW"), cmdRun(g, pos[1], wait);
    if (cmd == "wait") return need(1, "one argument: RUN"), cmdWait(g, pos[1]);
    if (cmd == "runs") {
        if (pos.size() > 2) usage("runs takes at most one argument: WORKFLOW");
        std::optional<std::string> state;
        if (opts.count("--state")) state = opts["--state"];
        return cmdRuns(g, pos.size() == 2 ? std::optional<std::string>(pos[1]) : std::nullopt, state,
                       intOpt("--limit", 50));
    }
    if (cmd == "cancel") return need(1, "one argument: RUN"), cmdCancel(g, pos[1]);
    if (cmd == "logs") return need(2, "two arguments: RUN TASK"), cmdLogs(g, pos[1], pos[2], intOpt("--attempt", 0));
    if (cmd == "reload") return need(0, "no arguments"), cmdReload(g);
    if (cmd == "validate") {
        if (pos.size() < 2) usage("validate takes one or more FILEs");
        return cmdValidate(g, std::vector<std::string>(pos.begin() + 1, pos.end()));
    }
    usage("unknown command '" + cmd + "'");
}

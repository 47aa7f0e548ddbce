#include "config/daemon_config.h"

#include <date/tz.h>

#include <algorithm>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "config/config_dropins.h"
#include "config/run_as.h"
#include "config/toml_support.h"
#include "config/workflow_load.h"

namespace taskhub::config {

using namespace detail;
namespace fs = std::filesystem;

namespace {

const std::set<std::string> kTopKeys = {
    "workflows_dir", "plugin_dirs", "state_dir", "socket", "timezone", "log_level",
    "admin_group", "socket_group", "shutdown_grace", "max_running_tasks", "max_nesting_depth", "max_foreach_items",
    "max_workflow_file_size", "max_workflow_tasks", "pool", "plugins", "default_isolation", "history", "control",
    "default_run_as", "metrics", "notify", "notifications", "daemon"};
const std::set<std::string> kPoolKeys = {"min_workers", "max_workers", "idle_timeout"};
const std::set<std::string> kHistoryKeys = {"keep_runs", "keep_days", "max_log_size"};
const std::set<std::string> kControlKeys = {"max_connections", "max_connections_per_uid", "max_request_size",
                                            "request_buffer", "max_answer_size", "client_timeout"};

const std::set<std::string> kMetricsKeys = {"textfile", "textfile_interval", "listen"};
// The keys of a [plugins.NAME] table that are the daemon's; the others are the plugin's own.
const std::set<std::string> kPluginKeys = {"max_concurrency", "isolation",      "user",         "health_interval",
                                           "health_timeout",  "unhealthy_after", "healthy_after", "on_unhealthy"};

// The smallest max_log_size: a log keeps half of it after a truncation, and the marker line.
constexpr uint64_t kMinLogSize = 1024;

void loadHistory(const Value& v, HistorySettings& h, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[history] must be a table, found " + typeName(v));
        return;
    }
    for (const auto& [key, hv] : v.as_table()) {
        const std::string what = "'history." + key + "'";
        if (key == "keep_runs") {
            if (auto n = getInt(hv, what, r, 1, 100'000'000)) h.keep_runs = static_cast<int>(*n);
        } else if (key == "keep_days") {
            if (auto n = getInt(hv, what, r, 1, 100'000)) h.keep_days = static_cast<int>(*n);
        } else if (key == "max_log_size") {
            // A number of bytes, or a string with a unit.
            auto s = hv.is_integer() ? std::optional<std::string>(std::to_string(hv.as_integer()))
                                     : getString(hv, what, r);
            if (!s) continue;
            std::string err;
            auto n = parseByteSize(*s, &err);
            if (!n) {
                r.add(hv, what + ": " + err);
            } else if (*n < kMinLogSize) {
                r.add(hv, what + " must be at least 1KB, found \"" + *s + "\"");
            } else {
                h.max_log_size = *n;
                h.max_log_size_text = *s;
            }
        } else {
            r.add(hv, "unknown key '" + key + "' in [history]" + didYouMean(key, kHistoryKeys) +
                          " (accepted: " + joinKeys(kHistoryKeys) + ")");
        }
    }
}

// A size key: a number of bytes, or a string with a unit; within [min, max] (texts for messages).
std::optional<uint64_t> getSize(const Value& v, const std::string& what, Reporter& r, uint64_t min,
                                const char* min_text, uint64_t max, const char* max_text) {
    auto s = v.is_integer() ? std::optional<std::string>(std::to_string(v.as_integer())) : getString(v, what, r);
    if (!s) return std::nullopt;
    std::string err;
    auto n = parseByteSize(*s, &err);
    if (!n) {
        r.add(v, what + ": " + err);
        return std::nullopt;
    }
    if (*n < min || *n > max) {
        r.add(v, what + " must be between " + min_text + " and " + max_text + ", found \"" + *s + "\"");
        return std::nullopt;
    }
    return n;
}

const std::set<std::string> kDaemonKeys = {"containment"};

// [daemon]: how taskhubd itself runs.
void loadDaemonTable(const Value& v, DaemonConfig& c, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[daemon] must be a table, found " + typeName(v));
        return;
    }
    for (const auto& [key, dv] : v.as_table()) {
        const std::string what = "'daemon." + key + "'";
        if (key == "containment") {
            if (auto s = getString(dv, what, r)) {
                if (*s == "auto") c.containment = cgroup::Containment::Auto;
                else if (*s == "cgroup") c.containment = cgroup::Containment::Cgroup;
                else if (*s == "process-group") c.containment = cgroup::Containment::ProcessGroup;
                else r.add(dv, what + " must be \"auto\", \"cgroup\" or \"process-group\", found \"" + *s + "\"");
            }
        } else {
            r.add(dv, "unknown key '" + key + "' in [daemon]" + didYouMean(key, kDaemonKeys) +
                          " (accepted: " + joinKeys(kDaemonKeys) + ")");
        }
    }
}

void loadControl(const Value& v, ControlSettings& c, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[control] must be a table, found " + typeName(v));
        return;
    }
    for (const auto& [key, cv] : v.as_table()) {
        const std::string what = "'control." + key + "'";
        if (key == "max_connections") {
            if (auto n = getInt(cv, what, r, 1, 100'000)) c.max_connections = static_cast<int>(*n);
        } else if (key == "max_connections_per_uid") {
            if (auto n = getInt(cv, what, r, 1, 100'000)) c.max_connections_per_uid = static_cast<int>(*n);
        } else if (key == "max_request_size") {
            if (auto n = getSize(cv, what, r, 1 << 10, "1KB", 64 << 20, "64MB")) c.max_request_size = *n;
        } else if (key == "request_buffer") {
            if (auto n = getSize(cv, what, r, 1 << 10, "1KB", 1ull << 30, "1GB")) c.request_buffer = *n;
        } else if (key == "max_answer_size") {
            if (auto n = getSize(cv, what, r, 64 << 10, "64KB", 1ull << 30, "1GB")) c.max_answer_size = *n;
        } else if (key == "client_timeout") {
            if (auto d = getDuration(cv, what, r)) {
                if (d->count() < 100) r.add(cv, what + " must be at least 100ms");
                else c.client_timeout = *d;
            }
        } else {
            r.add(cv, "unknown key '" + key + "' in [control]" + didYouMean(key, kControlKeys) +
                          " (accepted: " + joinKeys(kControlKeys) + ")");
        }
    }
    if (c.max_connections_per_uid > c.max_connections) {
        r.add(v, "[control] max_connections_per_uid (" + std::to_string(c.max_connections_per_uid) +
                     ") must not exceed max_connections (" + std::to_string(c.max_connections) + ")");
    }
    if (c.request_buffer < c.max_request_size) {
        r.add(v, "[control] request_buffer (" + std::to_string(c.request_buffer) +
                     " bytes) must be at least max_request_size (" + std::to_string(c.max_request_size) +
                     " bytes): one full request line must fit");
    }
}

void loadMetrics(const Value& v, const fs::path& base, MetricsSettings& m, Reporter& r) {
    if (!v.is_table()) {
        r.add(v, "[metrics] must be a table, found " + typeName(v));
        return;
    }
    for (const auto& [key, mv] : v.as_table()) {
        const std::string what = "'metrics." + key + "'";
        if (key == "textfile") {
            auto s = getString(mv, what, r);
            if (!s) continue;
            const fs::path p(*s);
            if (s->empty() || !p.has_filename()) {
                r.add(mv, what + " must name a file, like \"/var/lib/prometheus/node-exporter/taskhub.prom\", found \"" +
                              *s + "\"");
            } else if (p.extension() != ".prom") {
                r.add(mv, what + " must end in .prom (node_exporter's textfile collector reads only *.prom files), "
                                 "found \"" + *s + "\"");
            } else {
                m.textfile = p.is_absolute() ? p : (base / p).lexically_normal();
            }
        } else if (key == "textfile_interval") {
            if (auto d = getDuration(mv, what, r)) {
                if (*d < std::chrono::seconds(1) || *d > std::chrono::hours(24))
                    r.add(mv, what + " must be between 1s and 24h");
                else m.textfile_interval = *d;
            }
        } else if (key == "listen") {
            auto s = getString(mv, what, r);
            if (!s) continue;
            std::string err;
            if (!parseListenAddress(*s, &m.listen_host, &m.listen_port, &err)) r.add(mv, what + ": " + err);
            else m.listen = *s;
        } else {
            r.add(mv, "unknown key '" + key + "' in [metrics]" + didYouMean(key, kMetricsKeys) +
                          " (accepted: " + joinKeys(kMetricsKeys) + ")");
        }
    }
}

std::optional<Isolation> getIsolation(const Value& v, const std::string& what, Reporter& r) {
    auto s = getString(v, what, r);
    if (!s) return std::nullopt;
    if (*s == "in_process") return Isolation::InProcess;
    if (*s == "process") return Isolation::Process;
    r.add(v, what + " must be \"in_process\" or \"process\", found \"" + *s + "\"");
    return std::nullopt;
}

// Engine-owned keys of a [plugins.NAME] table; returns false when `key` is the plugin's own.
bool parsePluginKey(const std::string& name, const std::string& key, const Value& v, PluginSettings& s,
                    Reporter& r) {
    if (!kPluginKeys.contains(key)) return false;
    const std::string what = "'plugins." + name + "." + key + "'";
    auto& h = s.health;
    if (key == "max_concurrency") {
        if (auto n = getInt(v, what, r, 0, 1'000'000)) s.max_concurrency = static_cast<int>(*n);
    } else if (key == "isolation") {
        if (auto i = getIsolation(v, what, r)) s.isolation = *i;
    } else if (key == "user") {
        if (auto u = getString(v, what, r)) {
            if (std::string why; !accountUsable(*u, &why)) r.add(v, what + ": " + why + " (expected \"user\" or \"user:group\")");
            else s.user = *u;
        }
    } else if (key == "health_interval") {
        if (auto d = getDuration(v, what, r)) {
            if (d->count() < 10) r.add(v, what + " must be at least 10ms");
            else h.interval = *d;
        }
    } else if (key == "health_timeout") {
        if (auto d = getDuration(v, what, r)) {
            if (d->count() < 1) r.add(v, what + " must be at least 1ms");
            else h.timeout = *d;
        }
    } else if (key == "unhealthy_after") {
        if (auto n = getInt(v, what, r, 1, 1000)) h.unhealthy_after = static_cast<int>(*n);
    } else if (key == "healthy_after") {
        if (auto n = getInt(v, what, r, 1, 1000)) h.healthy_after = static_cast<int>(*n);
    } else if (key == "on_unhealthy") {
        if (auto str = getString(v, what, r)) {
            if (*str == "hold") h.on_unhealthy = OnUnhealthy::Hold;
            else if (*str == "fail") h.on_unhealthy = OnUnhealthy::Fail;
            else r.add(v, what + " must be \"hold\" or \"fail\", found \"" + *str + "\"");
        }
    } else {
        return false;
    }
    return true;
}

fs::path resolve(const fs::path& base, const std::string& p) {
    fs::path path(p);
    return path.is_absolute() ? path : (base / path).lexically_normal();
}

void unknownKey(Reporter& r, const Value& v, const std::string& where, const std::string& key,
                const std::set<std::string>& known) {
    r.add(v, "unknown key '" + key + "'" + where + didYouMean(key, known) +
                 " (accepted: " + joinKeys(known) + ")");
}

} // namespace

std::optional<DaemonConfig> loadDaemonConfig(const fs::path& file_in, std::vector<Diagnostic>* problems,
                                             const FileReader& read, const DirCheck& dir_check) {
    std::error_code ec;
    fs::path file = fs::absolute(file_in, ec);
    if (ec) file = file_in;
    Reporter r(file);
    std::optional<Value> root;
    if (read) {
        std::string text;
        if (auto why = read(file, &text)) {
            r.add(0, "config file refused: " + *why);
            *problems = r.problems();
            return std::nullopt;
        }
        root = parseText(text, file, r);
    } else {
        root = parseFile(file, r);
    }
    if (!root) {
        *problems = r.problems();
        return std::nullopt;
    }

    DaemonConfig c;
    c.file = file;
    const fs::path base = file.parent_path();
    c.workflows_dir = kDefaultWorkflowsDir;
    c.plugin_dirs = {kDefaultPluginDir};
    c.state_dir = kDefaultStateDir;
    c.socket = kDefaultSocketPath;
    c.notifications.mail_from = defaultMailFrom();

    if (!root->is_table()) {
        *problems = {{file.string(), 0, "expected a TOML table"}};
        return std::nullopt;
    }
    // Merged before anything is validated; a value from a drop-in keeps its file and line.
    c.drop_ins = mergeDropIns(file, &*root, &r.problems(), read, dir_check);
    for (const auto& [key, v] : root->as_table()) {
        const std::string what = "'" + key + "'";
        if (key == "workflows_dir") {
            if (auto s = getString(v, what, r)) c.workflows_dir = resolve(base, *s);
        } else if (key == "state_dir") {
            if (auto s = getString(v, what, r)) c.state_dir = resolve(base, *s);
        } else if (key == "socket") {
            if (auto s = getString(v, what, r)) c.socket = resolve(base, *s);
        } else if (key == "plugin_dirs") {
            if (auto a = getStringArray(v, what, r)) {
                c.plugin_dirs.clear();
                for (const auto& s : *a) c.plugin_dirs.push_back(resolve(base, s));
            }
        } else if (key == "timezone") {
            if (auto s = getString(v, what, r)) {
                try {
                    date::locate_zone(*s);
                    c.timezone = *s;
                } catch (const std::exception&) {
                    r.add(v, "unknown time zone \"" + *s +
                                 "\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")");
                }
            }
        } else if (key == "log_level") {
            if (auto s = getString(v, what, r)) {
                static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error"};
                if (!levels.count(*s)) {
                    r.add(v, "'log_level' must be one of " + joinKeys(levels) + ", found \"" + *s + "\"");
                } else {
                    c.log_level = *s;
                }
            }
        } else if (key == "default_run_as") {
            if (auto s = getString(v, what, r)) {
                if (std::string why; !accountUsable(*s, &why)) r.add(v, what + ": " + why + " (expected \"user\" or \"user:group\")");
                else c.default_run_as = *s;
            }
        } else if (key == "admin_group") {
            if (auto s = getString(v, what, r)) c.admin_group = *s;
        } else if (key == "socket_group") {
            if (auto s = getString(v, what, r)) c.socket_group = *s;
        } else if (key == "shutdown_grace") {
            if (auto d = getDuration(v, what, r)) c.shutdown_grace = *d;
        } else if (key == "max_running_tasks") {
            if (auto n = getInt(v, what, r, 0, 1'000'000)) c.max_running_tasks = static_cast<int>(*n);
        } else if (key == "max_nesting_depth") {
            if (auto n = getInt(v, what, r, 1, 100)) c.max_nesting_depth = static_cast<int>(*n);
        } else if (key == "max_workflow_file_size") {
            // A number of bytes, or a string with a unit.
            auto s = v.is_integer() ? std::optional<std::string>(std::to_string(v.as_integer())) : getString(v, what, r);
            if (!s) continue;
            std::string err;
            auto n = parseByteSize(*s, &err);
            if (!n) r.add(v, what + ": " + err);
            else if (*n < 1024) r.add(v, what + " must be at least 1KB, found \"" + *s + "\"");
            else c.workflow_limits.max_file_size = *n;
        } else if (key == "max_workflow_tasks") {
            if (auto n = getInt(v, what, r, 1, static_cast<int64_t>(kMaxTasksPerWorkflow)))
                c.workflow_limits.max_tasks = static_cast<size_t>(*n);
        } else if (key == "max_foreach_items") {
            if (auto n = getInt(v, what, r, 1, static_cast<int64_t>(kMaxTasksPerWorkflow)))
                c.workflow_limits.max_foreach_items = static_cast<size_t>(*n);
        } else if (key == "default_isolation") {
            if (auto i = getIsolation(v, what, r)) c.default_isolation = *i;
        } else if (key == "daemon") {
            loadDaemonTable(v, c, r);
        } else if (key == "history") {
            loadHistory(v, c.history, r);
        } else if (key == "notify") {
            loadNotify(v, &c.notify, r);
        } else if (key == "notifications") {
            loadNotificationSettings(v, c.notifications, r);
        } else if (key == "control") {
            loadControl(v, c.control, r);
        } else if (key == "metrics") {
            loadMetrics(v, base, c.metrics, r);
        } else if (key == "pool") {
            if (!v.is_table()) {
                r.add(v, "[pool] must be a table, found " + typeName(v));
                continue;
            }
            for (const auto& [pk, pv] : v.as_table()) {
                const std::string pwhat = "'pool." + pk + "'";
                if (pk == "min_workers") {
                    if (auto n = getInt(pv, pwhat, r, 0, 1024)) c.pool.min_workers = static_cast<int>(*n);
                } else if (pk == "max_workers") {
                    if (auto n = getInt(pv, pwhat, r, 1, 1024)) c.pool.max_workers = static_cast<int>(*n);
                } else if (pk == "idle_timeout") {
                    if (auto d = getDuration(pv, pwhat, r)) c.pool.idle_timeout = *d;
                } else {
                    unknownKey(r, pv, " in [pool]", pk, kPoolKeys);
                }
            }
            if (c.pool.min_workers > c.pool.max_workers) {
                r.add(v, "[pool] min_workers (" + std::to_string(c.pool.min_workers) +
                             ") must not exceed max_workers (" + std::to_string(c.pool.max_workers) + ")");
            }
        } else if (key == "plugins") {
            if (!v.is_table()) {
                r.add(v, "[plugins] must be a table of [plugins.NAME] tables, found " + typeName(v));
                continue;
            }
            for (const auto& [name, pv] : v.as_table()) {
                if (!pv.is_table()) {
                    r.add(pv, "[plugins." + name + "] must be a table, found " + typeName(pv));
                    continue;
                }
                PluginSettings s;
                Table rest;
                for (const auto& [sk, sv] : pv.as_table()) {
                    if (!parsePluginKey(name, sk, sv, s, r)) rest.emplace(sk, sv);
                }
                s.plugin_config_json = toJson(rest);
                c.plugins.emplace(name, std::move(s));
            }
        } else {
            unknownKey(r, v, "", key, kTopKeys);
        }
    }
    // A runner `user` only means something for a plugin that has a runner.
    for (const auto& [name, s] : c.plugins) {
        if (s.user.empty() || c.isolationOf(name) == Isolation::Process) continue;
        const Value& uv = root->as_table().at("plugins").as_table().at(name).as_table().at("user");
        r.add(uv, "'plugins." + name + ".user' applies to plugins with isolation = \"process\" (their "
                  "taskhub-runner process runs as that user); plugin " + name +
                  " runs inside taskhubd: add isolation = \"process\", or remove 'user' (its tasks' "
                  "run_as decides who they run as)");
    }
    if (!r.ok()) {
        *problems = r.sorted();
        return std::nullopt;
    }
    return c;
}

std::optional<uint64_t> parseByteSize(const std::string& text, std::string* err) {
    size_t i = 0;
    uint64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
        if (n > (UINT64_MAX - 9) / 10) {
            *err = "\"" + text + "\" is too large";
            return std::nullopt;
        }
        n = n * 10 + static_cast<uint64_t>(text[i++] - '0');
    }
    std::string unit = text.substr(i);
    while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
    static const std::map<std::string, uint64_t> kUnits = {
        {"", 1},           {"B", 1},           {"K", 1ull << 10},  {"KB", 1ull << 10}, {"KiB", 1ull << 10},
        {"M", 1ull << 20}, {"MB", 1ull << 20}, {"MiB", 1ull << 20}, {"G", 1ull << 30}, {"GB", 1ull << 30},
        {"GiB", 1ull << 30}};
    auto u = kUnits.find(unit);
    if (i == 0 || u == kUnits.end()) {
        *err = "\"" + text + "\" is not a size (expected a number of bytes with an optional unit B, KB, MB or "
               "GB, like \"10MB\")";
        return std::nullopt;
    }
    if (n > UINT64_MAX / u->second) {
        *err = "\"" + text + "\" is too large";
        return std::nullopt;
    }
    return n * u->second;
}

bool parseListenAddress(const std::string& text, std::string* host, uint16_t* port, std::string* err) {
    const std::string expected = " (expected an IP address and a port, like \"127.0.0.1:9464\" or \"[::1]:9464\")";
    std::string h, p;
    bool v6 = false;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            *err = "\"" + text + "\" is not [IPv6 address]:port" + expected;
            return false;
        }
        h = text.substr(1, close - 1);
        p = text.substr(close + 2);
        v6 = true;
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos) {
            *err = "\"" + text + "\" has no port" + expected;
            return false;
        }
        h = text.substr(0, colon);
        p = text.substr(colon + 1);
        if (h.find(':') != std::string::npos) {
            *err = "\"" + text + "\": an IPv6 address needs brackets" + expected;
            return false;
        }
    }
    unsigned char buf[sizeof(struct in6_addr)];
    if (h.empty() || inet_pton(v6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1) {
        *err = "\"" + h + "\" in \"" + text + "\" is not an " + (v6 ? "IPv6" : "IPv4") + " address" +
               (v6 ? "" : " (host names are not resolved)") + expected;
        return false;
    }
    unsigned long n = 0;
    bool digits = !p.empty() && p.size() <= 5;
    for (char ch : p) digits = digits && ch >= '0' && ch <= '9';
    if (digits) n = std::stoul(p);
    if (!digits || n < 1 || n > 65535) {
        *err = "port \"" + p + "\" in \"" + text + "\" is not a number from 1 to 65535" + expected;
        return false;
    }
    *host = h;
    *port = static_cast<uint16_t>(n);
    return true;
}

std::vector<std::string> daemonConfigKeys() {
    const std::pair<std::string, const std::set<std::string>*> tables[] = {
        {"pool", &kPoolKeys},         {"history", &kHistoryKeys},    {"control", &kControlKeys},
        {"metrics", &kMetricsKeys},   {"daemon", &kDaemonKeys},      {"plugins", &kPluginKeys},
        {"notify", &notifyKeys()},    {"notifications", &notificationSettingsKeys()}};
    std::vector<std::string> out;
    for (const auto& key : kTopKeys) {
        const auto* table = std::find_if(std::begin(tables), std::end(tables), [&](const auto& t) { return t.first == key; });
        if (table == std::end(tables)) {
            out.push_back(key);
            continue;
        }
        const std::string prefix = key == "notify" ? "[[notify]] " : key == "plugins" ? "[plugins.NAME] " : "[" + key + "] ";
        for (const auto& sub : *table->second) out.push_back(prefix + sub);
    }
    return out;
}

const char* toString(Isolation i) noexcept { return i == Isolation::Process ? "process" : "in_process"; }

const char* toString(OnUnhealthy o) noexcept { return o == OnUnhealthy::Fail ? "fail" : "hold"; }

bool isFirstPartyPlugin(const std::string& name) noexcept { return name == "shell" || name == "noop"; }

Isolation DaemonConfig::isolationOf(const std::string& name) const {
    auto it = plugins.find(name);
    if (it != plugins.end() && it->second.isolation) return *it->second.isolation;
    return isFirstPartyPlugin(name) ? Isolation::InProcess : default_isolation;
}

PluginSettings DaemonConfig::settingsOf(const std::string& name) const {
    auto it = plugins.find(name);
    PluginSettings s = it != plugins.end() ? it->second : PluginSettings{};
    s.isolation = isolationOf(name);
    return s;
}

} // namespace taskhub::config

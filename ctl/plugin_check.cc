#include "plugin_check.h"

#define BOOST_DLL_USE_STD_FS
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/dll/shared_library.hpp>
#include <boost/json.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <taskhub/plugin_api.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <cstdlib>
#include <map>
#include <memory>
#include <sstream>

#include "common/time_util.h"
#include "config/daemon_config.h"
#include "plugin_host/plugin_host.h"
#include "pool/worker_pool.h"

namespace taskhub::ctl {

namespace asio = boost::asio;
namespace fs = std::filesystem;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using Status = CheckStep::Status;

namespace {

// The log an attempt writes, kept in the report up to this size.
constexpr size_t kMaxLogBytes = 16 * 1024;

// The step running now, for a crash note. Static strings only: a signal handler reads it.
std::atomic<const char*> g_step{""};

// Says on stderr which step a crash of the plugin interrupted (the report is lost with the
// process), then lets the signal take its course. Async-signal-safe: write(2) of static strings.
extern "C" void noteCrash(int sig) {
    auto put = [](const char* text) { (void)!::write(STDERR_FILENO, text, std::strlen(text)); };
    put("taskhubctl: plugin check: the plugin crashed with ");
    put(sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGABRT ? "SIGABRT" : sig == SIGFPE ? "SIGFPE" : "SIGILL");
    put(" during ");
    put(g_step.load());
    put(" (it would take taskhubd down too, unless the plugin runs with isolation = \"process\")\n");
    ::raise(sig); // SA_RESETHAND: the default action now
}

// Installs noteCrash() for the signals of a crash while the check runs.
class CrashNote {
public:
    CrashNote() {
        step("loading (the entry function or create())");
        struct sigaction sa {};
        sa.sa_handler = noteCrash;
        sa.sa_flags = SA_RESETHAND | SA_NODEFER;
        sigemptyset(&sa.sa_mask);
        for (size_t i = 0; i < std::size(kSignals); ++i) ::sigaction(kSignals[i], &sa, &previous_[i]);
    }
    ~CrashNote() {
        for (size_t i = 0; i < std::size(kSignals); ++i) ::sigaction(kSignals[i], &previous_[i], nullptr);
    }
    CrashNote(const CrashNote&) = delete;
    CrashNote& operator=(const CrashNote&) = delete;

    // `name` must be a string literal.
    void step(const char* name) { g_step.store(name); }

private:
    static constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    struct sigaction previous_[std::size(kSignals)] {};
};

// What the plugin's table declares, read the way taskhubd reads it. Needed before loading: the
// settings handed to create() are keyed by the plugin's name. `lib` keeps the library open, so
// that PluginHost::loadFile() shares this mapping. Failures are left to loadFile() to report in
// taskhubd's words.
std::optional<PluginTableInfo> readTable(const fs::path& file, boost::dll::shared_library* lib) {
    boost::system::error_code ec;
    lib->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
    if (ec || !lib->has(TH_PLUGIN_ENTRY_SYMBOL)) return std::nullopt;
    const th_plugin_api* table = nullptr;
    try {
        table = lib->get<const th_plugin_api*(uint32_t, uint32_t)>(TH_PLUGIN_ENTRY_SYMBOL)(
            TH_ABI_VERSION_MAJOR, TH_ABI_VERSION_MINOR);
    } catch (...) {
        return std::nullopt;
    }
    if (table == nullptr) return std::nullopt;
    PluginTableInfo t;
    // The first five fields have the same place in every ABI version.
    t.magic = table->magic;
    t.abi_major = table->abi_major;
    t.abi_minor = table->abi_minor;
    t.struct_size = table->struct_size;
    t.min_host_minor = table->min_host_minor;
    if (plugin_host::negotiate(table)) return t;
    t.negotiated = true;
    t.name = table->name;
    t.version = table->version ? table->version : "";
    t.description = table->description ? table->description : "";
    t.capabilities = table->capabilities;
    t.thread_safe = table->thread_safety == TH_THREADS_SAFE;
    return t;
}

// Runs the event loop on this thread until done() or the deadline; true when done().
template <class Done>
bool runUntil(asio::io_context& io, Done done, Clock::time_point deadline) {
    while (!done()) {
        if (Clock::now() >= deadline) return false;
        io.run_one_until(deadline);
        if (io.stopped()) io.restart();
    }
    return true;
}

int64_t msSince(Clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

// Elapsed times in milliseconds, also under a second ("0ms", "1234ms").
std::string ms(int64_t n) { return std::to_string(n) + "ms"; }

std::string outcomeName(plugin_host::AttemptResult::Outcome o) {
    switch (o) {
    case plugin_host::AttemptResult::Outcome::Succeeded: return "succeeded";
    case plugin_host::AttemptResult::Outcome::Cancelled: return "cancelled";
    default: return "failed";
    }
}

// A temporary file for the attempt's log. Unlinked at once, so that nothing is left behind even
// when the plugin crashes the process; closed when this goes away, unless keepOpen() was called.
class TempLog {
public:
    TempLog() {
        const char* dir = std::getenv("TMPDIR");
        path_ = std::string(dir && *dir ? dir : "/tmp") + "/taskhub-plugin-check-XXXXXX";
        fd_ = ::mkstemp(path_.data());
        if (fd_ < 0) return;
        ::unlink(path_.c_str());
        ::fcntl(fd_, F_SETFL, O_APPEND);
    }
    ~TempLog() {
        if (fd_ >= 0 && !keep_open_) ::close(fd_);
    }
    // The plugin still holds the descriptor (an abandoned attempt): closing it would let its
    // number be reused under the plugin's writes.
    void keepOpen() { keep_open_ = true; }
    TempLog(const TempLog&) = delete;
    TempLog& operator=(const TempLog&) = delete;

    int fd() const { return fd_; }
    const std::string& path() const { return path_; }

    // What was written, up to max bytes; *more receives how many bytes were left out.
    std::string read(size_t max, size_t* more) const {
        std::string out;
        *more = 0;
        char buf[4096];
        for (off_t off = 0;;) {
            ssize_t n = ::pread(fd_, buf, sizeof buf, off);
            if (n <= 0) break;
            off += n;
            size_t keep = std::min(static_cast<size_t>(n), max - std::min(max, out.size()));
            out.append(buf, keep);
            *more += static_cast<size_t>(n) - keep;
        }
        return out;
    }

private:
    std::string path_;
    int fd_ = -1;
    bool keep_open_ = false;
};

// The daemon's log lines while the check runs (PLUGIN_LOG from the plugin's log() calls,
// PLUGIN_REFUSED, ...), captured instead of printed.
class CapturedLog {
public:
    CapturedLog() : previous_(spdlog::default_logger()) {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(text_);
        auto logger = std::make_shared<spdlog::logger>("plugin-check", sink);
        logger->set_pattern("%l %v");
        logger->set_level(spdlog::level::debug);
        spdlog::set_default_logger(logger);
    }
    ~CapturedLog() { spdlog::set_default_logger(previous_); }
    CapturedLog(const CapturedLog&) = delete;
    CapturedLog& operator=(const CapturedLog&) = delete;

    std::vector<std::string> lines() const {
        std::vector<std::string> out;
        std::istringstream in(text_.str());
        for (std::string line; std::getline(in, line);) out.push_back(line);
        return out;
    }

private:
    std::ostringstream text_;
    std::shared_ptr<spdlog::logger> previous_;
};

void addStep(PluginCheckReport& r, const char* name, Status status, std::string detail) {
    r.steps.push_back({name, status, std::move(detail)});
}

// The one attempt. Returns the step and fills r.execute.
CheckStep runExecute(plugin_host::Plugin& plugin, const PluginCheckOptions& o,
                     const std::string& params_json, asio::io_context& io, PluginCheckReport& r) {
    const std::string timeout = formatDuration(o.timeout);
    const bool logs = (plugin.info().capabilities & TH_CAP_NO_LOG) == 0;
    TempLog log;
    if (logs && log.fd() < 0) return {"execute", Status::Failed, "cannot create a temporary log file in " + log.path()};

    plugin_host::AttemptSpec spec;
    spec.workflow = "plugin-check";
    spec.run_id = "plugin-check";
    spec.task_id = "check";
    spec.attempt = 1;
    spec.params_json = params_json;
    spec.env = {"TASKHUB_WORKFLOW=plugin-check", "TASKHUB_RUN_ID=plugin-check", "TASKHUB_TASK_ID=check",
                "TASKHUB_ATTEMPT=1"};
    spec.log_fd = logs ? log.fd() : -1;
    spec.timeout_ms = static_cast<uint64_t>(o.timeout.count());

    std::optional<plugin_host::AttemptResult> result;
    const auto t0 = Clock::now();
    const uint64_t token = plugin.start(spec, [&](plugin_host::AttemptResult res) { result = std::move(res); });
    ExecuteResult& x = r.execute.emplace();
    if (!runUntil(io, [&] { return result.has_value(); }, t0 + o.timeout)) {
        // As taskhubd does at a task's timeout; the plugin gets as long again to end.
        x.timed_out = true;
        plugin.cancel(token);
        runUntil(io, [&] { return result.has_value(); }, Clock::now() + o.timeout);
    }
    x.duration_ms = msSince(t0);
    if (logs) {
        size_t more = 0;
        x.log = log.read(kMaxLogBytes, &more);
        if (more > 0) x.log += "\n[... " + std::to_string(more) + " more bytes]\n";
    }
    if (!result) {
        r.abandoned = true;
        log.keepOpen();
        const bool can_cancel = (plugin.info().capabilities & TH_CAP_CANCEL) != 0;
        return {"execute", Status::Failed,
                "did not complete within " + timeout + ", and not within " + timeout + " of cancel() either" +
                    (can_cancel ? "" : " (the plugin does not declare TH_CAP_CANCEL, so it was not asked to stop)")};
    }
    x.outcome = outcomeName(result->outcome);
    x.exit_code = result->exit_code;
    x.message = result->message;
    for (const auto& [name, value] : result->outputs) x.outputs.emplace_back(name, value);
    for (const auto& [name, value] : result->json_outputs) x.json_outputs.emplace_back(name, value);
    if (x.timed_out) {
        return {"execute", Status::Failed,
                "did not complete within " + timeout + ": cancelled, and it ended " + x.outcome + " after " +
                    ms(x.duration_ms)};
    }
    return {"execute", result->outcome == plugin_host::AttemptResult::Outcome::Succeeded ? Status::Passed : Status::Failed,
            x.outcome + " in " + ms(x.duration_ms)};
}

CheckStep runHealth(plugin_host::Plugin& plugin, asio::io_context& io) {
    // What taskhubd allows a check unless [plugins.NAME] health_timeout says otherwise.
    const auto timeout = config::HealthSettings{}.timeout;
    std::optional<plugin_host::HealthReport> health;
    const auto t0 = Clock::now();
    // checkHealth() answers by itself when the timeout passes (and leaves a check that never
    // returns to the host's destructor); the margin is for a busy machine.
    plugin.checkHealth(timeout, [&](plugin_host::HealthReport h) { health = std::move(h); });
    runUntil(io, [&] { return health.has_value(); }, t0 + timeout + std::chrono::seconds(5));
    if (!health) return {"health", Status::Failed, "no answer within " + formatDuration(timeout)};
    std::string detail = std::string(plugin_host::toString(health->state)) +
                         (health->message.empty() ? "" : ": " + health->message) + " (answered in " + ms(msSince(t0)) +
                         "; taskhubd's default health_timeout is " + formatDuration(timeout) + ")";
    return {"health", health->state == plugin_host::HealthState::Unhealthy ? Status::Failed : Status::Passed,
            std::move(detail)};
}

const char* statusName(Status s) {
    switch (s) {
    case Status::Passed: return "ok";
    case Status::Failed: return "FAILED";
    default: return "skipped";
    }
}

} // namespace

bool parsePluginCheckOptions(const std::string& file, const std::optional<std::string>& params,
                             const std::optional<std::string>& config_json,
                             const std::optional<std::string>& timeout, PluginCheckOptions* out,
                             std::string* err) {
    out->file = file;
    auto object = [&](const std::optional<std::string>& text, const char* option, std::string* dest) {
        if (!text) return true;
        boost::system::error_code ec;
        json::value v = json::parse(*text, ec);
        if (ec || !v.is_object()) {
            *err = std::string(option) + " needs a JSON object, like '{\"name\": \"world\"}', found '" + *text + "'";
            return false;
        }
        *dest = json::serialize(v);
        return true;
    };
    if (!object(params, "--params", &out->params_json)) return false;
    if (!object(config_json, "--config-json", &out->config_json)) return false;
    if (timeout) {
        std::string why;
        auto d = parseDuration(*timeout, &why);
        if (!d || d->count() < 1) {
            *err = "--timeout needs a duration of at least 1ms, like \"10s\" or \"500ms\", found '" + *timeout + "'" +
                   (why.empty() ? "" : ": " + why);
            return false;
        }
        out->timeout = *d;
    }
    return true;
}

bool PluginCheckReport::passed() const {
    for (const auto& s : steps) {
        if (s.status != Status::Passed) return false;
    }
    return !steps.empty();
}

PluginCheckReport runPluginCheck(const PluginCheckOptions& o) {
    PluginCheckReport r;
    r.file = o.file.string();
    CapturedLog captured;
    CrashNote crash;
    // As root, taskhubd runs no code of a file its ownership rule refuses; neither does this
    // check. loadFile() below then refuses the file with taskhubd's reason.
    const bool as_root = ::geteuid() == 0;
    boost::dll::shared_library table_lib;
    std::string untrusted; // why taskhubd would refuse the file: loadFile() below says it again
    if (!as_root || plugin_host::ownershipTrusted(o.file, false, &untrusted)) r.table = readTable(o.file, &table_lib);

    // Heap-allocated: when the plugin leaves work running they are not destroyed (see the header).
    auto io = std::make_unique<asio::io_context>();
    auto work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(io->get_executor());
    auto pool = std::make_unique<pool::WorkerPool>(1, 4, std::chrono::seconds(60));
    auto host = std::make_unique<plugin_host::PluginHost>(io.get(), pool.get());
    plugin_host::LoadPolicy policy;
    policy.require_trusted = as_root; // taskhubd's rule when it runs as root
    host->setLoadPolicy(policy);

    std::map<std::string, config::PluginSettings> settings;
    if (r.table && r.table->negotiated) settings[r.table->name].plugin_config_json = o.config_json;
    const auto refused = host->loadFile(o.file, settings);
    // The host names a refused plugin only once its table passed negotiation: create() failed.
    const bool negotiated = !refused || (!host->refused().empty() && !host->refused().back().name.empty());
    plugin_host::Plugin* plugin = !refused && r.table ? host->find(r.table->name) : nullptr;

    if (!negotiated) {
        addStep(r, "negotiation", Status::Failed, "refused: " + *refused);
    } else {
        addStep(r, "negotiation", Status::Passed, "accepted by this taskhubd's ABI " +
                                                      std::to_string(TH_ABI_VERSION_MAJOR) + "." +
                                                      std::to_string(TH_ABI_VERSION_MINOR));
    }
    if (!negotiated) {
        addStep(r, "create", Status::Skipped, "the plugin was refused");
    } else if (!plugin) {
        addStep(r, "create", Status::Failed, refused.value_or("the plugin was not loaded"));
    } else {
        addStep(r, "create", Status::Passed, "with settings " + o.config_json);
    }

    std::optional<config::PluginCatalog::Problem> problem;
    if (plugin) {
        crash.step("validate()");
        problem = plugin->validate(o.params_json);
    }
    bool valid = false;
    if (!plugin) {
        addStep(r, "validate", Status::Skipped, "no instance");
    } else if (problem) {
        addStep(r, "validate", Status::Failed,
                "plugin " + plugin->info().name + " rejects " +
                    (problem->key.empty() ? "the parameters" : "parameter '" + problem->key + "'") + ": " +
                    problem->message);
    } else {
        valid = true;
        addStep(r, "validate", Status::Passed, "accepts " + o.params_json);
    }

    if (!plugin) {
        addStep(r, "execute", Status::Skipped, "no instance");
    } else if (!valid) {
        addStep(r, "execute", Status::Skipped, "validate rejected the parameters (taskhubd would not load the workflow)");
    } else {
        crash.step("execute() or a callback of its attempt");
        r.steps.push_back(runExecute(*plugin, o, o.params_json, *io, r));
    }

    if (!plugin) {
        addStep(r, "health", Status::Skipped, "no instance");
    } else {
        crash.step("health_check()");
        r.steps.push_back(runHealth(*plugin, *io));
    }

    if (r.abandoned) {
        // Destroying the instance now could run destroy() under a running call of the plugin.
        (void)host.release();
        (void)pool.release();
        (void)work.release();
        (void)io.release();
        (void)new boost::dll::shared_library(std::move(table_lib));
    } else {
        crash.step("destroy()");
        host.reset(); // destroy(), as taskhubd does at exit
    }
    r.daemon_log = captured.lines();
    return r;
}


std::string formatPluginCheck(const PluginCheckReport& r) {
    std::ostringstream out;
    // Two columns: a label padded to `width`, then the text.
    auto cell = [](const std::string& label, size_t width) {
        return label + std::string(width > label.size() ? width - label.size() : 1, ' ');
    };
    out << "plugin check " << r.file << "\n";
    if (r.table) {
        const auto& t = *r.table;
        auto row = [&](const char* label, const std::string& value) { out << "  " << cell(label, 15) << value << "\n"; };
        if (t.negotiated) {
            row("name", t.name);
            row("version", t.version);
            row("description", t.description);
        }
        char magic[16];
        std::snprintf(magic, sizeof magic, "0x%08x", t.magic);
        row("ABI", std::to_string(t.abi_major) + "." + std::to_string(t.abi_minor) + " (magic " + magic + ", table " +
                       std::to_string(t.struct_size) + " bytes, works with host minor " +
                       std::to_string(t.min_host_minor) + " and newer)");
        if (t.negotiated) {
            std::string caps;
            for (const auto& c : plugin_host::capabilityNames(t.capabilities)) caps += (caps.empty() ? "" : ", ") + c;
            row("capabilities", caps.empty() ? "none" : caps);
            row("thread safety", t.thread_safe ? "safe (TH_THREADS_SAFE)" : "serial (TH_THREADS_SERIAL)");
            row("execute() on", t.capabilities & TH_CAP_BLOCKING_EXECUTE ? "a worker thread (blocking)"
                                                                          : "the event loop (non-blocking)");
        }
    }
    out << "\n";
    for (const auto& s : r.steps) {
        out << "  " << cell(s.name, 13) << cell(statusName(s.status), 9) << s.detail << "\n";
        if (s.name != "execute" || !r.execute || r.execute->outcome.empty()) continue;
        const auto& x = *r.execute;
        const std::string indent(2 + 13 + 9, ' ');
        out << indent << "exit code " << (x.exit_code ? std::to_string(*x.exit_code) : std::string("none"))
            << ", message: " << (x.message.empty() ? "(none)" : x.message) << "\n";
        for (const auto& [name, value] : x.outputs) out << indent << "output " << name << " = " << value << "\n";
        for (const auto& [name, value] : x.json_outputs) {
            out << indent << "output " << name << " = " << value << " (JSON)\n";
        }
    }
    if (r.execute && !r.execute->log.empty()) {
        out << "\n  task log:\n";
        std::istringstream in(r.execute->log);
        for (std::string line; std::getline(in, line);) out << "    | " << line << "\n";
    }
    if (!r.daemon_log.empty()) {
        out << "\n  daemon log:\n";
        for (const auto& line : r.daemon_log) out << "    " << line << "\n";
    }
    std::string failed;
    size_t nfailed = 0;
    for (const auto& s : r.steps) {
        if (s.status != Status::Failed) continue;
        ++nfailed;
        failed += (failed.empty() ? "" : ", ") + s.name;
    }
    out << "\n";
    if (r.passed()) out << "every step passed\n";
    else out << nfailed << " step(s) failed: " << failed << "\n";
    if (r.abandoned) out << "the attempt is still running: the plugin instance was not destroyed\n";
    return out.str();
}

json::object pluginCheckJson(const PluginCheckReport& r) {
    json::object o;
    o["file"] = r.file;
    if (r.table) {
        const auto& t = *r.table;
        json::object p;
        p["magic"] = t.magic;
        p["abi_major"] = t.abi_major;
        p["abi_minor"] = t.abi_minor;
        p["struct_size"] = t.struct_size;
        p["min_host_minor"] = t.min_host_minor;
        if (t.negotiated) {
            p["name"] = t.name;
            p["version"] = t.version;
            p["description"] = t.description;
            json::array caps;
            for (const auto& c : plugin_host::capabilityNames(t.capabilities)) caps.emplace_back(c);
            p["capabilities"] = std::move(caps);
            p["thread_safety"] = t.thread_safe ? "safe" : "serial";
        }
        o["plugin"] = std::move(p);
    } else {
        o["plugin"] = nullptr;
    }
    json::array steps;
    for (const auto& s : r.steps) {
        json::object so;
        so["step"] = s.name;
        so["status"] = s.status == Status::Passed ? "passed" : s.status == Status::Failed ? "failed" : "skipped";
        so["detail"] = s.detail;
        steps.push_back(std::move(so));
    }
    o["steps"] = std::move(steps);
    if (r.execute) {
        const auto& x = *r.execute;
        json::object xo;
        xo["outcome"] = x.outcome.empty() ? json::value(nullptr) : json::value(x.outcome);
        xo["exit_code"] = x.exit_code ? json::value(*x.exit_code) : json::value(nullptr);
        xo["message"] = x.message;
        json::object outputs;
        for (const auto& [name, value] : x.outputs) outputs[name] = value;
        for (const auto& [name, value] : x.json_outputs) outputs[name] = json::parse(value); // checked by the host
        xo["outputs"] = std::move(outputs);
        xo["log"] = x.log;
        xo["timed_out"] = x.timed_out;
        xo["duration_ms"] = x.duration_ms;
        o["execute"] = std::move(xo);
    } else {
        o["execute"] = nullptr;
    }
    json::array log;
    for (const auto& line : r.daemon_log) log.emplace_back(line);
    o["daemon_log"] = std::move(log);
    o["abandoned"] = r.abandoned;
    o["passed"] = r.passed();
    return o;
}

} // namespace taskhub::ctl

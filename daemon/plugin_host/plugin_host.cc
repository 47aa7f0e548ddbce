#include "plugin_host/plugin_host.h"

#include "common/proc.h"

#define BOOST_DLL_USE_STD_FS
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/dll/shared_library.hpp>
#include <spdlog/spdlog.h>

#include <taskhub/plugin_api.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <sys/stat.h>

#include "common/time_util.h"
#include "common/trust.h"

#include "plugin_host/containment.h"
#include "plugin_host/outputs.h"
#include "plugin_host/remote_plugin.h"
#include "pool/worker_pool.h"

namespace taskhub::plugin_host {

namespace asio = boost::asio;
namespace fs = std::filesystem;

const char* toString(HealthState s) noexcept {
    switch (s) {
    case HealthState::Healthy: return "healthy";
    case HealthState::Degraded: return "degraded";
    default: return "unhealthy";
    }
}

// The most names a plugin's shell_params may list (a bound on walking a list whose terminating
// NULL a broken plugin forgot).
constexpr size_t kMaxShellParams = 64;

std::optional<std::string> negotiate(const th_plugin_api* api) {
    if (api == nullptr) return "the entry function returned no table (NULL)";
    if (api->magic != TH_ABI_MAGIC) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "wrong magic 0x%08x, expected 0x%08x (TH_ABI_MAGIC)",
                      api->magic, TH_ABI_MAGIC);
        return std::string(buf);
    }
    if (api->abi_major != TH_ABI_VERSION_MAJOR) {
        return "ABI major version " + std::to_string(api->abi_major) + ", this taskhubd supports " +
               std::to_string(TH_ABI_VERSION_MAJOR) + "; rebuild the plugin against the TaskHub " +
               std::to_string(TH_ABI_VERSION_MAJOR) + ".x SDK";
    }
    if (api->min_host_minor > TH_ABI_VERSION_MINOR) {
        return "requires host ABI " + std::to_string(TH_ABI_VERSION_MAJOR) + "." +
               std::to_string(api->min_host_minor) + " or newer, this taskhubd provides " +
               std::to_string(TH_ABI_VERSION_MAJOR) + "." + std::to_string(TH_ABI_VERSION_MINOR) +
               "; upgrade taskhubd";
    }
    // Every 1.0 field is required; later minors only append.
    constexpr size_t kTable10 = offsetof(th_plugin_api, health_check) + sizeof(th_plugin_api::health_check);
    if (!TH_HAS_FIELD(api, th_plugin_api, health_check)) {
        return "plugin table too small (" + std::to_string(api->struct_size) +
               " bytes) for ABI 1.0 (" + std::to_string(kTable10) + " bytes)";
    }
    if (api->name == nullptr || api->name[0] == '\0') return "the plugin declares no name";
    for (const char* p = api->name; *p; ++p) {
        bool ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
        if (!ok) return std::string("invalid plugin name \"") + api->name + "\" (allowed: a-z, 0-9, '_', '-')";
    }
    if (!api->create || !api->destroy || !api->validate || !api->execute) {
        return "the plugin table lacks a required function (create, destroy, validate, execute)";
    }
    if (api->capabilities & TH_CAP_SUSPEND) {
        // ABI 1.1 fields: read only when the table covers them.
        bool covered = TH_HAS_FIELD(api, th_plugin_api, resume);
        if (!covered || !api->suspend || !api->resume) {
            return "the plugin declares TH_CAP_SUSPEND but its table " +
                   std::string(covered ? "does not set suspend and resume"
                                       : "ends before suspend and resume (ABI 1.1)");
        }
    }
    if ((api->capabilities & TH_CAP_ADOPT) && (api->capabilities & TH_CAP_CGROUP) && api->abi_minor >= 6) {
        return "the plugin declares both TH_CAP_ADOPT and TH_CAP_CGROUP: an attempt that runs elsewhere and is "
               "adopted after a restart has no local processes for the host to contain; declare one of them";
    }
    if ((api->capabilities & TH_CAP_HOLD) && api->abi_minor >= 6) {
        bool covered = TH_HAS_FIELD(api, th_plugin_api, release);
        if (!covered || !api->hold || !api->release) {
            return "the plugin declares TH_CAP_HOLD but its table " +
                   std::string(covered ? "does not set hold and release" : "ends before hold and release (ABI 1.6)");
        }
    }
    if ((api->capabilities & TH_CAP_ADOPT) && api->abi_minor >= 6) {
        // ABI 1.6 field: read only when the table covers it.
        bool covered = TH_HAS_FIELD(api, th_plugin_api, adopt);
        if (!covered || !api->adopt) {
            return "the plugin declares TH_CAP_ADOPT but its table " +
                   std::string(covered ? "does not set adopt" : "ends before adopt (ABI 1.6)");
        }
    }
    if (TH_HAS_FIELD(api, th_plugin_api, shell_params) && api->shell_params != nullptr) {
        size_t n = 0;
        for (const char* const* p = api->shell_params; *p != nullptr; ++p) {
            if (++n > kMaxShellParams) {
                return "the plugin's shell_params list has more than " + std::to_string(kMaxShellParams) +
                       " names or lacks its terminating NULL";
            }
            if ((*p)[0] == '\0') return "the plugin's shell_params list holds an empty name";
        }
    }
    return std::nullopt;
}

namespace {

// Threads that a destroyed PluginHost left inside plugins (see threadsLeftInPlugins()).
std::atomic<size_t> threads_held_total{0};

// How long `taskhub-runner --describe` may take to load a plugin.
constexpr std::chrono::milliseconds kDescribeTimeout{10'000};

// True when some plugin may have to run in a runner process.
bool processIsolationConfigured(const LoadPolicy& policy,
                                const std::map<std::string, config::PluginSettings>& settings) {
    if (policy.default_isolation == Isolation::Process) return true;
    return std::any_of(settings.begin(), settings.end(),
                       [](const auto& s) { return s.second.isolation == Isolation::Process; });
}

// As config::DaemonConfig::isolationOf(), from the policy and the settings loadFile() is given.
Isolation isolationOf(const LoadPolicy& policy, const std::string& name,
                      const std::map<std::string, config::PluginSettings>& settings) {
    auto it = settings.find(name);
    if (it != settings.end() && it->second.isolation) return *it->second.isolation;
    return config::isFirstPartyPlugin(name) ? Isolation::InProcess : policy.default_isolation;
}

// ABI 1.4: the rusage of an attempt's main process a plugin reported in th_result, as the
// attempt's usage; nullopt when the result is older than 1.4 or its CPU times are unknown.
std::optional<cgroup::Usage> rusageOf(const th_result& res) {
    if (!TH_HAS_FIELD(&res, th_result, max_rss_kb) || res.cpu_user_us < 0 || res.cpu_system_us < 0)
        return std::nullopt;
    // A zero-initialised th_result of a plugin rebuilt against 1.4 that measured nothing (a
    // process that ran has a resident set).
    if (res.cpu_user_us == 0 && res.cpu_system_us == 0 && res.max_rss_kb == 0) return std::nullopt;
    cgroup::Usage usage;
    usage.source = cgroup::Usage::Source::Rusage;
    usage.cpu_user_us = static_cast<uint64_t>(res.cpu_user_us);
    usage.cpu_system_us = static_cast<uint64_t>(res.cpu_system_us);
    if (res.max_rss_kb >= 0 && static_cast<uint64_t>(res.max_rss_kb) <= UINT64_MAX / 1024)
        usage.memory_peak = static_cast<uint64_t>(res.max_rss_kb) * 1024;
    return usage;
}

// The description of a table negotiate() accepted.
PluginInfo infoOf(const th_plugin_api& api, const fs::path& file) {
    PluginInfo info;
    info.name = api.name;
    info.version = api.version ? api.version : "";
    info.description = api.description ? api.description : "";
    info.file = file;
    info.abi_major = api.abi_major;
    info.abi_minor = api.abi_minor;
    info.capabilities = api.capabilities;
    // TH_CAP_RUN_AS means something only from a table built against ABI 1.3, whose plugin knows
    // to read th_task.run_as; an older table's bit is an accident and not honoured.
    if (!TH_HAS_FIELD(&api, th_plugin_api, shell_params))
        info.capabilities &= ~static_cast<uint64_t>(TH_CAP_RUN_AS);
    // Likewise TH_CAP_CGROUP needs a table built against 1.4, whose plugin reads th_task.cgroup_fd
    // (1.4 appended no field to the table, so the version tells).
    if (api.abi_minor < 4) info.capabilities &= ~static_cast<uint64_t>(TH_CAP_CGROUP);
    // And TH_CAP_ADOPT a table built against 1.6 (negotiate() checked that it covers adopt).
    if (api.abi_minor < 6) info.capabilities &= ~static_cast<uint64_t>(TH_CAP_ADOPT | TH_CAP_HOLD);
    info.blocking = (api.capabilities & TH_CAP_BLOCKING_EXECUTE) != 0;
    info.thread_safe = api.thread_safety == TH_THREADS_SAFE;
    // ABI 1.3: read only when the table covers the field (negotiate() checked the list).
    if (TH_HAS_FIELD(&api, th_plugin_api, shell_params) && api.shell_params != nullptr) {
        for (const char* const* p = api.shell_params; *p != nullptr; ++p) info.shell_params.emplace_back(*p);
    }
    return info;
}

// Loads the library, calls its entry function and negotiates the table: the first half of
// PluginHost::loadFile(), shared with describeFile(). Returns the refusal reason, or nullopt
// with *lib loaded and *table accepted.
std::optional<std::string> openPlugin(const fs::path& file, boost::dll::shared_library* lib,
                                      const th_plugin_api** table) {
    try {
        lib->load(file, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    } catch (const std::exception& e) {
        return std::string("cannot load shared library: ") + e.what();
    }
    if (!lib->has(TH_PLUGIN_ENTRY_SYMBOL)) {
        return std::string("no entry symbol '") + TH_PLUGIN_ENTRY_SYMBOL +
               "' (not a TaskHub plugin, or the symbol is not exported)";
    }
    try {
        auto& entry = lib->get<const th_plugin_api*(uint32_t, uint32_t)>(TH_PLUGIN_ENTRY_SYMBOL);
        *table = entry(TH_ABI_VERSION_MAJOR, TH_ABI_VERSION_MINOR);
    } catch (...) {
        return "the entry function threw a C++ exception across the C ABI";
    }
    return negotiate(*table);
}

} // namespace

std::optional<std::string> describeFile(const fs::path& file, PluginInfo* info) {
    boost::dll::shared_library lib;
    const th_plugin_api* table = nullptr;
    if (auto why = openPlugin(file, &lib, &table)) return why;
    *info = infoOf(*table, file);
    return std::nullopt;
}

class PluginHost::Loaded final : public Plugin {
public:
    Loaded(boost::dll::shared_library lib, const th_plugin_api* table, fs::path file,
           asio::io_context* io, pool::WorkerPool* pool)
        : lib_(std::move(lib)), io_(io), pool_(pool) {
        std::memset(&api_, 0, sizeof api_);
        std::memcpy(&api_, table, std::min<size_t>(table->struct_size, sizeof api_));
        info_ = infoOf(api_, file);
        // A 1.0 table ends before suspend/resume, which the copy above left null; negotiate()
        // refused a table that declares TH_CAP_SUSPEND without both.
        can_suspend_ = (api_.capabilities & TH_CAP_SUSPEND) != 0;

        host_.struct_size = sizeof host_;
        host_.abi_major = TH_ABI_VERSION_MAJOR;
        host_.abi_minor = TH_ABI_VERSION_MINOR;
        host_.complete = &Loaded::hostComplete;
        host_.log = &Loaded::hostLog;
        host_.watch_fd = &Loaded::hostWatchFd;
        host_.unwatch_fd = &Loaded::hostUnwatchFd;
        host_.add_timer = &Loaded::hostAddTimer;
        host_.cancel_timer = &Loaded::hostCancelTimer;
        host_.set_output = &Loaded::hostSetOutput;
        host_.report_process = &Loaded::hostReportProcess;
        host_.report_handle = &Loaded::hostReportHandle;
        host_.set_output_json = &Loaded::hostSetOutputJson;
    }

    // The trusted descriptor the library was loaded from (see loadFile()); closed after lib_.
    void holdFile(trust::UniqueFd fd) { file_fd_ = std::move(fd); }

    // Plugin: the worker-pool threads inside a blocking execute() now.
    std::vector<ThreadInPlugin> threadsInside() const override {
        std::lock_guard lock(pending_mu_);
        std::vector<ThreadInPlugin> out;
        for (const auto& [token, in] : inside_) out.push_back(in.what);
        return out;
    }

    // Plugin: with a thread inside execute(), this object is never destroyed nor its library
    // unloaded (code still runs in it, and may call the host functions with this object as their
    // context): nothing more is posted to the loop, and its watches, timers and health check are
    // dropped now, while the loop exists.
    bool abandonIfHeld() override {
        std::vector<Inside> held;
        {
            std::lock_guard lock(pending_mu_);
            if (inside_.empty()) return false;
            abandoned_ = true;
            for (const auto& [token, in] : inside_) held.push_back(in);
        }
        const int64_t now = nowMillis();
        for (const auto& in : held) {
            const auto& w = in.what;
            spdlog::warn("PLUGIN_THREAD_HELD plugin {}: execute() of task {} (workflow {}, run {}, attempt {}) has "
                         "not returned after {}; the plugin is neither destroyed nor unloaded, and its thread is "
                         "left running until the process exits",
                         info_.name, w.task_id, w.workflow, w.run_id, w.attempt,
                         formatDuration(std::chrono::milliseconds(std::max<int64_t>(now - w.since_ms, 0))));
            if (pool_) pool_->letGo(in.thread);
        }
        threads_held_total.fetch_add(held.size());
        for (auto& [id, sd] : watches_) sd->release(); // the plugin owns those descriptors
        watches_.clear();
        timers_.clear();
        if (health_call_) {
            health_call_->timer.reset();
            health_call_->detach();
        }
        return true;
    }

    ~Loaded() override {
        for (auto& [id, sd] : watches_) sd->release(); // the plugin owns those descriptors
        watches_.clear();
        timers_.clear();
        if (health_call_) health_call_->timer.reset();
        if (health_call_ && !health_call_->detach()) {
            // A health check that never returned still runs plugin code on its thread: the
            // instance cannot be destroyed nor the library unmapped under it. Both are left to
            // the end of the process.
            spdlog::warn("PLUGIN_HEALTH_HUNG plugin {}: a health check is still running at shutdown; "
                         "the instance is not destroyed", info_.name);
            new boost::dll::shared_library(std::move(lib_)); // never unloaded
            return;
        }
        if (inst_) {
            try {
                api_.destroy(inst_);
            } catch (...) {
                spdlog::error("PLUGIN_DESTROY_THREW plugin {} threw from destroy()", info_.name);
            }
        }
    }

    std::optional<std::string> create(const std::string& config_json) {
        char err[1024] = "";
        th_status st;
        try {
            st = api_.create(&host_, ctx(), config_json.c_str(), &inst_, th_buffer{err, sizeof err});
        } catch (...) {
            return std::string("create() threw a C++ exception across the C ABI");
        }
        if (st != TH_OK || inst_ == nullptr) {
            inst_ = nullptr;
            return "create() failed: " + std::string(err[0] ? err : "no message");
        }
        return std::nullopt;
    }

    const PluginInfo& info() const override { return info_; }

    std::optional<config::PluginCatalog::Problem> validate(const std::string& params) const override {
        char msg[1024] = "", key[256] = "";
        th_status st;
        try {
            // Not serialised with a blocking execute(): validate() has no side effects, and taking
            // the lock here would stall the event loop for as long as a task runs.
            st = api_.validate(inst_, params.c_str(), th_buffer{msg, sizeof msg}, th_buffer{key, sizeof key});
        } catch (...) {
            return config::PluginCatalog::Problem{"", "validate() threw a C++ exception across the C ABI"};
        }
        if (st == TH_OK) return std::nullopt;
        return config::PluginCatalog::Problem{key, msg[0] ? msg : "rejected without a message"};
    }

    uint64_t start(const AttemptSpec& spec, Done done) override { return begin(spec, std::nullopt, std::move(done)); }

    bool canAdopt() const override { return (info_.capabilities & TH_CAP_ADOPT) != 0; }

    std::optional<uint64_t> adopt(const AttemptSpec& spec, std::optional<std::string> handle, Done done) override {
        if (!canAdopt()) return std::nullopt;
        return begin(spec, Adoption{std::move(handle)}, std::move(done));
    }

    void cancel(uint64_t token) override {
        if (!api_.cancel || !(api_.capabilities & TH_CAP_CANCEL)) {
            spdlog::warn("PLUGIN_CANNOT_CANCEL plugin {} does not support cancel; attempt {} keeps running "
                         "until it completes", info_.name, token);
            return;
        }
        {
            std::lock_guard lock(pending_mu_);
            if (!pending_.count(token)) return;
        }
        try {
            api_.cancel(inst_, token);
        } catch (...) {
            spdlog::error("PLUGIN_CANCEL_THREW plugin {} threw from cancel()", info_.name);
        }
    }

    bool canSuspend() const override { return can_suspend_; }

    bool canHold() const override { return (info_.capabilities & TH_CAP_HOLD) != 0; }
    void hold(uint64_t token) override { callHold(token, true); }
    void release(uint64_t token) override { callHold(token, false); }

    void suspend(uint64_t token) override { callSuspendOrResume(token, true); }
    void resume(uint64_t token) override { callSuspendOrResume(token, false); }

    size_t running() const override { return running_.load(); }

    // In-process: health_check() runs on a thread of its own (it may block, and a check that
    // never returns must not hold a worker or the loop). A check still running when the next one
    // is due answers Unhealthy at once; no second thread is started for the same instance.
    void checkHealth(std::chrono::milliseconds timeout, HealthDone done) override {
        if (!io_) {
            done({HealthState::Unhealthy, "no event loop to run a health check on"});
            return;
        }
        auto answer = [this](HealthDone d, HealthReport r) {
            asio::post(*io_, [d = std::move(d), r = std::move(r)]() mutable { d(std::move(r)); });
        };
        if (!(api_.capabilities & TH_CAP_HEALTH_CHECK) || !api_.health_check) {
            answer(std::move(done), {HealthState::Healthy, "no health check (TH_CAP_HEALTH_CHECK not declared)"});
            return;
        }
        if (health_call_ && !health_call_->finished()) {
            answer(std::move(done),
                   {HealthState::Unhealthy, "the health check started " +
                                                formatDuration(std::chrono::milliseconds(
                                                    nowMillis() - health_call_->started_ms)) +
                                                " ago has not returned"});
            return;
        }
        auto call = std::make_shared<HealthCall>();
        call->started_ms = nowMillis();
        call->io = io_;
        health_call_ = call;
        // Whichever comes first, the answer or the timeout, calls done; the other is ignored.
        auto shared_done = std::make_shared<HealthDone>(std::move(done));
        call->timer = std::make_unique<asio::steady_timer>(*io_, timeout);
        call->timer->async_wait([call, shared_done, timeout](const boost::system::error_code& ec) {
            if (ec || call->answered) return;
            call->answered = true;
            call->timer.reset();
            (*shared_done)({HealthState::Unhealthy, "health check timed out after " + formatDuration(timeout)});
        });
        // The thread gets what it calls by value: the plugin object may be destroyed while a check
        // that never returns still runs (the instance and library are then kept).
        std::thread([fn = api_.health_check, inst = inst_, call, shared_done] {
            HealthReport r = callHealthCheck(fn, inst);
            std::lock_guard lock(call->mu);
            call->done = true;
            if (!call->io) return; // the plugin was destroyed meanwhile
            asio::post(*call->io, [call, shared_done, r = std::move(r)]() mutable {
                if (call->answered) return;
                call->answered = true;
                call->timer.reset();
                (*shared_done)(std::move(r));
            });
        }).detach();
    }

private:
    // One in-process health check. done/io are guarded by mu (the check's thread and the loop);
    // answered is loop-thread only.
    struct HealthCall {
        std::mutex mu;
        bool done = false;
        asio::io_context* io = nullptr;
        int64_t started_ms = 0;
        bool answered = false;
        std::unique_ptr<asio::steady_timer> timer; // the timeout; loop thread
        bool finished() {
            std::lock_guard lock(mu);
            return done;
        }
        // The owner goes away: true when the check had finished (nothing of it runs any more).
        bool detach() {
            std::lock_guard lock(mu);
            io = nullptr;
            return done;
        }
    };

    static HealthReport callHealthCheck(th_status (*fn)(th_instance*, th_health*), th_instance* inst) {
        char msg[1024] = "";
        th_health h{};
        h.struct_size = sizeof h;
        h.state = TH_HEALTH_OK;
        h.message = th_buffer{msg, sizeof msg};
        th_status st;
        try {
            st = fn(inst, &h);
        } catch (const std::exception& e) {
            return {HealthState::Unhealthy, std::string("health_check() threw: ") + e.what()};
        } catch (...) {
            return {HealthState::Unhealthy, "health_check() threw a C++ exception across the C ABI"};
        }
        msg[sizeof msg - 1] = '\0';
        if (st != TH_OK) {
            return {HealthState::Unhealthy, "health_check() returned status " + std::to_string(static_cast<int>(st)) +
                                                (msg[0] ? ": " + std::string(msg) : std::string())};
        }
        switch (h.state) {
        case TH_HEALTH_OK: return {HealthState::Healthy, msg};
        case TH_HEALTH_DEGRADED: return {HealthState::Degraded, msg};
        case TH_HEALTH_UNHEALTHY: return {HealthState::Unhealthy, msg[0] ? msg : "unhealthy (no message)"};
        default:
            return {HealthState::Unhealthy, "health_check() answered an unknown state " + std::to_string(h.state) +
                                                (msg[0] ? ": " + std::string(msg) : std::string())};
        }
    }

    // What adopt() hands the plugin: the recorded handle, if any.
    struct Adoption {
        std::optional<std::string> handle;
    };

    uint64_t begin(const AttemptSpec& spec, std::optional<Adoption> adoption, Done done) {
        const uint64_t token = next_token_.fetch_add(1) + 1;
        {
            std::lock_guard lock(pending_mu_);
            pending_.emplace(token, Pending{std::move(done), {}, spec.on_process, spec.on_handle, handsCgroup(spec)});
        }
        running_.fetch_add(1);
        if (info_.blocking) {
            pool_->post([this, spec, token, adoption] { callExecute(spec, token, adoption); });
        } else {
            callExecute(spec, token, adoption);
        }
        return token;
    }

    // A worker thread inside execute() (see callExecute()).
    struct Inside {
        std::thread::id thread;
        ThreadInPlugin what;
    };

    // An accepted attempt until the plugin completes it.
    struct Pending {
        Done done;
        OutputSet outputs; // from set_output
        std::function<void(const ProcessIdentity&)> on_process;
        std::function<void(const std::string&)> on_handle;
        // The plugin got the attempt's cgroup (th_task.cgroup_fd): the containment measures the
        // cgroup, so the main process's rusage is not the attempt's usage.
        bool contained = false;
    };

    // Whether the attempt's cgroup goes to the plugin: only one that declared TH_CAP_CGROUP
    // (in a table of ABI 1.4 or later; see infoOf()) knows to start its processes there.
    bool handsCgroup(const AttemptSpec& spec) const {
        return spec.cgroup_fd >= 0 && (info_.capabilities & TH_CAP_CGROUP) != 0;
    }

    th_host_ctx* ctx() { return reinterpret_cast<th_host_ctx*>(this); }

    void callHold(uint64_t token, bool hold) {
        if (!canHold()) return;
        {
            std::lock_guard lock(pending_mu_);
            if (!pending_.count(token)) return;
        }
        th_status st;
        try {
            st = (hold ? api_.hold : api_.release)(inst_, token);
        } catch (...) {
            st = TH_ERR_FAILED;
        }
        if (st != TH_OK) {
            spdlog::warn("PLUGIN_HOLD_FAILED plugin {}: {}() of attempt {} failed (status {})", info_.name,
                         hold ? "hold" : "release", token, static_cast<int>(st));
        }
    }

    void callSuspendOrResume(uint64_t token, bool suspend) {
        const char* what = suspend ? "suspend" : "resume";
        if (!can_suspend_) {
            spdlog::warn("PLUGIN_CANNOT_SUSPEND plugin {} does not support suspend/resume (TH_CAP_SUSPEND); "
                         "{} of attempt {} ignored, it keeps running", info_.name, what, token);
            return;
        }
        {
            std::lock_guard lock(pending_mu_);
            if (!pending_.count(token)) return;
        }
        th_status st;
        try {
            st = suspend ? api_.suspend(inst_, token) : api_.resume(inst_, token);
        } catch (...) {
            spdlog::error("PLUGIN_SUSPEND_THREW plugin {} threw from {}()", info_.name, what);
            return;
        }
        if (st != TH_OK) {
            spdlog::warn("PLUGIN_SUSPEND_FAILED plugin {} could not {} attempt {} (status {})", info_.name,
                         what, token, static_cast<int>(st));
        }
    }
    static Loaded* self(th_host_ctx* c) { return reinterpret_cast<Loaded*>(c); }

    std::unique_lock<std::mutex> serialLock() const {
        return info_.thread_safe ? std::unique_lock<std::mutex>() : std::unique_lock<std::mutex>(serial_);
    }

    // execute(), or adopt() with the attempt's recorded handle.
    void callExecute(const AttemptSpec& spec, uint64_t token, const std::optional<Adoption>& adoption) {
        std::vector<const char*> env;
        env.reserve(spec.env.size() + 1);
        for (const auto& e : spec.env) env.push_back(e.c_str());
        env.push_back(nullptr);
        th_task task{};
        task.struct_size = sizeof task;
        task.workflow = spec.workflow.c_str();
        task.run_id = spec.run_id.c_str();
        task.task_id = spec.task_id.c_str();
        task.attempt = spec.attempt;
        task.params_json = spec.params_json.c_str();
        task.params_len = spec.params_json.size();
        task.env = env.data();
        task.log_fd = spec.log_fd;
        task.timeout_ms = spec.timeout_ms;
        // ABI 1.4: -1 (not th_task{}'s 0, which is a descriptor) unless the plugin contains it.
        task.cgroup_fd = handsCgroup(spec) ? spec.cgroup_fd : -1;
        // th_identity points into spec, which outlives the execute() call.
        th_identity identity{};
        std::vector<uint32_t> groups;
        if (spec.run_as) {
            if (!(info_.capabilities & TH_CAP_RUN_AS)) {
                // The loader refuses run_as for such a plugin; never run it as root instead.
                finish(token, AttemptResult{AttemptResult::Outcome::Failed, std::nullopt,
                                            "plugin " + info_.name + " cannot run tasks as another user (no "
                                            "TH_CAP_RUN_AS); the task's run_as was not honoured, so it did not run",
                                            {}});
                return;
            }
            const Identity& id = *spec.run_as;
            groups.assign(id.groups.begin(), id.groups.end());
            identity.struct_size = sizeof identity;
            identity.user = id.user.c_str();
            identity.uid = id.uid;
            identity.gid = id.gid;
            identity.groups = groups.data();
            identity.n_groups = groups.size();
            identity.home = id.home.c_str();
            identity.shell = id.shell.c_str();
            task.run_as = &identity;
        }
        // On a worker thread, the thread is known to be inside the plugin from here (also while it
        // waits for serial_, held by another thread inside) until execute() returned.
        if (info_.blocking) {
            std::lock_guard lock(pending_mu_);
            inside_.emplace(token, Inside{std::this_thread::get_id(),
                                          {info_.name, spec.workflow, spec.run_id, spec.task_id, spec.attempt,
                                           nowMillis()}});
        }
        char err[1024] = "";
        th_status st;
        try {
            auto lock = serialLock();
            if (adoption) {
                st = api_.adopt(inst_, &task, adoption->handle ? adoption->handle->c_str() : nullptr, token,
                                th_buffer{err, sizeof err});
            } else {
                st = api_.execute(inst_, &task, token, th_buffer{err, sizeof err});
            }
        } catch (const std::exception& e) {
            std::snprintf(err, sizeof err, "%s() threw: %s", adoption ? "adopt" : "execute", e.what());
            st = TH_ERR_FAILED;
        } catch (...) {
            std::snprintf(err, sizeof err, "%s() threw a C++ exception across the C ABI", adoption ? "adopt" : "execute");
            st = TH_ERR_FAILED;
        }
        if (info_.blocking) {
            std::lock_guard lock(pending_mu_);
            inside_.erase(token);
            if (abandoned_) return; // the host is gone: nothing of this object but the lock is used
        }
        if (st != TH_OK) {
            AttemptResult r;
            r.outcome = AttemptResult::Outcome::Failed;
            if (adoption) {
                r.lost = true;
                r.message = "plugin " + info_.name + " could not adopt it: " + std::string(err[0] ? err : "no message");
            } else {
                r.message = "plugin " + info_.name + " could not start the task: " +
                            std::string(err[0] ? err : "no message");
            }
            finish(token, std::move(r));
        }
    }

    void finish(uint64_t token, AttemptResult result) {
        // Posted under the lock: abandonIfHeld() takes it, so nothing reaches the loop after it.
        std::lock_guard lock(pending_mu_);
        if (abandoned_) return;
        auto it = pending_.find(token);
        if (it == pending_.end()) {
            spdlog::warn("PLUGIN_EXTRA_COMPLETION plugin {} completed token {} which is not "
                         "running (completed twice, or never started); ignored",
                         info_.name, token);
            return;
        }
        Done done = std::move(it->second.done);
        result.outputs = it->second.outputs.take();
        result.json_outputs = it->second.outputs.takeJson();
        if (it->second.contained) result.usage.reset();
        pending_.erase(it);
        running_.fetch_sub(1);
        asio::post(*io_, [done = std::move(done), result = std::move(result)]() mutable {
            done(std::move(result));
        });
    }

    static void hostComplete(th_host_ctx* c, uint64_t token, const th_result* res) {
        AttemptResult r;
        if (res == nullptr) {
            r.message = "plugin reported completion without a result";
        } else {
            switch (res->outcome) {
            case TH_OUTCOME_SUCCEEDED: r.outcome = AttemptResult::Outcome::Succeeded; break;
            case TH_OUTCOME_CANCELLED: r.outcome = AttemptResult::Outcome::Cancelled; break;
            case TH_OUTCOME_LOST:
                r.outcome = AttemptResult::Outcome::Failed;
                r.lost = true;
                break;
            default: r.outcome = AttemptResult::Outcome::Failed; break;
            }
            if (res->exit_code >= 0) r.exit_code = res->exit_code;
            if (res->message) r.message = res->message;
            r.usage = rusageOf(*res);
        }
        self(c)->finish(token, std::move(r));
    }

    // set_output (json false) and set_output_json (json true).
    static th_status setOutput(th_host_ctx* c, uint64_t token, const char* name, const char* value, bool json) {
        Loaded* self_ = self(c);
        const char* call = json ? "set_output_json" : "set_output";
        std::string err;
        if (name == nullptr || value == nullptr) {
            err = std::string(call) + "() with a NULL " + (name == nullptr ? "name" : json ? "json" : "value");
        } else {
            std::lock_guard lock(self_->pending_mu_);
            auto it = self_->pending_.find(token);
            if (it == self_->pending_.end()) {
                err = std::string(call) + "('" + name + "') for attempt " + std::to_string(token) +
                      ", which is not running (completed, or never started)";
            } else if (json ? it->second.outputs.setJson(name, value, &err) : it->second.outputs.set(name, value, &err)) {
                return TH_OK;
            }
        }
        spdlog::warn("PLUGIN_OUTPUT_REJECTED plugin {}: {}", self_->info_.name, err);
        return TH_ERR_INVALID;
    }
    static th_status hostSetOutput(th_host_ctx* c, uint64_t token, const char* name, const char* value) {
        return setOutput(c, token, name, value, false);
    }
    static th_status hostSetOutputJson(th_host_ctx* c, uint64_t token, const char* name, const char* json) {
        return setOutput(c, token, name, json, true);
    }

    static th_status hostReportProcess(th_host_ctx* c, uint64_t token, int32_t pid, int32_t pgid) {
        Loaded* self_ = self(c);
        if (pid <= 0 || pgid < 0) {
            spdlog::warn("PLUGIN_PROCESS_REJECTED plugin {}: report_process() for attempt {} with pid {} and "
                         "pgid {} (expected a pid > 0 and a pgid >= 0)", self_->info_.name, token, pid, pgid);
            return TH_ERR_INVALID;
        }
        // Read now, while the process surely is the one meant.
        ProcessIdentity id{pid, pgid, processStartTicks(pid).value_or(0)};
        std::lock_guard lock(self_->pending_mu_);
        if (self_->abandoned_) return TH_ERR_INVALID; // the host is gone
        auto it = self_->pending_.find(token);
        if (it == self_->pending_.end()) {
            spdlog::warn("PLUGIN_PROCESS_REJECTED plugin {}: report_process() for attempt {}, which is not "
                         "running (completed, or never started)", self_->info_.name, token);
            return TH_ERR_INVALID;
        }
        // Posted before any completion of the token (complete() posts after this returns), and
        // under the lock, like finish().
        if (it->second.on_process && self_->io_) {
            asio::post(*self_->io_, [fn = it->second.on_process, id] { fn(id); });
        }
        return TH_OK;
    }

    static th_status hostReportHandle(th_host_ctx* c, uint64_t token, const char* handle) {
        Loaded* self_ = self(c);
        std::string why;
        if (!validHandle(handle, &why)) {
            spdlog::warn("PLUGIN_HANDLE_REJECTED plugin {}: report_handle() for attempt {}: {}", self_->info_.name,
                         token, why);
            return TH_ERR_INVALID;
        }
        std::lock_guard lock(self_->pending_mu_);
        if (self_->abandoned_) return TH_ERR_INVALID; // the host is gone
        auto it = self_->pending_.find(token);
        if (it == self_->pending_.end()) {
            spdlog::warn("PLUGIN_HANDLE_REJECTED plugin {}: report_handle() for attempt {}, which is not "
                         "running (completed, or never started)", self_->info_.name, token);
            return TH_ERR_INVALID;
        }
        // Posted before any completion of the token, under the lock, like report_process().
        if (it->second.on_handle && self_->io_) {
            asio::post(*self_->io_, [fn = it->second.on_handle, h = std::string(handle)] { fn(h); });
        }
        return TH_OK;
    }

    static void hostLog(th_host_ctx* c, int32_t level, const char* msg) {
        const auto& name = self(c)->info_.name;
        const char* m = msg ? msg : "";
        switch (level) {
        case TH_LOG_DEBUG: spdlog::debug("PLUGIN_LOG [{}] {}", name, m); break;
        case TH_LOG_INFO: spdlog::info("PLUGIN_LOG [{}] {}", name, m); break;
        case TH_LOG_WARN: spdlog::warn("PLUGIN_LOG [{}] {}", name, m); break;
        default: spdlog::error("PLUGIN_LOG [{}] {}", name, m); break;
        }
    }

    static th_status hostWatchFd(th_host_ctx* c, int fd, th_fd_callback cb, void* user, uint64_t* id_out) {
        Loaded* self_ = self(c);
        if (!self_->io_ || !cb || fd < 0) return TH_ERR_UNSUPPORTED;
        try {
            auto sd = std::make_unique<asio::posix::stream_descriptor>(*self_->io_, fd);
            const uint64_t id = ++self_->next_id_;
            sd->async_wait(asio::posix::stream_descriptor::wait_read,
                           [self_, id, cb, user, fd](const boost::system::error_code& ec) {
                               auto it = self_->watches_.find(id);
                               if (it == self_->watches_.end()) return;
                               it->second->release();
                               self_->watches_.erase(it);
                               if (ec) return;
                               self_->callBack("fd watch", [&] { cb(user, fd); });
                           });
            self_->watches_.emplace(id, std::move(sd));
            if (id_out) *id_out = id;
            return TH_OK;
        } catch (const std::exception& e) {
            spdlog::error("PLUGIN_WATCH_FAILED plugin {} fd {}: {}", self_->info_.name, fd, e.what());
            return TH_ERR_FAILED;
        }
    }

    // Runs a callback of the plugin on the event loop: an exception it lets escape is logged,
    // never thrown into the loop.
    template <class F>
    void callBack(const char* what, F&& call) {
        try {
            call();
        } catch (const std::exception& e) {
            spdlog::error("PLUGIN_CALLBACK_THREW plugin {} threw from its {} callback: {}", info_.name, what, e.what());
        } catch (...) {
            spdlog::error("PLUGIN_CALLBACK_THREW plugin {} threw a C++ exception from its {} callback", info_.name,
                          what);
        }
    }

    static void hostUnwatchFd(th_host_ctx* c, uint64_t id) {
        Loaded* self_ = self(c);
        auto it = self_->watches_.find(id);
        if (it == self_->watches_.end()) return;
        boost::system::error_code ec;
        it->second->cancel(ec);
        it->second->release();
        self_->watches_.erase(it);
    }

    static th_status hostAddTimer(th_host_ctx* c, uint64_t delay_ms, th_timer_callback cb, void* user,
                                  uint64_t* id_out) {
        Loaded* self_ = self(c);
        if (!self_->io_ || !cb) return TH_ERR_UNSUPPORTED;
        auto timer = std::make_unique<asio::steady_timer>(*self_->io_, std::chrono::milliseconds(delay_ms));
        const uint64_t id = ++self_->next_id_;
        timer->async_wait([self_, id, cb, user](const boost::system::error_code& ec) {
            auto it = self_->timers_.find(id);
            if (it == self_->timers_.end()) return;
            self_->timers_.erase(it);
            if (ec) return;
            self_->callBack("timer", [&] { cb(user); });
        });
        self_->timers_.emplace(id, std::move(timer));
        if (id_out) *id_out = id;
        return TH_OK;
    }

    static void hostCancelTimer(th_host_ctx* c, uint64_t id) { self(c)->timers_.erase(id); }

    trust::UniqueFd file_fd_;        // declared first: closed after the library is unloaded
    boost::dll::shared_library lib_; // destroyed after everything below
    th_plugin_api api_;
    th_host_api host_{};
    th_instance* inst_ = nullptr;
    PluginInfo info_;
    asio::io_context* io_;
    pool::WorkerPool* pool_;

    mutable std::mutex serial_;
    mutable std::mutex pending_mu_; // guards pending_, inside_ and abandoned_
    std::unordered_map<uint64_t, Pending> pending_;
    std::unordered_map<uint64_t, Inside> inside_; // by token
    bool abandoned_ = false;                      // see abandonIfHeld()
    bool can_suspend_ = false;
    std::atomic<uint64_t> next_token_{0};
    std::atomic<size_t> running_{0};

    // Event-loop thread only.
    uint64_t next_id_ = 0;
    std::unordered_map<uint64_t, std::unique_ptr<asio::posix::stream_descriptor>> watches_;
    std::unordered_map<uint64_t, std::unique_ptr<asio::steady_timer>> timers_;
    std::shared_ptr<HealthCall> health_call_; // the latest health check
};



size_t threadsLeftInPlugins() { return threads_held_total.load(); }

std::vector<ThreadInPlugin> PluginHost::threadsInside() const {
    std::vector<ThreadInPlugin> out;
    for (const auto& [name, p] : plugins_) {
        auto in = p->threadsInside();
        out.insert(out.end(), in.begin(), in.end());
    }
    return out;
}

bool ownershipTrusted(const fs::path& path, bool directory, std::string* why) {
    return trust::openTrusted(path, directory ? trust::Kind::Directory : trust::Kind::RegularFile,
                              trust::processOwners(), why)
        .has_value();
}

bool validHandle(const char* handle, std::string* why) {
    if (handle == nullptr) {
        *why = "the handle is NULL";
        return false;
    }
    const size_t n = std::strlen(handle);
    if (n == 0 || n > kMaxHandle) {
        *why = "the handle is " + std::to_string(n) + " bytes long (expected 1 to " + std::to_string(kMaxHandle) + ")";
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        const auto ch = static_cast<unsigned char>(handle[i]);
        if (ch < 0x20 || ch == 0x7f) {
            *why = "the handle holds a control character (byte " + std::to_string(ch) + " at offset " +
                   std::to_string(i) + ")";
            return false;
        }
    }
    return true;
}

std::vector<std::string> capabilityNames(uint64_t caps) {
    static const std::pair<uint64_t, const char*> kNames[] = {
        {TH_CAP_CANCEL, "cancel"},   {TH_CAP_HEALTH_CHECK, "health_check"}, {TH_CAP_BLOCKING_EXECUTE, "blocking_execute"},
        {TH_CAP_SUSPEND, "suspend"}, {TH_CAP_NO_LOG, "no_log"}, {TH_CAP_RUN_AS, "run_as"},
        {TH_CAP_CGROUP, "cgroup"},   {TH_CAP_DURABLE_START, "durable_start"}, {TH_CAP_ADOPT, "adopt"},
        {TH_CAP_HOLD, "hold"},
    };
    std::vector<std::string> out;
    for (const auto& [bit, name] : kNames) {
        if (caps & bit) {
            out.emplace_back(name);
            caps &= ~bit;
        }
    }
    if (caps != 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(caps));
        out.emplace_back(buf);
    }
    return out;
}

void PluginHost::loadDirectories(const std::vector<fs::path>& dirs,
                                 const std::map<std::string, config::PluginSettings>& settings) {
    for (const auto& dir : dirs) {
        if (policy_.require_trusted) {
            if (std::string why; !ownershipTrusted(dir, true, &why)) {
                spdlog::error("PLUGIN_DIR_REFUSED {}", why);
                refused_.push_back({dir, "", "plugin directory refused: " + why});
                continue;
            }
        }
        std::error_code ec;
        std::vector<fs::path> files;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->path().extension() == ".so") files.push_back(it->path());
        }
        if (ec) {
            spdlog::error("PLUGIN_DIR_UNREADABLE cannot read plugin directory {}: {}", dir.string(), ec.message());
            refused_.push_back({dir, "", "cannot read plugin directory: " + ec.message()});
            continue;
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) loadFile(f, settings);
    }
    for (const auto& [name, s] : settings) {
        if (!plugins_.count(name)) {
            spdlog::warn("PLUGIN_SETTINGS_UNUSED [plugins.{}] is configured but no plugin of that name is loaded", name);
        }
    }
}

std::optional<std::string> PluginHost::loadFile(const fs::path& file,
                                                const std::map<std::string, config::PluginSettings>& settings) {
    auto refuse = [&](const std::string& name, const std::string& why) -> std::optional<std::string> {
        spdlog::error("PLUGIN_REFUSED {}: {}", file.string(), why);
        refused_.push_back({file, name, why});
        return why;
    };
    // With the trust rule, the file is opened and checked first and the library is loaded from
    // that descriptor (dlopen of /proc/self/fd/N maps the inode that was checked, whatever happens
    // to the path meanwhile). The descriptor stays open while the library is loaded, so that its
    // /proc name, which the dynamic loader also matches loaded objects by, stays unique.
    trust::UniqueFd file_fd; // declared before the library: closed after it is unloaded
    fs::path load_path = file;
    if (policy_.require_trusted) {
        std::string why;
        auto opened = trust::openTrusted(file, trust::Kind::RegularFile, trust::processOwners(), &why);
        if (!opened) return refuse("", why);
        file_fd = std::move(opened->fd);
        load_path = "/proc/self/fd/" + std::to_string(file_fd.get());
    }
    auto duplicate = [&](const std::string& name) -> std::optional<std::string> {
        auto it = plugins_.find(name);
        if (it == plugins_.end()) return std::nullopt;
        return "duplicate plugin name '" + name + "', already loaded from " + it->second->info().file.string();
    };
    // Process isolation: the plugin's name decides, and only a load in another process can tell
    // it without mapping the library here. A plugin configured in_process is then loaded below.
    if (policy_.isolate && io_ && processIsolationConfigured(policy_, settings)) {
        Description d = describeOutOfProcess(policy_.runner, file, kDescribeTimeout, file_fd.get());
        if (!d.info) return refuse("", d.refusal);
        const std::string& name = d.info->name;
        if (isolationOf(policy_, name, settings) == Isolation::Process) {
            if (auto why = duplicate(name)) return refuse(name, *why);
            isolation_[name] = Isolation::Process;
            auto s = settings.find(name);
            RemotePlugin::Options o;
            o.runner = policy_.runner;
            o.require_trusted = policy_.require_trusted;
            o.cgroups = policy_.cgroups;
            if (s != settings.end()) {
                o.config_json = s->second.plugin_config_json;
                o.user = s->second.user;
                o.validate_timeout = std::max(o.validate_timeout, s->second.health.timeout);
            }
            if (pool_) o.max_workers = pool_->maxWorkers();
            std::string why;
            auto remote = RemotePlugin::launch(*io_, *d.info, o, &why);
            if (!remote) return refuse(name, why);
            spdlog::info("PLUGIN_LOADED {} {} (ABI {}.{}{}{}, process isolation: runner pid {}) from {}", name,
                         remote->info().version, remote->info().abi_major, remote->info().abi_minor,
                         remote->info().blocking ? ", blocking execute" : "", remote->canSuspend() ? ", suspend" : "",
                         remote->runnerPid(), file.string());
            plugins_.emplace(name, contain(std::move(remote), true));
            return std::nullopt;
        }
    }
    boost::dll::shared_library lib;
    const th_plugin_api* table = nullptr;
    if (auto why = openPlugin(load_path, &lib, &table)) return refuse("", *why);
    const std::string name = table->name;
    if (auto why = duplicate(name)) return refuse(name, *why);
    // Offline (--check, validate) every plugin is loaded here; record how the daemon runs it.
    isolation_[name] = isolationOf(policy_, name, settings);
    auto loaded = std::make_unique<Loaded>(std::move(lib), table, file, io_, pool_);
    loaded->holdFile(std::move(file_fd));
    auto s = settings.find(name);
    if (auto why = loaded->create(s != settings.end() ? s->second.plugin_config_json : "{}")) {
        return refuse(name, *why);
    }
    spdlog::info("PLUGIN_LOADED {} {} (ABI {}.{}{}{}) from {}", name, loaded->info().version,
                 loaded->info().abi_major, loaded->info().abi_minor,
                 loaded->info().blocking ? ", blocking execute" : "",
                 loaded->canSuspend() ? ", suspend" : "", file.string());
    plugins_.emplace(name, contain(std::move(loaded), false));
    return std::nullopt;
}

std::unique_ptr<Plugin> PluginHost::contain(std::unique_ptr<Plugin> plugin, bool isolated) {
    if (!policy_.cgroups || !io_ || !(plugin->info().capabilities & TH_CAP_CGROUP)) return plugin;
    ContainedPlugin::Options o;
    o.manager = policy_.cgroups;
    o.isolated = isolated;
    o.kill_after = policy_.cgroup_kill_after;
    return std::make_unique<ContainedPlugin>(*io_, std::move(plugin), o);
}

Plugin* PluginHost::find(const std::string& name) const {
    auto it = plugins_.find(name);
    return it == plugins_.end() ? nullptr : it->second.get();
}

std::vector<const Plugin*> PluginHost::plugins() const {
    std::vector<const Plugin*> out;
    for (const auto& [n, p] : plugins_) out.push_back(p.get());
    return out;
}

std::optional<std::string> PluginHost::unavailable(const std::string& plugin) const {
    if (plugins_.count(plugin)) return std::nullopt;
    for (const auto& r : refused_) {
        if (r.name == plugin) {
            return "plugin '" + plugin + "' is not available: " + r.file.string() + " was refused: " + r.reason;
        }
    }
    std::string loaded;
    for (const auto& [n, p] : plugins_) loaded += (loaded.empty() ? "" : ", ") + n;
    return "no plugin named '" + plugin + "' is loaded (loaded: " + (loaded.empty() ? "none" : loaded) + ")";
}

std::optional<config::PluginCatalog::Problem> PluginHost::validate(const std::string& plugin,
                                                                   const std::string& params_json) const {
    auto* p = find(plugin);
    if (!p) return Problem{"", *unavailable(plugin)};
    return p->validate(params_json);
}

std::vector<std::string> PluginHost::shellParams(const std::string& plugin) const {
    auto* p = find(plugin);
    return p ? p->info().shell_params : std::vector<std::string>{};
}

std::optional<std::string> PluginHost::limitsUnsupported(const std::string& plugin) const {
    auto* p = find(plugin);
    if (!p) return unavailable(plugin);
    if (p->info().capabilities & TH_CAP_CGROUP) return std::nullopt;
    return "plugin " + plugin + " does not declare TH_CAP_CGROUP: its attempts do not run in cgroups of their "
           "own, so no limit can be applied to them";
}

std::optional<std::string> PluginHost::runAsUnsupported(const std::string& plugin) const {
    auto* p = find(plugin);
    if (!p) return unavailable(plugin);
    auto iso = isolation_.find(plugin);
    if (iso != isolation_.end() && iso->second == Isolation::Process) {
        return "plugin " + plugin + " runs in its own taskhub-runner process (isolation = \"process\"), "
               "which runs every task as one user; set that user with [plugins." + plugin +
               "] user = \"...\" in taskhub.toml instead";
    }
    if (!(p->info().capabilities & TH_CAP_RUN_AS)) {
        return "plugin " + plugin + " does not declare TH_CAP_RUN_AS: it runs inside taskhubd, as taskhubd's "
               "user, and cannot switch users; run it isolated with [plugins." + plugin +
               "] isolation = \"process\" and user = \"...\" in taskhub.toml instead";
    }
    return std::nullopt;
}

} // namespace taskhub::plugin_host

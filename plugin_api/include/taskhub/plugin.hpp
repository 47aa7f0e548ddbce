// Header-only C++ helper for writing TaskHub executor plugins against taskhub/plugin_api.h.
//
// Derive from taskhub::sdk::Plugin, implement execute() (and, as needed, validate(), cancel(),
// suspend(), resume(), health(), adopt()), then export it with one macro:
//
//     class Echo : public taskhub::sdk::Plugin {
//     public:
//         Echo(taskhub::sdk::Host host, std::string_view config_json) : Plugin(host) {}
//         void execute(const taskhub::sdk::Task& t) override {
//             host().complete(t.token, TH_OUTCOME_SUCCEEDED, 0, "done");
//         }
//     };
//     TASKHUB_PLUGIN(Echo, "echo", "1.0.0", "Completes at once", 0, TH_THREADS_SAFE)
//
// The macro generates the C entry point and trampolines that turn every C++ exception into a
// status code, so nothing C++ ever crosses the ABI. Throw taskhub::sdk::InvalidParam from
// validate() to reject a parameter; throw anything derived from std::exception from execute()
// to refuse to start an attempt (its what() becomes the error).
//
// A plugin whose parameters include POSIX shell command text declares their names (ABI 1.3
// shell_params) with a static member the macro picks up:
//
//     static constexpr const char* kShellParams[] = {"command", nullptr};
//
// The host then escapes every ${...} template inside those parameters for the shell context it
// sits in. Shell text the plugin builds itself quotes each value with shellQuote() below.
#ifndef TASKHUB_PLUGIN_HPP
#define TASKHUB_PLUGIN_HPP

#include <taskhub/plugin_api.h>
#include <taskhub/shell_quote.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace taskhub::sdk {

// Copies s into a host buffer, truncating to fit. Never throws.
inline void writeBuffer(th_buffer buf, std::string_view s) noexcept {
    if (buf.data == nullptr || buf.capacity == 0) return;
    size_t n = s.size() < buf.capacity - 1 ? s.size() : buf.capacity - 1;
    std::memcpy(buf.data, s.data(), n);
    buf.data[n] = '\0';
}

// value quoted as one word of POSIX shell text: the shell receives exactly its bytes as one
// literal argument (th_shell_quote() in taskhub/shell_quote.h, which C plugins call directly).
// Throws std::invalid_argument when value holds a NUL byte, which no shell word can carry.
inline std::string shellQuote(std::string_view value) {
    size_t need = th_shell_quote(value.data(), value.size(), nullptr, 0);
    if (need == TH_SHELL_QUOTE_NUL)
        throw std::invalid_argument("a value with a NUL byte cannot be passed to a shell");
    std::string quoted(need, '\0');
    th_shell_quote(value.data(), value.size(), quoted.data(), need + 1);
    return quoted;
}

// A parameter problem found by validate(): which key, and what is wrong with it.
class InvalidParam : public std::runtime_error {
public:
    InvalidParam(std::string key, const std::string& message)
        : std::runtime_error(message), key_(std::move(key)) {}
    const std::string& key() const noexcept { return key_; }

private:
    std::string key_;
};

// What an attempt's main process cost (ABI 1.4 th_result fields, from the rusage of reaping it);
// -1: unknown.
struct Rusage {
    int64_t cpu_user_us = -1;
    int64_t cpu_system_us = -1;
    int64_t max_rss_kb = -1;
};

// Thin, copyable wrapper over the host's services. Valid for the life of the plugin instance.
//
// watchFd() and addTimer() take a C++ callback; the wrapper keeps it alive until it has run or
// until unwatchFd()/cancelTimer() stopped it, so neither path leaks. Copies of a Host share that
// bookkeeping; the callbacks still pending when the last copy goes away (the instance is being
// destroyed, after which the host calls nothing) are freed then.
class Host {
public:
    Host(const th_host_api* api, th_host_ctx* ctx)
        : api_(api), ctx_(ctx), pending_(std::make_shared<Pending>()) {}

    // Reports the end of an attempt; see th_host_api.complete. Any thread. usage: the rusage of
    // the attempt's main process when the plugin reaped one (an older host ignores it).
    void complete(uint64_t token, th_outcome outcome, int exit_code, const std::string& message,
                  const Rusage& usage = {}) const noexcept {
        th_result r{};
        r.struct_size = sizeof r;
        r.outcome = outcome;
        r.exit_code = exit_code;
        r.message = message.c_str();
        r.cpu_user_us = usage.cpu_user_us;
        r.cpu_system_us = usage.cpu_system_us;
        r.max_rss_kb = usage.max_rss_kb;
        api_->complete(ctx_, token, &r);
    }

    void log(th_log_level level, const std::string& message) const noexcept {
        api_->log(ctx_, level, message.c_str());
    }

    // Publishes an output of a running attempt; see th_host_api.set_output. Any thread, until
    // complete() for the token. Returns TH_ERR_INVALID when the host rejected it (bad name, value
    // over 4 KiB, all outputs over 64 KiB, unknown token; the host logs why), and
    // TH_ERR_UNSUPPORTED when the host is older than ABI 1.1.
    th_status setOutput(uint64_t token, const std::string& name,
                        const std::string& value) const noexcept {
        if (!hasSetOutput()) return TH_ERR_UNSUPPORTED;
        return api_->set_output(ctx_, token, name.c_str(), value.c_str());
    }
    // True when the host offers set_output (ABI 1.1 or later).
    bool hasSetOutput() const noexcept {
        return TH_HAS_FIELD(api_, th_host_api, set_output) && api_->set_output != nullptr;
    }
    // Publishes a typed output (a JSON value: array, object, number, true, false or null) of a
    // running attempt; see th_host_api.set_output_json. json is the value's JSON text. Any
    // thread, until complete() for the token. Returns TH_ERR_INVALID when the host rejected it
    // (bad name, not one JSON value, over 1 MiB, all outputs over 1 MiB, unknown token; the
    // host logs why), and TH_ERR_UNSUPPORTED when the host is older than ABI 1.7.
    th_status setOutputJson(uint64_t token, const std::string& name, const std::string& json) const noexcept {
        if (!hasSetOutputJson()) return TH_ERR_UNSUPPORTED;
        return api_->set_output_json(ctx_, token, name.c_str(), json.c_str());
    }
    // True when the host offers set_output_json (ABI 1.7 or later).
    bool hasSetOutputJson() const noexcept {
        return TH_HAS_FIELD(api_, th_host_api, set_output_json) && api_->set_output_json != nullptr;
    }

    // Tells the host which process (and process group) runs an attempt, so that a restart after
    // a crash of the daemon can stop it; see th_host_api.report_process. Any thread, until
    // complete() for the token. Returns TH_ERR_UNSUPPORTED when the host is older than ABI 1.2
    // (such a host cannot use it; the attempt is not affected).
    th_status reportProcess(uint64_t token, int32_t pid, int32_t pgid) const noexcept {
        if (!TH_HAS_FIELD(api_, th_host_api, report_process) || api_->report_process == nullptr)
            return TH_ERR_UNSUPPORTED;
        return api_->report_process(ctx_, token, pid, pgid);
    }

    // Tells the host the attempt's external handle (a remote job's id), which it records so that
    // after a restart it can hand it back to adopt(); see th_host_api.report_handle. Any thread,
    // until complete() for the token. Returns TH_ERR_INVALID when the host rejected it (empty,
    // over 256 bytes, a control character, unknown token; the host logs why), and
    // TH_ERR_UNSUPPORTED when the host is older than ABI 1.6.
    th_status reportHandle(uint64_t token, const std::string& handle) const noexcept {
        if (!TH_HAS_FIELD(api_, th_host_api, report_handle) || api_->report_handle == nullptr)
            return TH_ERR_UNSUPPORTED;
        return api_->report_handle(ctx_, token, handle.c_str());
    }

    // One-shot readiness callback on the host's event loop; see th_host_api.watch_fd.
    // Returns the watch id, or 0 when the host refused. Event-loop thread only.
    uint64_t watchFd(int fd, std::function<void(int)> cb) const {
        auto holder = std::make_unique<FdHolder>();
        holder->fn = std::move(cb);
        holder->pending = pending_.get();
        uint64_t id = 0;
        if (api_->watch_fd(ctx_, fd, &Host::fdTrampoline, holder.get(), &id) != TH_OK) return 0;
        try {
            pending_->put(pending_->watches, id, std::move(holder));
        } catch (...) {
            api_->unwatch_fd(ctx_, id);
            throw;
        }
        return id;
    }
    // Stops a watch and frees its callback; afterwards the callback will not run.
    // Event-loop thread only.
    void unwatchFd(uint64_t id) const noexcept {
        api_->unwatch_fd(ctx_, id);
        pending_->take(pending_->watches, id);
    }

    // One-shot timer on the host's event loop; see th_host_api.add_timer.
    // Returns the timer id, or 0 when the host refused. Event-loop thread only.
    uint64_t addTimer(uint64_t delay_ms, std::function<void()> cb) const {
        auto holder = std::make_unique<TimerHolder>();
        holder->fn = std::move(cb);
        holder->pending = pending_.get();
        uint64_t id = 0;
        if (api_->add_timer(ctx_, delay_ms, &Host::timerTrampoline, holder.get(), &id) != TH_OK)
            return 0;
        try {
            pending_->put(pending_->timers, id, std::move(holder));
        } catch (...) {
            api_->cancel_timer(ctx_, id);
            throw;
        }
        return id;
    }
    // Cancels a timer and frees its callback; afterwards the callback will not run.
    // Event-loop thread only.
    void cancelTimer(uint64_t id) const noexcept {
        api_->cancel_timer(ctx_, id);
        pending_->take(pending_->timers, id);
    }

    const th_host_api* api() const noexcept { return api_; }
    th_host_ctx* ctx() const noexcept { return ctx_; }

private:
    struct Pending;
    struct FdHolder {
        std::function<void(int)> fn;
        uint64_t id = 0;
        Pending* pending = nullptr;
    };
    struct TimerHolder {
        std::function<void()> fn;
        uint64_t id = 0;
        Pending* pending = nullptr;
    };
    template <class H>
    using Table = std::unordered_map<uint64_t, std::unique_ptr<H>>;

    // Callbacks handed to the host and neither run nor stopped yet, by id. Watch and timer ids
    // may come from different host counters, so they are kept apart. The mutex matters only for
    // TH_THREADS_SAFE plugins, whose calls may overlap.
    struct Pending {
        std::mutex mutex;
        Table<FdHolder> watches;
        Table<TimerHolder> timers;

        template <class H>
        void put(Table<H>& table, uint64_t id, std::unique_ptr<H> holder) {
            holder->id = id;
            std::lock_guard<std::mutex> lock(mutex);
            table[id] = std::move(holder);
        }
        // Removes and returns a callback; null when it already ran or was stopped. The caller
        // destroys it outside the lock.
        template <class H>
        std::unique_ptr<H> take(Table<H>& table, uint64_t id) noexcept {
            std::lock_guard<std::mutex> lock(mutex);
            auto it = table.find(id);
            if (it == table.end()) return nullptr;
            std::unique_ptr<H> holder = std::move(it->second);
            table.erase(it);
            return holder;
        }
    };

    // A one-shot callback runs at most once, so it leaves the table before it runs: it may
    // re-arm, cancel or complete freely.
    static void fdTrampoline(void* user, int fd) {
        auto* raw = static_cast<FdHolder*>(user);
        std::unique_ptr<FdHolder> h = raw->pending->take(raw->pending->watches, raw->id);
        if (!h) return;
        try {
            h->fn(fd);
        } catch (...) {
        }
    }
    static void timerTrampoline(void* user) {
        auto* raw = static_cast<TimerHolder*>(user);
        std::unique_ptr<TimerHolder> h = raw->pending->take(raw->pending->timers, raw->id);
        if (!h) return;
        try {
            h->fn();
        } catch (...) {
        }
    }

    const th_host_api* api_;
    th_host_ctx* ctx_;
    std::shared_ptr<Pending> pending_;
};

// The account an attempt runs as (ABI 1.3 th_identity), copied out of th_task.
struct Identity {
    std::string user;
    uint32_t uid = 0;
    uint32_t gid = 0;
    std::vector<uint32_t> groups; // supplementary groups, as initgroups() would set them
    std::string home;
    std::string shell;
};

// One attempt, copied out of th_task so it may be kept after execute() returns.
struct Task {
    uint64_t token = 0;
    std::string workflow;
    std::string run_id;
    std::string task_id;
    uint32_t attempt = 1;
    std::string params_json;
    std::vector<std::string> env; // "NAME=value"
    int log_fd = -1;              // host-owned; valid until complete()
    uint64_t timeout_ms = 0;
    // ABI 1.3: set when the task has a run_as; the plugin must then run the attempt's processes
    // as this account (and declare TH_CAP_RUN_AS). Unset: as the host's own user.
    std::optional<Identity> run_as;
    // ABI 1.4: the attempt's cgroup v2 directory (th_task.cgroup_fd), where every process of the
    // attempt must start (the plugin declares TH_CAP_CGROUP); -1: none. Host-owned; valid until
    // complete(): dup() it to keep it longer.
    int cgroup_fd = -1;
};

struct Health {
    th_health_state state = TH_HEALTH_OK;
    std::string message;
};

class Plugin {
public:
    explicit Plugin(Host host) : host_(host) {}
    virtual ~Plugin() = default;
    Plugin(const Plugin&) = delete;
    Plugin& operator=(const Plugin&) = delete;

    // Throw InvalidParam for a bad parameter. Default: accept anything.
    virtual void validate(std::string_view /*params_json*/) {}
    // Start the attempt; call host().complete(task.token, ...) exactly once, now or later.
    virtual void execute(const Task& task) = 0;
    // Ask a running attempt to stop. Default: nothing to do.
    virtual void cancel(uint64_t /*token*/) {}
    // Stop a running attempt where it is, and let it continue; called only when the plugin
    // declares TH_CAP_SUSPEND. Throw to report that it could not be done (what() is logged).
    // Default: nothing.
    virtual void suspend(uint64_t /*token*/) {}
    virtual void resume(uint64_t /*token*/) {}
    virtual Health health() { return {}; }
    // ABI 1.6, called only when the plugin declares TH_CAP_ADOPT: re-attach to an attempt a
    // previous taskhubd process started with execute() (see th_plugin_api.adopt). handle: the last
    // one reported with Host::reportHandle() for it, or std::nullopt when none was recorded. Call
    // host().complete(task.token, ...) exactly once, as after execute(); throw to say the attempt
    // cannot be adopted (what() is the reason it is recorded lost with).
    virtual void adopt(const Task& /*task*/, const std::optional<std::string>& /*handle*/) {
        throw std::runtime_error("this plugin does not adopt attempts");
    }
    // ABI 1.6, called only when the plugin declares TH_CAP_HOLD: the attempt's run was paused
    // (without --freeze): keep its work from starting if it has not yet (see
    // th_plugin_api.hold); release() on resume. Throw to report that it could not be done
    // (what() is logged). Default: nothing.
    virtual void hold(uint64_t /*token*/) {}
    virtual void release(uint64_t /*token*/) {}

    const Host& host() const noexcept { return host_; }

private:
    Host host_;
};

namespace detail {

inline Plugin* self(th_instance* i) { return reinterpret_cast<Plugin*>(i); }

template <class P>
th_status create(const th_host_api* api, th_host_ctx* ctx, const char* config_json,
                 th_instance** out, th_buffer err) noexcept {
    try {
        auto* p = new P(Host(api, ctx), std::string_view(config_json ? config_json : "{}"));
        *out = reinterpret_cast<th_instance*>(static_cast<Plugin*>(p));
        return TH_OK;
    } catch (const std::exception& e) {
        writeBuffer(err, e.what());
    } catch (...) {
        writeBuffer(err, "unknown exception in plugin constructor");
    }
    return TH_ERR_FAILED;
}

inline void destroy(th_instance* i) noexcept {
    try {
        delete self(i);
    } catch (...) {
    }
}

inline th_status validate(th_instance* i, const char* params, th_buffer msg,
                          th_buffer key) noexcept {
    try {
        self(i)->validate(std::string_view(params ? params : "{}"));
        return TH_OK;
    } catch (const InvalidParam& e) {
        writeBuffer(msg, e.what());
        writeBuffer(key, e.key());
    } catch (const std::exception& e) {
        writeBuffer(msg, e.what());
        writeBuffer(key, "");
    } catch (...) {
        writeBuffer(msg, "unknown exception in validate");
        writeBuffer(key, "");
    }
    return TH_ERR_INVALID;
}

// The attempt, copied out of th_task.
inline Task taskOf(const th_task* t, uint64_t token) {
    Task task;
    task.token = token;
    task.workflow = t->workflow ? t->workflow : "";
    task.run_id = t->run_id ? t->run_id : "";
    task.task_id = t->task_id ? t->task_id : "";
    task.attempt = t->attempt;
    task.params_json.assign(t->params_json ? t->params_json : "{}");
    for (const char* const* e = t->env; e && *e; ++e) task.env.emplace_back(*e);
    task.log_fd = t->log_fd;
    task.timeout_ms = t->timeout_ms;
    if (TH_HAS_FIELD(t, th_task, run_as) && t->run_as != nullptr) {
        const th_identity& id = *t->run_as;
        Identity copy;
        copy.user = id.user ? id.user : "";
        copy.uid = id.uid;
        copy.gid = id.gid;
        if (id.groups != nullptr) copy.groups.assign(id.groups, id.groups + id.n_groups);
        copy.home = id.home ? id.home : "";
        copy.shell = id.shell ? id.shell : "";
        task.run_as = std::move(copy);
    }
    if (TH_HAS_FIELD(t, th_task, cgroup_fd)) task.cgroup_fd = t->cgroup_fd;
    return task;
}

inline th_status execute(th_instance* i, const th_task* t, uint64_t token, th_buffer err) noexcept {
    try {
        self(i)->execute(taskOf(t, token));
        return TH_OK;
    } catch (const std::exception& e) {
        writeBuffer(err, e.what());
    } catch (...) {
        writeBuffer(err, "unknown exception in execute");
    }
    return TH_ERR_FAILED;
}

inline th_status adopt(th_instance* i, const th_task* t, const char* handle, uint64_t token,
                       th_buffer err) noexcept {
    try {
        std::optional<std::string> h;
        if (handle != nullptr) h.emplace(handle);
        self(i)->adopt(taskOf(t, token), h);
        return TH_OK;
    } catch (const std::exception& e) {
        writeBuffer(err, e.what());
    } catch (...) {
        writeBuffer(err, "unknown exception in adopt");
    }
    return TH_ERR_FAILED;
}

inline th_status cancel(th_instance* i, uint64_t token) noexcept {
    try {
        self(i)->cancel(token);
        return TH_OK;
    } catch (...) {
        return TH_ERR_FAILED;
    }
}

// The reason a suspend() or resume() threw goes to the daemon's log at TH_LOG_WARN.
inline void logFailure(th_instance* i, const char* what) noexcept {
    try {
        self(i)->host().log(TH_LOG_WARN, what);
    } catch (...) {
    }
}

inline th_status suspend(th_instance* i, uint64_t token) noexcept {
    try {
        self(i)->suspend(token);
        return TH_OK;
    } catch (const std::exception& e) {
        logFailure(i, e.what());
    } catch (...) {
        logFailure(i, "unknown exception in suspend");
    }
    return TH_ERR_FAILED;
}

inline th_status resume(th_instance* i, uint64_t token) noexcept {
    try {
        self(i)->resume(token);
        return TH_OK;
    } catch (const std::exception& e) {
        logFailure(i, e.what());
    } catch (...) {
        logFailure(i, "unknown exception in resume");
    }
    return TH_ERR_FAILED;
}

inline th_status hold(th_instance* i, uint64_t token) noexcept {
    try {
        self(i)->hold(token);
        return TH_OK;
    } catch (const std::exception& e) {
        logFailure(i, e.what());
    } catch (...) {
        logFailure(i, "unknown exception in hold");
    }
    return TH_ERR_FAILED;
}

inline th_status release(th_instance* i, uint64_t token) noexcept {
    try {
        self(i)->release(token);
        return TH_OK;
    } catch (const std::exception& e) {
        logFailure(i, e.what());
    } catch (...) {
        logFailure(i, "unknown exception in release");
    }
    return TH_ERR_FAILED;
}

inline th_status health(th_instance* i, th_health* out) noexcept {
    try {
        Health h = self(i)->health();
        out->state = h.state;
        writeBuffer(out->message, h.message);
        return TH_OK;
    } catch (const std::exception& e) {
        out->state = TH_HEALTH_UNHEALTHY;
        writeBuffer(out->message, e.what());
    } catch (...) {
        out->state = TH_HEALTH_UNHEALTHY;
        writeBuffer(out->message, "unknown exception in health check");
    }
    return TH_ERR_FAILED;
}

// Class::kShellParams when the plugin class declares it (see the top of this file), else NULL.
template <class Class, class = void>
struct ShellParamsOf {
    static constexpr const char* const* value = nullptr;
};
template <class Class>
struct ShellParamsOf<Class, std::void_t<decltype(Class::kShellParams)>> {
    static constexpr const char* const* value = Class::kShellParams;
};

} // namespace detail
} // namespace taskhub::sdk

// Exports Class as a plugin. caps: TH_CAP_* flags; threads: TH_THREADS_SERIAL or TH_THREADS_SAFE.
#define TASKHUB_PLUGIN(Class, name_, version_, description_, caps, threads)                       \
    extern "C" TH_EXPORT const th_plugin_api* th_plugin_entry(uint32_t, uint32_t) {              \
        static const th_plugin_api api = {                                                       \
            TH_ABI_MAGIC,                                                                        \
            TH_ABI_VERSION_MAJOR,                                                                \
            TH_ABI_VERSION_MINOR,                                                                \
            sizeof(th_plugin_api),                                                               \
            0,                                                                                   \
            name_,                                                                               \
            version_,                                                                            \
            description_,                                                                        \
            (caps),                                                                             \
            threads,                                                                             \
            &::taskhub::sdk::detail::create<Class>,                                              \
            &::taskhub::sdk::detail::destroy,                                                    \
            &::taskhub::sdk::detail::validate,                                                   \
            &::taskhub::sdk::detail::execute,                                                    \
            &::taskhub::sdk::detail::cancel,                                                     \
            &::taskhub::sdk::detail::health,                                                     \
            &::taskhub::sdk::detail::suspend,                                                    \
            &::taskhub::sdk::detail::resume,                                                     \
            ::taskhub::sdk::detail::ShellParamsOf<Class>::value,                                  \
            &::taskhub::sdk::detail::adopt,                                                      \
            &::taskhub::sdk::detail::hold,                                                       \
            &::taskhub::sdk::detail::release,                                                    \
        };                                                                                       \
        return &api;                                                                             \
    }

#endif // TASKHUB_PLUGIN_HPP

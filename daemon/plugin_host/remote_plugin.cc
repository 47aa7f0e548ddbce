#include "plugin_host/remote_plugin.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <spdlog/spdlog.h>
#include <taskhub/plugin_api.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "cgroup/cgroup.h"
#include "common/identity.h"
#include "common/time_util.h"
#include "common/trust.h"
#include "plugin_host/outputs.h"
#include "plugin_host/runner_protocol.h"

extern char** environ;

namespace taskhub::plugin_host {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
namespace proto = runner_protocol;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds kFirstRestartDelay{1'000};
constexpr milliseconds kMaxRestartDelay{60'000};
constexpr milliseconds kStableUptime{60'000}; // a runner up this long resets the restart delay
constexpr milliseconds kShutdownWait{2'000};
constexpr milliseconds kEofGrace{1'000}; // a runner that closed its socket has this long to exit
constexpr milliseconds kReapWait{5'000}; // a process sent SIGKILL has this long to be reapable
constexpr int kMaxDrainReads = 256;      // bounds what a dead runner's last words may cost
constexpr size_t kMaxDescribeOutput = 1 << 20;

// A started child process and the pidfd it is reaped through.
struct Child {
    pid_t pid = -1;
    int pidfd = -1;
};

// Where a runner finds the trusted plugin descriptor it is handed (after the control socket).
constexpr int kPluginFd = proto::kRunnerFd + 1;
std::string pluginFdPath() { return "/proc/self/fd/" + std::to_string(kPluginFd); }

// Starts argv[0] with each (from, to) of `dups` dup2'ed, in a process group of its own, with an
// empty signal mask and default dispositions. Returns false with *err set on failure.
bool spawnChild(const std::vector<std::string>& argv, const std::vector<std::pair<int, int>>& dups, Child* out,
                std::string* err) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    for (const auto& [from, to] : dups) posix_spawn_file_actions_adddup2(&actions, from, to);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        *err = "cannot start " + argv[0] + ": " + std::strerror(rc);
        return false;
    }
    // The child is ours and not yet reaped, so its pid cannot have been reused.
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) {
        *err = std::string("pidfd_open: ") + std::strerror(errno);
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return false;
    }
    ::fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    *out = {pid, pidfd};
    return true;
}

// Waits until the child exits or the deadline passes (false). Reaps it on success.
bool waitExit(const Child& c, Clock::time_point deadline, siginfo_t* info) {
    for (;;) {
        *info = {};
        if (::waitid(P_PIDFD, static_cast<id_t>(c.pidfd), info, WEXITED | WNOHANG) == 0 && info->si_pid != 0) {
            return true;
        }
        auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) return false;
        pollfd p{c.pidfd, POLLIN, 0};
        ::poll(&p, 1, static_cast<int>(left));
    }
}

// Kills the child and reaps it. Never a blocking waitid(P_PIDFD): Asio made the pidfd of a
// runner it watched non-blocking (O_NONBLOCK), and waitid() on such a pidfd fails at once with
// EAGAIN while the process still exists (it takes a moment to die of SIGKILL). waitExit() polls
// the pidfd, which turns readable when the process exited, and collects with WNOHANG. False, with
// *info cleared, when the process did not exit within kReapWait (stuck in the kernel).
bool killAndReap(const Child& c, siginfo_t* info) {
    ::kill(c.pid, SIGKILL);
    if (waitExit(c, Clock::now() + kReapWait, info)) return true;
    *info = {};
    return false;
}

// What the log says of a child that killAndReap() could not reap (RUNNER_UNREAPED).
std::string notReaped() { return "did not exit within " + formatDuration(kReapWait) + " of SIGKILL; not reaped"; }

// "3s" for a delay shown to operators: whole seconds, rounded up.
std::string inSeconds(Clock::duration d) {
    auto s = std::chrono::ceil<std::chrono::seconds>(std::max(d, Clock::duration::zero()));
    return formatDuration(std::chrono::duration_cast<milliseconds>(s));
}

} // namespace

fs::path findRunner(const fs::path& installed) {
    std::error_code ec;
    fs::path self = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        fs::path beside = self.parent_path() / "taskhub-runner";
        if (::access(beside.c_str(), X_OK) == 0) return beside;
    }
    return installed;
}

Description describeOutOfProcess(const fs::path& runner, const fs::path& file, milliseconds timeout, int file_fd) {
    Description d;
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
        d.refusal = std::string("cannot describe the plugin out of process: pipe: ") + std::strerror(errno);
        return d;
    }
    Child c;
    std::string err;
    std::vector<std::pair<int, int>> dups = {{p[1], STDOUT_FILENO}};
    // A copy above the numbers the dups below write, so that none overwrites it first.
    trust::UniqueFd high(file_fd >= 0 ? ::fcntl(file_fd, F_DUPFD_CLOEXEC, 10) : -1);
    if (high) dups.emplace_back(high.get(), kPluginFd);
    bool started = spawnChild({runner.string(), "--describe", file_fd >= 0 ? pluginFdPath() : file.string()}, dups,
                              &c, &err);
    ::close(p[1]);
    if (!started) {
        ::close(p[0]);
        d.refusal = "cannot describe the plugin out of process: " + err;
        return d;
    }
    const auto deadline = Clock::now() + timeout;
    std::string out;
    for (;;) {
        auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
        if (left <= 0) break;
        pollfd pf{p[0], POLLIN, 0};
        if (::poll(&pf, 1, static_cast<int>(left)) <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(p[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (out.size() < kMaxDescribeOutput) out.append(buf, static_cast<size_t>(n));
    }
    ::close(p[0]);
    siginfo_t info{};
    if (!waitExit(c, deadline, &info)) {
        if (!killAndReap(c, &info)) {
            spdlog::warn("RUNNER_UNREAPED runner pid {} describing {}: {}", c.pid, file.string(),
                         notReaped());
        }
        ::close(c.pidfd);
        d.refusal = "did not finish loading within " + formatDuration(timeout) + " (runner pid " +
                    std::to_string(c.pid) + " killed)";
        return d;
    }
    ::close(c.pidfd);
    if (info.si_code != CLD_EXITED || info.si_status != 0) {
        d.refusal = "crashed while loading: " + proto::describeExit(info);
        return d;
    }
    json::error_code ec;
    json::value v = json::parse(out, ec);
    if (!ec && v.is_object()) {
        const auto& o = v.get_object();
        if (auto why = proto::getString(o, "refused")) {
            d.refusal = std::string(*why);
            return d;
        }
        if (auto* info_json = o.if_contains("info")) {
            if (auto pi = proto::infoFromJson(*info_json, &err)) {
                d.info = std::move(*pi);
                d.info->file = file;
                return d;
            }
        }
    }
    d.refusal = "cannot describe the plugin out of process: " + runner.string() + " --describe printed no description";
    return d;
}

// One runner process and its end of the socketpair. Owned by Impl::runner_; handlers on the
// event loop hold weak pointers, so a runner that is gone is never touched.
struct Runner : std::enable_shared_from_this<Runner> {
    explicit Runner(asio::io_context& io) : sock(io), pidfd(io), eof_timer(io) {}
    Child child;
    asio::posix::stream_descriptor sock;  // owns the socket
    asio::posix::stream_descriptor pidfd; // owns the pidfd
    asio::steady_timer eof_timer;
    proto::FrameReader reader;
    proto::OutQueue out;
    std::deque<int> fds_in; // the runner sends none; closed on arrival
    bool hello = false;
    std::optional<std::string> refused; // what its hello said instead
    bool closed = false;                // end of file on the socket
    bool killed = false;                // we sent SIGKILL
    bool flush_posted = false;
    bool write_waiting = false;
    Clock::time_point up_since;
    std::string kill_reason; // why we killed it, for the death message
};

class RemotePlugin::Impl {
public:
    Impl(asio::io_context& io, const PluginInfo& described, Options opts)
        : io_(io), info_(described), opts_(std::move(opts)), restart_timer_(io), start_timer_(io),
          health_timer_(io) {
        info_.isolation = Isolation::Process;
    }

    ~Impl() {
        life_.reset();
        restart_timer_.cancel();
        start_timer_.cancel();
        health_timer_.cancel();
        if (auto r = std::move(runner_)) shutdown(*r);
    }

    // ---- the first runner, blocking ----

    bool launch(std::string* refusal) {
        std::string err;
        auto r = spawnRunner(&err);
        if (!r) {
            *refusal = "cannot start the plugin runner: " + err;
            return false;
        }
        runner_ = r;
        pump(*r, [&] { return r->hello || r->refused.has_value(); }, Clock::now() + opts_.start_timeout);
        if (r->hello) {
            watch(r);
            return true;
        }
        siginfo_t info{};
        bool exited = waitExit(r->child, Clock::now() + milliseconds(200), &info);
        if (!exited && !killAndReap(r->child, &info)) {
            spdlog::warn("RUNNER_UNREAPED plugin {}: runner pid {} {}", info_.name, r->child.pid,
                         notReaped());
        }
        if (r->refused) *refusal = *r->refused;
        else if (!r->kill_reason.empty()) *refusal = "runner pid " + std::to_string(r->child.pid) + " " + r->kill_reason;
        else if (exited) *refusal = "crashed while loading: " + proto::describeExit(info);
        else *refusal = "the runner did not load the plugin within " + formatDuration(opts_.start_timeout);
        runner_.reset();
        return false;
    }

    // ---- Plugin ----

    const PluginInfo& info() const { return info_; }

    std::optional<config::PluginCatalog::Problem> validate(const std::string& params) {
        auto r = runner_;
        if (!usable(r.get()) || !r->hello) {
            spdlog::warn("PLUGIN_VALIDATE_SKIPPED plugin {}: {}; the parameters are checked when the task runs",
                         info_.name, notRunning());
            return std::nullopt;
        }
        const uint64_t id = ++next_request_;
        validate_wait_ = ValidateWait{id, false, std::nullopt};
        json::object f{{"op", "validate"}, {"id", id}, {"params", params}};
        std::string err;
        if (!r->out.push(f, -1, &err)) {
            validate_wait_.reset();
            return config::PluginCatalog::Problem{"", "cannot send the parameters to the plugin's runner: " + err};
        }
        bool answered = pump(*r, [&] { return validate_wait_->answered; }, Clock::now() + opts_.validate_timeout);
        ValidateWait v = std::move(*validate_wait_);
        validate_wait_.reset();
        if (answered) return v.problem;
        if (usable(r.get())) {
            kill(*r, "did not answer a validate request within " + formatDuration(opts_.validate_timeout) +
                         "; killed it (SIGKILL)");
        }
        spdlog::warn("PLUGIN_VALIDATE_SKIPPED plugin {}: runner pid {} did not answer within {}; the parameters "
                     "are checked when the task runs", info_.name, r->child.pid, formatDuration(opts_.validate_timeout));
        return std::nullopt;
    }

    uint64_t start(const AttemptSpec& spec, Done done) {
        const uint64_t token = ++next_token_;
        auto r = runner_;
        if (spec.run_as) {
            // The loader refuses run_as for isolated plugins: their runner has one account.
            fail(std::move(done), "plugin '" + info_.name + "' runs isolated and cannot run a task as another user "
                                  "(set [plugins." + info_.name + "] user instead); the task did not run", false);
            return token;
        }
        if (!usable(r.get())) {
            fail(std::move(done), "plugin '" + info_.name + "' " + notRunning(), true);
            return token;
        }
        json::array env;
        for (const auto& e : spec.env) env.emplace_back(e);
        json::object f{{"op", "execute"},         {"token", token},         {"workflow", spec.workflow},
                       {"run_id", spec.run_id},   {"task_id", spec.task_id}, {"attempt", spec.attempt},
                       {"params", spec.params_json}, {"env", std::move(env)}, {"timeout_ms", spec.timeout_ms},
                       {"log_fd", spec.log_fd >= 0}};
        // The runner opens the attempt's cgroup itself, below the mount it was told at start
        // (only a plugin that declared TH_CAP_CGROUP gets one; see PluginHost).
        if (!spec.cgroup_path.empty() && (info_.capabilities & TH_CAP_CGROUP) && opts_.cgroups)
            f["cgroup"] = spec.cgroup_path;
        std::string err;
        if (!r->out.push(f, spec.log_fd, &err)) {
            fail(std::move(done), "plugin '" + info_.name + "' could not start the task: " + err, false);
            return token;
        }
        scheduleFlush(r);
        pending_.emplace(token, std::move(done));
        if (spec.on_process) on_process_.emplace(token, spec.on_process);
        return token;
    }

    void control(const char* op, uint64_t token) {
        auto r = runner_;
        if (!usable(r.get()) || !pending_.count(token)) return;
        send(r, json::object{{"op", op}, {"token", token}});
    }

    size_t running() const { return pending_.size(); }

    void checkHealth(milliseconds timeout, HealthDone done) {
        auto r = runner_;
        if (!usable(r.get())) {
            answer(std::move(done), {HealthState::Unhealthy, notRunning()});
            return;
        }
        const uint64_t id = ++next_request_;
        health_wait_ = HealthWait{id, std::move(done)};
        send(r, json::object{{"op", "health"}, {"id", id}, {"timeout_ms", timeout.count()}});
        health_timer_.expires_after(timeout);
        health_timer_.async_wait([this, id, timeout, life = std::weak_ptr<char>(life_)](const boost::system::error_code& ec) {
            if (ec || life.expired() || !health_wait_ || health_wait_->id != id) return;
            HealthDone d = std::move(health_wait_->done);
            health_wait_.reset();
            std::string what = "health check timed out after " + formatDuration(timeout);
            if (auto current = runner_; usable(current.get())) {
                kill(*current, "did not answer a health check within " + formatDuration(timeout) + "; killed it (SIGKILL)");
                what += "; runner pid " + std::to_string(current->child.pid) + " killed (SIGKILL) and restarting";
            }
            answer(std::move(d), {HealthState::Unhealthy, what});
        });
    }

    void setLivenessListener(LivenessListener l) { listener_ = std::move(l); }

    int runnerPid() const { return runner_ && runner_->hello && usable(runner_.get()) ? runner_->child.pid : 0; }

private:
    struct ValidateWait {
        uint64_t id;
        bool answered;
        std::optional<config::PluginCatalog::Problem> problem;
    };
    struct HealthWait {
        uint64_t id;
        HealthDone done;
    };

    static bool usable(const Runner* r) { return r && !r->closed && !r->killed; }

    // "runner is not running (runner pid 12 killed by signal 11 (SIGSEGV); restarting in 3s)"
    std::string notRunning() const {
        std::string s = "runner is not running (";
        if (!last_death_.empty()) s += last_death_ + "; ";
        if (runner_) s += "it is being restarted)";
        else s += "restarting in " + inSeconds(restart_at_ - Clock::now()) + ")";
        return s;
    }

    void fail(Done done, std::string message, bool transient) {
        AttemptResult r;
        r.outcome = AttemptResult::Outcome::Failed;
        r.message = std::move(message);
        r.transient = transient;
        asio::post(io_, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    }

    void answer(HealthDone done, HealthReport report) {
        asio::post(io_, [done = std::move(done), report = std::move(report)]() mutable { done(std::move(report)); });
    }

    // ---- the process ----

    std::shared_ptr<Runner> spawnRunner(std::string* err) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            *err = std::string("socketpair: ") + std::strerror(errno);
            return nullptr;
        }
        // Above the low numbers, so that the child's dup2 onto kRunnerFd never meets itself
        // (which would leave close-on-exec set).
        int theirs = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
        ::close(sv[1]);
        auto r = std::make_shared<Runner>(io_);
        r->sock.assign(sv[0]);
        if (theirs < 0) {
            *err = std::string("fcntl: ") + std::strerror(errno);
            return nullptr;
        }
        const std::string level(spdlog::level::to_string_view(spdlog::get_level()).data(),
                                spdlog::level::to_string_view(spdlog::get_level()).size());
        std::vector<std::pair<int, int>> dups = {{theirs, proto::kRunnerFd}};
        trust::UniqueFd file_fd;
        if (opts_.require_trusted) {
            auto opened = trust::openTrusted(info_.file, trust::Kind::RegularFile, trust::processOwners(), err);
            if (!opened) {
                ::close(theirs);
                *err = "plugin file refused: " + *err;
                return nullptr;
            }
            file_fd = trust::UniqueFd(::fcntl(opened->fd.get(), F_DUPFD_CLOEXEC, 10)); // see describeOutOfProcess()
            dups.emplace_back(file_fd.get(), kPluginFd);
        }
        std::optional<fs::path> cgroup;
        if (opts_.cgroups) {
            cgroup = runnerCgroup(err);
            if (!cgroup) {
                ::close(theirs);
                return nullptr;
            }
        }
        std::vector<std::string> argv = {opts_.runner.string(), "--fd", std::to_string(proto::kRunnerFd),
                                         "--name", info_.name, "--log-level", level,
                                         "--max-workers", std::to_string(opts_.max_workers)};
        if (file_fd) argv.insert(argv.end(), {"--plugin-fd", std::to_string(kPluginFd)});
        if (!opts_.user.empty()) argv.insert(argv.end(), {"--user", opts_.user});
        if (cgroup) argv.insert(argv.end(), {"--cgroup-mount", opts_.cgroups->mount().string()});
        argv.push_back(info_.file.string()); // named for ps; loaded from --plugin-fd when given
        bool ok = spawnChild(argv, dups, &r->child, err);
        ::close(theirs);
        if (!ok) return nullptr;
        // Before the create frame is queued: the runner loads no plugin code until it reads it.
        if (cgroup && !enterCgroup(r->child.pid, *cgroup, err)) {
            ::kill(r->child.pid, SIGKILL);
            siginfo_t info{};
            while (::waitid(P_PIDFD, static_cast<id_t>(r->child.pidfd), &info, WEXITED) < 0 && errno == EINTR) {
            }
            ::close(r->child.pidfd);
            return nullptr;
        }
        r->pidfd.assign(r->child.pidfd);
        ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        r->out.push(json::object{{"op", "create"}, {"proto", proto::kVersion}, {"config", opts_.config_json}}, -1, err);
        return r;
    }

    // The runner's cgroup (Manager::runnerCgroup()), delegated to the account it runs as.
    std::optional<fs::path> runnerCgroup(std::string* err) {
        uid_t uid = ::geteuid();
        gid_t gid = ::getegid();
        if (!opts_.user.empty()) {
            auto id = resolveIdentity(opts_.user, err);
            if (!id) {
                *err = "user \"" + opts_.user + "\": " + *err;
                return std::nullopt;
            }
            uid = id->uid;
            gid = id->gid;
        }
        auto path = opts_.cgroups->runnerCgroup(info_.name, uid, gid, err);
        if (!path) *err = "cannot create the runner's cgroup: " + *err;
        return path;
    }

    // Moves pid into the cgroup at `dir` (its cgroup.procs).
    static bool enterCgroup(pid_t pid, const fs::path& dir, std::string* err) {
        const fs::path procs = dir / "cgroup.procs";
        int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
        const std::string text = std::to_string(pid);
        bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        const int saved = errno;
        if (fd >= 0) ::close(fd);
        if (!ok) *err = "cannot move runner pid " + text + " into its cgroup: writing " + procs.string() + ": " +
                        std::strerror(saved);
        return ok;
    }

    // Arms the watches of a runner: readable socket, exited process.
    void watch(const std::shared_ptr<Runner>& r) {
        armPidfd(r);
        armRead(r);
        scheduleFlush(r);
    }

    void armRead(const std::shared_ptr<Runner>& r) {
        std::weak_ptr<Runner> w = r;
        r->sock.async_wait(asio::posix::stream_descriptor::wait_read, [this, w](const boost::system::error_code& ec) {
            auto live = w.lock();
            if (!live || ec) return;
            readAvailable(*live);
            if (!live->closed && runner_ == live) armRead(live);
        });
    }

    void send(const std::shared_ptr<Runner>& r, const json::object& frame) {
        std::string err;
        if (!r->out.push(frame, -1, &err)) {
            spdlog::error("RUNNER_SEND_FAILED plugin {}: {}", info_.name, err);
            return;
        }
        scheduleFlush(r);
    }

    // Frames queued in one turn of the loop go out in one write.
    void scheduleFlush(const std::shared_ptr<Runner>& r) {
        if (r->flush_posted || r->write_waiting) return;
        r->flush_posted = true;
        asio::post(io_, [this, w = std::weak_ptr<Runner>(r)] {
            auto live = w.lock();
            if (!live) return;
            live->flush_posted = false;
            flush(live);
        });
    }

    void flush(const std::shared_ptr<Runner>& r) {
        if (int e = r->out.flush(r->sock.native_handle())) {
            // The runner is gone or going; its pidfd says how.
            spdlog::debug("RUNNER_WRITE_FAILED plugin {} runner pid {}: {}", info_.name, r->child.pid, std::strerror(e));
            r->out.clear();
            return;
        }
        if (r->out.empty()) return;
        r->write_waiting = true;
        std::weak_ptr<Runner> w = r;
        r->sock.async_wait(asio::posix::stream_descriptor::wait_write, [this, w](const boost::system::error_code& ec) {
            auto live = w.lock();
            if (!live) return;
            live->write_waiting = false;
            if (!ec) flush(live);
        });
    }

    // Writes and reads until done() or the deadline, handling every frame that arrives. Returns
    // done(); false also when the runner's socket closed. Blocks the loop: start-up and validate.
    bool pump(Runner& r, const std::function<bool()>& done, Clock::time_point deadline) {
        for (;;) {
            if (r.out.flush(r.sock.native_handle()) != 0) r.out.clear(); // gone: the pidfd says how
            if (done()) return true;
            if (!usable(&r)) return false;
            auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
            if (left <= 0) return false;
            pollfd p{r.sock.native_handle(), static_cast<short>(POLLIN | (r.out.empty() ? 0 : POLLOUT)), 0};
            int rc = ::poll(&p, 1, static_cast<int>(left));
            if (rc > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR))) readAvailable(r);
        }
    }

    void readAvailable(Runner& r) {
        for (int i = 0; i < 16 && !r.closed; ++i) {
            ssize_t n = proto::receive(r.sock.native_handle(), r.reader, r.fds_in);
            for (int fd : r.fds_in) ::close(fd);
            r.fds_in.clear();
            if (n == 0) {
                onEof(r);
            } else if (n < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) break;
                onEof(r);
            }
        }
        json::object frame;
        std::string err;
        while (!r.killed) {
            auto res = r.reader.next(&frame, &err);
            if (res == proto::FrameReader::Result::NeedMore) break;
            if (res == proto::FrameReader::Result::Error) {
                protocolError(r, err);
                break;
            }
            handle(r, frame);
        }
    }

    void onEof(Runner& r) {
        if (r.closed) return;
        r.closed = true;
        // A runner closes its socket only as it exits; one that lingers is killed.
        r.eof_timer.expires_after(kEofGrace);
        r.eof_timer.async_wait([this, w = r.weak_from_this()](const boost::system::error_code& ec) {
            auto live = w.lock();
            if (ec || !live) return;
            kill(*live, "closed its socket but did not exit; killed it (SIGKILL)");
        });
    }

    void kill(Runner& r, const std::string& reason) {
        if (r.killed) return;
        r.killed = true;
        if (r.kill_reason.empty()) r.kill_reason = reason;
        ::kill(r.child.pid, SIGKILL);
    }

    void protocolError(Runner& r, const std::string& what) {
        spdlog::error("RUNNER_PROTOCOL_ERROR plugin {} runner pid {}: {}; killing it", info_.name, r.child.pid, what);
        kill(r, "broke the runner protocol (" + what + "); killed it (SIGKILL)");
    }

    void handle(Runner& r, const json::object& f) {
        const std::string_view op = f.at("op").get_string();
        if (op == "hello") return onHello(r, f);
        if (op == "log") { // also while the plugin loads
            auto level = proto::getString(f, "level");
            auto message = proto::getString(f, "message");
            if (!level || !message) return protocolError(r, "log frame without level or message");
            spdlog::log(spdlog::level::from_str(std::string(*level)), "{}", *message);
            return;
        }
        if (!r.hello) return protocolError(r, "frame '" + std::string(op) + "' before hello");
        if (op == "complete") return onComplete(r, f);
        if (op == "process") return onProcess(r, f);
        if (op == "validate_result") {
            auto id = proto::getUint(f, "id");
            auto* ok = f.if_contains("ok");
            if (!id || !ok || !ok->is_bool()) return protocolError(r, "validate_result without id or ok");
            if (!validate_wait_ || validate_wait_->id != *id) return; // a late answer
            validate_wait_->answered = true;
            if (!ok->get_bool()) {
                validate_wait_->problem = config::PluginCatalog::Problem{
                    std::string(proto::getString(f, "key").value_or("")),
                    std::string(proto::getString(f, "message").value_or("rejected without a message"))};
            }
            return;
        }
        if (op == "health_result") {
            auto id = proto::getUint(f, "id");
            auto state = proto::healthFromName(proto::getString(f, "state").value_or(""));
            if (!id || !state) return protocolError(r, "health_result without id or a known state");
            if (!health_wait_ || health_wait_->id != *id) return; // answered by the timeout already
            health_timer_.cancel();
            HealthDone d = std::move(health_wait_->done);
            health_wait_.reset();
            answer(std::move(d), {*state, std::string(proto::getString(f, "message").value_or(""))});
            return;
        }
        protocolError(r, "unknown frame '" + std::string(op) + "'");
    }

    void onHello(Runner& r, const json::object& f) {
        if (r.hello || r.refused) return protocolError(r, "a second hello");
        if (auto why = proto::getString(f, "refused")) {
            r.refused = std::string(*why);
            kill(r, "could not load the plugin: " + *r.refused);
            return;
        }
        std::string err;
        auto* info_json = f.if_contains("info");
        auto info = info_json ? proto::infoFromJson(*info_json, &err) : std::nullopt;
        if (!info) return protocolError(r, "hello without plugin info: " + err);
        if (info->name != info_.name) {
            r.refused = "the plugin in " + info_.file.string() + " now calls itself '" + info->name + "', not '" +
                        info_.name + "' (was the file replaced?)";
            kill(r, "could not load the plugin: " + *r.refused);
            return;
        }
        info->file = info_.file;
        info->isolation = Isolation::Process;
        info_ = std::move(*info);
        r.hello = true;
        r.up_since = Clock::now();
        start_timer_.cancel();
        spdlog::info("RUNNER_STARTED plugin {}: runner pid {} loaded {}", info_.name, r.child.pid, info_.file.string());
        if (restarts_ > 0 && listener_) {
            listener_(true, "runner pid " + std::to_string(r.child.pid) + " started (restart " +
                                std::to_string(restarts_) + ")");
        }
    }

    void onComplete(Runner& r, const json::object& f) {
        auto token = proto::getUint(f, "token");
        auto outcome = proto::outcomeFromName(proto::getString(f, "outcome").value_or(""));
        if (!token || !outcome) return protocolError(r, "complete without token or a known outcome");
        AttemptResult res;
        res.outcome = *outcome;
        if (auto* ec = f.if_contains("exit_code"); ec && ec->is_int64()) res.exit_code = static_cast<int>(ec->get_int64());
        res.message = std::string(proto::getString(f, "message").value_or(""));
        // The runner checked them with an OutputSet as the in-process host does; checked again
        // here (one set, so a name sent in both lists keeps one kind), as a runner is a process
        // a plugin controls.
        OutputSet outputs;
        for (const char* key : {"outputs", "json_outputs"}) {
            const auto* outs = f.if_contains(key);
            if (!outs || !outs->is_array()) continue;
            for (const auto& pair : outs->get_array()) {
                const auto* a = pair.if_array();
                if (!a || a->size() != 2 || !(*a)[0].is_string() || !(*a)[1].is_string()) {
                    return protocolError(r, std::string("complete with malformed ") + key);
                }
                std::string err;
                const std::string_view name = (*a)[0].get_string(), value = (*a)[1].get_string();
                if (!(key[0] == 'j' ? outputs.setJson(name, value, &err) : outputs.set(name, value, &err))) {
                    return protocolError(r, "complete with an output that breaks a rule: " + err);
                }
            }
        }
        res.outputs = outputs.take();
        res.json_outputs = outputs.takeJson();
        if (auto* ru = f.if_contains("rusage"); ru && !ru->is_null()) {
            auto usage = ru->is_object() ? proto::rusageFromJson(ru->get_object()) : std::nullopt;
            if (!usage) return protocolError(r, "complete with a malformed rusage");
            res.usage = *usage;
        }
        auto it = pending_.find(*token);
        if (it == pending_.end()) {
            spdlog::warn("RUNNER_UNKNOWN_TOKEN plugin {}: runner pid {} completed attempt {}, which is not running; "
                         "ignored", info_.name, r.child.pid, *token);
            return;
        }
        Done done = std::move(it->second);
        pending_.erase(it);
        on_process_.erase(*token);
        asio::post(io_, [done = std::move(done), res = std::move(res)]() mutable { done(std::move(res)); });
    }

    // The runner's plugin reported the process of an attempt (th_host_api.report_process).
    void onProcess(Runner& r, const json::object& f) {
        auto token = proto::getUint(f, "token");
        auto pid = proto::getUint(f, "pid");
        auto pgid = proto::getUint(f, "pgid");
        auto start = proto::getUint(f, "start_ticks");
        if (!token || !pid || !pgid || !start) return protocolError(r, "process without token, pid, pgid or start_ticks");
        auto it = on_process_.find(*token);
        if (it == on_process_.end()) return; // completed meanwhile, or nobody asked
        ProcessIdentity id{static_cast<int64_t>(*pid), static_cast<int64_t>(*pgid), static_cast<int64_t>(*start)};
        asio::post(io_, [fn = it->second, id] { fn(id); });
    }

    void onPidfd(const std::shared_ptr<Runner>& r) {
        siginfo_t info{};
        int rc;
        do {
            rc = ::waitid(P_PIDFD, static_cast<id_t>(r->child.pidfd), &info, WEXITED | WNOHANG);
        } while (rc < 0 && errno == EINTR);
        if (rc == 0 && info.si_pid == 0) {
            armPidfd(r); // readable without a status to collect yet
            return;
        }
        // Only when something else collected the status (a daemon that waits for any child).
        std::string how = rc == 0 ? proto::describeExit(info)
                                  : std::string("exited (status unavailable: ") + std::strerror(errno) + ")";
        // What it wrote before it died still counts (an attempt that completed just before).
        if (!r->closed) readAvailable(*r);
        onExited(r, how);
    }

    void armPidfd(const std::shared_ptr<Runner>& r) {
        std::weak_ptr<Runner> w = r;
        r->pidfd.async_wait(asio::posix::stream_descriptor::wait_read, [this, w](const boost::system::error_code& ec) {
            auto live = w.lock();
            if (!live || ec) return;
            onPidfd(live);
        });
    }

    void onExited(const std::shared_ptr<Runner>& r, const std::string& status) {
        const pid_t pid = r->child.pid;
        std::string how = r->kill_reason.empty() ? status : r->kill_reason;
        if (!r->hello && r->kill_reason.empty()) how += " while loading the plugin";
        if (r->hello && Clock::now() - r->up_since >= kStableUptime) next_delay_ = kFirstRestartDelay;
        const milliseconds delay = next_delay_;
        next_delay_ = std::min(next_delay_ * 2, kMaxRestartDelay);
        if (runner_ == r) runner_.reset();
        r->eof_timer.cancel();
        r->out.clear();

        last_death_ = "runner pid " + std::to_string(pid) + " " + how;
        const std::string message = last_death_ + "; restarting in " + formatDuration(delay);
        spdlog::error("RUNNER_EXITED plugin {}: {}", info_.name, message);
        scheduleRestart(delay);

        auto pending = std::move(pending_);
        pending_.clear();
        on_process_.clear();
        for (auto& [token, done] : pending) {
            fail(std::move(done), "plugin '" + info_.name + "': " + last_death_ + " while the attempt ran", true);
        }
        if (health_wait_) {
            health_timer_.cancel();
            HealthDone d = std::move(health_wait_->done);
            health_wait_.reset();
            answer(std::move(d), {HealthState::Unhealthy, message});
        }
        if (listener_) listener_(false, message);
    }

    void scheduleRestart(milliseconds delay) {
        restart_at_ = Clock::now() + delay;
        restart_timer_.expires_after(delay);
        restart_timer_.async_wait([this, life = std::weak_ptr<char>(life_)](const boost::system::error_code& ec) {
            if (ec || life.expired()) return;
            restart();
        });
    }

    void restart() {
        ++restarts_;
        std::string err;
        auto r = spawnRunner(&err);
        if (!r) {
            const milliseconds delay = next_delay_;
            next_delay_ = std::min(next_delay_ * 2, kMaxRestartDelay);
            last_death_ = "cannot start the plugin runner: " + err;
            spdlog::error("RUNNER_START_FAILED plugin {}: {}; retrying in {}", info_.name, err, formatDuration(delay));
            scheduleRestart(delay);
            if (listener_) listener_(false, last_death_ + "; retrying in " + formatDuration(delay));
            return;
        }
        runner_ = r;
        watch(r);
        start_timer_.expires_after(opts_.start_timeout);
        start_timer_.async_wait([this, w = std::weak_ptr<Runner>(r)](const boost::system::error_code& ec) {
            auto live = w.lock();
            if (ec || !live || live->hello) return;
            kill(*live, "did not load the plugin within " + formatDuration(opts_.start_timeout) + "; killed it (SIGKILL)");
        });
    }

    // Asks the runner to exit, waits a little, then kills it; always reaps it.
    void shutdown(Runner& r) {
        const auto deadline = Clock::now() + kShutdownWait;
        siginfo_t info{};
        if (usable(&r)) {
            std::string err;
            r.out.push(json::object{{"op", "shutdown"}}, -1, &err);
            while (!r.out.empty() && Clock::now() < deadline) {
                if (r.out.flush(r.sock.native_handle()) != 0) break;
                if (r.out.empty()) break;
                pollfd p{r.sock.native_handle(), POLLOUT, 0};
                ::poll(&p, 1, 50);
            }
        }
        bool reaped = true;
        if (!waitExit(r.child, deadline, &info)) {
            spdlog::warn("RUNNER_KILLED plugin {}: runner pid {} did not exit within {} of shutdown; killed it",
                         info_.name, r.child.pid, formatDuration(kShutdownWait));
            reaped = killAndReap(r.child, &info);
        }
        drainLogs(r);
        if (reaped) {
            spdlog::info("RUNNER_STOPPED plugin {}: runner pid {} {}", info_.name, r.child.pid,
                         proto::describeExit(info));
        } else {
            spdlog::warn("RUNNER_UNREAPED plugin {}: runner pid {} {}", info_.name, r.child.pid,
                         notReaped());
        }
    }

    // The log lines a runner wrote as it shut down (e.g. PLUGIN_THREAD_HELD), read from its
    // socket without waiting; every other frame is dropped (nothing may reach the event loop
    // from a plugin being destroyed). Bounded: at most kMaxDrainReads reads.
    void drainLogs(Runner& r) {
        for (int i = 0; i < kMaxDrainReads && !r.closed; ++i) {
            ssize_t n = proto::receive(r.sock.native_handle(), r.reader, r.fds_in);
            for (int fd : r.fds_in) ::close(fd);
            r.fds_in.clear();
            if (n == 0) r.closed = true;
            if (n <= 0) break; // end of file, nothing more now (EAGAIN) or an error
        }
        json::object frame;
        std::string err;
        while (r.reader.next(&frame, &err) == proto::FrameReader::Result::Frame) {
            if (frame.at("op").get_string() != "log") continue;
            auto level = proto::getString(frame, "level");
            auto message = proto::getString(frame, "message");
            if (level && message) spdlog::log(spdlog::level::from_str(std::string(*level)), "{}", *message);
        }
    }

    asio::io_context& io_;
    PluginInfo info_;
    Options opts_;
    std::shared_ptr<Runner> runner_; // null between a death and the restart
    std::unordered_map<uint64_t, Done> pending_;
    std::unordered_map<uint64_t, std::function<void(const ProcessIdentity&)>> on_process_; // by token
    uint64_t next_token_ = 0;
    uint64_t next_request_ = 0;
    LivenessListener listener_;
    asio::steady_timer restart_timer_;
    asio::steady_timer start_timer_;
    asio::steady_timer health_timer_;
    Clock::time_point restart_at_{};
    milliseconds next_delay_ = kFirstRestartDelay;
    int restarts_ = 0;
    std::string last_death_;
    std::optional<ValidateWait> validate_wait_;
    std::optional<HealthWait> health_wait_;
    std::shared_ptr<char> life_ = std::make_shared<char>(); // timers' handlers check it
};

std::unique_ptr<RemotePlugin> RemotePlugin::launch(asio::io_context& io, const PluginInfo& described, Options options,
                                                   std::string* refusal) {
    auto impl = std::make_unique<Impl>(io, described, std::move(options));
    if (!impl->launch(refusal)) return nullptr;
    return std::unique_ptr<RemotePlugin>(new RemotePlugin(std::move(impl)));
}

RemotePlugin::RemotePlugin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RemotePlugin::~RemotePlugin() = default;

const PluginInfo& RemotePlugin::info() const { return impl_->info(); }
std::optional<config::PluginCatalog::Problem> RemotePlugin::validate(const std::string& params) const {
    return impl_->validate(params);
}
uint64_t RemotePlugin::start(const AttemptSpec& spec, Done done) { return impl_->start(spec, std::move(done)); }
void RemotePlugin::cancel(uint64_t token) { impl_->control("cancel", token); }
bool RemotePlugin::canSuspend() const { return (impl_->info().capabilities & TH_CAP_SUSPEND) != 0; }
void RemotePlugin::suspend(uint64_t token) { impl_->control("suspend", token); }
void RemotePlugin::resume(uint64_t token) { impl_->control("resume", token); }
size_t RemotePlugin::running() const { return impl_->running(); }
void RemotePlugin::checkHealth(milliseconds timeout, HealthDone done) { impl_->checkHealth(timeout, std::move(done)); }
void RemotePlugin::setLivenessListener(LivenessListener listener) { impl_->setLivenessListener(std::move(listener)); }
int RemotePlugin::runnerPid() const { return impl_->runnerPid(); }

} // namespace taskhub::plugin_host

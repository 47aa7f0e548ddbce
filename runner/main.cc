// taskhub-runner: hosts one executor plugin for taskhubd in a process of its own, so that a
// plugin that crashes takes only this process down (isolation = "process"; see
// docs/runner-protocol.md). The plugin is loaded and called by the same in-process host code the
// daemon uses (plugin_host::PluginHost); this file only maps frames onto it.
//
//   taskhub-runner --describe FILE
//       loads FILE, negotiates its ABI (no instance is created) and prints one JSON object:
//       {"info": {...}} or {"refused": "reason"}; exits 0 either way. A crash is the answer too.
//   taskhub-runner --fd N --name NAME [--log-level L] [--max-workers N] [--user U[:G]]
//                  [--cgroup-mount DIR] FILE
//       serves the framed protocol on descriptor N (a socketpair end from taskhubd). With --user
//       ([plugins.NAME] user), it first becomes that account for good (common/identity.h), before
//       the plugin library is loaded, so no plugin code ever runs with the daemon's privileges.
//       With --cgroup-mount (taskhubd runs with cgroups; it moved this process into its runner
//       cgroup before sending create), an execute frame's "cgroup" names the attempt's cgroup
//       below DIR: the runner opens it and hands the plugin the descriptor (th_task.cgroup_fd).
//
// It exits at end of file on its socket and dies with the daemon (PR_SET_PDEATHSIG). Plugin log
// lines and its own go to the daemon as log frames.
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>

#include <algorithm>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>

#include "common/identity.h"
#include "plugin_host/plugin_host.h"
#include "plugin_host/runner_protocol.h"
#include "pool/worker_pool.h"

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;
namespace ph = taskhub::plugin_host;
namespace proto = ph::runner_protocol;
using namespace std::chrono_literals;

const char* kUsage =
    "usage: taskhub-runner --describe FILE\n"
    "       taskhub-runner --fd N --name NAME [--log-level LEVEL] [--max-workers N] [--plugin-fd M]\n"
    "                      [--user USER[:GROUP]] [--cgroup-mount DIR] FILE\n"
    "\n"
    "Hosts one TaskHub executor plugin for taskhubd (isolation = \"process\"). Started by taskhubd;\n"
    "not meant to be run by hand except with --describe. --plugin-fd: the plugin file FILE as the\n"
    "daemon opened and checked it; the plugin is loaded from that descriptor, not from the path.\n"
    "--cgroup-mount: the cgroup2 mount below which the attempts' cgroups of execute frames lie.\n";

// Exit codes: 0 shut down or end of file; 1 the plugin was refused; 2 usage; 3 protocol error.
constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;
constexpr int kExitProtocol = 3;
constexpr int kExitUser = 4; // --user could not be resolved or switched to
// The runner's own limit for the plugin's health check, beyond the daemon's: a check that hangs
// is the daemon's to notice (it kills and restarts this process), not answered as a timeout.
constexpr auto kHealthMargin = 1s;
// After end of file, running attempts get this long to finish once cancelled.
constexpr auto kStopGrace = 2s;

int describe(const fs::path& file) {
    spdlog::set_level(spdlog::level::off); // stdout carries the answer
    ph::PluginInfo info;
    json::object out;
    if (auto why = ph::describeFile(file, &info)) out["refused"] = *why;
    else out["info"] = proto::infoToJson(info);
    std::string s = json::serialize(out) + "\n";
    return std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0 ? 0 : 1;
}

// The runner's end of the socket. send() may be called from any thread (log lines of plugin
// threads); writes happen on the event loop, several frames at a time.
class Channel {
public:
    Channel(asio::io_context& io, int fd) : io_(io), fd_(fd) {
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    }

    void send(const json::object& frame) {
        std::lock_guard lock(mu_);
        std::string err;
        if (!out_.push(frame, -1, &err) || flush_posted_) return;
        flush_posted_ = true;
        asio::post(io_, [this] { flush(); });
    }

    // Writes everything queued, waiting for the socket as long as it takes (the daemon always
    // reads). False when the daemon is gone.
    bool flush() {
        std::unique_lock lock(mu_);
        flush_posted_ = false;
        for (;;) {
            if (out_.flush(fd_) != 0) {
                out_.clear();
                return false;
            }
            if (out_.empty()) return true;
            lock.unlock();
            pollfd p{fd_, POLLOUT, 0};
            ::poll(&p, 1, 1000);
            lock.lock();
        }
    }

private:
    asio::io_context& io_;
    int fd_;
    std::mutex mu_;
    proto::OutQueue out_;
    bool flush_posted_ = false;
};

// Every log line of this process, the plugin's included, goes to the daemon's log.
class FrameSink final : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit FrameSink(Channel& channel) : channel_(channel) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        auto level = spdlog::level::to_string_view(msg.level);
        channel_.send(json::object{{"op", "log"},
                                   {"level", json::string_view(level.data(), level.size())},
                                   {"message", json::string_view(msg.payload.data(), msg.payload.size())}});
    }
    void flush_() override {}

private:
    Channel& channel_;
};

class Runner {
public:
    Runner(asio::io_context& io, int fd, std::string name, fs::path file, size_t max_workers,
           fs::path cgroup_mount)
        : io_(io), sock_(io, fd), channel_(io, fd), name_(std::move(name)), file_(std::move(file)),
          cgroup_mount_(std::move(cgroup_mount)), pool_(0, max_workers, 60s), stop_timer_(io) {}

    Channel& channel() { return channel_; }

    int run() {
        armRead();
        io_.run();
        channel_.flush();
        if (!running_.empty()) {
            // Attempts that did not stop: the instance cannot be destroyed under them.
            std::_Exit(exit_code_);
        }
        host_.reset(); // a plugin with a thread still inside is kept (PLUGIN_THREAD_HELD)
        pool_.stop();  // and that thread detached, not joined
        if (ph::threadsLeftInPlugins() > 0) {
            // No static destructor may run under a thread that still runs plugin code.
            channel_.flush();
            std::_Exit(exit_code_);
        }
        return exit_code_;
    }

private:
    void armRead() {
        sock_.async_wait(asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
            if (ec) return;
            if (readAvailable()) armRead();
        });
    }

    // False once nothing more is to be read (end of file, an error, a stop).
    bool readAvailable() {
        for (;;) {
            ssize_t n = proto::receive(sock_.native_handle(), reader_, fds_);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n <= 0) {
                handleFrames();
                stop(0);
                return false;
            }
        }
        return handleFrames();
    }

    bool handleFrames() {
        json::object frame;
        std::string err;
        while (!stopping_) {
            auto res = reader_.next(&frame, &err);
            if (res == proto::FrameReader::Result::NeedMore) return true;
            if (res == proto::FrameReader::Result::Error) return protocolError(err);
            try {
                if (!handle(frame)) return false;
            } catch (const std::exception& e) {
                return protocolError(std::string("malformed '") + std::string(frame.at("op").get_string()) +
                                     "' frame: " + e.what());
            }
        }
        return false;
    }

    bool protocolError(const std::string& what) {
        spdlog::error("RUNNER_PROTOCOL_ERROR runner of plugin {}: {}; exiting", name_, what);
        exit_code_ = kExitProtocol;
        channel_.flush();
        std::_Exit(exit_code_);
    }

    static std::string str(const json::object& f, std::string_view key) {
        auto s = proto::getString(f, key);
        if (!s) throw std::invalid_argument("member '" + std::string(key) + "' is missing or not a string");
        return std::string(*s);
    }
    static uint64_t num(const json::object& f, std::string_view key) {
        auto n = proto::getUint(f, key);
        if (!n) throw std::invalid_argument("member '" + std::string(key) + "' is missing or not a number");
        return *n;
    }

    bool handle(const json::object& f) {
        const std::string_view op = f.at("op").get_string();
        if (op == "create") return create(f);
        if (!plugin_) return protocolError("frame '" + std::string(op) + "' before create");
        if (op == "execute") return execute(f);
        if (op == "cancel" || op == "suspend" || op == "resume") {
            auto it = running_.find(num(f, "token"));
            if (it == running_.end()) return true; // finished meanwhile
            if (op == "cancel") plugin_->cancel(it->second);
            else if (op == "suspend") plugin_->suspend(it->second);
            else plugin_->resume(it->second);
            return true;
        }
        if (op == "validate") {
            const uint64_t id = num(f, "id");
            auto problem = plugin_->validate(str(f, "params"));
            json::object r{{"op", "validate_result"}, {"id", id}, {"ok", !problem}};
            if (problem) {
                r["key"] = problem->key;
                r["message"] = problem->message;
            }
            channel_.send(r);
            return true;
        }
        if (op == "health") {
            const uint64_t id = num(f, "id");
            const auto timeout = std::chrono::milliseconds(num(f, "timeout_ms")) + kHealthMargin;
            plugin_->checkHealth(timeout, [this, id](ph::HealthReport h) {
                channel_.send(json::object{{"op", "health_result"}, {"id", id}, {"state", ph::toString(h.state)},
                                           {"message", h.message}});
            });
            return true;
        }
        if (op == "shutdown") {
            stop(0);
            return false;
        }
        return protocolError("unknown frame '" + std::string(op) + "'");
    }

    bool create(const json::object& f) {
        if (host_) return protocolError("a second create");
        if (num(f, "proto") != static_cast<uint64_t>(proto::kVersion)) {
            return protocolError("protocol version " + std::to_string(num(f, "proto")) + ", this runner speaks " +
                                 std::to_string(proto::kVersion));
        }
        std::map<std::string, taskhub::config::PluginSettings> settings;
        settings[name_].plugin_config_json = str(f, "config");
        host_ = std::make_unique<ph::PluginHost>(&io_, &pool_);
        std::optional<std::string> why;
        {
            // The daemon logs the load's outcome itself.
            const auto level = spdlog::get_level();
            spdlog::set_level(std::max(level, spdlog::level::warn));
            why = host_->loadFile(file_, settings);
            spdlog::set_level(level);
        }
        if (!why && host_->plugins().size() == 1) plugin_ = host_->find(host_->plugins()[0]->info().name);
        if (!plugin_) {
            channel_.send(json::object{{"op", "hello"}, {"proto", proto::kVersion},
                                       {"refused", why.value_or("the file holds no plugin")}});
            exit_code_ = kExitRefused;
            stop(kExitRefused);
            return false;
        }
        channel_.send(json::object{{"op", "hello"}, {"proto", proto::kVersion}, {"pid", ::getpid()},
                                   {"info", proto::infoToJson(plugin_->info())}});
        return true;
    }

    bool execute(const json::object& f) {
        const uint64_t token = num(f, "token");
        ph::AttemptSpec spec;
        spec.workflow = str(f, "workflow");
        spec.run_id = str(f, "run_id");
        spec.task_id = str(f, "task_id");
        spec.attempt = static_cast<uint32_t>(num(f, "attempt"));
        spec.params_json = str(f, "params");
        for (const auto& e : f.at("env").as_array()) spec.env.emplace_back(e.as_string());
        spec.timeout_ms = num(f, "timeout_ms");
        if (f.at("log_fd").as_bool()) {
            if (fds_.empty()) return protocolError("execute frame announces a log descriptor that did not arrive");
            spec.log_fd = fds_.front();
            fds_.pop_front();
        }
        if (auto cgroup = proto::getString(f, "cgroup")) {
            std::string why;
            spec.cgroup_fd = openAttemptCgroup(*cgroup, &why);
            if (spec.cgroup_fd < 0) {
                if (spec.log_fd >= 0) ::close(spec.log_fd);
                // Never run it outside its cgroup: the attempt fails, saying why.
                json::object c{{"op", "complete"}, {"token", token}, {"outcome", "failed"}, {"message", why},
                               {"outputs", json::array()}, {"exit_code", nullptr}};
                channel_.send(c);
                return true;
            }
            spec.cgroup_path = std::string(*cgroup);
        }
        spec.on_process = [this, token](const ph::ProcessIdentity& id) {
            channel_.send(json::object{{"op", "process"}, {"token", token}, {"pid", id.pid}, {"pgid", id.pgid},
                                       {"start_ticks", id.start_ticks}});
        };
        const int fd = spec.log_fd;
        const int cgroup_fd = spec.cgroup_fd;
        const uint64_t local = plugin_->start(spec, [this, token, fd, cgroup_fd](ph::AttemptResult r) {
            if (fd >= 0) ::close(fd);
            if (cgroup_fd >= 0) ::close(cgroup_fd);
            running_.erase(token);
            json::array outputs;
            for (auto& [n, v] : r.outputs) outputs.push_back(json::array{json::string(n), json::string(v)});
            json::array json_outputs; // [name, compact JSON text]: the text travels as it is stored
            for (auto& [n, v] : r.json_outputs) json_outputs.push_back(json::array{json::string(n), json::string(v)});
            json::object c{{"op", "complete"}, {"token", token}, {"outcome", proto::outcomeName(r.outcome)},
                           {"message", r.message}, {"outputs", std::move(outputs)},
                           {"json_outputs", std::move(json_outputs)}};
            c["exit_code"] = r.exit_code ? json::value(*r.exit_code) : json::value(nullptr);
            if (r.usage && r.usage->source == taskhub::cgroup::Usage::Source::Rusage)
                c["rusage"] = proto::rusageToJson(*r.usage);
            channel_.send(c);
            if (stopping_ && running_.empty()) io_.stop();
        });
        running_.emplace(token, local);
        return true;
    }

    // Opens <--cgroup-mount>/<relative> as th_task.cgroup_fd wants it; -1 with *why. relative
    // must stay below the mount: no leading '/', no "." or ".." component.
    int openAttemptCgroup(std::string_view relative, std::string* why) const {
        const std::string shown = "the attempt's cgroup '" + std::string(relative) + "'";
        if (cgroup_mount_.empty()) {
            *why = "runner of plugin " + name_ + " was given " + shown + " but no --cgroup-mount; the task did not run";
            return -1;
        }
        bool below = !relative.empty() && relative.front() != '/' && relative.find('\0') == std::string_view::npos;
        for (const auto& part : fs::path(std::string(relative)))
            if (part == "." || part == "..") below = false;
        if (!below) {
            *why = shown + " is not a path below the cgroup2 mount; the task did not run";
            return -1;
        }
        const fs::path dir = cgroup_mount_ / std::string(relative);
        int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) *why = "cannot open " + shown + " (" + dir.string() + "): " + std::strerror(errno) +
                           "; the task did not run";
        return fd;
    }

    // Ends the loop once running attempts are done (cancelled first) or kStopGrace passed.
    void stop(int code) {
        if (stopping_) return;
        stopping_ = true;
        if (code != 0) exit_code_ = code;
        if (running_.empty()) {
            asio::post(io_, [this] { io_.stop(); });
            return;
        }
        for (const auto& [token, local] : running_) plugin_->cancel(local);
        stop_timer_.expires_after(kStopGrace);
        stop_timer_.async_wait([this](const boost::system::error_code& ec) {
            if (!ec) io_.stop();
        });
    }

    asio::io_context& io_;
    asio::posix::stream_descriptor sock_;
    Channel channel_;
    std::string name_;
    fs::path file_;
    fs::path cgroup_mount_; // --cgroup-mount; empty: attempts have no cgroups
    proto::FrameReader reader_;
    std::deque<int> fds_; // log descriptors received, in the order of their execute frames
    taskhub::pool::WorkerPool pool_;
    std::unique_ptr<ph::PluginHost> host_; // after pool_: destroyed first
    ph::Plugin* plugin_ = nullptr;
    std::unordered_map<uint64_t, uint64_t> running_; // the daemon's token -> the local host's
    asio::steady_timer stop_timer_;
    bool stopping_ = false;
    int exit_code_ = 0;
};

} // namespace

int main(int argc, char** argv) {
    std::string describe_file, name, level = "info", user, cgroup_mount;
    int fd = -1;
    int plugin_fd = -1;
    size_t max_workers = 32;
    fs::path file;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "taskhub-runner: %s needs a value\n%s", a.c_str(), kUsage);
                std::exit(kExitUsage);
            }
            return argv[++i];
        };
        if (a == "--describe") describe_file = value();
        else if (a == "--fd") fd = std::atoi(value().c_str());
        else if (a == "--plugin-fd") plugin_fd = std::atoi(value().c_str());
        else if (a == "--name") name = value();
        else if (a == "--user") user = value();
        else if (a == "--cgroup-mount") cgroup_mount = value();
        else if (a == "--log-level") level = value();
        else if (a == "--max-workers") max_workers = static_cast<size_t>(std::atol(value().c_str()));
        else if (a == "--help" || a == "-h") {
            std::printf("%s", kUsage);
            return 0;
        } else if (!a.empty() && a[0] != '-' && file.empty()) file = a;
        else {
            std::fprintf(stderr, "taskhub-runner: unknown argument '%s'\n%s", a.c_str(), kUsage);
            return kExitUsage;
        }
    }
    if (!describe_file.empty()) return describe(describe_file);
    if (fd < 0 || name.empty() || file.empty()) {
        std::fprintf(stderr, "%s", kUsage);
        return kExitUsage;
    }

    if (!user.empty()) {
        std::string err;
        auto id = taskhub::resolveIdentity(user, &err);
        if (!id || !taskhub::becomeIdentity(*id, &err)) {
            std::fprintf(stderr, "taskhub-runner: plugin %s: user \"%s\": %s\n", name.c_str(), user.c_str(),
                         err.c_str());
            return kExitUser;
        }
    }
    // Die with the daemon; if it is already gone, the socket is at end of file. (After the switch
    // of user above, which clears the parent-death signal.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const std::string comm = ("th-runner-" + name).substr(0, 15);
    ::prctl(PR_SET_NAME, comm.c_str());
    // Keep no descriptor of the daemon's but our socket and the plugin file it checked (a log
    // pipe's write end held here would delay its end of file).
    {
        int keep[2] = {std::min(fd, plugin_fd), std::max(fd, plugin_fd)};
        unsigned from = 3;
        for (int k : keep) {
            if (k < static_cast<int>(from)) continue;
            if (k > static_cast<int>(from)) ::syscall(SYS_close_range, from, static_cast<unsigned>(k - 1), 0U);
            from = static_cast<unsigned>(k) + 1;
        }
        ::syscall(SYS_close_range, from, ~0U, 0U);
    }
    std::signal(SIGPIPE, SIG_IGN);

    asio::io_context io(1);
    // The daemon's trusted descriptor, when given, is what is loaded (through /proc/self/fd).
    const fs::path load = plugin_fd >= 0 ? fs::path("/proc/self/fd/" + std::to_string(plugin_fd)) : file;
    Runner runner(io, fd, name, load, max_workers, cgroup_mount);
    auto logger = std::make_shared<spdlog::logger>("runner", std::make_shared<FrameSink>(runner.channel()));
    logger->set_pattern("%v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::from_str(level));
    return runner.run();
}

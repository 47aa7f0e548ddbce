#include "control/server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <grp.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <vector>

#include "control/log_throttle.h"

namespace taskhub::control {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Bytes taken from a socket per read; one buffer shared by all connections (one thread).
constexpr size_t kReadChunk = 64 << 10;
// Connections kept for root and the daemon's uid beyond what the others may open, within the
// descriptor bound.
constexpr int kOperatorSlots = 8;
constexpr milliseconds kFirstBackOff{100};
constexpr milliseconds kMaxBackOff{1000};

bool isMember(uid_t uid, gid_t primary, gid_t group) {
    if (primary == group) return true;
    struct passwd pw {};
    struct passwd* res = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) != 0 || res == nullptr) return false;
    int n = 64;
    std::vector<gid_t> groups(n);
    if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
        groups.resize(n);
        if (getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) return false;
    }
    for (int i = 0; i < n; ++i) {
        if (groups[i] == group) return true;
    }
    return false;
}

// "uid 1000 (alice)"; just "uid 1000" when the user database does not know the uid.
std::string describeUser(uid_t uid) {
    std::string out = "uid " + std::to_string(uid);
    struct passwd pw {};
    struct passwd* res = nullptr;
    std::vector<char> buf(16384);
    if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &res) == 0 && res != nullptr && pw.pw_name[0] != '\0') {
        out += " (";
        out += pw.pw_name;
        out += ")";
    }
    return out;
}

// "1 MiB", "64 KiB" or "1000 bytes": a size as people write it.
std::string sizeText(size_t n) {
    if (n >= (1u << 20) && n % (1u << 20) == 0) return std::to_string(n >> 20) + " MiB";
    if (n >= (1u << 10) && n % (1u << 10) == 0) return std::to_string(n >> 10) + " KiB";
    return std::to_string(n) + " bytes";
}

// One protocol error line, for refusals made before a request is parsed.
std::string refusalLine(const std::string& code, const std::string& message) {
    boost::json::object e;
    e["code"] = code;
    e["message"] = message;
    boost::json::object o;
    o["proto"] = 1;
    o["ok"] = false;
    o["error"] = std::move(e);
    return boost::json::serialize(o) + "\n";
}

// Raises the soft descriptor limit to the hard one: socket clients, task pipes and log files all
// draw on it, and a daemon should not fail at the soft default of 1024. Returns the soft limit
// then in force.
rlim_t raiseDescriptorLimit() {
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        const rlim_t before = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == 0) {
            spdlog::info("CTRL_NOFILE_RAISED descriptor limit raised from {} to {} (the hard limit)", before,
                         rl.rlim_max);
        } else {
            getrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    return rl.rlim_cur == RLIM_INFINITY ? rlim_t(1) << 20 : rl.rlim_cur;
}

// Descriptors this process has open (entries of /proc/self/fd, less the directory's own).
long openDescriptors() {
    std::error_code ec;
    long n = 0;
    for (fs::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
    return n > 0 ? n - 1 : 0;
}

} // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
    asio::io_context& io;
    fs::path path;
    Services& services;
    Limits limits;
    std::optional<gid_t> admin_gid;
    local::acceptor acceptor;
    asio::steady_timer accept_timer;
    bool closed = true; // until open() succeeds

    // Accounting shared by all sessions.
    int descriptor_cap = 0;        // connections of anyone, at most
    int others_cap = 0;            // connections of non-exempt peers, at most
    int connections = 0;           // open, of anyone
    int other_connections = 0;     // open, of non-exempt peers
    std::map<uid_t, int> per_uid;  // open, per non-exempt peer uid
    size_t buffered = 0;           // bytes held for unfinished requests of non-exempt peers
    std::vector<char> scratch = std::vector<char>(kReadChunk);

    // Accept back-off after a failure.
    milliseconds back_off{0};
    uint64_t accept_failures = 0;  // since the last successful accept

    LogThrottle refusal_log{5};

    Impl(asio::io_context& i, fs::path p, Services& s, const Limits& l)
        : io(i), path(std::move(p)), services(s), limits(l), acceptor(i), accept_timer(i) {}

    void logRefusal(const Caller& caller, const std::string& why) {
        std::string suffix;
        if (refusal_log.admit(&suffix)) {
            spdlog::warn("CTRL_CLIENT_REFUSED {} pid {}: {}{}", caller.actor, caller.pid, why, suffix);
        }
    }

    class Session : public std::enable_shared_from_this<Session> {
    public:
        Session(std::shared_ptr<Impl> server, local::socket sock, Caller caller, bool exempt)
            : server_(std::move(server)), sock_(std::move(sock)), timer_(server_->io), caller_(std::move(caller)),
              exempt_(exempt) {
            ++server_->connections;
            if (!exempt_) {
                ++server_->other_connections;
                ++server_->per_uid[caller_.uid];
                caller_.max_answer_size = server_->limits.max_answer_size;
            }
        }

        ~Session() {
            uncharge();
            --server_->connections;
            if (!exempt_) {
                --server_->other_connections;
                auto it = server_->per_uid.find(caller_.uid);
                if (it != server_->per_uid.end() && --it->second <= 0) server_->per_uid.erase(it);
            }
        }

        void start() {
            boost::system::error_code ec;
            sock_.non_blocking(true, ec);
            if (ec) return;
            waitReadable();
        }

    private:
        void waitReadable() {
            auto self = shared_from_this();
            sock_.async_wait(local::socket::wait_read, [self](boost::system::error_code ec) {
                if (!ec) self->onReadable();
            });
        }

        void onReadable() {
            auto& scratch = server_->scratch;
            boost::system::error_code ec;
            size_t n = sock_.read_some(asio::buffer(scratch), ec);
            if (ec == asio::error::would_block || ec == asio::error::try_again) {
                waitReadable();
                return;
            }
            if (ec) {
                // Closed by the peer (also mid-request): nothing to answer.
                shutDown();
                return;
            }
            pending_.append(scratch.data(), n);
            charge();
            processPending();
        }

        // Handles the next complete line held, or reads on; enforces the request limits.
        void processPending() {
            const auto& lim = server_->limits;
            for (;;) {
                const size_t nl = pending_.find('\n');
                if (nl == std::string::npos) break;
                if (nl > lim.max_request_size) return requestTooLarge();
                std::string line = pending_.substr(0, nl);
                pending_.erase(0, nl + 1);
                if (pending_.empty()) pending_ = std::string(); // give the memory back
                charge();
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (line.find_first_not_of(" \t") == std::string::npos) continue;
                cancelTimer();
                auto self = shared_from_this();
                handleRequest(server_->services, caller_, line, [self](std::string response) {
                    self->sendAnswer(std::move(response));
                });
                return;
            }
            if (pending_.size() > lim.max_request_size) return requestTooLarge();
            if (!exempt_ && server_->buffered > lim.request_buffer) {
                const std::string why = "taskhubd already holds " + std::to_string(server_->buffered) +
                                        " bytes of unfinished requests (request_buffer = " +
                                        std::to_string(lim.request_buffer) +
                                        " in [control] of taskhub.toml); send each request as one complete line";
                server_->logRefusal(caller_, why);
                return refuse("busy", why);
            }
            if (pending_.empty()) cancelTimer();
            else if (!timer_running_) armTimer("finish its request line");
            waitReadable();
        }

        void requestTooLarge() {
            const size_t max = server_->limits.max_request_size;
            const std::string why = "request line exceeds " + sizeText(max) + " (max_request_size = " +
                                    std::to_string(max) + " in [control] of taskhub.toml)";
            server_->logRefusal(caller_, why);
            refuse("too_large", why);
        }

        // Sends one error line if the socket takes it now, and closes the connection.
        void refuse(const std::string& code, const std::string& message) {
            const std::string line = refusalLine(code, message);
            ::send(sock_.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            shutDown();
        }

        void sendAnswer(std::string line) {
            if (!sock_.is_open()) return;
            out_ = std::make_shared<std::string>(std::move(line));
            out_->push_back('\n');
            sent_ = 0;
            writeSome();
        }

        // Writes the answer piece by piece; the client timeout restarts with every piece the peer
        // takes, so a slow reader is served and only one that takes nothing is closed.
        void writeSome() {
            armTimer("take any of its answer");
            auto self = shared_from_this();
            sock_.async_write_some(asio::buffer(out_->data() + sent_, out_->size() - sent_),
                                   [self](boost::system::error_code ec, size_t n) {
                                       self->cancelTimer();
                                       if (ec) return self->shutDown();
                                       self->sent_ += n;
                                       if (self->sent_ < self->out_->size()) return self->writeSome();
                                       self->out_.reset();
                                       self->processPending();
                                   });
        }

        void armTimer(const char* what) {
            timer_running_ = true;
            timer_.expires_after(server_->limits.client_timeout);
            auto self = shared_from_this();
            timer_.async_wait([self, what](boost::system::error_code ec) {
                if (ec) return;
                self->timer_running_ = false;
                const auto ms = self->server_->limits.client_timeout.count();
                const std::string why = std::string("the client did not ") + what + " within " + std::to_string(ms) +
                                        " ms (client_timeout in [control] of taskhub.toml)";
                self->server_->logRefusal(self->caller_, why);
                // Mid-answer, an error line would land inside the answer: just close.
                if (self->out_) return self->shutDown();
                self->refuse("timeout", why);
            });
        }

        void cancelTimer() {
            timer_.cancel();
            timer_running_ = false;
        }

        void shutDown() {
            boost::system::error_code ignored;
            cancelTimer();
            sock_.close(ignored);
            pending_ = std::string();
            out_.reset();
            charge();
        }

        // Keeps the server's count of buffered request bytes in step with what this session holds.
        void charge() {
            if (exempt_) return;
            const size_t now = pending_.capacity() > 15 ? pending_.capacity() : 0;
            server_->buffered = server_->buffered - charged_ + now;
            charged_ = now;
        }
        void uncharge() {
            server_->buffered -= charged_;
            charged_ = 0;
        }

        std::shared_ptr<Impl> server_;
        local::socket sock_;
        asio::steady_timer timer_;
        bool timer_running_ = false;
        Caller caller_;
        const bool exempt_;
        std::string pending_; // received bytes not yet handled: at most one unfinished line after lines
        std::shared_ptr<std::string> out_; // the answer being written
        size_t sent_ = 0;                  // bytes of out_ written
        size_t charged_ = 0;  // what this session counts in server_->buffered
    };

    void accept() {
        auto self = shared_from_this();
        acceptor.async_accept([self](boost::system::error_code ec, local::socket sock) {
            if (self->closed || ec == asio::error::operation_aborted) return;
            if (ec) return self->acceptFailed(ec);
            if (self->accept_failures > 0) {
                spdlog::info("CTRL_ACCEPT_RESUMED accepting control connections again after {} failed attempt(s)",
                             self->accept_failures);
                self->accept_failures = 0;
                self->back_off = milliseconds(0);
            }
            self->onAccept(std::move(sock));
            self->accept();
        });
    }

    // Out of descriptors (or another accept error): retrying at once would spin on the readable
    // listening socket, so pause accepting; what is connected and the rest of the daemon go on.
    void acceptFailed(const boost::system::error_code& ec) {
        ++accept_failures;
        back_off = back_off.count() == 0 ? kFirstBackOff : std::min(back_off * 2, kMaxBackOff);
        spdlog::warn("CTRL_ACCEPT_FAILED {}: not accepting control connections for {} ms ({} failed attempt(s) in a "
                     "row; {} connection(s) open, {} descriptor(s) open)",
                     ec.message(), back_off.count(), accept_failures, connections, openDescriptors());
        accept_timer.expires_after(back_off);
        auto self = shared_from_this();
        accept_timer.async_wait([self](boost::system::error_code tec) {
            if (tec || self->closed) return;
            self->accept();
        });
    }

    void onAccept(local::socket sock) {
        struct ucred cred {};
        socklen_t len = sizeof cred;
        Caller caller;
        bool exempt = false;
        if (getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            caller.uid = cred.uid;
            caller.gid = cred.gid;
            caller.pid = cred.pid;
            exempt = cred.uid == 0 || cred.uid == geteuid();
            caller.may_mutate = exempt || (admin_gid && isMember(cred.uid, cred.gid, *admin_gid));
            caller.actor = describeUser(cred.uid);
        } else {
            caller.uid = static_cast<uid_t>(-1);
            caller.actor = "an unidentified peer";
        }
        std::string code = "too_many_connections";
        std::string why;
        if (connections >= descriptor_cap) {
            why = "taskhubd has " + std::to_string(connections) +
                  " control connections open, as many as its descriptor limit allows (half of the descriptors "
                  "free at start stay for tasks)";
        } else if (!exempt && other_connections >= others_cap) {
            why = "too many connections (max_connections = " + std::to_string(others_cap) + ")";
        } else if (!exempt && per_uid[caller.uid] >= limits.max_connections_per_uid) {
            why = "too many connections from " + caller.actor +
                  " (max_connections_per_uid = " + std::to_string(limits.max_connections_per_uid) + ")";
        }
        if (!exempt && per_uid[caller.uid] == 0) per_uid.erase(caller.uid);
        if (!why.empty()) {
            logRefusal(caller, why);
            const std::string line = refusalLine(code, why);
            ::send(sock.native_handle(), line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            return; // the socket closes here
        }
        std::make_shared<Session>(shared_from_this(), std::move(sock), std::move(caller), exempt)->start();
    }
};

Server::Server(asio::io_context& io, const fs::path& path, Services& services, const std::string& admin_group,
               const Limits& limits)
    : impl_(std::make_shared<Impl>(io, path, services, limits)) {
    const rlim_t soft = raiseDescriptorLimit();
    const long open_now = openDescriptors();
    const long free_now = static_cast<long>(std::min<rlim_t>(soft, 1 << 30)) - open_now;
    impl_->descriptor_cap = static_cast<int>(std::clamp<long>(free_now / 2, 1, 1 << 30));
    impl_->others_cap = std::max(1, std::min(limits.max_connections, impl_->descriptor_cap - kOperatorSlots));
    if (impl_->others_cap < limits.max_connections) {
        spdlog::warn("CTRL_MAX_CONNECTIONS_LOWERED max_connections {} lowered to {}: the descriptor limit is {} and {} "
                     "are open, and at most half of the free ones go to control connections (raise LimitNOFILE= "
                     "or lower max_connections)",
                     limits.max_connections, impl_->others_cap, soft, open_now);
    }
    if (!admin_group.empty()) {
        struct group* g = getgrnam(admin_group.c_str());
        if (g) {
            impl_->admin_gid = g->gr_gid;
        } else {
            spdlog::warn("CTRL_ADMIN_GROUP_UNKNOWN admin_group \"{}\" does not exist; only root and "
                         "the daemon's user may use mutating commands", admin_group);
        }
    }
}

bool Server::open(const std::string& socket_group, std::string* err) {
    const fs::path& path = impl_->path;
    std::error_code fec;
    fs::create_directories(path.parent_path(), fec);
    if (fs::exists(path, fec)) {
        // A socket file from an earlier process: reuse the path only if nobody answers there.
        local::socket probe(impl_->acceptor.get_executor());
        boost::system::error_code ec;
        probe.connect(local::endpoint(path.string()), ec);
        if (!ec) {
            *err = "another taskhubd is already listening on " + path.string();
            return false;
        }
        fs::remove(path, fec);
    }
    if (path.string().size() >= sizeof(sockaddr_un::sun_path)) {
        *err = "socket path " + path.string() + " is too long (max " +
               std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)";
        return false;
    }
    boost::system::error_code ec;
    auto& acc = impl_->acceptor;
    acc.open(local(), ec);
    if (!ec) acc.bind(local::endpoint(path.string()), ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        *err = "cannot listen on control socket " + path.string() + ": " + ec.message();
        return false;
    }
    ::chmod(path.c_str(), 0660);
    if (!socket_group.empty()) {
        struct group* g = getgrnam(socket_group.c_str());
        if (!g) {
            *err = "socket_group \"" + socket_group + "\" does not exist";
            return false;
        }
        if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
            *err = "cannot give " + path.string() + " to group " + socket_group + ": " + std::strerror(errno);
            return false;
        }
    }
    impl_->closed = false;
    impl_->accept();
    return true;
}

Server::~Server() { close(); }

void Server::close() {
    if (impl_->closed) return;
    impl_->closed = true;
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    std::error_code fec;
    fs::remove(impl_->path, fec);
}

} // namespace taskhub::control

#include "control/server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <istream>

namespace taskhub::control {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxLine = 1 << 20;

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

} // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
    asio::io_context& io;
    fs::path path;
    Services& services;
    std::optional<gid_t> admin_gid;
    local::acceptor acceptor;
    bool closed = false;

    Impl(asio::io_context& i, fs::path p, Services& s)
        : io(i), path(std::move(p)), services(s), acceptor(i) {}

    class Session : public std::enable_shared_from_this<Session> {
    public:
        Session(std::shared_ptr<Impl> server, local::socket sock, Caller caller)
            : server_(std::move(server)), sock_(std::move(sock)), caller_(caller), buf_(kMaxLine + 1) {}

        void start() { readNext(); }

    private:
        void readNext() {
            auto self = shared_from_this();
            asio::async_read_until(sock_, buf_, '\n', [self](boost::system::error_code ec, size_t n) {
                self->onRead(ec, n);
            });
        }

        void onRead(boost::system::error_code ec, size_t n) {
            if (ec == asio::error::not_found) {
                // The line exceeded the limit: answer once and drop the connection.
                sendLine("{\"proto\":1,\"ok\":false,\"error\":{\"code\":\"too_large\",\"message\":"
                         "\"request line exceeds 1 MiB\"}}",
                         true);
                return;
            }
            if (ec) return; // closed by the peer (also mid-request): nothing to clean up
            std::string line(asio::buffers_begin(buf_.data()), asio::buffers_begin(buf_.data()) + n - 1);
            buf_.consume(n);
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.find_first_not_of(" \t") == std::string::npos) {
                readNext();
                return;
            }
            auto self = shared_from_this();
            handleRequest(server_->services, caller_, line, [self](std::string response) {
                self->sendLine(std::move(response), false);
            });
        }

        void sendLine(std::string line, bool close_after) {
            auto out = std::make_shared<std::string>(std::move(line));
            out->push_back('\n');
            auto self = shared_from_this();
            asio::async_write(sock_, asio::buffer(*out), [self, out, close_after](boost::system::error_code ec, size_t) {
                if (ec || close_after) {
                    boost::system::error_code ignored;
                    self->sock_.close(ignored);
                    return;
                }
                self->readNext();
            });
        }

        std::shared_ptr<Impl> server_;
        local::socket sock_;
        Caller caller_;
        asio::streambuf buf_;
    };

    void accept() {
        auto self = shared_from_this();
        acceptor.async_accept([self](boost::system::error_code ec, local::socket sock) {
            if (self->closed) return;
            if (!ec) self->onAccept(std::move(sock));
            else spdlog::warn("CTRL_ACCEPT_FAILED {}", ec.message());
            self->accept();
        });
    }

    void onAccept(local::socket sock) {
        struct ucred cred {};
        socklen_t len = sizeof cred;
        Caller caller;
        if (getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            caller.uid = cred.uid;
            caller.gid = cred.gid;
            caller.pid = cred.pid;
            caller.may_mutate = cred.uid == 0 || cred.uid == geteuid() ||
                                (admin_gid && isMember(cred.uid, cred.gid, *admin_gid));
            caller.actor = describeUser(cred.uid);
        } else {
            caller.actor = "an unidentified peer";
        }
        std::make_shared<Session>(shared_from_this(), std::move(sock), caller)->start();
    }
};

Server::Server(asio::io_context& io, const fs::path& path, Services& services, const std::string& admin_group,
               const std::string& socket_group)
    : impl_(std::make_shared<Impl>(io, path, services)) {
    if (!admin_group.empty()) {
        struct group* g = getgrnam(admin_group.c_str());
        if (g) {
            impl_->admin_gid = g->gr_gid;
        } else {
            spdlog::warn("CTRL_ADMIN_GROUP_UNKNOWN admin_group \"{}\" does not exist; only root and "
                         "the daemon's user may use mutating commands", admin_group);
        }
    }
    std::error_code fec;
    fs::create_directories(path.parent_path(), fec);
    if (fs::exists(path, fec)) {
        // A socket file from an earlier process: reuse the path only if nobody answers there.
        local::socket probe(io);
        boost::system::error_code ec;
        probe.connect(local::endpoint(path.string()), ec);
        if (!ec) {
            throw std::runtime_error("another taskhubd is already listening on " + path.string());
        }
        fs::remove(path, fec);
    }
    if (path.string().size() >= sizeof(sockaddr_un::sun_path)) {
        throw std::runtime_error("socket path " + path.string() + " is too long (max " +
                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes)");
    }
    boost::system::error_code ec;
    auto& acc = impl_->acceptor;
    acc.open(local(), ec);
    if (!ec) acc.bind(local::endpoint(path.string()), ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on control socket " + path.string() + ": " + ec.message());
    ::chmod(path.c_str(), 0660);
    if (!socket_group.empty()) {
        struct group* g = getgrnam(socket_group.c_str());
        if (!g) {
            throw std::runtime_error("socket_group \"" + socket_group + "\" does not exist");
        }
        if (::chown(path.c_str(), static_cast<uid_t>(-1), g->gr_gid) != 0) {
            throw std::runtime_error("cannot give " + path.string() + " to group " + socket_group + ": " +
                                     std::strerror(errno));
        }
    }
    impl_->accept();
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

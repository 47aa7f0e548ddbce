#include "client.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "config/daemon_config.h"
#include "term.h"

namespace taskhub::ctl {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// How much of an answer that is not a response an error quotes.
constexpr size_t kShownResponseBytes = 200;

std::nullopt_t failure(Failure* err, int code, std::string message, std::string error_code = {}) {
    if (error_code.empty()) error_code = code == 2 ? "usage" : code == 3 ? "unreachable" : "failed";
    *err = Failure{code, std::move(message), std::move(error_code)};
    return std::nullopt;
}

} // namespace

bool daemonConfig(const Globals& g, const std::string& purpose, std::optional<config::DaemonConfig>* out,
                  std::string* err) {
    const std::string path = g.config.value_or(config::kDefaultConfigPath);
    std::error_code ec;
    if (!g.config && !fs::exists(path, ec)) return true;
    std::vector<config::Diagnostic> problems;
    *out = config::loadDaemonConfig(path, &problems);
    if (*out) return true;
    *err = "cannot read " + path + " " + purpose + ": " + config::firstProblem(problems);
    return false;
}

std::optional<std::string> socketPath(const Globals& g, Failure* err) {
    if (g.socket) return *g.socket;
    if (const char* env = std::getenv("TASKHUB_SOCKET"); env && *env) return env;
    std::optional<config::DaemonConfig> cfg;
    if (std::string why; !daemonConfig(g, "to find the socket", &cfg, &why)) return failure(err, 2, why + " (use --socket)");
    if (cfg) return cfg->socket.string();
    return std::string(config::kDefaultSocketPath);
}

std::optional<json::value> Client::call(std::string_view cmd, json::object args, Failure* err, int timeout_ms) const {
    auto found = socketPath(globals_, err);
    if (!found) return std::nullopt;
    const std::string& path = *found;
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return failure(err, 3, std::string("socket: ") + std::strerror(errno));
    if (timeout_ms > 0) {
        // Bounds connect() on a Unix socket as well (a listener whose backlog is full).
        timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) {
        ::close(fd);
        return failure(err, 2, "socket path too long: " + path);
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::string why = std::strerror(errno);
        ::close(fd);
        return failure(err, 3, "cannot connect to " + path + ": " + why +
                                   " (is taskhubd running? choose the socket with --socket or TASKHUB_SOCKET)");
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
    if (response.empty() && send_errno != 0) {
        return failure(err, 3, std::string("cannot send request: ") + std::strerror(send_errno));
    }
    if (response.empty()) return failure(err, 3, "taskhubd closed the connection without answering", "bad_response");
    json::error_code ec;
    // Run params can hold bytes that are not UTF-8 (a dropped file's name).
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    auto v = json::parse(response, ec, {}, opts);
    if (ec || !v.is_object()) {
        // Whatever answered is no taskhubd: show the start of it only.
        return failure(err, 3, "unreadable response from taskhubd: " + validUtf8(response, kShownResponseBytes),
                       "bad_response");
    }
    auto& o = v.as_object();
    if (!o.contains("ok") || !o["ok"].is_bool() || !o["ok"].as_bool()) {
        std::string msg = "request failed", code = "failed";
        if (o.contains("error") && o["error"].is_object()) {
            auto& e = o["error"].as_object();
            if (e.contains("message") && e["message"].is_string()) msg = std::string(e["message"].as_string());
            if (e.contains("code") && e["code"].is_string()) code = std::string(e["code"].as_string());
        }
        return failure(err, 1, msg, code);
    }
    return o["data"];
}

} // namespace taskhub::ctl

// The socket client of taskhubctl: one request per connection to taskhubd's control socket
// (JSON lines, docs/control-protocol.md), and where that socket is.
#ifndef TASKHUB_CTL_CLIENT_H
#define TASKHUB_CTL_CLIENT_H

#include <boost/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "config/daemon_config.h"

namespace taskhub::ctl {

// The options every command takes: --socket, --config, --json, --no-color, --utc, --no-pager
// (--version and --help end the command line's work before a command runs).
struct Globals {
    std::optional<std::string> socket;
    std::optional<std::string> config;
    bool json = false;
    bool version = false;
    bool no_color = false;
    bool utc = false;
    bool no_pager = false;
};

// Why a request (or finding the socket) failed, and the exit status taskhubctl ends with:
// 1 the daemon refused the request, 2 the socket cannot be determined (a usage problem),
// 3 the daemon could not be reached or answered nonsense.
struct Failure {
    int exit_code = 1;
    std::string message;
    // The protocol's error code when the daemon refused (docs/control-protocol.md, "Error codes"),
    // else taskhubctl's own: "usage" (exit 2), "unreachable" (cannot connect, exit 3),
    // "bad_response" (no or no readable answer, exit 3).
    std::string code;
};

// taskhubd's config, read when --config is given or the default config file exists, for what
// it says the daemon does (its socket, its default time zone). Returns false with *err ("cannot
// read FILE <purpose>: WHY") when that file cannot be read; *out stays empty when there is no file.
bool daemonConfig(const Globals& g, const std::string& purpose, std::optional<config::DaemonConfig>* out,
                  std::string* err);

// The socket: --socket, else $TASKHUB_SOCKET, else the config's socket (when --config is given
// or the default config exists), else the default path. nullopt: *err says why.
std::optional<std::string> socketPath(const Globals& g, Failure* err);

class Client {
public:
    explicit Client(Globals globals) : globals_(std::move(globals)) {}

    // Sends one request and returns the response's data; nullopt: *err says why. timeout_ms > 0
    // bounds connecting, sending and each wait for the answer (for questions taskhubctl asks on
    // the side, like the daemon's zone and version); 0: no bound (a `wait` takes as long as its run).
    std::optional<boost::json::value> call(std::string_view cmd, boost::json::object args, Failure* err,
                                           int timeout_ms = 0) const;

private:
    Globals globals_;
};

} // namespace taskhub::ctl

#endif // TASKHUB_CTL_CLIENT_H

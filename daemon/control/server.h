// The control socket: a Unix stream socket speaking JSON lines (docs/control-protocol.md).
// One request object per line, one response object per line, in order, per connection.
//
// Access: SO_PEERCRED decides. root, the daemon's own uid and members of the admin group may
// run mutating commands; anyone else who can connect (the socket is mode 0660) may only read.
// A malformed request gets an error response and the connection stays usable.
//
// Bounds (Limits; docs/control-protocol.md, "Limits"): whoever can connect is not trusted to be
// gentle, so everything a client can make the daemon hold is capped -- connections (in total and
// per uid), bytes of unfinished request lines across all connections, the size of one request and
// of one answer, and the time a client may take to finish a request or to take an answer. A client
// over a limit gets one JSON error line saying which limit, then the connection is closed. The
// daemon reads a connection only when it has no answer pending for it, so a peer that does not
// read holds at most one answer. Root and the daemon's own uid are exempt from the per-uid cap,
// the request buffer and the answer size (an operator can always get in), but not from the
// descriptor bound: connections never take more than half of the descriptors that were free when
// the server started, so that task starts and reloads always find descriptors. When accept fails
// (EMFILE, ENFILE, ...), accepting pauses for 100 ms, doubling up to 1 s, with one log line per
// pause; existing connections and the rest of the daemon carry on.
//
// Threading: event-loop thread only.
#ifndef TASKHUB_CONTROL_SERVER_H
#define TASKHUB_CONTROL_SERVER_H

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include "control/services.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::control {

// What clients may make the server hold; taskhub.toml's [control] table (config::ControlSettings).
struct Limits {
    int max_connections = 256;          // of peers other than root and the daemon's uid
    int max_connections_per_uid = 16;   // of one such peer uid
    size_t max_request_size = 1 << 20;  // one request line
    size_t request_buffer = 16 << 20;   // unfinished request bytes held for all such peers
    size_t max_answer_size = 2 << 20;   // one answer line to such a peer
    std::chrono::milliseconds client_timeout{30'000}; // to finish a request line / take an answer
};

class Server {
public:
    // Raises the soft RLIMIT_NOFILE to the hard limit (logged), then sizes the descriptor bound
    // on connections from the descriptors free at that point. Nothing is bound until open().
    Server(boost::asio::io_context& io, const std::filesystem::path& path, Services& services,
           const std::string& admin_group, const Limits& limits);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds the path (removing a stale socket file; refusing when another daemon answers there)
    // and starts accepting. socket_group, when set, becomes the socket's group owner: its members
    // may connect. False with a precise *err on failure; the path is then left as it is.
    bool open(const std::string& socket_group, std::string* err);

    // Stops accepting and removes the socket file. Open connections finish their current request.
    void close();

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

// Handles one request line and produces one response line (without the newline), possibly later:
// reply runs exactly once. Exposed for tests.
void handleRequest(Services& services, const Caller& caller, const std::string& line,
                   std::function<void(std::string)> reply);

} // namespace taskhub::control

#endif // TASKHUB_CONTROL_SERVER_H

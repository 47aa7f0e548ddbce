// The control socket: a Unix stream socket speaking JSON lines (docs/control-protocol.md).
// One request object per line, one response object per line, in order, per connection.
//
// Access: SO_PEERCRED decides. root, the daemon's own uid and members of the admin group may
// run mutating commands; anyone else who can connect (the socket is mode 0660) may only read.
// A malformed request gets an error response and the connection stays usable; a line longer than
// 1 MiB closes the connection after an error response.
//
// Threading: event-loop thread only.
#ifndef TASKHUB_CONTROL_SERVER_H
#define TASKHUB_CONTROL_SERVER_H

#include <filesystem>
#include <memory>
#include <string>

#include "control/services.h"

namespace boost::asio {
class io_context;
}

namespace taskhub::control {

class Server {
public:
    // Binds path (removing a stale socket file; refusing when another daemon answers there) and
    // starts accepting. Throws std::runtime_error with a precise message on failure.
    // socket_group, when set, becomes the socket's group owner: its members may connect.
    Server(boost::asio::io_context& io, const std::filesystem::path& path, Services& services,
           const std::string& admin_group, const std::string& socket_group);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

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

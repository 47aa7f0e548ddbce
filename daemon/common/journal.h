// The systemd journal's native protocol, written here without libsystemd (which costs the daemon
// about 1 MB of resident memory, see common/notify.h): one datagram per entry to the journal's
// socket (/run/systemd/journal/socket), each field `NAME=value\n`, or, for a value that holds a
// newline, the binary-safe form `NAME\n` + the value's length as 64-bit little-endian + the
// value + `\n`. An entry too big for one datagram (EMSGSIZE) is written to a sealed memfd whose
// descriptor is passed with SCM_RIGHTS in an empty datagram, as systemd documents
// (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/); nothing is cut.
//
// Field names are always fixed by the caller (constants here and in log.cc); values may come
// from anyone (workflow names, task output, file names) and can never forge a field: a value
// with a newline is sent in the binary-safe form, whose length prefix says where it ends.
//
// Threading: Socket is used under the logger's lock (log.cc); the free functions are pure.
#ifndef TASKHUB_COMMON_JOURNAL_H
#define TASKHUB_COMMON_JOURNAL_H

#include <string>
#include <string_view>

namespace taskhub::journal {

// The journal socket: $TASKHUB_JOURNAL_SOCKET when set (tests bind their own), else
// /run/systemd/journal/socket.
std::string socketPath();

// True when stderr is connected to the journal: $JOURNAL_STREAM is "DEVICE:INODE" of stderr
// (systemd sets it for StandardError=journal), as systemd.exec(5) documents.
bool stderrIsJournal();

// Appends one field to an entry: `name=value\n`, or the binary-safe form when value holds a
// newline. name must be a journal field name (A-Z, 0-9, _; not starting with _ or a digit).
void appendField(std::string* entry, std::string_view name, std::string_view value);

// The stable MESSAGE_ID of a log id (e.g. "ENGINE_RUN_FAILED"): 32 lowercase hex digits, the
// 128-bit FNV-1a hash of "taskhub:" + log_id. It never changes for an id: journalctl -x finds
// the catalog entry (systemd/taskhub.catalog) by it, and tests/docs/check_docs.py computes the
// same hash to check the catalog.
std::string messageId(std::string_view log_id);

// The log id a message starts with (MODULE_WHAT: [A-Z][A-Z0-9]* then _[A-Z0-9]+ at least once,
// followed by a space or the end), or an empty view.
std::string_view logIdOf(std::string_view message);

// syslog priority (what journald's PRIORITY= and the `<N>` stderr prefix carry) of an spdlog
// level: trace and debug 7, info 6, warn 4, error 3, critical 2 (spdlog::level::level_enum values
// 0-5; off and anything else: 6).
int syslogPriority(int spdlog_level);

// A datagram socket to the journal. Not copyable; closes on destruction.
class Socket {
public:
    Socket() = default;
    ~Socket();
    Socket(const Socket&) = delete;
    Socket& operator=(const Socket&) = delete;

    // Creates the socket and remembers the path; false with *err when no socket can be made or
    // the path does not fit in sockaddr_un. Whether a journal listens shows at the first send().
    bool open(const std::string& path, std::string* err);
    // Sends one entry (fields as appendField() builds them) without blocking. False with *err
    // when it could not be sent (no journal listening, its queue full, ...): the caller logs the
    // line elsewhere.
    bool send(const std::string& entry, std::string* err);

private:
    bool sendMemfd(const std::string& entry, std::string* err);
    int fd_ = -1;
    std::string path_;
};

} // namespace taskhub::journal

#endif // TASKHUB_COMMON_JOURNAL_H

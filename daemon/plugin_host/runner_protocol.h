// The framed protocol between taskhubd and taskhub-runner, the child process that hosts one
// plugin whose isolation is "process" (docs/runner-protocol.md describes every frame).
//
// A frame is a 4-byte little-endian length followed by that many bytes of one JSON object with
// an "op" member. Frames travel over a SOCK_STREAM socketpair; a task's log descriptor rides on
// its execute frame as SCM_RIGHTS ancillary data. Both sides use this codec: FrameReader splits
// received bytes into frames, OutQueue buffers frames (and descriptors) until the socket takes
// them.
//
// Threading: the classes here are plain values; callers synchronise.
#ifndef TASKHUB_PLUGIN_HOST_RUNNER_PROTOCOL_H
#define TASKHUB_PLUGIN_HOST_RUNNER_PROTOCOL_H

#include <boost/json/object.hpp>

#include <signal.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "plugin_host/plugin_host.h"

namespace taskhub::plugin_host::runner_protocol {

inline constexpr int kVersion = 1;
// A frame's JSON may be at most this long; a longer length prefix is a protocol error.
inline constexpr size_t kMaxFrameBytes = 16 * 1024 * 1024;
// The descriptor number of the runner's end of the socketpair (its `--fd` argument).
inline constexpr int kRunnerFd = 3;
// At most this many descriptors travel with one sendmsg() (the kernel's SCM_MAX_FD is 253).
inline constexpr size_t kMaxFdsPerSend = 250;

// Appends one frame (length prefix and serialized JSON) to out. Returns false, leaving out
// unchanged, when the JSON would exceed kMaxFrameBytes.
bool appendFrame(std::string& out, const boost::json::object& frame);

// Splits a byte stream into frames.
class FrameReader {
public:
    enum class Result { Frame, NeedMore, Error };

    void append(const char* data, size_t n) { buf_.append(data, n); }
    // The next complete frame into *frame. Error (with *err saying what is wrong) for a length
    // over kMaxFrameBytes, bytes that are not one JSON object, or an object without a string
    // "op"; the stream cannot be resynchronised after an error.
    Result next(boost::json::object* frame, std::string* err);
    size_t buffered() const noexcept { return buf_.size() - pos_; }

private:
    std::string buf_;
    size_t pos_ = 0; // start of the first unconsumed byte
};

// Frames waiting to be written, each with the descriptors that must travel with it (they are
// sent with the first byte of the frame they belong to, and the receiver takes them in order).
// The queue owns queued descriptors: it closes them when they were sent or when it is cleared.
class OutQueue {
public:
    OutQueue() = default;
    ~OutQueue() { clear(); }
    OutQueue(const OutQueue&) = delete;
    OutQueue& operator=(const OutQueue&) = delete;

    // Queues frame; fd (>= 0) is dup'ed and travels with it. Returns false when the frame is over
    // kMaxFrameBytes or the descriptor cannot be duplicated (*err says which).
    bool push(const boost::json::object& frame, int fd, std::string* err);
    // Writes as much as the non-blocking socket takes. Returns 0 when everything was written or
    // the socket is full (see empty()), or the errno of a failed write.
    int flush(int sock);
    bool empty() const noexcept { return chunks_.empty(); }
    void clear();

private:
    struct Chunk {
        std::string bytes;
        std::deque<int> fds; // sent with the chunk's first byte
        size_t sent = 0;
    };
    std::deque<Chunk> chunks_;
};

// Reads what the non-blocking socket has into reader; descriptors that arrive are appended to
// fds (received with MSG_CMSG_CLOEXEC). Returns the bytes read (0: the peer closed), or -1 with
// errno set (EAGAIN: nothing more now).
ssize_t receive(int sock, FrameReader& reader, std::deque<int>& fds);

// The plugin description of hello and `taskhub-runner --describe` as JSON, and back.
boost::json::object infoToJson(const PluginInfo& info);
std::optional<PluginInfo> infoFromJson(const boost::json::value& v, std::string* err);

// The rusage of an attempt's main process (a Usage with Source::Rusage) as a complete frame
// carries it: {"cpu_user_us": N, "cpu_system_us": N, "max_rss_kb": N (optional)}; and back,
// nullopt when a member is missing, not an unsigned number, or out of range.
boost::json::object rusageToJson(const cgroup::Usage& usage);
std::optional<cgroup::Usage> rusageFromJson(const boost::json::object& o);

// AttemptResult outcomes and health states as the frames spell them.
const char* outcomeName(AttemptResult::Outcome o) noexcept; // "succeeded" | "failed" | "cancelled"
std::optional<AttemptResult::Outcome> outcomeFromName(std::string_view s) noexcept;
std::optional<HealthState> healthFromName(std::string_view s) noexcept;

// How a child process ended, from waitid(): "exited with code 3", "killed by signal 11
// (SIGSEGV)", "killed by signal 6 (SIGABRT), core dumped".
std::string describeExit(const siginfo_t& info);

// Typed access to a frame's members; each returns nullopt when the member is missing or of
// another type.
std::optional<std::string_view> getString(const boost::json::object& o, std::string_view key);
std::optional<uint64_t> getUint(const boost::json::object& o, std::string_view key);

} // namespace taskhub::plugin_host::runner_protocol

#endif // TASKHUB_PLUGIN_HOST_RUNNER_PROTOCOL_H

#include "plugin_host/runner_protocol.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace taskhub::plugin_host::runner_protocol {

namespace json = boost::json;

bool appendFrame(std::string& out, const json::object& frame) {
    const std::string body = json::serialize(frame);
    if (body.size() > kMaxFrameBytes) return false;
    const auto n = static_cast<uint32_t>(body.size());
    const char len[4] = {static_cast<char>(n & 0xff), static_cast<char>((n >> 8) & 0xff),
                         static_cast<char>((n >> 16) & 0xff), static_cast<char>((n >> 24) & 0xff)};
    out.append(len, 4);
    out.append(body);
    return true;
}

FrameReader::Result FrameReader::next(json::object* frame, std::string* err) {
    if (buf_.size() - pos_ < 4) return Result::NeedMore;
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    const uint32_t n = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
    if (n > kMaxFrameBytes) {
        *err = "frame of " + std::to_string(n) + " bytes exceeds the limit of " + std::to_string(kMaxFrameBytes);
        return Result::Error;
    }
    if (buf_.size() - pos_ - 4 < n) return Result::NeedMore;
    json::error_code ec;
    // Params and outputs may hold bytes that are not UTF-8 (a dropped file's name): pass them on.
    json::parse_options opts;
    opts.allow_invalid_utf8 = true;
    json::value v = json::parse(std::string_view(buf_.data() + pos_ + 4, n), ec, {}, opts);
    pos_ += 4 + size_t(n);
    // Compact once the consumed prefix dominates, so the buffer does not grow without bound.
    if (pos_ == buf_.size()) {
        buf_.clear();
        pos_ = 0;
    } else if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
        buf_.erase(0, pos_);
        pos_ = 0;
    }
    if (ec) {
        *err = "frame is not valid JSON: " + ec.message();
        return Result::Error;
    }
    if (!v.is_object()) {
        *err = "frame is not a JSON object";
        return Result::Error;
    }
    auto* op = v.get_object().if_contains("op");
    if (!op || !op->is_string()) {
        *err = "frame has no \"op\" string";
        return Result::Error;
    }
    *frame = std::move(v.get_object());
    return Result::Frame;
}

bool OutQueue::push(const json::object& frame, int fd, std::string* err) {
    // Frames join the last chunk unless that one has started going out or is full of
    // descriptors: one sendmsg() then carries many frames.
    if (chunks_.empty() || chunks_.back().sent > 0 || (fd >= 0 && chunks_.back().fds.size() >= kMaxFdsPerSend)) {
        chunks_.emplace_back();
    }
    Chunk& c = chunks_.back();
    const size_t before = c.bytes.size();
    if (!appendFrame(c.bytes, frame)) {
        *err = "frame exceeds the limit of " + std::to_string(kMaxFrameBytes) + " bytes";
        if (c.bytes.empty() && c.fds.empty()) chunks_.pop_back();
        return false;
    }
    if (fd >= 0) {
        int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (copy < 0) {
            *err = std::string("cannot duplicate descriptor ") + std::to_string(fd) + ": " + std::strerror(errno);
            c.bytes.resize(before);
            if (c.bytes.empty() && c.fds.empty()) chunks_.pop_back();
            return false;
        }
        c.fds.push_back(copy);
    }
    return true;
}

int OutQueue::flush(int sock) {
    while (!chunks_.empty()) {
        Chunk& c = chunks_.front();
        iovec iov{c.bytes.data() + c.sent, c.bytes.size() - c.sent};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerSend)];
        if (c.sent == 0 && !c.fds.empty()) {
            const size_t bytes = sizeof(int) * c.fds.size();
            msg.msg_control = control;
            msg.msg_controllen = CMSG_SPACE(bytes);
            cmsghdr* cm = CMSG_FIRSTHDR(&msg);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(bytes);
            int* out = reinterpret_cast<int*>(CMSG_DATA(cm));
            for (size_t i = 0; i < c.fds.size(); ++i) out[i] = c.fds[i];
        }
        ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            return errno;
        }
        if (c.sent == 0) {
            // In flight now: the kernel holds its own references.
            for (int fd : c.fds) ::close(fd);
            c.fds.clear();
        }
        c.sent += static_cast<size_t>(n);
        if (c.sent == c.bytes.size()) chunks_.pop_front();
    }
    return 0;
}

void OutQueue::clear() {
    for (auto& c : chunks_) {
        for (int fd : c.fds) ::close(fd);
    }
    chunks_.clear();
}

ssize_t receive(int sock, FrameReader& reader, std::deque<int>& fds) {
    char buf[65536];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
        n = ::recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return n;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
        const size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int* in = reinterpret_cast<const int*>(CMSG_DATA(cm));
        for (size_t i = 0; i < count; ++i) fds.push_back(in[i]);
    }
    reader.append(buf, static_cast<size_t>(n));
    return n;
}

json::object infoToJson(const PluginInfo& info) {
    json::object o;
    o["name"] = info.name;
    o["version"] = info.version;
    o["description"] = info.description;
    o["file"] = info.file.string();
    o["abi_major"] = info.abi_major;
    o["abi_minor"] = info.abi_minor;
    o["capabilities"] = info.capabilities;
    o["blocking"] = info.blocking;
    o["thread_safe"] = info.thread_safe;
    json::array shell;
    for (const auto& p : info.shell_params) shell.emplace_back(p);
    o["shell_params"] = std::move(shell);
    return o;
}

std::optional<std::string_view> getString(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v || !v->is_string()) return std::nullopt;
    return std::string_view(v->get_string());
}

std::optional<uint64_t> getUint(const json::object& o, std::string_view key) {
    auto* v = o.if_contains(key);
    if (!v) return std::nullopt;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64() && v->get_int64() >= 0) return static_cast<uint64_t>(v->get_int64());
    return std::nullopt;
}

json::object rusageToJson(const cgroup::Usage& usage) {
    json::object o{{"cpu_user_us", usage.cpu_user_us}, {"cpu_system_us", usage.cpu_system_us}};
    if (usage.memory_peak) o["max_rss_kb"] = *usage.memory_peak / 1024;
    return o;
}

std::optional<cgroup::Usage> rusageFromJson(const json::object& o) {
    auto user = getUint(o, "cpu_user_us");
    auto system = getUint(o, "cpu_system_us");
    if (!user || !system) return std::nullopt;
    cgroup::Usage usage;
    usage.source = cgroup::Usage::Source::Rusage;
    usage.cpu_user_us = *user;
    usage.cpu_system_us = *system;
    if (o.contains("max_rss_kb")) {
        auto rss = getUint(o, "max_rss_kb");
        if (!rss || *rss > UINT64_MAX / 1024) return std::nullopt;
        usage.memory_peak = *rss * 1024;
    }
    return usage;
}

std::optional<PluginInfo> infoFromJson(const json::value& v, std::string* err) {
    if (!v.is_object()) {
        *err = "plugin info is not an object";
        return std::nullopt;
    }
    const auto& o = v.get_object();
    auto name = getString(o, "name");
    auto version = getString(o, "version");
    auto description = getString(o, "description");
    auto file = getString(o, "file");
    auto major = getUint(o, "abi_major");
    auto minor = getUint(o, "abi_minor");
    auto caps = getUint(o, "capabilities");
    auto* blocking = o.if_contains("blocking");
    auto* safe = o.if_contains("thread_safe");
    if (!name || !version || !description || !file || !major || !minor || !caps || !blocking ||
        !blocking->is_bool() || !safe || !safe->is_bool()) {
        *err = "plugin info lacks a member or has one of the wrong type";
        return std::nullopt;
    }
    PluginInfo info;
    info.name = *name;
    info.version = *version;
    info.description = *description;
    info.file = std::string(*file);
    info.abi_major = static_cast<int>(*major);
    info.abi_minor = static_cast<int>(*minor);
    info.capabilities = *caps;
    info.blocking = blocking->get_bool();
    info.thread_safe = safe->get_bool();
    // Since ABI 1.3; a runner of an older taskhubd does not send it.
    if (auto* shell = o.if_contains("shell_params")) {
        if (!shell->is_array()) {
            *err = "plugin info member shell_params is not an array";
            return std::nullopt;
        }
        for (const auto& p : shell->get_array()) {
            if (!p.is_string() || p.get_string().empty()) {
                *err = "plugin info member shell_params holds something other than a parameter name";
                return std::nullopt;
            }
            info.shell_params.emplace_back(p.get_string());
        }
    }
    return info;
}

const char* outcomeName(AttemptResult::Outcome o) noexcept {
    switch (o) {
    case AttemptResult::Outcome::Succeeded: return "succeeded";
    case AttemptResult::Outcome::Cancelled: return "cancelled";
    case AttemptResult::Outcome::Failed: break;
    }
    return "failed";
}

std::optional<AttemptResult::Outcome> outcomeFromName(std::string_view s) noexcept {
    if (s == "succeeded") return AttemptResult::Outcome::Succeeded;
    if (s == "failed") return AttemptResult::Outcome::Failed;
    if (s == "cancelled") return AttemptResult::Outcome::Cancelled;
    return std::nullopt;
}

std::optional<HealthState> healthFromName(std::string_view s) noexcept {
    for (auto h : {HealthState::Healthy, HealthState::Degraded, HealthState::Unhealthy}) {
        if (s == toString(h)) return h;
    }
    return std::nullopt;
}

std::string describeExit(const siginfo_t& info) {
    if (info.si_code == CLD_EXITED) return "exited with code " + std::to_string(info.si_status);
    const char* abbrev = sigabbrev_np(info.si_status);
    std::string s = "killed by signal " + std::to_string(info.si_status);
    if (abbrev) s += std::string(" (SIG") + abbrev + ")";
    if (info.si_code == CLD_DUMPED) s += ", core dumped";
    return s;
}

} // namespace taskhub::plugin_host::runner_protocol

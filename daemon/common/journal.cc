#include "common/journal.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace taskhub::journal {

namespace {

constexpr const char* kDefaultSocket = "/run/systemd/journal/socket";

bool isUpperOrDigit(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

} // namespace

std::string socketPath() {
    const char* p = std::getenv("TASKHUB_JOURNAL_SOCKET");
    return p != nullptr && *p != '\0' ? std::string(p) : std::string(kDefaultSocket);
}

bool stderrIsJournal() {
    const char* e = std::getenv("JOURNAL_STREAM");
    if (e == nullptr) return false;
    unsigned long long dev = 0, ino = 0;
    char tail = 0;
    if (std::sscanf(e, "%llu:%llu%c", &dev, &ino, &tail) != 2) return false;
    struct stat st {};
    if (::fstat(STDERR_FILENO, &st) != 0) return false;
    return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

void appendField(std::string* entry, std::string_view name, std::string_view value) {
    entry->append(name);
    if (value.find('\n') == std::string_view::npos) {
        entry->push_back('=');
        entry->append(value);
        entry->push_back('\n');
        return;
    }
    entry->push_back('\n');
    uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) entry->push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    entry->append(value);
    entry->push_back('\n');
}

std::string messageId(std::string_view log_id) {
    // FNV-1a, 128 bits: offset basis 0x6c62272e07bb014262b821756295c58d, prime 2^88 + 0x13b.
    __extension__ typedef unsigned __int128 u128;
    const u128 prime = (static_cast<u128>(1) << 88) + 0x13b;
    u128 h = (static_cast<u128>(0x6c62272e07bb0142ULL) << 64) | 0x62b821756295c58dULL;
    auto mix = [&](std::string_view s) {
        for (unsigned char c : s) {
            h ^= c;
            h *= prime;
        }
    };
    mix("taskhub:");
    mix(log_id);
    static const char hex[] = "0123456789abcdef";
    std::string out(32, '0');
    for (int i = 31; i >= 0; --i) {
        out[static_cast<size_t>(i)] = hex[static_cast<unsigned>(h & 0xf)];
        h >>= 4;
    }
    return out;
}

std::string_view logIdOf(std::string_view message) {
    size_t i = 0;
    if (message.empty() || message[0] < 'A' || message[0] > 'Z') return {};
    while (i < message.size() && isUpperOrDigit(message[i])) ++i;
    bool parts = false;
    while (i + 1 < message.size() && message[i] == '_' && isUpperOrDigit(message[i + 1])) {
        ++i;
        while (i < message.size() && isUpperOrDigit(message[i])) ++i;
        parts = true;
    }
    if (!parts || (i < message.size() && message[i] != ' ')) return {};
    return message.substr(0, i);
}

int syslogPriority(int spdlog_level) {
    switch (spdlog_level) {
    case 0: // trace
    case 1: // debug
        return 7;
    case 3: // warn
        return 4;
    case 4: // err
        return 3;
    case 5: // critical
        return 2;
    default: // info, off
        return 6;
    }
}

Socket::~Socket() {
    if (fd_ >= 0) ::close(fd_);
}

bool Socket::open(const std::string& path, std::string* err) {
    if (path.empty() || path.size() >= sizeof(sockaddr_un::sun_path)) {
        *err = "journal socket path '" + path + "' is empty or longer than " +
               std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes";
        return false;
    }
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
        *err = std::string("socket(AF_UNIX, SOCK_DGRAM): ") + std::strerror(errno);
        return false;
    }
    // Room for entries as big as journald accepts in a datagram; the kernel caps it at wmem_max.
    int size = 8 * 1024 * 1024;
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    path_ = path;
    return true;
}

bool Socket::send(const std::string& entry, std::string* err) {
    if (fd_ < 0) {
        *err = "no journal socket";
        return false;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1);
    ssize_t n = ::sendto(fd_, entry.data(), entry.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                         reinterpret_cast<const sockaddr*>(&addr), len);
    if (n >= 0) return true;
    if (errno == EMSGSIZE) return sendMemfd(entry, err);
    *err = "sending to " + path_ + ": " + std::strerror(errno);
    return false;
}

bool Socket::sendMemfd(const std::string& entry, std::string* err) {
    int mfd = ::memfd_create("taskhub-journal", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (mfd < 0) {
        *err = std::string("memfd_create: ") + std::strerror(errno);
        return false;
    }
    const char* p = entry.data();
    size_t left = entry.size();
    while (left > 0) {
        ssize_t w = ::write(mfd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            *err = std::string("writing the memfd: ") + std::strerror(errno);
            ::close(mfd);
            return false;
        }
        p += w;
        left -= static_cast<size_t>(w);
    }
    // journald only accepts a memfd sealed against changes.
    if (::fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        *err = std::string("sealing the memfd: ") + std::strerror(errno);
        ::close(mfd);
        return false;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr mh{};
    mh.msg_name = &addr;
    mh.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + 1);
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
    const ssize_t n = ::sendmsg(fd_, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    const int e = errno;
    ::close(mfd);
    if (n < 0) {
        *err = "sending a memfd to " + path_ + ": " + std::strerror(e);
        return false;
    }
    return true;
}

} // namespace taskhub::journal

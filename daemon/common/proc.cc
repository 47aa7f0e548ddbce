#include "common/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace taskhub {

namespace {

// Reads a whole (small) /proc file; "" when it cannot be read.
std::string readProcFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
}

struct Stat {
    char state = '?';
    int64_t start_ticks = 0;
};

std::optional<Stat> readStat(pid_t pid) {
    std::string stat = readProcFile("/proc/" + std::to_string(pid) + "/stat");
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size()) return std::nullopt;
    Stat out;
    out.state = stat[close + 2];
    // Field 3 is the state; field 22 the start time: 19 fields after the state.
    const char* p = stat.c_str() + close + 2;
    for (int field = 3; field < 22; ++field) {
        p = std::strchr(p, ' ');
        if (!p) return std::nullopt;
        ++p;
    }
    char* end = nullptr;
    out.start_ticks = std::strtoll(p, &end, 10);
    if (end == p) return std::nullopt;
    return out;
}

} // namespace

std::optional<int64_t> processStartTicks(pid_t pid) {
    if (pid <= 0) return std::nullopt;
    auto st = readStat(pid);
    if (!st) return std::nullopt;
    return st->start_ticks;
}

bool sameProcess(pid_t pid, int64_t start_ticks) {
    if (pid <= 0) return false;
    auto st = readStat(pid);
    return st && st->start_ticks == start_ticks && st->state != 'Z' && st->state != 'X';
}

std::string bootId() {
    std::string id = readProcFile("/proc/sys/kernel/random/boot_id");
    while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    return id;
}

std::vector<FoundProcess> processesWithEnvironment(const std::string& required,
                                                   const std::vector<std::string>& names) {
    std::vector<FoundProcess> out;
    DIR* dir = ::opendir("/proc");
    if (!dir) return out;
    const pid_t self = ::getpid();
    while (dirent* e = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end != '\0' || pid == self) continue;
        const std::string env = readProcFile(std::string("/proc/") + e->d_name + "/environ");
        // Entries are NUL-separated; only whole entries match.
        bool found = false;
        FoundProcess p;
        p.values.resize(names.size());
        for (size_t pos = 0; pos < env.size();) {
            size_t next = env.find('\0', pos);
            if (next == std::string::npos) next = env.size();
            const std::string_view entry = std::string_view(env).substr(pos, next - pos);
            if (entry == required) found = true;
            for (size_t i = 0; i < names.size(); ++i) {
                if (entry.size() > names[i].size() && entry.substr(0, names[i].size()) == names[i] &&
                    entry[names[i].size()] == '=')
                    p.values[i] = std::string(entry.substr(names[i].size() + 1));
            }
            pos = next + 1;
        }
        if (!found) continue;
        auto st = readStat(static_cast<pid_t>(pid));
        if (!st || st->state == 'Z' || st->state == 'X') continue;
        // "Uid:\t<real>\t<effective>...": the real user id.
        const std::string status = readProcFile(std::string("/proc/") + e->d_name + "/status");
        const size_t at = status.find("\nUid:");
        if (at == std::string::npos) continue;
        char* uid_end = nullptr;
        const unsigned long uid = std::strtoul(status.c_str() + at + 5, &uid_end, 10);
        if (uid_end == status.c_str() + at + 5) continue;
        p.uid = static_cast<uid_t>(uid);
        p.pid = static_cast<pid_t>(pid);
        p.start_ticks = st->start_ticks;
        out.push_back(std::move(p));
    }
    ::closedir(dir);
    return out;
}

} // namespace taskhub

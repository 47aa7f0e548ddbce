#include "cgroup/cgroup.h"

#include "common/inotify.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <spdlog/spdlog.h>

namespace taskhub::cgroup {

namespace fs = std::filesystem;
namespace asio = boost::asio;

const char* toString(Containment c) noexcept {
    switch (c) {
    case Containment::Cgroup: return "cgroup";
    case Containment::ProcessGroup: return "process-group";
    case Containment::Auto: break;
    }
    return "auto";
}

namespace {

// ---------------------------------------------------------------------------------------------
// Files

std::string errnoText(int e) { return std::strerror(e); }

// Reads a small file (cgroupfs files are at most a page or two; proc files a few KiB).
bool readFile(const fs::path& path, std::string* out, int* error = nullptr) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (error) *error = errno;
        return false;
    }
    std::string text;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (error) *error = errno;
            ::close(fd);
            return false;
        }
        if (n == 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > (16u << 20)) break; // bound: no cgroup or proc file we read is this large
    }
    ::close(fd);
    *out = std::move(text);
    return true;
}

bool readFileAt(int dirfd, const char* name, std::string* out) {
    const int fd = ::openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::string text;
    char buf[8192];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buf, static_cast<size_t>(n));
        if (text.size() > (16u << 20)) break;
    }
    ::close(fd);
    *out = std::move(text);
    return true;
}

// One write(2) of content (cgroupfs takes one value per write). false: *err = "PATH: why".
bool writeFile(const fs::path& path, const std::string& content, std::string* err) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        *err = "cannot open " + path.string() + ": " + errnoText(errno);
        return false;
    }
    const ssize_t n = ::write(fd, content.data(), content.size());
    const int e = errno;
    ::close(fd);
    if (n != static_cast<ssize_t>(content.size())) {
        *err = "cannot write \"" + content + "\" to " + path.string() + ": " + (n < 0 ? errnoText(e) : "short write");
        return false;
    }
    return true;
}

// "key 1" in cgroup.events.
bool eventFlag(const std::string& events, std::string_view key) {
    std::istringstream in(events);
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() == key.size() + 2 && line.compare(0, key.size(), key) == 0 && line[key.size()] == ' ')
            return line[key.size() + 1] == '1';
    }
    return false;
}

std::set<std::string> words(const std::string& text) {
    std::set<std::string> out;
    std::istringstream in(text);
    std::string w;
    while (in >> w) out.insert(w);
    return out;
}

std::string joined(const std::set<std::string>& items, const char* sep) {
    std::string out;
    for (const std::string& s : items) out += (out.empty() ? "" : sep) + s;
    return out;
}

// Directories below root (not root itself), deepest first.
std::vector<fs::path> subdirectoriesDeepestFirst(const fs::path& root) {
    std::vector<std::pair<size_t, fs::path>> found;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec), end;
         !ec && it != end; it.increment(ec)) {
        std::error_code sec;
        if (it->is_directory(sec) && !it->is_symlink(sec)) found.emplace_back(static_cast<size_t>(it.depth()), it->path());
    }
    std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<fs::path> out;
    out.reserve(found.size());
    for (auto& [depth, p] : found) out.push_back(std::move(p));
    return out;
}

std::vector<pid_t> procsOf(const fs::path& dir) {
    std::vector<pid_t> out;
    std::string text;
    if (!readFile(dir / "cgroup.procs", &text)) return out;
    std::istringstream in(text);
    long v = 0;
    while (in >> v) {
        if (v > 0) out.push_back(static_cast<pid_t>(v));
    }
    return out;
}

// rmdir of dir's subdirectories (deepest first), then of dir. false: *err names the first that
// failed.
bool removeTree(const fs::path& dir, std::string* err) {
    // The usual case, once per attempt: an empty cgroup without children. Walking the directory
    // (a few dozen interface files) costs more than the rmdir itself.
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return true;
    for (const fs::path& sub : subdirectoriesDeepestFirst(dir)) {
        if (::rmdir(sub.c_str()) != 0 && errno != ENOENT) {
            *err = "cannot remove " + sub.string() + ": " + errnoText(errno);
            return false;
        }
    }
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
        const int e = errno;
        *err = "cannot remove " + dir.string() + ": " + errnoText(e) + (e == EBUSY ? " (it still holds processes)" : "");
        return false;
    }
    return true;
}

bool makeDir(const fs::path& dir, std::string* err) {
    if (::mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return true;
    *err = "cannot create cgroup " + dir.string() + ": " + errnoText(errno);
    return false;
}

// Enables in dir/cgroup.subtree_control every controller dir/cgroup.controllers offers, one at a
// time so that one refusal does not hold back the rest; a refusal is logged. Returns what is
// enabled afterwards.
std::set<std::string> enableControllers(const fs::path& dir) {
    std::string text;
    readFile(dir / "cgroup.controllers", &text);
    for (const std::string& c : words(text)) {
        std::string err;
        if (!writeFile(dir / "cgroup.subtree_control", "+" + c, &err))
            spdlog::warn("CGROUP_CONTROLLER_NOT_ENABLED {}: attempts get no {} controller (limits that need it are "
                         "refused at load time)",
                         err, c);
    }
    text.clear();
    readFile(dir / "cgroup.subtree_control", &text);
    return words(text);
}

uint64_t fnv1a64(std::string_view text) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

std::string hex16(uint64_t v) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 15; i >= 0; --i) {
        out[static_cast<size_t>(i)] = kHex[v & 0xf];
        v >>= 4;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Attempt names

bool plainNameChar(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '@' || c == ':' || c == '+' || c == '=' || c == ',';
}

std::string percentEncoded(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size());
    for (unsigned char c : text) {
        if (plainNameChar(c)) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    return out;
}

int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1; // lower case is not what percentEncoded() writes: not canonical
}

// Strict inverse of percentEncoded(): nullopt unless text is exactly what it would write.
std::optional<std::string> percentDecoded(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            const int hi = hexValue(text[i + 1]), lo = hexValue(text[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            const auto decoded = static_cast<unsigned char>(hi * 16 + lo);
            if (plainNameChar(decoded)) return std::nullopt;
            out += static_cast<char>(decoded);
            i += 2;
        } else if (plainNameChar(c)) {
            out += static_cast<char>(c);
        } else {
            return std::nullopt;
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Probe

// mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo.
std::string unescapeMountField(const std::string& field) {
    std::string out;
    for (size_t i = 0; i < field.size(); ++i) {
        if (field[i] == '\\' && i + 3 < field.size()) {
            const std::string oct = field.substr(i + 1, 3);
            if (oct.size() == 3 && std::all_of(oct.begin(), oct.end(), [](char c) { return c >= '0' && c <= '7'; })) {
                out += static_cast<char>(std::stoi(oct, nullptr, 8));
                i += 3;
                continue;
            }
        }
        out += field[i];
    }
    return out;
}

struct MountScan {
    fs::path cgroup2;              // first cgroup2 mount whose root is "/"
    std::set<std::string> v1;      // controllers some cgroup v1 mount owns
};

MountScan scanMountinfo(const std::string& text) {
    MountScan scan;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
        std::istringstream fields(line);
        std::vector<std::string> f;
        std::string w;
        while (fields >> w) f.push_back(w);
        auto dash = std::find(f.begin(), f.end(), "-");
        if (f.size() < 6 || dash == f.end() || dash + 1 == f.end()) continue;
        const std::string& fstype = *(dash + 1);
        const std::string super = dash + 3 < f.end() ? *(dash + 3) : std::string();
        if (fstype == "cgroup2") {
            if (scan.cgroup2.empty() && f[3] == "/") scan.cgroup2 = unescapeMountField(f[4]);
        } else if (fstype == "cgroup") {
            std::istringstream opts(super);
            std::string o;
            while (std::getline(opts, o, ',')) {
                if (o == "memory" || o == "cpu" || o == "pids") scan.v1.insert(o);
                if (o == "blkio") scan.v1.insert("io");
            }
        }
    }
    return scan;
}

bool delegatedBySystemd(const fs::path& dir, const std::string& own) {
    for (const char* name : {"trusted.delegate", "user.delegate"}) {
        char value[8] = {};
        const ssize_t n = ::getxattr(dir.c_str(), name, value, sizeof value - 1);
        if (n == 1 && value[0] == '1') return true;
    }
    const char* invocation = std::getenv("INVOCATION_ID");
    const std::string_view suffix = ".service";
    return invocation && *invocation && own.size() > suffix.size() &&
           own.compare(own.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The directory of cgroup `own` ("/..." from /proc/self/cgroup) below mount.
fs::path cgroupDir(const fs::path& mount, const std::string& own) {
    return own.size() <= 1 ? mount : mount / own.substr(1);
}

std::string controllerHint(const std::set<std::string>& controllers, const std::set<std::string>& v1) {
    std::set<std::string> in_v1, missing;
    for (const char* c : {"memory", "cpu", "pids", "io"}) {
        if (controllers.count(c)) continue;
        (v1.count(c) ? in_v1 : missing).insert(c);
    }
    std::string hint;
    if (!in_v1.empty()) {
        hint = "the " + joined(in_v1, ", ") + " controller" + (in_v1.size() > 1 ? "s belong" : " belongs") +
               " to cgroup v1 on this machine (hybrid hierarchy): boot with systemd.unified_cgroup_hierarchy=1 for a "
               "unified one";
    }
    if (!missing.empty()) {
        if (!hint.empty()) hint += "; ";
        hint += "the " + joined(missing, ", ") + " controller" + (missing.size() > 1 ? "s are" : " is") +
                " not enabled for taskhubd's cgroup: run it under systemd with Delegate=yes, or enable them in the "
                "cgroup.subtree_control of the cgroup it starts in";
    }
    return hint;
}

} // namespace

Probe probe(const fs::path& proc_self) {
    Probe p;
    std::string text;
    if (!readFile(proc_self / "mountinfo", &text)) {
        p.why_not = "cannot read " + (proc_self / "mountinfo").string();
        return p;
    }
    const MountScan scan = scanMountinfo(text);
    p.mount = scan.cgroup2;
    text.clear();
    if (!readFile(proc_self / "cgroup", &text)) {
        p.why_not = "cannot read " + (proc_self / "cgroup").string();
        return p;
    }
    std::istringstream in(text);
    std::string line;
    bool have_own = false;
    while (std::getline(in, line)) {
        if (line.rfind("0::", 0) == 0) {
            p.own = line.substr(3);
            have_own = true;
        }
    }
    if (p.mount.empty()) {
        p.why_not = "no cgroup2 file system is mounted (none in " + (proc_self / "mountinfo").string() + ")";
        p.hint = controllerHint({}, scan.v1);
        return p;
    }
    if (!have_own || p.own.empty() || p.own.front() != '/' || p.own.find("/..") != std::string::npos) {
        p.why_not = "taskhubd's cgroup2 path is not known (no usable \"0::/...\" line in " +
                    (proc_self / "cgroup").string() + ")";
        return p;
    }
    if (p.own.size() > 1 && p.own.back() == '/') p.own.pop_back();
    const fs::path dir = cgroupDir(p.mount, p.own);
    p.delegated = delegatedBySystemd(dir, p.own);
    std::vector<std::string> needed = {"", "cgroup.procs"};
    if (p.delegated) needed.emplace_back("cgroup.subtree_control");
    for (const std::string& name : needed) {
        const fs::path f = name.empty() ? dir : dir / name;
        if (::access(f.c_str(), W_OK) != 0) {
            p.why_not = "the cgroup2 " + f.string() + " is not writable (" + errnoText(errno) + ")";
            break;
        }
    }
    // A child of `own` gets what own's subtree_control enables; a delegated `own` is the base.
    text.clear();
    readFile(dir / (p.delegated ? "cgroup.controllers" : "cgroup.subtree_control"), &text);
    p.controllers = words(text);
    p.hint = controllerHint(p.controllers, scan.v1);
    return p;
}

std::string attemptCgroupName(const AttemptKey& key) {
    std::string name =
        std::to_string(key.attempt) + "." + percentEncoded(key.task_id) + "." + percentEncoded(key.run_id);
    if (name.size() <= 255) return name;
    std::string both = key.task_id;
    both += '\0';
    both += key.run_id;
    return std::to_string(key.attempt) + ".~" + hex16(fnv1a64(both));
}

std::optional<AttemptKey> parseAttemptCgroupName(const std::string& name) {
    const size_t dot1 = name.find('.');
    if (dot1 == std::string::npos || dot1 == 0) return std::nullopt;
    const size_t dot2 = name.find('.', dot1 + 1);
    if (dot2 == std::string::npos || name.find('.', dot2 + 1) != std::string::npos) return std::nullopt;
    AttemptKey key;
    const char* first = name.data();
    const char* last = name.data() + dot1;
    auto [end, ec] = std::from_chars(first, last, key.attempt);
    if (ec != std::errc() || end != last || (dot1 > 1 && name[0] == '0')) return std::nullopt;
    auto task = percentDecoded(std::string_view(name).substr(dot1 + 1, dot2 - dot1 - 1));
    auto run = percentDecoded(std::string_view(name).substr(dot2 + 1));
    if (!task || !run || task->empty()) return std::nullopt;
    key.task_id = std::move(*task);
    key.run_id = std::move(*run);
    return key;
}

std::string subtreeName(const fs::path& state_dir) {
    std::error_code ec;
    std::string text = fs::absolute(state_dir, ec).lexically_normal().string();
    if (ec) text = state_dir.lexically_normal().string();
    while (text.size() > 1 && text.back() == '/') text.pop_back();
    return "taskhub-" + hex16(fnv1a64(text));
}

namespace {

// ---------------------------------------------------------------------------------------------
// AttemptCgroup

class AttemptCgroupImpl final : public AttemptCgroup {
public:
    // memory / io: whether those controllers are enabled for the cgroup (their files exist), so
    // that usage() does not try to open files that cannot be there.
    AttemptCgroupImpl(AttemptKey key, fs::path path, fs::path mount, int fd, bool memory, bool io)
        : key_(std::move(key)), path_(std::move(path)), mount_(std::move(mount)), fd_(fd), memory_(memory), io_(io) {}
    ~AttemptCgroupImpl() override {
        if (fd_ >= 0) ::close(fd_);
    }
    AttemptCgroupImpl(const AttemptCgroupImpl&) = delete;
    AttemptCgroupImpl& operator=(const AttemptCgroupImpl&) = delete;

    static std::unique_ptr<AttemptCgroupImpl> open(AttemptKey key, const fs::path& path, const fs::path& mount,
                                                   std::string* err, bool memory = true, bool io = true) {
        const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
            *err = "cannot open cgroup " + path.string() + ": " + errnoText(errno);
            return nullptr;
        }
        return std::make_unique<AttemptCgroupImpl>(std::move(key), path, mount, fd, memory, io);
    }

    const AttemptKey& key() const override { return key_; }
    const fs::path& path() const override { return path_; }
    std::string relativePath() const override { return "/" + path_.lexically_relative(mount_).string(); }
    int fd() const override { return fd_; }

    bool populated() const override {
        std::string events;
        // Unreadable (removed): nothing can be in it.
        return readFileAt(fd_, "cgroup.events", &events) && eventFlag(events, "populated");
    }
    bool frozen() const override {
        std::string events;
        return readFileAt(fd_, "cgroup.events", &events) && eventFlag(events, "frozen");
    }

    std::vector<pid_t> pids() const override {
        std::vector<pid_t> out = procsOf(path_);
        for (const fs::path& sub : subdirectoriesDeepestFirst(path_)) {
            std::vector<pid_t> more = procsOf(sub);
            out.insert(out.end(), more.begin(), more.end());
        }
        return out;
    }

    int signalAll(int sig) const override {
        int sent = 0;
        for (pid_t pid : pids()) {
            if (::kill(pid, sig) == 0) ++sent;
        }
        return sent;
    }

    bool kill(std::string* err) override {
        const int fd = ::openat(fd_, "cgroup.kill", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            const ssize_t n = ::write(fd, "1", 1);
            const int e = errno;
            ::close(fd);
            if (n == 1) return true;
            *err = "cannot write \"1\" to " + (path_ / "cgroup.kill").string() + ": " + errnoText(e);
            return false;
        }
        if (errno != ENOENT) {
            *err = "cannot open " + (path_ / "cgroup.kill").string() + ": " + errnoText(errno);
            return false;
        }
        // Before Linux 5.14: SIGKILL what is there until nothing new appears (a fork racing the
        // loop is caught by the next round).
        for (int round = 0; round < 1000; ++round) {
            if (signalAll(SIGKILL) == 0) return true;
        }
        *err = "processes in " + path_.string() + " kept appearing after 1000 rounds of SIGKILL";
        return false;
    }

    bool freeze(bool on, std::string* err) override {
        return writeFile(path_ / "cgroup.freeze", on ? "1" : "0", err);
    }

    Usage usage() const override {
        Usage u;
        u.source = Usage::Source::Cgroup;
        std::string text;
        if (readFileAt(fd_, "cpu.stat", &text)) parseCpuStat(text, &u);
        uint64_t peak = 0;
        if (memory_ && readFileAt(fd_, "memory.peak", &text)) {
            const char* first = text.data();
            if (std::from_chars(first, first + text.size(), peak).ec == std::errc()) u.memory_peak = peak;
        }
        if (memory_ && readFileAt(fd_, "memory.events", &text)) parseMemoryEvents(text, &u);
        if (io_ && readFileAt(fd_, "io.stat", &text)) parseIoStat(text, &u);
        return u;
    }

    bool remove(std::string* err) override { return removeTree(path_, err); }

private:
    AttemptKey key_;
    fs::path path_;
    fs::path mount_;
    int fd_;
    bool memory_, io_;
};

// ---------------------------------------------------------------------------------------------
// Manager

bool validPluginName(const std::string& name) {
    return !name.empty() && name.size() <= 200 && name != "." && name != ".." && name.find('/') == std::string::npos &&
           name.find('\0') == std::string::npos && name.find('\n') == std::string::npos;
}

class ManagerImpl final : public Manager {
public:
    ManagerImpl(asio::io_context& io, Probe p, std::set<std::string> v1, fs::path base, bool moved)
        : io_(io), probe_(std::move(p)), v1_(std::move(v1)), base_(std::move(base)), moved_(moved), inotify_(io) {}

    ~ManagerImpl() override {
        inotify_.stop();
        for (auto& [id, w] : waiters_) {
            if (w.timer) w.timer->cancel();
        }
    }

    bool start(std::string* why) {
        // On failure, the directories made here are removed again (not those a previous daemon
        // left: they may hold its attempts, for recovery).
        std::vector<fs::path> made;
        auto undo = [&] {
            for (auto it = made.rbegin(); it != made.rend(); ++it) ::rmdir(it->c_str());
        };
        for (const char* sub : {"", "daemon", "tasks", "runners"}) {
            const fs::path dir = *sub ? base_ / sub : base_;
            if (::mkdir(dir.c_str(), 0755) == 0) {
                made.push_back(dir);
            } else if (errno != EEXIST) {
                *why = "cannot create cgroup " + dir.string() + ": " + errnoText(errno);
                undo();
                return false;
            }
        }
        if (moved_) {
            if (!writeFile(base_ / "daemon" / "cgroup.procs", std::to_string(::getpid()), why)) {
                *why = "cannot move taskhubd into its cgroup: " + *why;
                undo();
                return false;
            }
        }
        enableControllers(base_);
        controllers_ = enableControllers(base_ / "tasks");
        enableControllers(base_ / "runners");
        std::string err;
        if (inotify_.open(&err)) {
            inotify_.start({.event = [this](const inotify_event& ev) { onEvent(ev.wd); },
                            .overflow = [this] { recheckAll(); },
                            .batch_done = {}});
        } else {
            spdlog::warn("CGROUP_WATCH_FAILED {}: waits for attempt cgroups to empty or freeze poll every {} ms", err,
                         kPoll.count());
        }
        return true;
    }

    Support support() const override {
        Support s;
        s.cgroups = true;
        s.controllers = controllers_;
        s.hint = controllerHint(controllers_, v1_);
        return s;
    }
    const fs::path& mount() const override { return probe_.mount; }
    const fs::path& base() const override { return base_; }
    std::string describe() const override {
        return base_.string() + " (controllers: " + (controllers_.empty() ? "none" : joined(controllers_, " ")) +
               (probe_.delegated ? "; delegated by systemd" : "") + ")";
    }

    std::unique_ptr<AttemptCgroup> createAttempt(const AttemptKey& key, const Limits& limits,
                                                 const std::string& runner_plugin, std::string* err) override {
        fs::path parent = base_ / "tasks";
        std::optional<std::pair<uid_t, gid_t>> owner;
        if (!runner_plugin.empty()) {
            if (!validPluginName(runner_plugin)) {
                *err = "plugin name \"" + runner_plugin + "\" cannot name a cgroup";
                return nullptr;
            }
            const fs::path plugin_dir = base_ / "runners" / runner_plugin;
            parent = plugin_dir / "tasks";
            std::error_code ec;
            const bool fresh = !fs::exists(parent, ec);
            if (!makeDir(plugin_dir, err) || !makeDir(parent, err)) return nullptr;
            if (fresh) { // normally runnerCgroup() made them
                enableControllers(plugin_dir);
                enableControllers(parent);
            }
            struct stat st {};
            if (::stat((parent / "cgroup.procs").c_str(), &st) == 0) owner = {st.st_uid, st.st_gid};
        }
        const fs::path dir = parent / attemptCgroupName(key);
        bool reused = false;
        if (::mkdir(dir.c_str(), 0755) != 0) {
            if (errno != EEXIST) {
                *err = "cannot create cgroup " + dir.string() + ": " + errnoText(errno);
                return nullptr;
            }
            reused = true;
        }
        auto cg = AttemptCgroupImpl::open(key, dir, probe_.mount, err, controllers_.count("memory") > 0,
                                          controllers_.count("io") > 0);
        if (!cg) return nullptr;
        if (reused && cg->populated()) {
            std::string kill_err;
            if (!cg->kill(&kill_err)) spdlog::warn("CGROUP_REUSE_KILL_FAILED {}", kill_err);
        }
        for (const auto& [file, content] : limitFiles(limits)) {
            if (!writeFile(dir / file, content, err)) {
                std::string ignored;
                if (!reused) removeTree(dir, &ignored);
                return nullptr;
            }
        }
        if (owner && ::chown((dir / "cgroup.procs").c_str(), owner->first, owner->second) != 0) {
            *err = "cannot hand " + (dir / "cgroup.procs").string() + " to uid " + std::to_string(owner->first) + ": " +
                   errnoText(errno);
            std::string ignored;
            if (!reused) removeTree(dir, &ignored);
            return nullptr;
        }
        return cg;
    }

    std::optional<fs::path> runnerCgroup(const std::string& plugin, uid_t uid, gid_t gid, std::string* err) override {
        if (!validPluginName(plugin)) {
            *err = "plugin name \"" + plugin + "\" cannot name a cgroup";
            return std::nullopt;
        }
        const fs::path plugin_dir = base_ / "runners" / plugin;
        for (const fs::path& d : {plugin_dir, plugin_dir / "runner", plugin_dir / "tasks"}) {
            if (!makeDir(d, err)) return std::nullopt;
        }
        enableControllers(plugin_dir);
        enableControllers(plugin_dir / "tasks");
        for (const fs::path& d : {plugin_dir, plugin_dir / "runner", plugin_dir / "tasks"}) {
            const fs::path procs = d / "cgroup.procs";
            if (::chown(procs.c_str(), uid, gid) != 0) {
                *err = "cannot hand " + procs.string() + " to uid " + std::to_string(uid) + ": " + errnoText(errno);
                return std::nullopt;
            }
        }
        return plugin_dir / "runner";
    }

    void whenEmpty(AttemptCgroup& cg, std::function<void()> done) override {
        Waiter w;
        w.cg = &cg;
        w.kind = Kind::Empty;
        w.empty_done = std::move(done);
        add(std::move(w));
    }

    void whenFrozen(AttemptCgroup& cg, std::chrono::milliseconds timeout, std::function<void(bool)> done) override {
        Waiter w;
        w.cg = &cg;
        w.kind = Kind::Frozen;
        w.frozen_done = std::move(done);
        const uint64_t id = add(std::move(w));
        auto it = waiters_.find(id);
        if (it == waiters_.end()) return;
        it->second.timer = std::make_shared<asio::steady_timer>(io_, timeout);
        it->second.timer->async_wait([this, id](const boost::system::error_code& ec) {
            if (ec) return;
            auto found = waiters_.find(id);
            if (found == waiters_.end()) return;
            auto timed_out = std::move(found->second.frozen_done);
            erase(found);
            if (timed_out) timed_out(false);
        });
    }

    void cancelWaits(AttemptCgroup& cg) override {
        for (auto it = waiters_.begin(); it != waiters_.end();) {
            if (it->second.cg == &cg) {
                it = erase(it);
            } else {
                ++it;
            }
        }
    }

    std::vector<std::unique_ptr<AttemptCgroup>> existingAttempts() override {
        std::vector<fs::path> parents = {base_ / "tasks"};
        std::error_code ec;
        for (fs::directory_iterator it(base_ / "runners", ec), end; !ec && it != end; it.increment(ec)) {
            std::error_code sec;
            if (it->is_directory(sec)) parents.push_back(it->path() / "tasks");
        }
        std::vector<std::unique_ptr<AttemptCgroup>> out;
        for (const fs::path& parent : parents) {
            std::error_code iec;
            for (fs::directory_iterator it(parent, iec), end; !iec && it != end; it.increment(iec)) {
                std::error_code sec;
                if (!it->is_directory(sec)) continue;
                AttemptKey key = parseAttemptCgroupName(it->path().filename().string()).value_or(AttemptKey{});
                std::string err;
                auto cg = AttemptCgroupImpl::open(std::move(key), it->path(), probe_.mount, &err);
                if (cg) {
                    out.push_back(std::move(cg));
                } else {
                    spdlog::warn("CGROUP_LEFTOVER_UNREADABLE {}", err);
                }
            }
        }
        return out;
    }

    void shutdown() override {
        if (shut_down_) return;
        shut_down_ = true;
        inotify_.stop();
        for (auto& [id, w] : waiters_) {
            if (w.timer) w.timer->cancel();
        }
        waiters_.clear();
        watches_.clear();
        for (auto& cg : existingAttempts()) {
            if (cg->populated()) continue;
            std::string ignored;
            cg->remove(&ignored);
        }
        if (probe_.delegated) return; // systemd owns the base; it removes it when the unit stops
        if (moved_) {
            std::string err;
            const fs::path own = cgroupDir(probe_.mount, probe_.own);
            if (!writeFile(own / "cgroup.procs", std::to_string(::getpid()), &err)) {
                spdlog::warn("CGROUP_SUBTREE_LEFT taskhubd could not move back to {} ({}); {} stays", own.string(), err,
                             base_.string());
                return;
            }
        }
        std::string err;
        if (!removeTree(base_, &err))
            spdlog::warn("CGROUP_SUBTREE_LEFT {} stays: {} (processes kept with leftovers = \"keep\" still run there)",
                         base_.string(), err);
    }

private:
    enum class Kind { Empty, Frozen };
    struct Waiter {
        AttemptCgroup* cg = nullptr;
        Kind kind = Kind::Empty;
        std::function<void()> empty_done;
        std::function<void(bool)> frozen_done;
        int wd = -1;                               // inotify watch of cg's cgroup.events; -1: polled
        std::shared_ptr<asio::steady_timer> timer; // whenFrozen's timeout
        std::shared_ptr<asio::steady_timer> poll;  // without a watch
    };
    static constexpr std::chrono::milliseconds kPoll{50};

    bool satisfied(const Waiter& w) const { return w.kind == Kind::Empty ? !w.cg->populated() : w.cg->frozen(); }

    uint64_t add(Waiter w) {
        const uint64_t id = next_id_++;
        std::string err;
        if (inotify_.isOpen()) {
            w.wd = inotify_.addWatch(w.cg->path() / "cgroup.events", IN_MODIFY, &err);
            if (w.wd < 0) spdlog::warn("CGROUP_WATCH_FAILED {}: polling every {} ms instead", err, kPoll.count());
        }
        if (w.wd >= 0) watches_[w.wd].insert(id);
        waiters_.emplace(id, std::move(w));
        if (waiters_.at(id).wd < 0) schedulePoll(id);
        // Re-check after arming: a change between the caller's look and the watch is not lost.
        asio::post(io_, [this, alive = std::weak_ptr<int>(alive_), id] {
            if (alive.lock()) check(id);
        });
        return id;
    }

    void schedulePoll(uint64_t id) {
        auto it = waiters_.find(id);
        if (it == waiters_.end()) return;
        if (!it->second.poll) it->second.poll = std::make_shared<asio::steady_timer>(io_);
        it->second.poll->expires_after(kPoll);
        it->second.poll->async_wait([this, id](const boost::system::error_code& ec) {
            if (ec) return;
            if (!check(id)) schedulePoll(id);
        });
    }

    // Completes waiter id when its condition holds; true when it is gone (completed or cancelled).
    bool check(uint64_t id) {
        auto it = waiters_.find(id);
        if (it == waiters_.end()) return true;
        if (!satisfied(it->second)) return false;
        Waiter w = std::move(it->second);
        erase(it);
        if (w.kind == Kind::Empty) {
            if (w.empty_done) w.empty_done();
        } else if (w.frozen_done) {
            w.frozen_done(true);
        }
        return true;
    }

    std::map<uint64_t, Waiter>::iterator erase(std::map<uint64_t, Waiter>::iterator it) {
        Waiter& w = it->second;
        if (w.timer) w.timer->cancel();
        if (w.poll) w.poll->cancel();
        if (w.wd >= 0) {
            auto watch = watches_.find(w.wd);
            if (watch != watches_.end()) {
                watch->second.erase(it->first);
                if (watch->second.empty()) {
                    inotify_.removeWatch(w.wd);
                    watches_.erase(watch);
                }
            }
        }
        return waiters_.erase(it);
    }

    void onEvent(int wd) {
        auto watch = watches_.find(wd);
        if (watch == watches_.end()) return;
        const std::vector<uint64_t> ids(watch->second.begin(), watch->second.end());
        for (uint64_t id : ids) check(id); // a callback may add or cancel waiters: ids are looked up again
    }

    void recheckAll() {
        std::vector<uint64_t> ids;
        for (const auto& [id, w] : waiters_) ids.push_back(id);
        for (uint64_t id : ids) check(id);
    }

    asio::io_context& io_;
    Probe probe_;
    std::set<std::string> v1_; // controllers cgroup v1 owns (for Support::hint)
    fs::path base_;
    bool moved_;
    bool shut_down_ = false;
    std::set<std::string> controllers_;
    common::Inotify inotify_;
    std::map<uint64_t, Waiter> waiters_;
    std::map<int, std::set<uint64_t>> watches_;
    uint64_t next_id_ = 1;
    // Posted handlers hold a weak reference: one that runs after the Manager is gone does nothing.
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);
};

} // namespace

std::unique_ptr<Manager> Manager::setup(asio::io_context& io, const Options& options, std::string* why) {
    if (options.containment == Containment::ProcessGroup) {
        *why = "[daemon] containment = \"process-group\" in taskhub.toml";
        return nullptr;
    }
    Probe p = probe(options.proc_self);
    if (!p.why_not.empty()) {
        *why = p.why_not;
        return nullptr;
    }
    const fs::path own = cgroupDir(p.mount, p.own);
    const fs::path base = p.delegated ? own : own / subtreeName(options.state_dir);
    std::string mountinfo;
    readFile(options.proc_self / "mountinfo", &mountinfo);
    auto manager = std::make_unique<ManagerImpl>(io, std::move(p), scanMountinfo(mountinfo).v1, base, options.move_self);
    if (!manager->start(why)) return nullptr;
    return manager;
}

} // namespace taskhub::cgroup

// A scratch cgroup v2 for unit tests that start processes in a real cgroup: created below the
// cgroup2 mount (found in /proc/self/mountinfo), killed (cgroup.kill), emptied and removed on
// destruction, also when the test failed half-way. Tests skip themselves when usable() is false
// (not root, no cgroup2 mount, or the mount not writable), saying why().
//
// Header-only; the test process should be a child subreaper (PR_SET_CHILD_SUBREAPER) so that the
// processes it kills are reaped here, not left as zombies that /proc still lists.
#ifndef TASKHUB_TESTS_UNIT_SCRATCH_CGROUP_H
#define TASKHUB_TESTS_UNIT_SCRATCH_CGROUP_H

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace taskhub::tests {

// The cgroup2 mount point from /proc/self/mountinfo; empty when there is none.
inline std::filesystem::path cgroup2Mount() {
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
        size_t sep = line.find(" - ");
        if (sep == std::string::npos) continue;
        std::istringstream tail(line.substr(sep + 3));
        std::string fstype;
        tail >> fstype;
        if (fstype != "cgroup2") continue;
        std::istringstream head(line.substr(0, sep));
        std::string field;
        for (int i = 0; i < 5 && head >> field; ++i) {
        }
        return field; // the fifth field: the mount point
    }
    return {};
}

// The cgroup2 path ("/a/b") of a process from /proc/PID/cgroup; empty when it is gone.
inline std::string cgroupOf(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    }
    return {};
}

class ScratchCgroup {
public:
    explicit ScratchCgroup(const std::string& tag) {
        if (::geteuid() != 0) {
            why_ = "creating cgroups needs root";
            return;
        }
        mount_ = cgroup2Mount();
        if (mount_.empty()) {
            why_ = "no cgroup2 mount in /proc/self/mountinfo";
            return;
        }
        static std::atomic<int> counter{0};
        relative_ = "taskhub-unit-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
        path_ = mount_ / relative_;
        if (::mkdir(path_.c_str(), 0755) != 0) {
            why_ = "cannot create " + path_.string() + ": " + std::strerror(errno);
            path_.clear();
            return;
        }
        fd_ = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd_ < 0) why_ = "cannot open " + path_.string() + ": " + std::strerror(errno);
    }
    ~ScratchCgroup() {
        if (path_.empty()) return;
        // Everything below too (cgroup.kill is recursive), then wait for the kernel to empty it.
        std::ofstream(path_ / "cgroup.kill") << "1";
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (populated() && std::chrono::steady_clock::now() < deadline) {
            while (::waitpid(-1, nullptr, WNOHANG) > 0) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        if (fd_ >= 0) ::close(fd_);
        removeTree(path_);
    }
    ScratchCgroup(const ScratchCgroup&) = delete;
    ScratchCgroup& operator=(const ScratchCgroup&) = delete;

    bool usable() const { return fd_ >= 0; }
    const std::string& why() const { return why_; }
    int fd() const { return fd_; }
    const std::filesystem::path& path() const { return path_; }
    const std::filesystem::path& mount() const { return mount_; }
    // From the mount, without a leading '/'.
    const std::string& relative() const { return relative_; }
    // As /proc/PID/cgroup names it.
    std::string procName() const { return "/" + relative_; }

    bool populated() const {
        std::ifstream in(path_ / "cgroup.events");
        std::string key, value;
        while (in >> key >> value) {
            if (key == "populated") return value == "1";
        }
        return false;
    }

private:
    static void removeTree(const std::filesystem::path& dir) {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
            if (entry.is_directory(ec) && !entry.is_symlink(ec)) removeTree(entry.path());
        }
        ::rmdir(dir.c_str());
    }

    std::filesystem::path mount_, path_;
    std::string relative_, why_;
    int fd_ = -1;
};

} // namespace taskhub::tests

#endif // TASKHUB_TESTS_UNIT_SCRATCH_CGROUP_H

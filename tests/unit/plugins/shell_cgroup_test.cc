// The shell plugin with a cgroup (ABI 1.4 th_task.cgroup_fd, TH_CAP_CGROUP): the child starts
// inside the attempt's cgroup (clone3 CLONE_INTO_CGROUP, or the fallback that writes cgroup.procs
// in the child), so that nothing it forks, setsid or double-forked, is outside it; cancel ends the
// whole cgroup; and the rusage of the main process comes back in th_result.
//
// The tests that need a real cgroup2 run as root and skip otherwise (tests/unit/scratch_cgroup.h).
#include "fake_host.h"
#include "scratch_cgroup.h"

#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using taskhub::tests::FakeHost;
using taskhub::tests::LoadedPlugin;
using taskhub::tests::ScratchCgroup;
using taskhub::tests::TaskSpec;

namespace {

const LoadedPlugin& shellPlugin() {
    static const LoadedPlugin plugin(TASKHUB_SHELL_PLUGIN_PATH);
    return plugin;
}

// The command line of a process, arguments separated by spaces; empty when it is gone (or a
// zombie).
std::string cmdline(pid_t pid) {
    // read(2), not a stream: a process that exits while it is read (other tests run beside this
    // one) makes the read fail with ESRCH, which must read as "gone", not throw.
    std::string s;
    int fd = ::open(("/proc/" + std::to_string(pid) + "/cmdline").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return s;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<size_t>(n));
    ::close(fd);
    for (char& c : s)
        if (c == '\0') c = ' ';
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s;
}

// Live processes whose command line is one of `wanted`, by command line.
std::map<std::string, pid_t> findProcesses(const std::vector<std::string>& wanted) {
    std::map<std::string, pid_t> found;
    DIR* d = ::opendir("/proc");
    REQUIRE(d != nullptr);
    while (const dirent* e = ::readdir(d)) {
        char* end = nullptr;
        long pid = std::strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end != '\0') continue;
        const std::string line = cmdline(static_cast<pid_t>(pid));
        for (const std::string& w : wanted)
            if (line == w) found[w] = static_cast<pid_t>(pid);
    }
    ::closedir(d);
    return found;
}

void reapOrphans() {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
}

// The sleeps of a task that escapes a process group every way a shell can: setsid in the
// background, a double fork with setsid, one that also ignores SIGTERM, and the main one.
struct EscapingTask {
    std::vector<std::string> sleeps;
    std::string command;
    EscapingTask() {
        // Unique per test process, so that parallel runs do not see each other's sleeps.
        const std::string tag = "." + std::to_string(::getpid());
        for (const char* s : {"300", "301", "303", "302"}) sleeps.push_back(std::string("sleep ") + s + tag);
        command = "setsid " + sleeps[0] + " & (setsid " + sleeps[1] + " &) ; (trap '' TERM; setsid " + sleeps[2] +
                  " &) ; " + sleeps[3];
    }
};

// Runs the loop until every sleep of the task runs; returns their pids.
std::map<std::string, pid_t> waitForSleeps(FakeHost& host, const EscapingTask& task) {
    const auto deadline = FakeHost::Clock::now() + 5s;
    for (;;) {
        auto found = findProcesses(task.sleeps);
        if (found.size() == task.sleeps.size()) return found;
        if (FakeHost::Clock::now() >= deadline) {
            FAIL("only " << found.size() << " of the task's " << task.sleeps.size() << " sleeps started");
        }
        host.runFor(20ms);
    }
}

bool allGone(const std::map<std::string, pid_t>& pids, std::chrono::milliseconds timeout) {
    const auto deadline = FakeHost::Clock::now() + timeout;
    for (;;) {
        reapOrphans();
        bool any = false;
        for (const auto& [line, pid] : pids)
            if (cmdline(pid) == line) any = true;
        if (!any) return true;
        if (FakeHost::Clock::now() >= deadline) return false;
        ::usleep(10'000);
    }
}

// Starts the escaping task in cg, checks that every process of it is in cg, cancels it and
// checks that nothing is left. kill_grace is long: only the cgroup.kill sent when the main
// process exits can end the sleep that ignores SIGTERM in time.
void runEscapingTaskIn(const ScratchCgroup& cg) {
    REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    FakeHost host(shellPlugin(), R"({"kill_grace":"60s"})");
    EscapingTask task;
    TaskSpec spec;
    spec.params_json = R"({"command":")" + task.command + R"("})";
    spec.cgroup_fd = cg.fd();
    std::string error;
    REQUIRE(host.execute(1, spec, &error) == TH_OK);
    INFO(error);
    auto pids = waitForSleeps(host, task);
    for (const auto& [line, pid] : pids) {
        INFO(line << " (pid " << pid << ")");
        CHECK(taskhub::tests::cgroupOf(pid) == cg.procName());
    }

    REQUIRE(host.cancel(1) == TH_OK);
    auto done = host.waitFor(1, 20s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_CANCELLED);
    CHECK(allGone(pids, 5s));
    const auto deadline = FakeHost::Clock::now() + 5s;
    while (cg.populated() && FakeHost::Clock::now() < deadline) {
        reapOrphans();
        ::usleep(10'000);
    }
    CHECK_FALSE(cg.populated());
    CHECK(host.pendingWatches() == 0);
    CHECK(host.pendingTimers() == 0);
}

// Sets TASKHUB_SHELL_TEST_NO_CLONE3 (the plugin's test hook, read when an instance is created)
// for its lifetime.
class ForceFallback {
public:
    ForceFallback() { ::setenv("TASKHUB_SHELL_TEST_NO_CLONE3", "1", 1); }
    ~ForceFallback() { ::unsetenv("TASKHUB_SHELL_TEST_NO_CLONE3"); }
};

} // namespace

TEST_CASE("shell cgroup: a setsid and double-forking task starts in its cgroup (clone3) and cancel "
          "leaves nothing",
          "[shell][cgroup]") {
    ScratchCgroup cg("shell");
    if (!cg.usable()) {
        WARN("skipped: " << cg.why());
        return;
    }
    runEscapingTaskIn(cg);
}

TEST_CASE("shell cgroup: the fallback (the child writes cgroup.procs) gives the same", "[shell][cgroup]") {
    ScratchCgroup cg("shell-fallback");
    if (!cg.usable()) {
        WARN("skipped: " << cg.why());
        return;
    }
    ForceFallback fallback;
    runEscapingTaskIn(cg);
}

TEST_CASE("shell cgroup: a descriptor that is no cgroup refuses the spawn, saying which step failed",
          "[shell][cgroup]") {
    // A plain directory: clone3 refuses it as a cgroup; the fallback cannot open its cgroup.procs.
    char dir_template[] = "/tmp/taskhub-not-a-cgroup-XXXXXX";
    REQUIRE(::mkdtemp(dir_template) != nullptr);
    int dir = ::open(dir_template, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    REQUIRE(dir >= 0);
    TaskSpec spec;
    spec.params_json = R"({"command":"touch /tmp/taskhub-must-not-exist-$$"})";
    spec.cgroup_fd = dir;
    std::string error;
    SECTION("clone3") {
        FakeHost host(shellPlugin());
        CHECK(host.execute(1, spec, &error) != TH_OK);
        INFO(error);
        // Either way the spawn fails and names the step; never runs outside the cgroup.
        CHECK((error.find("clone3 into the attempt's cgroup") != std::string::npos ||
               error.find("cgroup.procs") != std::string::npos));
    }
    SECTION("fallback") {
        ForceFallback fallback;
        FakeHost host(shellPlugin());
        CHECK(host.execute(1, spec, &error) != TH_OK);
        CHECK(error.find("cannot enter the attempt's cgroup (writing \"0\" to its cgroup.procs)") !=
              std::string::npos);
    }
    ::close(dir);
    ::rmdir(dir_template);
}

TEST_CASE("shell: the rusage of the main process comes back in th_result (ABI 1.4)", "[shell]") {
    FakeHost host(shellPlugin());
    TaskSpec spec;
    // About 0.1 s of CPU in the shell itself.
    spec.params_json = R"({"command":"i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"})";
    REQUIRE(host.execute(1, spec) == TH_OK);
    auto done = host.waitFor(1, 30s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    REQUIRE(done->cpu_user_us);
    REQUIRE(done->cpu_system_us);
    REQUIRE(done->max_rss_kb);
    CHECK(*done->cpu_user_us + *done->cpu_system_us > 0);
    CHECK(*done->max_rss_kb > 0);
}

TEST_CASE("shell cgroup: rusage is reported for a task in a cgroup too", "[shell][cgroup]") {
    ScratchCgroup cg("shell-rusage");
    if (!cg.usable()) {
        WARN("skipped: " << cg.why());
        return;
    }
    FakeHost host(shellPlugin());
    TaskSpec spec;
    spec.params_json = R"({"command":"i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"})";
    spec.cgroup_fd = cg.fd();
    REQUIRE(host.execute(1, spec) == TH_OK);
    auto done = host.waitFor(1, 30s);
    REQUIRE(done);
    CHECK(done->outcome == TH_OUTCOME_SUCCEEDED);
    REQUIRE(done->cpu_user_us);
    CHECK(*done->cpu_user_us + *done->cpu_system_us > 0);
    // cpu.stat of the cgroup saw the same work.
    std::ifstream stat(cg.path() / "cpu.stat");
    std::string key;
    uint64_t value = 0, usage = 0;
    while (stat >> key >> value)
        if (key == "usage_usec") usage = value;
    CHECK(usage > 0);
}

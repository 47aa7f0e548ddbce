// cgroup/cgroup.h: attempt names, probe() against fake proc files, and (as root with a writable
// cgroup2) a real Manager: attempts, kill, freeze, usage, removal, runner cgroups.
#include "cgroup/cgroup.h"

#include "test_support.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <ctime>
#include <fstream>
#include <thread>

using namespace taskhub::cgroup;
namespace fs = std::filesystem;
using taskhub::testing::TempDir;

namespace {

void requireRoundTrip(const AttemptKey& key) {
    const std::string name = attemptCgroupName(key);
    INFO("run id \"" << key.run_id << "\" task \"" << key.task_id << "\" -> " << name);
    CHECK(name.size() <= 255);
    CHECK(name.find('/') == std::string::npos);
    CHECK(name.find('\n') == std::string::npos);
    CHECK(name != ".");
    CHECK(name != "..");
    auto back = parseAttemptCgroupName(name);
    REQUIRE(back);
    CHECK(*back == key);
}

} // namespace

TEST_CASE("attempt cgroup names round-trip every run id, however hostile") {
    requireRoundTrip({"nightly@2026-12-07T02:00:00Z", "extract", 1});
    requireRoundTrip({"wf@file-0123abcdef0123abcdef", "load_db-2", 12});
    requireRoundTrip({"../..", "t", 1});
    requireRoundTrip({".", "t", 1});
    requireRoundTrip({"..", "t", 1});
    requireRoundTrip({"a/b/../../etc", "t", 3});
    requireRoundTrip({"100%", "t", 1});
    requireRoundTrip({"%41%2E", "t", 1});
    requireRoundTrip({"with space\tand\nnewline", "t", 1});
    requireRoundTrip({"caf\xc3\xa9 \xe2\x98\x83", "t", 1});
    requireRoundTrip({std::string("nul\0inside", 10), "t", 1});
    requireRoundTrip({"", "t", 0});
    requireRoundTrip({"a.b.c", "t", 4294967295u});
    requireRoundTrip({std::string(41, '.'), std::string(128, 'x'), 7}); // "7." + 128 + "." + 123: 255 bytes
}

TEST_CASE("attempt cgroup names of different attempts differ") {
    // '.' separates the fields and is always encoded inside them.
    CHECK(attemptCgroupName({"b.c", "a", 1}) != attemptCgroupName({"c", "a.b", 1}));
    CHECK(attemptCgroupName({"r", "t", 1}) != attemptCgroupName({"r", "t", 11}));
    CHECK(attemptCgroupName({"%2E", "t", 1}) != attemptCgroupName({".", "t", 1}));
    CHECK(attemptCgroupName({"nightly@2026-12-07T02:00:00Z", "extract", 2}) == "2.extract.nightly@2026-12-07T02:00:00Z");
}

TEST_CASE("an attempt name over 255 bytes becomes a hashed name that identifies no attempt") {
    const AttemptKey key{std::string(300, 'r'), "task", 2};
    const std::string name = attemptCgroupName(key);
    CHECK(name.size() <= 255);
    CHECK(name.rfind("2.~", 0) == 0);
    CHECK(name.size() == 3 + 16);
    CHECK_FALSE(parseAttemptCgroupName(name));
    // The hash tells long run ids apart.
    CHECK(attemptCgroupName({std::string(300, 'r') + "x", "task", 2}) != name);
    // Percent-encoding can push a short run id over the limit too.
    const std::string encoded_long = attemptCgroupName({std::string(100, '/'), "t", 1});
    CHECK(encoded_long.size() <= 255);
    CHECK_FALSE(parseAttemptCgroupName(encoded_long));
}

TEST_CASE("parseAttemptCgroupName accepts only what attemptCgroupName writes") {
    CHECK_FALSE(parseAttemptCgroupName(""));
    CHECK_FALSE(parseAttemptCgroupName("."));
    CHECK_FALSE(parseAttemptCgroupName(".."));
    CHECK_FALSE(parseAttemptCgroupName("1.t"));          // no run id field
    CHECK_FALSE(parseAttemptCgroupName("x.t.r"));        // attempt not a number
    CHECK_FALSE(parseAttemptCgroupName("01.t.r"));       // leading zero
    CHECK_FALSE(parseAttemptCgroupName("-1.t.r"));
    CHECK_FALSE(parseAttemptCgroupName("99999999999.t.r")); // over uint32
    CHECK_FALSE(parseAttemptCgroupName("1..r"));         // empty task id
    CHECK_FALSE(parseAttemptCgroupName("1.t.r.x"));      // a raw '.' inside a field
    CHECK_FALSE(parseAttemptCgroupName("1.t.r%2e"));     // lower-case hex is not written
    CHECK_FALSE(parseAttemptCgroupName("1.t.r%41"));     // 'A' is never encoded
    CHECK_FALSE(parseAttemptCgroupName("1.t.r%4"));      // truncated escape
    CHECK_FALSE(parseAttemptCgroupName("1.t.r x"));      // raw space
    CHECK_FALSE(parseAttemptCgroupName("daemon"));
    CHECK_FALSE(parseAttemptCgroupName("cgroup.procs"));
    auto key = parseAttemptCgroupName("3.build.r%2F1");
    REQUIRE(key);
    CHECK(key->attempt == 3);
    CHECK(key->task_id == "build");
    CHECK(key->run_id == "r/1");
}

TEST_CASE("subtreeName is the FNV-1a hash of the normalised absolute state directory") {
    CHECK(subtreeName("/var/lib/taskhub") == "taskhub-296f37be03868ad2"); // the harness computes the same
    CHECK(subtreeName("/var/lib/taskhub/") == subtreeName("/var/lib/taskhub"));
    CHECK(subtreeName("/var/lib/./taskhub") == subtreeName("/var/lib/taskhub"));
    CHECK(subtreeName("/var/lib/other") != subtreeName("/var/lib/taskhub"));
}

namespace {

// A fake /proc/self and a fake cgroup2 mount inside a temporary directory.
struct FakeMachine {
    TempDir dir{"th-cgroup-probe"};
    fs::path proc() const { return dir.path / "proc"; }
    fs::path mount() const { return dir.path / "cg2"; }

    // mountinfo of a hybrid machine (v1 owns cpu, memory, pids, blkio) with cgroup2 at mount().
    void hybrid() const {
        dir.write("proc/mountinfo",
                  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                  "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                  "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                  "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
                  "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
                  "37 30 0:34 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n"
                  "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
                  "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
                  "40 30 0:37 / " + mount().string() + " rw,relatime - cgroup2 cgroup2 rw\n");
    }
    // mountinfo of a unified machine: cgroup2 only, with optional fields before the separator.
    void unified() const {
        dir.write("proc/mountinfo",
                  "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                  "25 22 0:22 / " + mount().string() +
                      " rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n");
    }
    // A cgroup directory below the fake mount with the given controller files.
    void cgroupDir(const std::string& rel, const std::string& controllers, const std::string& subtree) const {
        dir.write("cg2" + rel + "/cgroup.controllers", controllers + "\n");
        dir.write("cg2" + rel + "/cgroup.subtree_control", subtree + "\n");
        dir.write("cg2" + rel + "/cgroup.procs", "");
    }
};

} // namespace

TEST_CASE("probe finds the cgroup2 mount and the own cgroup of a hybrid machine, and says why limits are missing") {
    FakeMachine m;
    m.hybrid();
    m.dir.write("proc/cgroup", "9:name=systemd:/\n4:memory:/x\n1:cpu:/\n0::/\n");
    m.cgroupDir("", "hugetlb", "");
    const Probe p = probe(m.proc());
    CHECK(p.mount == m.mount());
    CHECK(p.own == "/");
    CHECK_FALSE(p.delegated);
    CHECK(p.why_not.empty());
    CHECK(p.controllers.empty()); // the root's subtree_control enables nothing for a child
    CHECK(p.hint.find("the cpu, io, memory, pids controllers belong to cgroup v1 on this machine (hybrid hierarchy)") !=
          std::string::npos);
    CHECK(p.hint.find("systemd.unified_cgroup_hierarchy=1") != std::string::npos);
}

TEST_CASE("probe on a unified machine: a delegated systemd service gets its own cgroup's controllers") {
    FakeMachine m;
    m.unified();
    m.dir.write("proc/cgroup", "0::/system.slice/taskhubd.service\n");
    m.cgroupDir("/system.slice/taskhubd.service", "cpu io memory pids", "");
    ::setenv("INVOCATION_ID", "0123456789abcdef0123456789abcdef", 1);
    const Probe p = probe(m.proc());
    ::unsetenv("INVOCATION_ID");
    CHECK(p.mount == m.mount());
    CHECK(p.own == "/system.slice/taskhubd.service");
    CHECK(p.delegated);
    CHECK(p.why_not.empty());
    CHECK(p.controllers == std::set<std::string>{"cpu", "io", "memory", "pids"});
    CHECK(p.hint.empty());
}

TEST_CASE("probe outside systemd: not delegated, controllers are those the own cgroup enables for children") {
    FakeMachine m;
    m.unified();
    m.dir.write("proc/cgroup", "0::/user.slice/session-1.scope\n");
    m.cgroupDir("/user.slice/session-1.scope", "cpu memory pids", "memory");
    ::unsetenv("INVOCATION_ID");
    const Probe p = probe(m.proc());
    CHECK(p.own == "/user.slice/session-1.scope");
    CHECK_FALSE(p.delegated);
    CHECK(p.controllers == std::set<std::string>{"memory"});
    CHECK(p.hint.find("the cpu, io, pids controllers are not enabled for taskhubd's cgroup") != std::string::npos);
}

TEST_CASE("probe decodes an escaped mount point") {
    FakeMachine m;
    m.dir.write("with space/cgroup.procs", "");
    m.dir.write("proc/mountinfo", "25 22 0:22 / " + (m.dir.path / "with\\040space").string() +
                                      " rw shared:4 - cgroup2 cgroup2 rw\n");
    m.dir.write("proc/cgroup", "0::/\n");
    const Probe p = probe(m.proc());
    CHECK(p.mount == m.dir.path / "with space");
    CHECK(p.why_not.empty());
}

TEST_CASE("probe says why there is no usable cgroup2") {
    FakeMachine m;
    SECTION("no cgroup2 mount") {
        m.dir.write("proc/mountinfo", "31 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
        m.dir.write("proc/cgroup", "4:memory:/\n");
        const Probe p = probe(m.proc());
        CHECK(p.mount.empty());
        CHECK(p.why_not.find("no cgroup2 file system is mounted") != std::string::npos);
    }
    SECTION("no 0:: line in /proc/self/cgroup") {
        m.unified();
        m.dir.write("proc/cgroup", "4:memory:/\n");
        const Probe p = probe(m.proc());
        CHECK(p.why_not.find("no usable \"0::/...\" line") != std::string::npos);
    }
    SECTION("a cgroup namespace path outside the mount") {
        m.unified();
        m.dir.write("proc/cgroup", "0::/../../elsewhere\n");
        CHECK_FALSE(probe(m.proc()).why_not.empty());
    }
    SECTION("the own cgroup directory does not exist") {
        m.unified();
        m.dir.write("proc/cgroup", "0::/missing\n");
        const Probe p = probe(m.proc());
        CHECK(p.why_not.find("is not writable") != std::string::npos);
        CHECK(p.why_not.find("missing") != std::string::npos);
    }
    SECTION("no mountinfo") {
        CHECK(probe(m.dir.path / "nowhere").why_not.find("cannot read") != std::string::npos);
    }
}

TEST_CASE("setup with containment = process-group touches nothing") {
    boost::asio::io_context io;
    std::string why;
    auto manager = Manager::setup(io, {.containment = Containment::ProcessGroup, .state_dir = "/nonexistent"}, &why);
    CHECK_FALSE(manager);
    CHECK(why == "[daemon] containment = \"process-group\" in taskhub.toml");
    CHECK(std::string(toString(Containment::ProcessGroup)) == "process-group");
    CHECK(std::string(toString(Containment::Auto)) == "auto");
    CHECK(std::string(toString(Containment::Cgroup)) == "cgroup");
}

TEST_CASE("setup without a usable cgroup2 falls back and says why") {
    FakeMachine m;
    m.dir.write("proc/mountinfo", "31 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
    m.dir.write("proc/cgroup", "0::/\n");
    boost::asio::io_context io;
    std::string why;
    auto manager = Manager::setup(io, {.state_dir = m.dir.path, .proc_self = m.proc(), .move_self = false}, &why);
    CHECK_FALSE(manager);
    CHECK(why.find("no cgroup2 file system is mounted") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// A real cgroup2 (root only).

namespace {

bool realCgroupsUsable() {
    if (::geteuid() != 0) {
        WARN("skipped: needs root to create cgroups");
        return false;
    }
    // A delegated cgroup would be the base itself: the test must never set up in the cgroup the
    // test runner lives in. (INVOCATION_ID is what a systemd service passes on to its children.)
    ::unsetenv("INVOCATION_ID");
    const Probe p = probe();
    if (!p.why_not.empty()) {
        WARN("skipped: no writable cgroup2 here: " << p.why_not);
        return false;
    }
    if (p.delegated) {
        WARN("skipped: this process's cgroup " << p.own << " is delegated; the test sets up only below an undelegated one");
        return false;
    }
    return true;
}

// Kills the children it was given and removes the subtree, also when a REQUIRE fails.
struct Cleanup {
    fs::path base;
    std::vector<pid_t> children;
    ~Cleanup() {
        for (pid_t pid : children) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        if (base.empty() || !fs::exists(base)) return;
        // Thaw first: a frozen cgroup's processes do not die until thawed.
        std::error_code ec;
        std::vector<fs::path> dirs;
        for (fs::recursive_directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->is_directory()) dirs.push_back(it->path());
        }
        std::sort(dirs.begin(), dirs.end(), [](const fs::path& a, const fs::path& b) {
            return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());
        });
        for (const fs::path& d : dirs) ::rmdir(d.c_str());
        ::rmdir(base.c_str());
    }
};

// A child that moves itself into cgroup dir (before it does anything else) and then runs body.
template <class Body>
pid_t childIn(const fs::path& dir, Body body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        const int fd = ::open((dir / "cgroup.procs").c_str(), O_WRONLY);
        if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(99);
        ::close(fd);
        body();
        ::_exit(0);
    }
    return pid;
}

template <class Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 500; ++i) {
        if (pred()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

bool contains(const std::vector<pid_t>& pids, pid_t pid) { return std::find(pids.begin(), pids.end(), pid) != pids.end(); }

} // namespace

TEST_CASE("a real Manager: attempts are created, killed, frozen, measured and removed") {
    if (!realCgroupsUsable()) return;
    TempDir state("th-cgroup-state");
    boost::asio::io_context io;
    std::string why;
    auto manager = Manager::setup(io, {.state_dir = state.path, .move_self = false}, &why);
    REQUIRE(manager);
    Cleanup cleanup{manager->base(), {}};
    const Probe p = probe();
    CHECK(manager->base() == p.mount / p.own.substr(1) / subtreeName(state.path));
    CHECK(fs::is_directory(manager->base() / "daemon"));
    CHECK(fs::is_directory(manager->base() / "tasks"));
    CHECK(fs::is_directory(manager->base() / "runners"));
    CHECK(manager->support().cgroups);
    CHECK(manager->describe().find(manager->base().string()) == 0);

    std::string err;
    const AttemptKey key{"nightly@2026-12-07T02:00:00Z", "extract", 1};
    auto cg = manager->createAttempt(key, {}, "", &err);
    REQUIRE(cg);
    CHECK(cg->key() == key);
    CHECK(cg->path() == manager->base() / "tasks" / attemptCgroupName(key));
    CHECK(cg->relativePath() == "/" + cg->path().lexically_relative(p.mount).string());
    CHECK(cg->fd() >= 0);
    CHECK_FALSE(cg->populated());

    SECTION("kill ends every process, also those of a child cgroup the task made; whenEmpty fires") {
        REQUIRE(::mkdir((cg->path() / "inner").c_str(), 0755) == 0);
        const pid_t a = childIn(cg->path(), [] { for (;;) ::pause(); });
        const pid_t b = childIn(cg->path() / "inner", [] { for (;;) ::pause(); });
        cleanup.children = {a, b};
        REQUIRE(eventually([&] { return contains(cg->pids(), a) && contains(cg->pids(), b); }));
        CHECK(cg->populated());
        std::string busy;
        CHECK_FALSE(cg->remove(&busy));
        CHECK(busy.find("cannot remove") != std::string::npos);

        bool empty = false;
        manager->whenEmpty(*cg, [&] { empty = true; });
        io.run_for(std::chrono::milliseconds(50));
        CHECK_FALSE(empty);
        REQUIRE(cg->kill(&err));
        int status = 0;
        REQUIRE(::waitpid(a, &status, 0) == a);
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
        REQUIRE(::waitpid(b, &status, 0) == b);
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
        cleanup.children.clear();
        for (int i = 0; i < 100 && !empty; ++i) io.run_for(std::chrono::milliseconds(50));
        CHECK(empty);
        CHECK(cg->pids().empty());
        REQUIRE(cg->remove(&err));
        CHECK_FALSE(fs::exists(cg->path()));
    }

    SECTION("freeze stops every process and whenFrozen says so; thaw lets them run") {
        const pid_t a = childIn(cg->path(), [] { for (;;) ::pause(); });
        cleanup.children = {a};
        REQUIRE(eventually([&] { return contains(cg->pids(), a); }));
        REQUIRE(cg->freeze(true, &err));
        std::optional<bool> frozen;
        manager->whenFrozen(*cg, std::chrono::seconds(10), [&](bool ok) { frozen = ok; });
        for (int i = 0; i < 200 && !frozen; ++i) io.run_for(std::chrono::milliseconds(50));
        REQUIRE(frozen);
        CHECK(*frozen);
        CHECK(cg->frozen());
        REQUIRE(cg->freeze(false, &err));
        REQUIRE(eventually([&] { return !cg->frozen(); }));
        CHECK(cg->signalAll(SIGKILL) == 1);
        ::waitpid(a, nullptr, 0);
        cleanup.children.clear();
        REQUIRE(eventually([&] { return !cg->populated(); }));
        REQUIRE(cg->remove(&err));
    }

    SECTION("whenFrozen times out when nothing freezes, and cancelWaits silences a wait") {
        const pid_t a = childIn(cg->path(), [] { for (;;) ::pause(); });
        cleanup.children = {a};
        REQUIRE(eventually([&] { return contains(cg->pids(), a); }));
        std::optional<bool> frozen;
        manager->whenFrozen(*cg, std::chrono::milliseconds(100), [&](bool ok) { frozen = ok; });
        for (int i = 0; i < 100 && !frozen; ++i) io.run_for(std::chrono::milliseconds(50));
        REQUIRE(frozen);
        CHECK_FALSE(*frozen);

        bool empty = false;
        manager->whenEmpty(*cg, [&] { empty = true; });
        manager->cancelWaits(*cg);
        REQUIRE(cg->kill(&err));
        ::waitpid(a, nullptr, 0);
        cleanup.children.clear();
        REQUIRE(eventually([&] { return !cg->populated(); }));
        io.run_for(std::chrono::milliseconds(200));
        CHECK_FALSE(empty);
        REQUIRE(cg->remove(&err));
    }

    SECTION("usage counts the CPU time of every process of the attempt") {
        auto burn = [] { // 300 ms of CPU time, however busy the machine is
            volatile uint64_t x = 0;
            timespec t{};
            do {
                for (int i = 0; i < 100000; ++i) x = x + 1;
                ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
            } while (t.tv_sec == 0 && t.tv_nsec < 300'000'000);
        };
        const pid_t a = childIn(cg->path(), burn);
        cleanup.children = {a};
        int status = 0;
        REQUIRE(::waitpid(a, &status, 0) == a);
        cleanup.children.clear();
        REQUIRE((WIFEXITED(status) && WEXITSTATUS(status) == 0));
        const Usage u = cg->usage();
        CHECK(u.source == Usage::Source::Cgroup);
        CHECK(u.cpu_user_us + u.cpu_system_us >= 200'000);
        CHECK(u.cpu_user_us + u.cpu_system_us < 10'000'000);
        REQUIRE(cg->remove(&err));
    }

    SECTION("a cgroup of the same name left from before is emptied and reused; existingAttempts finds it") {
        const pid_t a = childIn(cg->path(), [] { for (;;) ::pause(); });
        cleanup.children = {a};
        REQUIRE(eventually([&] { return contains(cg->pids(), a); }));
        auto again = manager->createAttempt(key, {}, "", &err);
        REQUIRE(again);
        int status = 0;
        REQUIRE(::waitpid(a, &status, 0) == a);
        CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
        cleanup.children.clear();

        auto unknown_dir = manager->base() / "tasks" / "not-an-attempt";
        REQUIRE(::mkdir(unknown_dir.c_str(), 0755) == 0);
        auto found = manager->existingAttempts();
        REQUIRE(found.size() == 2);
        std::sort(found.begin(), found.end(), [](const auto& x, const auto& y) { return x->path() < y->path(); });
        CHECK(found[0]->key() == key);
        CHECK(found[1]->key() == AttemptKey{});
        CHECK(found[1]->path() == unknown_dir);
        REQUIRE(eventually([&] { return !again->populated(); }));
        for (auto& c : found) REQUIRE(c->remove(&err));
    }

    SECTION("limits whose controller is missing fail with the file that could not be written") {
        Limits limits;
        limits.memory_max = 256u << 20;
        if (manager->support().controllers.count("memory")) {
            auto limited = manager->createAttempt({"r", "limited", 1}, limits, "", &err);
            REQUIRE(limited);
            std::ifstream in(limited->path() / "memory.max");
            std::string value;
            in >> value;
            CHECK(value == std::to_string(256u << 20));
            REQUIRE(limited->remove(&err));
        } else {
            CHECK_FALSE(manager->createAttempt({"r", "limited", 1}, limits, "", &err));
            CHECK(err.find("memory.max") != std::string::npos);
            CHECK_FALSE(fs::exists(manager->base() / "tasks" / attemptCgroupName({"r", "limited", 1})));
        }
        REQUIRE(cg->remove(&err));
    }

    SECTION("runner cgroups hand cgroup.procs to the runner's user") {
        const uid_t nobody = 65534;
        auto runner = manager->runnerCgroup("isolated_plugin", nobody, nobody, &err);
        REQUIRE(runner);
        CHECK(*runner == manager->base() / "runners" / "isolated_plugin" / "runner");
        for (const fs::path& d : {runner->parent_path(), *runner, runner->parent_path() / "tasks"}) {
            struct stat st {};
            REQUIRE(::stat((d / "cgroup.procs").c_str(), &st) == 0);
            CHECK(st.st_uid == nobody);
        }
        auto attempt = manager->createAttempt({"r", "t", 1}, {}, "isolated_plugin", &err);
        REQUIRE(attempt);
        CHECK(attempt->path() == manager->base() / "runners" / "isolated_plugin" / "tasks" / "1.t.r");
        struct stat st {};
        REQUIRE(::stat((attempt->path() / "cgroup.procs").c_str(), &st) == 0);
        CHECK(st.st_uid == nobody);
        CHECK_FALSE(manager->runnerCgroup("..", nobody, nobody, &err));
        CHECK_FALSE(manager->runnerCgroup("a/b", nobody, nobody, &err));
        CHECK_FALSE(manager->createAttempt({"r", "t", 1}, {}, "../../x", &err));
        CHECK(manager->existingAttempts().size() == 2);
        REQUIRE(cg->remove(&err));
    }

    // shutdown removes the empty attempts and, outside systemd, the whole subtree.
    manager->shutdown();
    CHECK_FALSE(fs::exists(cleanup.base));
}

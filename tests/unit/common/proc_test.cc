// common/proc.h: start times tell a process from a later one with its pid; the environment scan
// finds exactly the processes carrying an entry.
#include <catch2/catch.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "common/proc.h"

using namespace taskhub;

namespace {

// A `sleep 30` with the given environment.
pid_t spawnSleeper(const std::vector<std::string>& env) {
    std::vector<char*> envp;
    for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
    char arg0[] = "sleep";
    char arg1[] = "30";
    char* argv[] = {arg0, arg1, nullptr};
    pid_t pid = 0;
    REQUIRE(::posix_spawnp(&pid, "sleep", nullptr, nullptr, argv, envp.data()) == 0);
    return pid;
}

void stop(pid_t pid) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
}

} // namespace

TEST_CASE("a process is known by its pid and start time", "[proc]") {
    const pid_t pid = spawnSleeper({"PATH=/usr/bin:/bin"});
    auto ticks = processStartTicks(pid);
    REQUIRE(ticks);
    CHECK(*ticks > 0);
    CHECK(sameProcess(pid, *ticks));
    CHECK_FALSE(sameProcess(pid, *ticks + 1)); // another process that got the same pid
    CHECK_FALSE(sameProcess(0, *ticks));
    ::kill(pid, SIGKILL);
    // A zombie is gone already, though its pid is not free yet.
    for (int i = 0; i < 200 && sameProcess(pid, *ticks); ++i) ::usleep(5000);
    CHECK_FALSE(sameProcess(pid, *ticks));
    ::waitpid(pid, nullptr, 0);
    CHECK_FALSE(processStartTicks(pid));
}

TEST_CASE("the environment scan finds the processes with an entry and reads named variables", "[proc]") {
    const std::string tag = "TASKHUB_PROC_TEST=" + std::to_string(::getpid());
    const pid_t a = spawnSleeper({"PATH=/usr/bin:/bin", tag, "TASKHUB_RUN_ID=r1", "TASKHUB_ATTEMPT=2"});
    const pid_t b = spawnSleeper({"PATH=/usr/bin:/bin", tag + "0", "TASKHUB_RUN_ID=r2"}); // a longer value
    auto found = processesWithEnvironment(tag, {"TASKHUB_RUN_ID", "TASKHUB_TASK_ID", "TASKHUB_ATTEMPT"});
    // On a loaded machine the scan has been seen to miss the process right after posix_spawnp
    // returned (once in many runs): look again for a little while before judging.
    for (int i = 0; i < 100 && found.empty(); ++i) {
        ::usleep(20'000);
        found = processesWithEnvironment(tag, {"TASKHUB_RUN_ID", "TASKHUB_TASK_ID", "TASKHUB_ATTEMPT"});
    }
    REQUIRE(found.size() == 1);
    CHECK(found[0].pid == a);
    CHECK(found[0].start_ticks == processStartTicks(a).value_or(-1));
    CHECK(found[0].values == std::vector<std::string>{"r1", "", "2"});
    stop(a);
    stop(b);
    CHECK(processesWithEnvironment(tag, {}).empty());
}

TEST_CASE("the boot id is the kernel's", "[proc]") {
    CHECK(bootId().size() == 36); // a UUID
    CHECK(bootId() == bootId());
}

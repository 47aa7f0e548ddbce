// The blocking delivery helpers: a program with environment and stdin, its timeout, the mbox.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "notify/deliver.h"
#include "test_support.h"

namespace taskhub::notify {
namespace {

using taskhub::testing::TempDir;

std::string readAll(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

TEST_CASE("a program gets exactly the environment and stdin it is given; exit 0 is success") {
    TempDir dir;
    const auto out = dir.path / "out";
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", "env > \"$OUT\".env; cat > \"$OUT\""};
    spec.env = {"PATH=/usr/bin:/bin", "OUT=" + out.string(), "TASKHUB_EVENT=failure"};
    spec.stdin_data = std::string(300'000, 'j'); // more than a pipe holds
    std::string err;
    REQUIRE(runProcess(spec, &err));
    CHECK(readAll(out) == spec.stdin_data);
    const auto env = readAll(out.string() + ".env");
    CHECK_THAT(env, Catch::Contains("TASKHUB_EVENT=failure"));
    CHECK_THAT(env, !Catch::Contains("HOME="));
}

TEST_CASE("a failing program reports its status and last output; a program that ignores stdin is fine") {
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", "echo 'relay refused'; exit 75"};
    spec.stdin_data = std::string(1 << 20, 'x');
    std::string err;
    CHECK_FALSE(runProcess(spec, &err));
    CHECK(err == "exit 75: relay refused");
    spec.argv = {"/bin/sh", "-c", "exit 0"};
    err.clear();
    CHECK(runProcess(spec, &err));
}

TEST_CASE("a program that hangs is killed with its children after the timeout") {
    TempDir dir;
    ProcessSpec spec;
    spec.argv = {"/bin/sh", "-c", "sleep 30 & echo $! > " + (dir.path / "child").string() + "; sleep 30"};
    spec.timeout = std::chrono::milliseconds(300);
    std::string err;
    CHECK_FALSE(runProcess(spec, &err));
    CHECK_THAT(err, Catch::StartsWith("timed out after 300 ms"));
    const auto child = readAll(dir.path / "child");
    REQUIRE_FALSE(child.empty());
    // The background child was in the process group, so it was killed too.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
        std::ifstream stat("/proc/" + std::to_string(std::stoi(child)) + "/stat");
        std::string s;
        std::getline(stat, s);
        gone = !stat || s.find(") Z ") != std::string::npos;
        if (!gone) usleep(10'000);
    }
    CHECK(gone);
}

TEST_CASE("a program that cannot be run is an error, not a hang") {
    ProcessSpec spec;
    spec.argv = {"/nonexistent/sendmail", "-t"};
    std::string err;
    CHECK_FALSE(runProcess(spec, &err));
    CHECK_THAT(err, Catch::Contains("exit 127"));
}

TEST_CASE("the mbox is created 0600 in a 0700 directory, appended to, and rotated at its bound") {
    TempDir dir;
    const auto mbox = dir.path / "mail" / "undelivered.mbox";
    std::string err;
    REQUIRE(appendMbox(mbox, "From a\n\nfirst\n\n", 100, &err));
    REQUIRE(appendMbox(mbox, "From b\n\nsecond\n\n", 100, &err));
    struct stat st{};
    REQUIRE(::stat(mbox.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    REQUIRE(::stat(mbox.parent_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    CHECK(readAll(mbox) == "From a\n\nfirst\n\nFrom b\n\nsecond\n\n");
    REQUIRE(appendMbox(mbox, std::string(90, 'x'), 100, &err));
    CHECK(readAll(mbox) == std::string(90, 'x'));
    CHECK(readAll(mbox.string() + ".1") == "From a\n\nfirst\n\nFrom b\n\nsecond\n\n");
}

TEST_CASE("the mbox is never written through a symlink") {
    TempDir dir;
    std::filesystem::create_directory(dir.path / "mail");
    std::filesystem::create_symlink(dir.path / "target", dir.path / "mail" / "undelivered.mbox");
    std::string err;
    CHECK_FALSE(appendMbox(dir.path / "mail" / "undelivered.mbox", "x", 1000, &err));
    CHECK_FALSE(std::filesystem::exists(dir.path / "target"));
}

} // namespace
} // namespace taskhub::notify

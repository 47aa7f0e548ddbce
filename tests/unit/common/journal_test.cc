// The journal's native protocol as common/journal.h encodes it, the MESSAGE_ID of a log id, the
// syslog priorities of spdlog's levels and the `<N>` lines of the stderr target.
#include <catch2/catch.hpp>

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "common/journal.h"
#include "common/log.h"

using namespace taskhub;

TEST_CASE("a simple field is NAME=value and a newline") {
    std::string e;
    journal::appendField(&e, "MESSAGE", "ENGINE_RUN_FAILED w@1 boom");
    journal::appendField(&e, "PRIORITY", "4");
    CHECK(e == "MESSAGE=ENGINE_RUN_FAILED w@1 boom\nPRIORITY=4\n");
}

TEST_CASE("a value with a newline takes the binary-safe form and forges no field") {
    std::string e;
    const std::string value = "line one\nPRIORITY=0\nMESSAGE_ID=00000000000000000000000000000000";
    journal::appendField(&e, "MESSAGE", value);
    std::string want = "MESSAGE\n";
    const uint64_t n = value.size();
    for (int i = 0; i < 8; ++i) want.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    want += value + "\n";
    CHECK(e == want);
    // The length is little-endian 64-bit: 65 bytes -> 0x41 then seven zero bytes.
    CHECK(static_cast<unsigned char>(e[8]) == value.size());
    CHECK(e.substr(9, 7) == std::string(7, '\0'));
    // Empty values and values with '=' stay simple.
    std::string s;
    journal::appendField(&s, "TASKHUB_TASK", "");
    journal::appendField(&s, "TASKHUB_WORKFLOW", "a=b");
    CHECK(s == "TASKHUB_TASK=\nTASKHUB_WORKFLOW=a=b\n");
}

TEST_CASE("MESSAGE_ID is a stable 128-bit hash of the log id") {
    // These values are in systemd/taskhub.catalog and in operators' journal queries: they never change.
    CHECK(journal::messageId("ENGINE_RUN_FAILED") == "bb29ac953a2df2e27b9a624f77e00cfd");
    CHECK(journal::messageId("ENGINE_RUN_SUCCEEDED") == "88b9af4dbcff959ed5990ce62be9dc55");
    CHECK(journal::messageId("APP_READY") == "5883d4ff220a473c8cf48ac982b58122");
    CHECK(journal::messageId("APP_READY").size() == 32);
}

TEST_CASE("the log id is the message's leading MODULE_WHAT token") {
    CHECK(journal::logIdOf("ENGINE_RUN_FAILED w@1 task 'a' failed") == "ENGINE_RUN_FAILED");
    CHECK(journal::logIdOf("APP_STOPPED") == "APP_STOPPED");
    CHECK(journal::logIdOf("FAILPOINT x hit") == "");
    CHECK(journal::logIdOf("engine_run x") == "");
    CHECK(journal::logIdOf("ENGINE_RUN_FAILED: x") == "");
    CHECK(journal::logIdOf("ENGINE_ x") == "");
    CHECK(journal::logIdOf("") == "");
}

TEST_CASE("spdlog levels map to syslog priorities") {
    CHECK(journal::syslogPriority(spdlog::level::trace) == 7);
    CHECK(journal::syslogPriority(spdlog::level::debug) == 7);
    CHECK(journal::syslogPriority(spdlog::level::info) == 6);
    CHECK(journal::syslogPriority(spdlog::level::warn) == 4);
    CHECK(journal::syslogPriority(spdlog::level::err) == 3);
    CHECK(journal::syslogPriority(spdlog::level::critical) == 2);
}

TEST_CASE("log targets parse") {
    CHECK(logging::parseTarget("auto") == logging::Target::Auto);
    CHECK(logging::parseTarget("journal") == logging::Target::Journal);
    CHECK(logging::parseTarget("stderr") == logging::Target::Stderr);
    CHECK_FALSE(logging::parseTarget("syslog"));
}

TEST_CASE("contexts nest and restore") {
    CHECK(logging::Context::current() == nullptr);
    {
        logging::Context outer({.workflow = "w", .run_id = "w@1"});
        CHECK(logging::Context::current()->run_id == "w@1");
        {
            logging::Context inner({.workflow = "w", .run_id = "w@1", .task = "t", .attempt = 2});
            CHECK(logging::Context::current()->task == "t");
            CHECK(logging::Context::current()->attempt == 2);
        }
        CHECK(logging::Context::current()->task.empty());
    }
    CHECK(logging::Context::current() == nullptr);
}

TEST_CASE("an entry too big for a datagram goes through a sealed memfd") {
    char dir[] = "/tmp/th-journal-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    const std::string path = std::string(dir) + "/socket";
    int rx = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(rx >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::bind(rx, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    int big = 16 * 1024 * 1024;
    ::setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);

    journal::Socket tx;
    std::string err;
    REQUIRE(tx.open(path, &err));
    std::string small;
    journal::appendField(&small, "MESSAGE", "hello");
    REQUIRE(tx.send(small, &err));
    char buf[64];
    CHECK(::recv(rx, buf, sizeof buf, 0) == static_cast<ssize_t>(small.size()));

    std::string huge;
    journal::appendField(&huge, "MESSAGE", std::string(32 * 1024 * 1024, 'x'));
    REQUIRE(tx.send(huge, &err));
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr mh{};
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    CHECK(::recvmsg(rx, &mh, 0) == 0);
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    REQUIRE(cm != nullptr);
    CHECK(cm->cmsg_type == SCM_RIGHTS);
    int mfd;
    std::memcpy(&mfd, CMSG_DATA(cm), sizeof mfd);
    CHECK(::lseek(mfd, 0, SEEK_END) == static_cast<off_t>(huge.size()));
    ::close(mfd);

    // No one listening: send() says so, and the logger writes the line to stderr instead.
    ::close(rx);
    ::unlink(path.c_str());
    CHECK_FALSE(tx.send(small, &err));
    CHECK(err.find(path) != std::string::npos);
    ::rmdir(dir);
}

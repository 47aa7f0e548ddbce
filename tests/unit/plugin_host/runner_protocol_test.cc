// The frame codec between taskhubd and taskhub-runner (docs/runner-protocol.md): framing, its
// limits and errors, descriptors travelling with their frames, and the shared vocabulary.
#include <catch2/catch.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "plugin_host/runner_protocol.h"

using namespace taskhub::plugin_host;
namespace proto = taskhub::plugin_host::runner_protocol;
namespace json = boost::json;

namespace {

std::vector<json::object> readAll(proto::FrameReader& reader) {
    std::vector<json::object> out;
    json::object f;
    std::string err;
    while (reader.next(&f, &err) == proto::FrameReader::Result::Frame) out.push_back(f);
    return out;
}

// A reader fed raw bytes: the 4-byte little-endian length, then body.
proto::FrameReader::Result feedRaw(const std::string& body, uint32_t length, std::string* err) {
    proto::FrameReader reader;
    const char len[4] = {char(length & 0xff), char((length >> 8) & 0xff), char((length >> 16) & 0xff),
                         char((length >> 24) & 0xff)};
    reader.append(len, 4);
    reader.append(body.data(), body.size());
    json::object f;
    return reader.next(&f, err);
}

struct SocketPair {
    int fd[2] = {-1, -1};
    SocketPair() {
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fd) == 0);
    }
    ~SocketPair() {
        ::close(fd[0]);
        ::close(fd[1]);
    }
};

ino_t inodeOf(int fd) {
    struct stat st {};
    REQUIRE(::fstat(fd, &st) == 0);
    return st.st_ino;
}

} // namespace

TEST_CASE("a frame is a little-endian length and one JSON object", "[runner_protocol]") {
    std::string bytes;
    REQUIRE(proto::appendFrame(bytes, json::object{{"op", "cancel"}, {"token", 7}}));
    const std::string body = R"({"op":"cancel","token":7})";
    REQUIRE(bytes.size() == 4 + body.size());
    CHECK(static_cast<unsigned char>(bytes[0]) == body.size());
    CHECK(bytes[1] == 0);
    CHECK(bytes[2] == 0);
    CHECK(bytes[3] == 0);
    CHECK(bytes.substr(4) == body);
}

TEST_CASE("frames come out whole and in order however the bytes arrive", "[runner_protocol]") {
    std::string bytes;
    for (int i = 0; i < 3; ++i) proto::appendFrame(bytes, json::object{{"op", "log"}, {"n", i}});
    SECTION("all at once") {
        proto::FrameReader reader;
        reader.append(bytes.data(), bytes.size());
        auto frames = readAll(reader);
        REQUIRE(frames.size() == 3);
        for (int i = 0; i < 3; ++i) CHECK(frames[i].at("n").as_int64() == i);
        CHECK(reader.buffered() == 0);
    }
    SECTION("one byte at a time") {
        proto::FrameReader reader;
        std::vector<json::object> frames;
        for (char c : bytes) {
            reader.append(&c, 1);
            for (auto& f : readAll(reader)) frames.push_back(f);
        }
        REQUIRE(frames.size() == 3);
        CHECK(frames[2].at("n").as_int64() == 2);
    }
    SECTION("a partial frame waits for the rest") {
        proto::FrameReader reader;
        reader.append(bytes.data(), bytes.size() - 1);
        CHECK(readAll(reader).size() == 2);
        json::object f;
        std::string err;
        CHECK(reader.next(&f, &err) == proto::FrameReader::Result::NeedMore);
        reader.append(&bytes.back(), 1);
        CHECK(readAll(reader).size() == 1);
    }
}

TEST_CASE("a long stream of frames stays intact while the reader reclaims its buffer", "[runner_protocol]") {
    // Over 64 KiB of frames with the last one incomplete: the consumed prefix is dropped while
    // frames after it are still to be parsed.
    std::string bytes;
    const int n = 3000;
    for (int i = 0; i < n; ++i) {
        proto::appendFrame(bytes, json::object{{"op", "complete"}, {"token", i}, {"message", "attempt " + std::to_string(i)}});
    }
    proto::FrameReader reader;
    reader.append(bytes.data(), bytes.size() - 1);
    auto frames = readAll(reader);
    REQUIRE(frames.size() == n - 1);
    for (int i = 0; i < n - 1; ++i) {
        CHECK(frames[i].at("token").as_int64() == i);
        CHECK(frames[i].at("message").as_string() == "attempt " + std::to_string(i));
    }
    reader.append(&bytes.back(), 1);
    frames = readAll(reader);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].at("token").as_int64() == n - 1);
}

TEST_CASE("malformed frames are protocol errors", "[runner_protocol]") {
    std::string err;
    CHECK(feedRaw("", proto::kMaxFrameBytes + 1, &err) == proto::FrameReader::Result::Error);
    CHECK(err == "frame of 16777217 bytes exceeds the limit of 16777216");
    CHECK(feedRaw("{\"op\":", 6, &err) == proto::FrameReader::Result::Error);
    CHECK(err.rfind("frame is not valid JSON: ", 0) == 0);
    CHECK(feedRaw("[1,2]", 5, &err) == proto::FrameReader::Result::Error);
    CHECK(err == "frame is not a JSON object");
    CHECK(feedRaw("{\"token\":1}", 11, &err) == proto::FrameReader::Result::Error);
    CHECK(err == "frame has no \"op\" string");
    CHECK(feedRaw("{\"op\":5}", 8, &err) == proto::FrameReader::Result::Error);
    // A length at the limit is not an error by itself: the reader waits for the bytes.
    CHECK(feedRaw("", proto::kMaxFrameBytes, &err) == proto::FrameReader::Result::NeedMore);
}

TEST_CASE("a frame over the size limit is not sent", "[runner_protocol]") {
    std::string bytes = "x";
    json::object big{{"op", "validate"}, {"params", std::string(proto::kMaxFrameBytes, 'a')}};
    CHECK_FALSE(proto::appendFrame(bytes, big));
    CHECK(bytes == "x");
    proto::OutQueue q;
    std::string err;
    CHECK_FALSE(q.push(big, -1, &err));
    CHECK(err == "frame exceeds the limit of 16777216 bytes");
    CHECK(q.empty());
}

TEST_CASE("descriptors travel with their frames, in order", "[runner_protocol]") {
    SocketPair sp;
    int pipes[3][2];
    for (auto& p : pipes) REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    proto::OutQueue q;
    std::string err;
    REQUIRE(q.push(json::object{{"op", "execute"}, {"token", 1}, {"log_fd", true}}, pipes[0][1], &err));
    REQUIRE(q.push(json::object{{"op", "execute"}, {"token", 2}, {"log_fd", false}}, -1, &err));
    REQUIRE(q.push(json::object{{"op", "execute"}, {"token", 3}, {"log_fd", true}}, pipes[2][1], &err));
    REQUIRE(q.flush(sp.fd[0]) == 0);
    CHECK(q.empty());

    proto::FrameReader reader;
    std::deque<int> fds;
    REQUIRE(proto::receive(sp.fd[1], reader, fds) > 0);
    auto frames = readAll(reader);
    REQUIRE(frames.size() == 3);
    REQUIRE(fds.size() == 2);
    // The received descriptors are the write ends of pipes 0 and 2: what goes in comes out there.
    CHECK(inodeOf(fds[0]) == inodeOf(pipes[0][1]));
    CHECK(inodeOf(fds[1]) == inodeOf(pipes[2][1]));
    CHECK((::fcntl(fds[0], F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE(::write(fds[1], "hi", 2) == 2);
    char buf[4] = {};
    REQUIRE(::read(pipes[2][0], buf, sizeof buf) == 2);
    CHECK(std::string(buf) == "hi");
    for (int fd : fds) ::close(fd);
    for (auto& p : pipes) {
        ::close(p[0]);
        ::close(p[1]);
    }
}

TEST_CASE("more descriptors than one message may carry are split across writes", "[runner_protocol]") {
    SocketPair sp;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    proto::OutQueue q;
    std::string err;
    const size_t n = proto::kMaxFdsPerSend + 10;
    for (size_t i = 0; i < n; ++i) REQUIRE(q.push(json::object{{"op", "execute"}, {"token", i}}, p[1], &err));
    proto::FrameReader reader;
    std::deque<int> fds;
    size_t frames = 0;
    for (int round = 0; round < 100 && frames < n; ++round) {
        REQUIRE(q.flush(sp.fd[0]) == 0);
        while (proto::receive(sp.fd[1], reader, fds) > 0) {
        }
        frames += readAll(reader).size();
    }
    CHECK(frames == n);
    CHECK(fds.size() == n);
    for (int fd : fds) ::close(fd);
    ::close(p[0]);
    ::close(p[1]);
}

TEST_CASE("a closed peer is a write error and end of file", "[runner_protocol]") {
    SocketPair sp;
    proto::OutQueue q;
    std::string err;
    REQUIRE(q.push(json::object{{"op", "shutdown"}}, -1, &err));
    ::close(sp.fd[1]);
    sp.fd[1] = -1;
    CHECK(q.flush(sp.fd[0]) == EPIPE);

    SocketPair other;
    ::close(other.fd[0]);
    other.fd[0] = -1;
    proto::FrameReader reader;
    std::deque<int> fds;
    CHECK(proto::receive(other.fd[1], reader, fds) == 0);
}

TEST_CASE("plugin info survives the trip through JSON", "[runner_protocol]") {
    PluginInfo info;
    info.name = "fx";
    info.version = "1.2.3";
    info.description = "a \"quoted\" description";
    info.file = "/usr/lib/taskhub/plugins/fx.so";
    info.abi_major = 1;
    info.abi_minor = 1;
    info.capabilities = 0x15;
    info.blocking = true;
    info.thread_safe = false;
    info.shell_params = {"command", "script"};
    std::string err;
    auto back = proto::infoFromJson(json::parse(json::serialize(proto::infoToJson(info))), &err);
    REQUIRE(back);
    CHECK(back->shell_params == info.shell_params);
    CHECK(back->name == info.name);
    CHECK(back->version == info.version);
    CHECK(back->description == info.description);
    CHECK(back->file == info.file);
    CHECK(back->capabilities == info.capabilities);
    CHECK(back->blocking);
    CHECK_FALSE(back->thread_safe);
    CHECK_FALSE(proto::infoFromJson(json::parse(R"({"name":"fx"})"), &err));
    CHECK(err == "plugin info lacks a member or has one of the wrong type");

    // shell_params (ABI 1.3) is optional, for a runner of an older taskhubd, but never malformed.
    auto without = json::parse(json::serialize(proto::infoToJson(info))).as_object();
    without.erase("shell_params");
    auto old = proto::infoFromJson(without, &err);
    REQUIRE(old);
    CHECK(old->shell_params.empty());
    auto bad = without;
    bad["shell_params"] = json::array{"command", 7};
    CHECK_FALSE(proto::infoFromJson(bad, &err));
    CHECK(err == "plugin info member shell_params holds something other than a parameter name");
}

TEST_CASE("outcomes, health states and exits have one spelling", "[runner_protocol]") {
    for (auto o : {AttemptResult::Outcome::Succeeded, AttemptResult::Outcome::Failed, AttemptResult::Outcome::Cancelled}) {
        CHECK(proto::outcomeFromName(proto::outcomeName(o)) == o);
    }
    CHECK_FALSE(proto::outcomeFromName("done"));
    CHECK(proto::healthFromName("degraded") == HealthState::Degraded);
    CHECK_FALSE(proto::healthFromName("fine"));

    siginfo_t info{};
    info.si_code = CLD_EXITED;
    info.si_status = 3;
    CHECK(proto::describeExit(info) == "exited with code 3");
    info.si_code = CLD_KILLED;
    info.si_status = SIGSEGV;
    CHECK(proto::describeExit(info) == "killed by signal 11 (SIGSEGV)");
    info.si_code = CLD_DUMPED;
    info.si_status = SIGABRT;
    CHECK(proto::describeExit(info) == "killed by signal 6 (SIGABRT), core dumped");
}

TEST_CASE("the rusage of complete survives the trip and is refused when malformed", "[runner_protocol]") {
    taskhub::cgroup::Usage usage;
    usage.source = taskhub::cgroup::Usage::Source::Rusage;
    usage.cpu_user_us = 1500;
    usage.cpu_system_us = 250;
    usage.memory_peak = 4096 * 1024;
    auto back = proto::rusageFromJson(proto::rusageToJson(usage));
    REQUIRE(back);
    CHECK(*back == usage);
    usage.memory_peak.reset();
    back = proto::rusageFromJson(proto::rusageToJson(usage));
    REQUIRE(back);
    CHECK(*back == usage);

    // A runner runs plugin code: whatever it sends is checked, never trusted.
    for (const char* bad : {R"({})", R"({"cpu_user_us":1})", R"({"cpu_user_us":-1,"cpu_system_us":0})",
                            R"({"cpu_user_us":"1","cpu_system_us":0})", R"({"cpu_user_us":1.5,"cpu_system_us":0})",
                            R"({"cpu_user_us":1,"cpu_system_us":0,"max_rss_kb":-3})",
                            R"({"cpu_user_us":1,"cpu_system_us":0,"max_rss_kb":18446744073709551615})"}) {
        INFO(bad);
        CHECK_FALSE(proto::rusageFromJson(json::parse(bad).as_object()));
    }
}

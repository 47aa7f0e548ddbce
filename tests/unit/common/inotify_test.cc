// common/inotify.h: one inotify instance on the event loop delivers each event, reports a queue
// overflow as such, moves a "nearest existing parent" watch down as directories appear, and
// reports a failed inotify_init1 as false + err instead of throwing.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common/inotify.h"
#include "test_support.h"

using namespace taskhub;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Runs the loop until done() holds or two seconds have passed.
bool runUntil(boost::asio::io_context& io, const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (!done() && std::chrono::steady_clock::now() < end) {
        io.restart();
        io.run_for(20ms);
    }
    return done();
}

} // namespace

TEST_CASE("inotify: events are delivered on the loop, each wake-up ends with batch_done", "[inotify]") {
    testing::TempDir dir;
    boost::asio::io_context io;
    common::Inotify in(io);
    std::string err;
    REQUIRE(in.open(&err));
    REQUIRE(in.isOpen());
    const int wd = in.addWatch(dir.path, IN_CLOSE_WRITE, &err);
    REQUIRE(wd >= 0);
    std::vector<std::string> names;
    int batches = 0;
    in.start({[&](const inotify_event& ev) {
                  CHECK(ev.wd == wd);
                  names.emplace_back(ev.len ? ev.name : "");
              },
              [] { FAIL("no overflow expected"); }, [&] { ++batches; }});
    dir.write("a", "1");
    dir.write("b", "2");
    REQUIRE(runUntil(io, [&] { return names.size() == 2; }));
    CHECK(names == std::vector<std::string>{"a", "b"});
    CHECK(batches >= 1);

    // After stop() nothing more is delivered and the loop no longer waits on the descriptor.
    in.stop();
    dir.write("c", "3");
    io.restart();
    const auto t0 = std::chrono::steady_clock::now();
    io.run_for(2s);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(names.size() == 2);
}

TEST_CASE("inotify: a watch that cannot be added says which path and why", "[inotify]") {
    testing::TempDir dir;
    boost::asio::io_context io;
    common::Inotify in(io);
    std::string err;
    CHECK(in.addWatch(dir.path, IN_CREATE, &err) < 0); // not open yet
    CHECK(err == "cannot watch " + dir.path.string() + ": inotify is not open");
    REQUIRE(in.open(&err));
    err.clear();
    CHECK(in.addWatch(dir.path / "missing", IN_CREATE, &err) < 0);
    CHECK(err == "cannot watch " + (dir.path / "missing").string() + ": No such file or directory");
}

TEST_CASE("inotify: an overflowing queue is reported once as an overflow, not as events", "[inotify]") {
    testing::TempDir dir;
    boost::asio::io_context io;
    common::Inotify in(io);
    std::string err;
    REQUIRE(in.open(&err));
    REQUIRE(in.addWatch(dir.path, IN_CREATE | IN_DELETE, &err) >= 0);
    long queue = 16384;
    std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> queue;
    // Two events per file, more than the queue holds, made before the loop reads any.
    for (long i = 0; i <= queue / 2; ++i) {
        const auto p = dir.path / std::to_string(i);
        std::ofstream(p).close();
        fs::remove(p);
    }
    long events = 0;
    int overflows = 0;
    in.start({[&](const inotify_event&) { ++events; }, [&] { ++overflows; }, {}});
    REQUIRE(runUntil(io, [&] { return overflows > 0; }));
    CHECK(overflows == 1);
    CHECK(events <= queue);
}

TEST_CASE("inotify: the nearest existing parent is watched, and the watch moves down as directories appear",
          "[inotify]") {
    testing::TempDir dir;
    const fs::path target = dir.path / "a" / "b" / "c";
    CHECK(common::nearestExistingParent(target) == dir.path);
    CHECK(common::nearestExistingParent("/") == "/");
    CHECK(common::nearestExistingParent("/no-such-dir-th/x") == "/");

    boost::asio::io_context io;
    common::Inotify in(io);
    std::string err;
    REQUIRE(in.open(&err));
    // What a watcher does: watch the target, or its nearest existing parent until it appears.
    fs::path watched;
    int wd = -1;
    std::vector<fs::path> history;
    auto arm = [&] {
        in.removeWatch(wd);
        const fs::path next = fs::is_directory(target) ? target : common::nearestExistingParent(target);
        wd = in.addWatch(next, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR, &err);
        REQUIRE(wd >= 0);
        if (next != watched) history.push_back(next);
        watched = next;
    };
    arm();
    in.start({[&](const inotify_event& ev) {
                  if (ev.wd == wd && (ev.mask & IN_ISDIR)) arm();
              },
              [&] { arm(); }, {}});
    fs::create_directory(dir.path / "a");
    REQUIRE(runUntil(io, [&] { return watched == dir.path / "a"; }));
    fs::create_directory(dir.path / "a" / "b");
    REQUIRE(runUntil(io, [&] { return watched == dir.path / "a" / "b"; }));
    // A directory renamed into place counts as appearing too.
    fs::create_directory(dir.path / "c.new");
    fs::rename(dir.path / "c.new", target);
    REQUIRE(runUntil(io, [&] { return watched == target; }));
    CHECK(history == std::vector<fs::path>{dir.path, dir.path / "a", dir.path / "a" / "b", target});
}

TEST_CASE("inotify: a failed inotify_init1 is reported as false + err (descriptors exhausted)", "[inotify]") {
    // In a child, so that the lowered limit cannot leak into other tests.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        boost::asio::io_context io; // its own descriptors exist before the limit is lowered
        common::Inotify in(io);
        const rlimit none{0, 0};
        if (::setrlimit(RLIMIT_NOFILE, &none) != 0) ::_exit(2);
        std::string err;
        const bool opened = in.open(&err);
        const bool ok = !opened && !in.isOpen() && err == "inotify_init1: Too many open files";
        // A watcher that goes on anyway gets no watch and no callbacks, and stop() is harmless.
        std::string werr;
        const bool no_watch = in.addWatch("/", IN_CREATE, &werr) < 0;
        in.start({[](const inotify_event&) { ::_exit(3); }, [] { ::_exit(3); }, {}});
        in.stop();
        io.run_for(10ms);
        ::_exit(ok && no_watch ? 0 : 1);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

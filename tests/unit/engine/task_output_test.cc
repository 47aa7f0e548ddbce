// A task's output reaches its log complete and in order, whatever the timing of the attempt's
// end, and a silent task leaves no file.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "engine/task_output.h"
#include "test_support.h"

using taskhub::engine::TaskOutput;
using taskhub::testing::TempDir;

namespace {

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string pattern(char c, size_t n) { return std::string(n, c); }

void writeAll(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        REQUIRE(n > 0);
        off += static_cast<size_t>(n);
    }
}

// A started TaskOutput writing to dir/t.1.log.
struct Started {
    TempDir dir{"th-output"};
    boost::asio::io_context io;
    std::filesystem::path file = dir.path / "t.1.log";
    std::shared_ptr<TaskOutput> out;
    Started() {
        std::string err;
        out = TaskOutput::open(io, file, &err);
        REQUIRE(out);
        out->start();
    }
};

} // namespace

TEST_CASE("output written before the attempt ends is all in the log when it ends", "[task_output]") {
    Started t;
    auto& io = t.io;
    auto& file = t.file;
    auto& out = t.out;
    // More than a pipe holds: a writer thread stands in for the task's process.
    const std::string data = pattern('a', 100000) + pattern('b', 100000) + "end\n";
    int child_fd = ::dup(out->writeFd());
    std::thread writer([&] {
        writeAll(child_fd, data);
        ::close(child_fd);
    });
    while (slurp(file).size() < 150000) io.run_for(std::chrono::milliseconds(5));
    writer.join();
    out->attemptEnded(); // the rest is still in the pipe, some of it maybe in flight
    CHECK(slurp(file) == data);
}

TEST_CASE("a process left behind keeps writing in order until it closes the pipe", "[task_output]") {
    Started t;
    auto& io = t.io;
    auto& file = t.file;
    auto& out = t.out;
    int background = ::dup(out->writeFd());
    writeAll(background, pattern('a', 16384));
    io.poll();                                 // a wake-up is handled while data waits
    writeAll(background, pattern('b', 16384) + "c");
    out->attemptEnded();
    CHECK(slurp(file) == pattern('a', 16384) + pattern('b', 16384) + "c");
    writeAll(background, "later\n");
    ::close(background);
    io.run_for(std::chrono::milliseconds(200));
    CHECK(slurp(file) == pattern('a', 16384) + pattern('b', 16384) + "clater\n");
}

TEST_CASE("a silent attempt creates no log file", "[task_output]") {
    Started t;
    auto& io = t.io;
    auto& file = t.file;
    auto& out = t.out;
    io.poll();
    out->attemptEnded();
    io.poll();
    CHECK_FALSE(std::filesystem::exists(file));
}

// A task's output reaches its log complete and in order, whatever the timing of the attempt's
// end, and a silent task leaves no file; max_log_size caps the log and keeps its newest output.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/task_output.h"
#include "test_support.h"

using taskhub::engine::LogCap;
using taskhub::engine::logTruncationMarker;
using taskhub::engine::parseLogTruncationMarker;
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

// Writes `lines` numbered lines of 20 bytes ("line 000001 .......\n") to a capped TaskOutput,
// in chunks of `per_write` lines, and returns the file's content after the attempt ended.
std::string capped(uint64_t cap, int lines, int per_write, std::string* all = nullptr) {
    TempDir dir{"th-logcap"};
    boost::asio::io_context io;
    std::string err;
    auto out = TaskOutput::open(io, dir.path / "t.1.log", &err, LogCap{cap, "2KB"});
    REQUIRE(out);
    out->start();
    std::string written;
    for (int i = 1; i <= lines;) {
        std::string chunk;
        for (int k = 0; k < per_write && i <= lines; ++k, ++i) {
            char buf[32];
            std::snprintf(buf, sizeof buf, "line %06d .......\n", i);
            chunk += buf;
        }
        REQUIRE(::write(out->writeFd(), chunk.data(), chunk.size()) == static_cast<ssize_t>(chunk.size()));
        written += chunk;
        io.poll();
    }
    out->attemptEnded();
    if (all) *all = written;
    return slurp(dir.path / "t.1.log");
}

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

// ---- outputs: `::set-output NAME=value` lines ----

namespace {

using taskhub::store::NameValues;

// Writes each piece separately and lets the loop read it before the next one, so that lines
// arrive split exactly at the given points.
void writePieces(Started& t, std::initializer_list<std::string> pieces) {
    for (const std::string& piece : pieces) {
        writeAll(t.out->writeFd(), piece);
        t.io.poll();
    }
}

} // namespace

TEST_CASE("set-output lines publish outputs and stay in the log", "[task_output][outputs]") {
    Started t;
    const std::string text = "starting\n::set-output path=/srv/out.csv\nrows: 12\n::set-output rows=12\n"
                             "::set-output path=/srv/final.csv\n";
    writePieces(t, {text});
    t.out->attemptEnded();
    CHECK(t.out->outputError().empty());
    // A later value replaces the earlier one, in the place the name was first set.
    CHECK(t.out->outputs() == NameValues{{"path", "/srv/final.csv"}, {"rows", "12"}});
    CHECK(slurp(t.file) == text);
}

TEST_CASE("set-output lines split across reads are put together", "[task_output][outputs]") {
    Started t;
    writePieces(t, {"x\n:", ":set-out", "put na", "me=va", "lue", "\n::set-output", " second=2\n"});
    t.out->attemptEnded();
    CHECK(t.out->outputs() == NameValues{{"name", "value"}, {"second", "2"}});
    CHECK(slurp(t.file) == "x\n::set-output name=value\n::set-output second=2\n");
}

TEST_CASE("only whole lines starting with the prefix count", "[task_output][outputs]") {
    Started t;
    writePieces(t, {"echo ::set-output a=1\n", " ::set-output b=2\n", "::set-outputs c=3\n",
                    "::set-output\n", ":\n", "::set-output d=4\n"});
    t.out->attemptEnded();
    CHECK(t.out->outputError().empty());
    CHECK(t.out->outputs() == NameValues{{"d", "4"}});
}

TEST_CASE("the value is the rest of the line: '=' kept, CR dropped, empty allowed", "[task_output][outputs]") {
    Started t;
    writePieces(t, {"::set-output q=a=b c\n::set-output crlf=yes\r\n::set-output empty=\n"});
    t.out->attemptEnded();
    CHECK(t.out->outputs() == NameValues{{"q", "a=b c"}, {"crlf", "yes"}, {"empty", ""}});
}

TEST_CASE("a last line without newline counts; lines after the end do not", "[task_output][outputs]") {
    Started t;
    int background = ::dup(t.out->writeFd());
    writePieces(t, {"::set-output last=1"});
    t.out->attemptEnded();
    CHECK(t.out->outputs() == NameValues{{"last", "1"}});
    writeAll(background, "\n::set-output late=2\n");
    ::close(background);
    t.io.run_for(std::chrono::milliseconds(100));
    CHECK(t.out->outputs() == NameValues{{"last", "1"}});
    CHECK(slurp(t.file) == "::set-output last=1\n::set-output late=2\n"); // still logged
}

TEST_CASE("a value over 4 KiB is an error naming the output and the limit", "[task_output][outputs]") {
    Started t;
    writePieces(t, {"::set-output ok=1\n", "::set-output big=" + pattern('x', 4097) + "\n",
                    "::set-output after=1\n"});
    t.out->attemptEnded();
    CHECK(t.out->outputError() == "output 'big' is 4097 bytes, over the limit of 4 KiB (4096 bytes) for one value");
    CHECK(t.out->outputs() == NameValues{{"ok", "1"}}); // nothing after the error
}

TEST_CASE("all outputs over 64 KiB are an error", "[task_output][outputs]") {
    Started t;
    // 16 values of 4093 bytes with 3-byte names fill 64 KiB exactly; one more byte is too many.
    int writer_fd = ::dup(t.out->writeFd());
    std::thread writer([&] {
        for (int i = 10; i < 26; ++i) writeAll(writer_fd, "::set-output o" + std::to_string(i) + "=" + pattern('v', 4093) + "\n");
        writeAll(writer_fd, "::set-output z=\n");
        ::close(writer_fd);
    });
    while (slurp(t.file).find("::set-output z=") == std::string::npos) t.io.run_for(std::chrono::milliseconds(5));
    writer.join();
    t.out->attemptEnded();
    CHECK(t.out->outputs().size() == 16);
    CHECK(t.out->outputError() == "output 'z' would bring the attempt's outputs to 65537 bytes, over the limit of "
                                  "64 KiB (65536 bytes, names and values) for all plain outputs of an attempt");
}

TEST_CASE("a set-output line far over the caps is an error, not held in memory", "[task_output][outputs]") {
    Started t;
    int writer_fd = ::dup(t.out->writeFd());
    std::thread writer([&] {
        writeAll(writer_fd, "::set-output huge=" + pattern('h', 200000) + "\n");
        ::close(writer_fd);
    });
    while (slurp(t.file).size() < 200019) t.io.run_for(std::chrono::milliseconds(5));
    writer.join();
    t.out->attemptEnded();
    CHECK(t.out->outputs().empty());
    CHECK(t.out->outputError() == "output 'huge' is 200000 bytes, over the limit of 4 KiB (4096 bytes) for one value");
}

TEST_CASE("a malformed set-output line is an error saying what is expected", "[task_output][outputs]") {
    {
        Started t;
        writePieces(t, {"::set-output 1x=2\n"});
        t.out->attemptEnded();
        CHECK(t.out->outputError() == "invalid output name '1x': a name starts with a letter or '_' and "
                                      "continues with letters, digits or '_'");
    }
    {
        Started t;
        writePieces(t, {"::set-output novalue\n"});
        t.out->attemptEnded();
        CHECK(t.out->outputError() == "a `::set-output` line needs NAME=value, found `::set-output novalue`");
        CHECK(t.out->outputs().empty());
    }
}

TEST_CASE("outputs from the plugin's set_output join those of the log, and win", "[task_output][outputs]") {
    Started t;
    writePieces(t, {"::set-output a=log\n::set-output b=log\n"});
    t.out->attemptEnded();
    t.out->addPluginOutputs({{"b", "plugin"}, {"c", "plugin"}});
    CHECK(t.out->outputError().empty());
    CHECK(t.out->outputs() == NameValues{{"a", "log"}, {"b", "plugin"}, {"c", "plugin"}});

    Started u;
    u.out->attemptEnded();
    u.out->addPluginOutputs({{"big", pattern('x', 5000)}});
    CHECK(u.out->outputError() == "output 'big' is 5000 bytes, over the limit of 4 KiB (4096 bytes) for one value");
    CHECK(u.out->outputs().empty());
    CHECK_FALSE(std::filesystem::exists(u.file)); // a silent attempt still makes no file
}

// ---- `::set-output-json NAME=JSON`: typed outputs ----

namespace {

// Writes text from a thread (more than a pipe holds) and reads it all before the attempt ends.
void writeLarge(Started& t, const std::string& text) {
    int writer_fd = ::dup(t.out->writeFd());
    std::thread writer([&] {
        writeAll(writer_fd, text);
        ::close(writer_fd);
    });
    while (slurp(t.file).size() < text.size()) t.io.run_for(std::chrono::milliseconds(5));
    writer.join();
    t.out->attemptEnded();
}

} // namespace

TEST_CASE("set-output-json lines publish typed outputs, compact, beside plain ones", "[task_output][json]") {
    Started t;
    const std::string text = "::set-output-json files=[\"a.csv\", \"b.csv\"]\r\n::set-output plain=x\n"
                             "::set-output-json cfg={\"db\": {\"host\": \"h\"}}\n::set-output-json s=\"text\"\n"
                             "::set-output-jsonx=1\n::set-output-json\n";
    writePieces(t, {text.substr(0, 20), text.substr(20, 7), text.substr(27)}); // split across reads
    t.out->attemptEnded();
    // "::set-output-jsonx=1" and the bare "::set-output-json" start with neither prefix (no space).
    CHECK(t.out->jsonOutputs() == NameValues{{"files", R"(["a.csv","b.csv"])"}, {"cfg", R"({"db":{"host":"h"}})"}});
    CHECK(t.out->outputs() == NameValues{{"plain", "x"}, {"s", "text"}});
    CHECK(t.out->outputError().empty());
    CHECK(slurp(t.file) == text);
}

TEST_CASE("a later set of either kind replaces the other", "[task_output][json]") {
    Started t;
    writePieces(t, {"::set-output v=1\n::set-output-json v=[1]\n::set-output-json w=2\n::set-output w=two\n"});
    t.out->attemptEnded();
    CHECK(t.out->jsonOutputs() == NameValues{{"v", "[1]"}});
    CHECK(t.out->outputs() == NameValues{{"w", "two"}});
}

TEST_CASE("malformed JSON on a set-output-json line fails precisely", "[task_output][json]") {
    const std::pair<std::string, std::string> cases[] = {
        {"::set-output-json files=[\"a\",\n", "output 'files' is not valid JSON: it ends before the value is complete (5 bytes)"},
        {"::set-output-json files=[1] x\n", "output 'files' is not one JSON value: text follows it at byte 5 of 5"},
        {"::set-output-json files=\n", "output 'files' is not valid JSON: the value is empty (expected e.g. [\"a\",\"b\"], {\"k\":1} or 3)"},
        {"::set-output-json files=[\"\xc3\"]\n", "output 'files' is not valid JSON: invalid UTF-8 at byte 3 of 5"},
        {"::set-output-json files\n", "a `::set-output-json` line needs NAME=JSON, found `::set-output-json files`"},
        {"::set-output-json 9=[]\n", "invalid output name '9': a name starts with a letter or '_' and continues with letters, digits or '_'"},
    };
    for (const auto& [line, message] : cases) {
        INFO(line);
        Started t;
        writePieces(t, {"::set-output-json ok=[]\n", line, "::set-output-json after=[]\n"});
        t.out->attemptEnded();
        CHECK(t.out->outputError() == message);
        CHECK(t.out->jsonOutputs() == NameValues{{"ok", "[]"}}); // nothing after the error
    }
}

TEST_CASE("a JSON line up to 1 MiB is captured whole", "[task_output][json]") {
    Started t;
    // The value is exactly 1 MiB: far longer than a plain line may be.
    const std::string value = "[\"" + pattern('x', 1024 * 1024 - 4) + "\"]";
    writeLarge(t, "::set-output-json list=" + value + "\n");
    CHECK(t.out->outputError() == "output 'list' would bring the attempt's outputs to 1048580 bytes, over the limit "
                                  "of 1 MiB (1048576 bytes, names and values, JSON as stored) for all outputs of an attempt");
    Started u;
    const std::string fits = "[\"" + pattern('x', 1024 * 1024 - 8) + "\"]";
    writeLarge(u, "::set-output-json list=" + fits + "\n");
    CHECK(u.out->outputError().empty());
    REQUIRE(u.out->jsonOutputs().size() == 1);
    CHECK(u.out->jsonOutputs()[0].second == fits);
}

TEST_CASE("a JSON line over 1 MiB fails naming the output and the limit, and is not held", "[task_output][json]") {
    Started t;
    writeLarge(t, "::set-output-json huge=[\"" + pattern('h', 3 * 1024 * 1024) + "\"]\n::set-output-json after=1\n");
    CHECK(t.out->jsonOutputs().empty());
    CHECK(t.out->outputError() == "output 'huge' is 3145732 bytes of JSON, over the limit of 1 MiB (1048576 bytes) "
                                  "for one JSON value");
}

TEST_CASE("typed outputs of the plugin join those of the log", "[task_output][json]") {
    Started t;
    writePieces(t, {"::set-output-json a=[1]\n::set-output b=log\n"});
    t.out->attemptEnded();
    t.out->addPluginOutputs({{"a", "plain now"}}, {{"b", "{\"k\":1}"}, {"c", "true"}});
    CHECK(t.out->outputError().empty());
    CHECK(t.out->outputs() == NameValues{{"a", "plain now"}});
    CHECK(t.out->jsonOutputs() == NameValues{{"b", "{\"k\":1}"}, {"c", "true"}});
}

// max_log_size: a task attempt's log never grows past its cap; the newest output is kept after a
// marker that counts every byte dropped, so positions in the attempt's output stay known.

TEST_CASE("the truncation marker reads back what it says", "[log_cap]") {
    const std::string m = logTruncationMarker(123456, "10MB");
    CHECK(m == "[taskhub: 123456 bytes of older output dropped (max_log_size = 10MB)]\n");
    auto t = parseLogTruncationMarker(m + "rest of the log\n");
    REQUIRE(t);
    CHECK(t->dropped == 123456);
    CHECK(t->marker_bytes == m.size());
    CHECK_FALSE(parseLogTruncationMarker("ordinary output\n"));
    CHECK_FALSE(parseLogTruncationMarker("[taskhub: many bytes of older output dropped]\n"));
    CHECK_FALSE(parseLogTruncationMarker("[taskhub: 12 bytes of older output dropped")); // no newline yet
}

TEST_CASE("a log under its cap is untouched", "[log_cap]") {
    std::string all;
    CHECK(capped(2048, 100, 10, &all) == all); // 2,000 bytes
}

TEST_CASE("a log over its cap keeps the newest output after a marker", "[log_cap]") {
    for (int per_write : {1, 7, 200, 1000}) {
        CAPTURE(per_write);
        std::string all;
        const std::string log = capped(2048, 1000, per_write, &all); // 20,000 bytes through 2 KiB
        REQUIRE(log.size() <= 2048);
        auto t = parseLogTruncationMarker(log);
        REQUIRE(t);
        const std::string kept = log.substr(t->marker_bytes);
        // What is kept is exactly the end of the output, from a line start, and the marker
        // counts everything before it.
        CHECK(t->dropped + kept.size() == all.size());
        CHECK(all.compare(t->dropped, std::string::npos, kept) == 0);
        CHECK(kept.rfind("line ", 0) == 0);
        CHECK(kept.size() >= 1024 - 20); // about half the cap survives
    }
}

TEST_CASE("a single write larger than the cap keeps its own end", "[log_cap]") {
    std::string all;
    const std::string log = capped(2048, 500, 500, &all); // one 10,000-byte write
    auto t = parseLogTruncationMarker(log);
    REQUIRE(t);
    CHECK(log.size() <= 2048);
    CHECK(t->dropped + (log.size() - t->marker_bytes) == all.size());
    CHECK(log.substr(log.size() - 20) == "line 000500 .......\n");
}

// File-drop triggers on a real inotify instance and event loop: one firing per file version,
// never before the writer closes the file, ignored names, settle, and the catch-up scan at start.
#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "config_support.h"
#include "triggers/file_watch.h"
#include "triggers/zone_watch.h"

namespace {

using namespace taskhub;
using namespace std::chrono_literals;
using taskhub::config::testing::loadText;
using taskhub::testing::TempDir;
namespace fs = std::filesystem;

struct Fixture {
    TempDir dir;
    fs::path in = dir.path / "in";
    boost::asio::io_context io;
    std::vector<triggers::FileDrop> fired;
    std::vector<triggers::FileDrop> passed;
    std::map<std::string, std::string> recorded; // as the store would return them
    std::unique_ptr<triggers::FileWatch> watch;

    Fixture() { fs::create_directories(in); }

    void start(const std::string& trigger_extra = "", const std::string& policy = "") {
        auto load = loadText(dir, "w.toml", "[[trigger]]\nwatch = \"" + in.string() + "\"\n" + trigger_extra +
                                                "\n[policy]\n" + policy + "\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
        INFO(Catch::Detail::stringify(config::testing::messages(load)));
        REQUIRE(load.workflow);
        triggers::FileWatch::Hooks h;
        h.fire = [this](const triggers::FileDrop& d) {
            fired.push_back(d);
            return true;
        };
        h.pass_over = [this](const triggers::FileDrop& d) { passed.push_back(d); };
        h.recorded = [this](const std::string&) { return recorded; };
        watch = std::make_unique<triggers::FileWatch>(io, h);
        watch->setWorkflows({{"w", load.workflow}});
    }
    void runFor(std::chrono::milliseconds d) {
        io.restart();
        io.run_for(d);
    }
    void write(const std::string& name, const std::string& text) {
        std::ofstream(in / name, std::ios::binary) << text;
    }
};

} // namespace

TEST_CASE("file run ids are deterministic per version; hidden and temporary names are ignored", "[file_watch]") {
    CHECK(triggers::fileRunId("w", "/in/a", 1, 2, 3) == triggers::fileRunId("w", "/in/a", 1, 2, 3));
    CHECK(triggers::fileRunId("w", "/in/a", 1, 2, 3) != triggers::fileRunId("w", "/in/a", 1, 2, 4));
    CHECK(triggers::fileRunId("w", "/in/a", 1, 2, 3).rfind("w@file-", 0) == 0);
    CHECK(triggers::fileRunId("w", "/in/a", 1, 2, 3).size() == std::string("w@file-").size() + 16);
    for (const char* name : {".x.csv", "x.csv~", "x.tmp", "x.part"}) {
        CHECK(triggers::ignoredFileName(name, "*"));
    }
    CHECK_FALSE(triggers::ignoredFileName("x.csv", "*"));
    CHECK_FALSE(triggers::ignoredFileName(".x", ".*"));
    CHECK_FALSE(triggers::ignoredFileName("x.part", "*.part"));
    CHECK(triggers::ignoredFileName("x.part", "*.csv"));
}

TEST_CASE("a file fires once per version, after its writer closes it", "[file_watch]") {
    Fixture f;
    f.start("pattern = \"*.csv\"");
    {
        std::ofstream out(f.in / "a.csv", std::ios::binary);
        out << "partial";
        out.flush();
        f.runFor(100ms);
        CHECK(f.fired.empty()); // still open for writing
        out << " and the rest";
    }
    f.write("b.txt", "not the pattern");
    f.write(".c.csv", "hidden");
    f.runFor(100ms);
    REQUIRE(f.fired.size() == 1);
    const auto& d = f.fired[0];
    CHECK(d.path == (f.in / "a.csv").string());
    CHECK(d.name == "a.csv");
    CHECK(d.size == 20);
    CHECK(d.skip_reason.empty());
    CHECK(d.run_id == triggers::fileRunId("w", d.path, d.inode, d.size, d.mtime_ns));

    // Opened for writing and closed again without a change: the same version, nothing fires.
    ::close(::open((f.in / "a.csv").c_str(), O_WRONLY | O_APPEND));
    f.runFor(100ms);
    CHECK(f.fired.size() == 1);
    // A new version fires.
    std::ofstream(f.in / "a.csv", std::ios::app) << "!";
    f.runFor(100ms);
    REQUIRE(f.fired.size() == 2);
    CHECK(f.fired[1].size == 21);
    CHECK(f.fired[1].run_id != f.fired[0].run_id);
}

TEST_CASE("settle: a file fires only once it has not changed for that long", "[file_watch]") {
    Fixture f;
    f.start("settle = \"300ms\"");
    f.write("a", "1");
    f.runFor(150ms);
    f.write("a", "12"); // the writer closed and reopened it
    f.runFor(200ms);
    CHECK(f.fired.empty());
    f.runFor(400ms);
    REQUIRE(f.fired.size() == 1);
    CHECK(f.fired[0].size == 2);
}

TEST_CASE("the scan at start applies the catch-up policy to files not recorded yet", "[file_watch]") {
    const auto old = fs::file_time_type::clock::now() - 10s;
    SECTION("latest: only the newest runs, the others are passed over") {
        Fixture f;
        for (int i = 0; i < 3; ++i) {
            f.write("f" + std::to_string(i), "x");
            fs::last_write_time(f.in / ("f" + std::to_string(i)), old + std::chrono::seconds(i));
        }
        f.start("", "catchup = \"latest\"");
        f.runFor(100ms);
        REQUIRE(f.fired.size() == 1);
        CHECK(f.fired[0].name == "f2");
        CHECK(f.passed.size() == 2);
        CHECK(f.passed[0].run_id.empty());
    }
    SECTION("without a catchup setting: all of them run, oldest first (a file drop's default)") {
        Fixture f;
        for (int i = 0; i < 5; ++i) {
            f.write("f" + std::to_string(i), "x");
            fs::last_write_time(f.in / ("f" + std::to_string(i)), old + std::chrono::seconds(i));
        }
        f.start();
        f.runFor(100ms);
        REQUIRE(f.fired.size() == 5);
        for (int i = 0; i < 5; ++i) CHECK(f.fired[i].name == "f" + std::to_string(i));
        CHECK(f.passed.empty());
    }
    SECTION("all, except what the store recorded; none passes everything over") {
        Fixture f;
        f.write("a", "x");
        f.write("b", "x");
        fs::last_write_time(f.in / "a", old);
        fs::last_write_time(f.in / "b", old);
        struct stat st {};
        REQUIRE(::stat((f.in / "a").c_str(), &st) == 0);
        f.recorded[triggers::FileWatch::versionKey((f.in / "a").string(), static_cast<int64_t>(st.st_ino), 1,
                                                   st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec)] =
            "w@file-x";
        f.start("", "catchup = \"all\"");
        f.runFor(100ms);
        REQUIRE(f.fired.size() == 1);
        CHECK(f.fired[0].name == "b");

        Fixture g;
        g.write("a", "x");
        fs::last_write_time(g.in / "a", old);
        g.start("", "catchup = \"none\"");
        g.runFor(100ms);
        CHECK(g.fired.empty());
        CHECK(g.passed.size() == 1);
    }
}

TEST_CASE("recursive: files in subdirectories fire, also in ones made after the start", "[file_watch]") {
    Fixture f;
    fs::create_directories(f.in / "old");
    f.start("recursive = true");
    std::ofstream(f.in / "old" / "a") << "a";
    f.runFor(100ms);
    REQUIRE(f.fired.size() == 1);
    CHECK(f.fired[0].path == (f.in / "old" / "a").string());
    fs::create_directories(f.in / "new" / "deeper");
    f.runFor(100ms); // the new directories are watched
    std::ofstream(f.in / "new" / "deeper" / "b") << "b";
    f.runFor(100ms);
    REQUIRE(f.fired.size() == 2);
    CHECK(f.fired[1].path == (f.in / "new" / "deeper" / "b").string());
    CHECK(f.watch->states("w") == std::vector<std::string>{"watching"});
}

TEST_CASE("not recursive: files in subdirectories do not fire", "[file_watch]") {
    Fixture f;
    fs::create_directories(f.in / "sub");
    f.start();
    std::ofstream(f.in / "sub" / "a") << "a";
    f.runFor(100ms);
    CHECK(f.fired.empty());
}

TEST_CASE("symlinks, hard links and fifos renamed into the box never fire; a box that became a symlink is refused",
          "[file_watch]") {
    Fixture f;
    const fs::path outside = f.dir.path / "outside";
    const fs::path stage = f.dir.path / "stage";
    fs::create_directories(outside);
    fs::create_directories(stage);
    std::ofstream(outside / "secret.csv") << "secret";
    f.start();
    fs::create_symlink(outside / "secret.csv", stage / "link.csv");
    fs::rename(stage / "link.csv", f.in / "link.csv");
    REQUIRE(::link((outside / "secret.csv").c_str(), (stage / "hard.csv").c_str()) == 0);
    fs::rename(stage / "hard.csv", f.in / "hard.csv");
    REQUIRE(::mkfifo((stage / "pipe.csv").c_str(), 0600) == 0);
    fs::rename(stage / "pipe.csv", f.in / "pipe.csv");
    f.write("ok.csv", "fine");
    f.runFor(200ms);
    REQUIRE(f.fired.size() == 1);
    CHECK(f.fired[0].name == "ok.csv");

    // The box itself replaced by a symlink to another directory: nothing there fires, and the
    // trigger says why.
    fs::rename(f.in, f.dir.path / "old-in");
    fs::create_directory_symlink(outside, f.in);
    f.runFor(100ms);
    std::ofstream(outside / "new.csv") << "x";
    f.runFor(200ms);
    CHECK(f.fired.size() == 1);
    const auto states = f.watch->states("w");
    REQUIRE(states.size() == 1);
    CHECK(states[0].rfind("refused: " + f.in.string() + " is a symbolic link", 0) == 0);
}

TEST_CASE("without inotify the watchers say why and watch nothing; they do not throw", "[file_watch][zone]") {
    // In a child, so that the lowered descriptor limit cannot leak into other tests.
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        Fixture f;
        auto load = loadText(f.dir, "w.toml", "[[trigger]]\nwatch = \"" + f.in.string() +
                                                  "\"\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
        if (!load.workflow) ::_exit(2);
        boost::asio::steady_timer reactor(f.io); // the loop's own descriptors exist before the limit is lowered
        rlimit old{};
        ::getrlimit(RLIMIT_NOFILE, &old);
        const rlimit none{0, old.rlim_max};
        if (::setrlimit(RLIMIT_NOFILE, &none) != 0) ::_exit(2);
        int code = 0;
        try {
            triggers::FileWatch watch(f.io, {});
            watch.setWorkflows({{"w", load.workflow}});
            if (watch.states("w") != std::vector<std::string>{"not watched: inotify_init1: Too many open files"}) {
                code = 1;
            }
            int calls = 0;
            triggers::ZoneWatch zone(f.io, [&] { ++calls; }, f.in.string());
            f.runFor(50ms);
            watch.stop();
            zone.stop();
        } catch (const std::exception& e) {
            std::fprintf(stderr, "unexpected exception: %s\n", e.what());
            code = 3;
        }
        ::setrlimit(RLIMIT_NOFILE, &old);
        std::error_code ec;
        fs::remove_all(f.dir.path, ec); // _exit skips the destructor
        ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

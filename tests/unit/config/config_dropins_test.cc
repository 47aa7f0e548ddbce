// taskhub.toml.d: drop-ins merged over the daemon config (daemon/config/config_dropins.h).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "config/config_dropins.h"
#include "config_support.h"

namespace taskhub::config::testing {
namespace {

namespace fs = std::filesystem;

const char* kMain = R"(socket = "main.sock"
plugin_dirs = ["a", "b"]

[pool]
min_workers = 1
max_workers = 4
idle_timeout = "10s"

[[notify]]
command = "/usr/local/bin/page one"
[[notify]]
command = "/usr/local/bin/page two"
)";

// "file-name:line: message" for each problem, the file named relative to dir.
std::vector<std::string> where(const TempDir& dir, const std::vector<Diagnostic>& problems) {
    std::vector<std::string> out;
    for (const auto& p : problems) {
        out.push_back(fs::path(p.file).lexically_relative(dir.path).string() + ":" + std::to_string(p.line) + ": " +
                      p.message);
    }
    return out;
}

TEST_CASE("without a drop-in directory the config is the file alone", "[daemon_config][dropins]") {
    TempDir dir;
    const auto cfg = loadConfig(dir.write("taskhub.toml", kMain));
    CHECK(cfg.drop_ins.empty());
    CHECK(cfg.pool.max_workers == 4);
    CHECK(cfg.notify.size() == 2);
}

TEST_CASE("drop-ins: tables merge key by key, arrays and arrays of tables replace whole", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d/50-local.toml", R"(plugin_dirs = ["c"]
[pool]
max_workers = 8
[[notify]]
command = "/usr/local/bin/page three"
[plugins.shell]
max_concurrency = 3
)");
    const auto cfg = loadConfig(file);
    REQUIRE(cfg.drop_ins == std::vector<fs::path>{dir.path / "taskhub.toml.d/50-local.toml"});
    CHECK(cfg.pool.min_workers == 1);   // kept from the file
    CHECK(cfg.pool.max_workers == 8);   // from the drop-in
    CHECK(cfg.pool.idle_timeout == std::chrono::seconds(10));
    // Relative paths resolve against the config file's directory, also from a drop-in.
    CHECK(cfg.plugin_dirs == std::vector<fs::path>{dir.path / "c"});
    REQUIRE(cfg.notify.size() == 1);
    CHECK(cfg.notify[0].value == "/usr/local/bin/page three");
    CHECK(cfg.settingsOf("shell").max_concurrency == 3);
    CHECK(cfg.socket == dir.path / "main.sock");
}

TEST_CASE("drop-ins merge in byte order of their names; the last one wins", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d/9-late.toml", "socket = \"nine.sock\"\n");
    dir.write("taskhub.toml.d/10-early.toml", "socket = \"ten.sock\"\n[pool]\nmin_workers = 2\n");
    dir.write("taskhub.toml.d/Z-upper.toml", "[pool]\nmin_workers = 3\n");
    const auto cfg = loadConfig(file);
    CHECK(cfg.drop_ins == std::vector<fs::path>{dir.path / "taskhub.toml.d/10-early.toml",
                                                dir.path / "taskhub.toml.d/9-late.toml",
                                                dir.path / "taskhub.toml.d/Z-upper.toml"});
    CHECK(cfg.socket == dir.path / "nine.sock"); // "9" sorts after "10"
    CHECK(cfg.pool.min_workers == 3);            // 'Z' (0x5a) after '9' (0x39)
}

TEST_CASE("drop-ins: only *.toml regular files that are not hidden are read", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    // Each of these would refuse the config if it were read.
    for (const char* name : {"local.toml~", ".local.toml.swp", ".hidden.toml", "local.toml.dpkg-dist", "README",
                             "local.conf"}) {
        dir.write(std::string("taskhub.toml.d/") + name, "not toml at all = = =\n");
    }
    fs::create_directories(dir.path / "taskhub.toml.d/sub.toml");
    dir.write("taskhub.toml.d/sub.toml/inner.toml", "bogus = 1\n");
    const auto cfg = loadConfig(file);
    CHECK(cfg.drop_ins.empty());
    CHECK(cfg.socket == dir.path / "main.sock");
}

TEST_CASE("drop-in problems name the drop-in's file and line", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", "sokcet = \"x\"\n" + std::string(kMain));
    dir.write("taskhub.toml.d/10-a.toml", "# local\n\n[pool]\nmax_workers = \"many\"\nidel_timeout = \"1m\"\n");
    dir.write("taskhub.toml.d/20-b.toml", "# replaces a table with a number\npool = 5\n");
    dir.write("taskhub.toml.d/30-c.toml", "\n\nsocket = \n");
    const auto got = where(dir, configRefusal(file));
    REQUIRE(got.size() == 3);
    CHECK(got[0].rfind("taskhub.toml:1: unknown key 'sokcet'; did you mean 'socket'?", 0) == 0);
    // 10-a's keys are in the merged [pool], which 20-b then replaced: only 20-b's value is checked.
    CHECK(got[1] == "taskhub.toml.d/20-b.toml:2: [pool] must be a table, found integer");
    CHECK(got[2].rfind("taskhub.toml.d/30-c.toml:3: TOML syntax error", 0) == 0);
}

TEST_CASE("drop-in type errors and unknown keys in merged tables name the drop-in", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d/10-a.toml", "# local\n\n[pool]\nmax_workers = \"many\"\nidel_timeout = \"1m\"\n");
    const auto got = where(dir, configRefusal(file));
    REQUIRE(got.size() == 2);
    CHECK(got[0] == "taskhub.toml.d/10-a.toml:4: 'pool.max_workers' must be an integer, found string");
    CHECK(got[1].rfind("taskhub.toml.d/10-a.toml:5: unknown key 'idel_timeout' in [pool]; did you mean "
                       "'idle_timeout'?",
                       0) == 0);
}

TEST_CASE("a drop-in nesting too deeply is refused unparsed, naming it", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d/bomb.toml", "\nx = " + std::string(10'000, '[') + std::string(10'000, ']') + "\n");
    const auto got = where(dir, configRefusal(file));
    REQUIRE(got.size() == 1);
    CHECK(got[0].rfind("taskhub.toml.d/bomb.toml:2: TOML nesting deeper than 64 levels", 0) == 0);
}

TEST_CASE("the number of drop-ins is bounded", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    for (size_t i = 0; i < detail::kMaxConfigDropIns; ++i) {
        dir.write("taskhub.toml.d/" + std::to_string(1000 + i) + ".toml", "");
    }
    CHECK(loadConfig(file).drop_ins.size() == detail::kMaxConfigDropIns);
    dir.write("taskhub.toml.d/0999.toml", "");
    const auto got = where(dir, configRefusal(file));
    REQUIRE(got.size() == 1);
    CHECK(got[0] == "taskhub.toml.d:0: more than 128 drop-in files; at most that many are read: merge some of them");
}

TEST_CASE("a drop-in path that is not a directory is a problem", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d", "socket = \"x\"\n");
    const auto got = where(dir, configRefusal(file));
    REQUIRE(got.size() == 1);
    CHECK(got[0].rfind("taskhub.toml.d:0: is not a directory", 0) == 0);
}

TEST_CASE("the reader and the directory check apply to drop-ins", "[daemon_config][dropins]") {
    TempDir dir;
    const auto file = dir.write("taskhub.toml", kMain);
    dir.write("taskhub.toml.d/10-a.toml", "socket = \"a.sock\"\n");
    dir.write("taskhub.toml.d/20-b.toml", "socket = \"b.sock\"\n");
    std::vector<fs::path> read;
    const FileReader reader = [&read](const fs::path& p, std::string* text) -> std::optional<std::string> {
        read.push_back(p);
        if (p.filename() == "20-b.toml") return p.string() + " is writable by group or others";
        std::ifstream in(p);
        text->assign(std::istreambuf_iterator<char>(in), {});
        return std::nullopt;
    };
    std::vector<Diagnostic> problems;
    SECTION("a refused drop-in refuses the config") {
        CHECK_FALSE(loadDaemonConfig(file, &problems, reader));
        CHECK(read == std::vector<fs::path>{file, dir.path / "taskhub.toml.d/10-a.toml",
                                            dir.path / "taskhub.toml.d/20-b.toml"});
        REQUIRE(where(dir, problems) ==
                std::vector<std::string>{"taskhub.toml.d/20-b.toml:0: config drop-in refused: " +
                                         (dir.path / "taskhub.toml.d/20-b.toml").string() +
                                         " is writable by group or others"});
    }
    SECTION("a refused directory refuses the config, and no drop-in is read") {
        const DirCheck refuse = [](const fs::path& d) -> std::optional<std::string> {
            return d.string() + " is owned by uid 1000";
        };
        CHECK_FALSE(loadDaemonConfig(file, &problems, reader, refuse));
        CHECK(read == std::vector<fs::path>{file});
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].file == (dir.path / "taskhub.toml.d").string());
        CHECK(problems[0].message == "config drop-in directory refused: " + (dir.path / "taskhub.toml.d").string() +
                                         " is owned by uid 1000");
    }
}

} // namespace
} // namespace taskhub::config::testing

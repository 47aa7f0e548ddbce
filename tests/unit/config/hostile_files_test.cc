// Hostile workflow and config files are refused, not obeyed: TOML nesting beyond
// kMaxTomlNesting is refused before toml11 sees the text (toml_nesting.h), and a workflow file
// over max_workflow_file_size or max_workflow_tasks is refused naming the file and the limit.
#include <catch2/catch.hpp>

#include <string>

#include "config/daemon_config.h"
#include "config/toml_nesting.h"
#include "config/workflow.h"
#include "config_support.h"
#include "test_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;
using taskhub::testing::TempDir;

namespace {

std::string repeat(const std::string& s, size_t n) {
    std::string out;
    out.reserve(s.size() * n);
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
}

// a = [[...[1]...]] with `levels` arrays.
std::string arrays(size_t levels) { return "a = " + repeat("[", levels) + "1" + repeat("]", levels) + "\n"; }

// a = {b = {b = ... {b = 1} ...}} with `levels` inline tables.
std::string inlineTables(size_t levels) {
    return "a = " + repeat("{b = ", levels) + "1" + repeat("}", levels) + "\n";
}

size_t depthOf(const std::string& text) {
    // The smallest limit the text passes.
    for (size_t limit = 0; limit < 1000; ++limit) {
        if (!firstTooDeep(text, limit)) return limit;
    }
    return 1000;
}

const std::string kTask = "[[task]]\nid = \"a\"\nplugin = \"noop\"\n";

} // namespace

TEST_CASE("nesting: arrays and inline tables of values count one level each", "[nesting]") {
    CHECK(depthOf("a = 1\n") == 0);
    CHECK(depthOf("a = [1, 2]\n") == 1);
    CHECK(depthOf("a = [[1], [2, [3]]]\n") == 3);
    CHECK(depthOf("a = {b = 1}\n") == 1);
    CHECK(depthOf("a = {b = [1, {c = 2}]}\n") == 3);
    CHECK(depthOf("a = [\n  [1],\n  [2],\n]\nb = 1\n") == 2);
}

TEST_CASE("nesting: exactly the limit passes, one more is refused at its line", "[nesting]") {
    const std::string at = "x = 1\n" + arrays(kMaxTomlNesting);
    CHECK_FALSE(firstTooDeep(at));
    const std::string over = "x = 1\n" + arrays(kMaxTomlNesting + 1);
    auto deep = firstTooDeep(over);
    REQUIRE(deep);
    CHECK(deep->line == 2);
    CHECK(deep->depth == kMaxTomlNesting + 1);

    CHECK_FALSE(firstTooDeep(inlineTables(kMaxTomlNesting)));
    REQUIRE(firstTooDeep(inlineTables(kMaxTomlNesting + 1)));
}

TEST_CASE("nesting: brackets in strings and comments do not count", "[nesting]") {
    const std::string brackets = repeat("[{", 100);
    CHECK(depthOf("a = \"" + brackets + "\"\n") == 0);
    CHECK(depthOf("a = '" + brackets + "'\n") == 0);
    CHECK(depthOf("a = \"\\\"" + brackets + "\"\n") == 0);       // an escaped quote does not end it
    CHECK(depthOf("a = 1 # " + brackets + "\n") == 0);
    CHECK(depthOf("# " + brackets + "\nb = [1]\n") == 1);
    CHECK(depthOf("a = \"\"\"\n" + brackets + "\n\"\"\"\n") == 0);   // multi-line basic
    CHECK(depthOf("a = '''\n" + brackets + "\n'''\n") == 0);         // multi-line literal
    CHECK(depthOf("a = \"\"\"x\\\"\"\"" + brackets + "\"\"\"\n") == 0); // escaped quote inside
    CHECK(depthOf("a = \"\"\"x\"\"\"\"\"\nb = [1]\n") == 1); // closing with two quotes of content
    CHECK(depthOf("a = ['[', \"]]]\", '{']\n") == 1);
    CHECK(depthOf("\"[[[\".'{{{' = 1\n") == 1);            // quoted keys, one dot
}

TEST_CASE("nesting: lines inside multi-line strings count for the line reported", "[nesting]") {
    const std::string text = "a = '''\n1\n2\n'''\nb = \"\"\"\n3\n\"\"\"\n" + arrays(kMaxTomlNesting + 1);
    auto deep = firstTooDeep(text);
    REQUIRE(deep);
    CHECK(deep->line == 8);
}

TEST_CASE("nesting: table headers are not nesting, their parts are", "[nesting]") {
    CHECK(depthOf("[[task]]\nid = \"a\"\n[[task]]\nid = \"b\"\n") == 2);
    CHECK(depthOf("[a]\nx = 1\n[b]\ny = 1\n") == 1);
    CHECK(depthOf("[a.b.c]\nx = [1]\n") == 4);
    CHECK(depthOf("[\"a.b\"]\nx = 1\n") == 1); // a quoted dot is not a separator
    CHECK(depthOf("[[a]]\n[a.b]\nx = 1\n") == 2);
    // An array of tables header is not read as an array opening: a workflow with many tasks
    // stays 2 deep.
    CHECK(depthOf(repeat(kTask, 500)) == 2);
}

TEST_CASE("nesting: dotted keys count one level per part", "[nesting]") {
    CHECK(depthOf("a.b.c = 1\n") == 2);
    CHECK(depthOf("a.b.c = 1\nd = 2\n") == 2);
    CHECK(depthOf("a = {b.c.d = 1, e = 2}\n") == 3);
    CHECK(depthOf("a = 1.5\nb = 1979-05-27T07:32:00.5Z\n") == 0); // dots of values are no keys
    CHECK(depthOf("a = [1.5, {b = 2.5}]\n") == 2);
    std::string dotted = "k";
    for (size_t i = 0; i < kMaxTomlNesting + 1; ++i) dotted += ".k";
    REQUIRE(firstTooDeep(dotted + " = 1\n"));
    REQUIRE(firstTooDeep("[" + dotted + "]\n"));
}

TEST_CASE("nesting: text that is not TOML is scanned to its end without harm", "[nesting]") {
    CHECK_FALSE(firstTooDeep("]]]]}}}}\n"));
    CHECK_FALSE(firstTooDeep("a = \"unterminated\nb = '\n"));
    CHECK_FALSE(firstTooDeep("a = \"\"\"never closed [[[[\n"));
    CHECK_FALSE(firstTooDeep("a = \"ends in a backslash\\"));
    CHECK_FALSE(firstTooDeep(std::string("a = [\0]\n", 8)));
    CHECK(firstTooDeep("a = " + repeat("[", 10000))); // never closed
    CHECK(firstTooDeep("a = " + repeat("{", 10000)));
    CHECK_FALSE(firstTooDeep(repeat("[", 10000))); // a (broken) table header: toml11 refuses it flat
}

TEST_CASE("a depth bomb is refused before parsing, naming the file, the line and the limit", "[nesting]") {
    TempDir dir;
    for (const auto& bomb : {arrays(10'000), inlineTables(50'000)}) {
        auto load = loadText(dir, "bomb.toml", "description = \"x\"\n" + bomb + kTask);
        REQUIRE_FALSE(load.workflow);
        REQUIRE(load.problems.size() == 1);
        const auto& p = load.problems[0];
        CHECK(p.file == (dir.path / "bomb.toml").string());
        CHECK(p.line == 2);
        CHECK_THAT(p.message, Catch::Contains("nesting deeper than 64 levels"));
        CHECK_THAT(p.message, Catch::Contains("at most 64 levels"));
    }
    // Within the limit the file parses (and fails only on what it is: an unknown key).
    auto load = loadText(dir, "deep.toml", arrays(kMaxTomlNesting - 1) + kTask);
    REQUIRE(load.problems.size() == 1);
    CHECK_THAT(load.problems[0].message, Catch::Contains("unknown key 'a'"));
}

TEST_CASE("taskhub.toml is scanned for depth too", "[nesting]") {
    TempDir dir;
    auto file = dir.write("taskhub.toml", "state_dir = \"s\"\n" + arrays(10'000));
    std::vector<Diagnostic> problems;
    if (loadDaemonConfig(file, &problems)) FAIL("a depth bomb in taskhub.toml was accepted");
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].line == 2);
    CHECK_THAT(problems[0].message, Catch::Contains("nesting deeper than 64 levels"));
}

TEST_CASE("a workflow file over max_workflow_file_size is refused, naming the file and the limit", "[limits]") {
    TempDir dir;
    FakeCatalog catalog;
    WorkflowLimits limits;
    limits.max_file_size = 4096;
    const std::string text = kTask + "description = \"" + std::string(4096 - kTask.size() - 17, 'x') + "\"\n";
    REQUIRE(text.size() == 4096);
    auto at = loadWorkflowFile(dir.write("at.toml", text), {"UTC", {}, {}, limits}, catalog);
    CHECK(at.problems.empty());
    auto over = loadWorkflowFile(dir.write("over.toml", text + "\n"), {"UTC", {}, {}, limits}, catalog);
    REQUIRE_FALSE(over.workflow);
    REQUIRE(over.problems.size() == 1);
    CHECK(over.problems[0].file == (dir.path / "over.toml").string());
    CHECK(over.problems[0].line == 0);
    CHECK(over.problems[0].message ==
          "file refused: it is 4097 bytes; workflow files may be at most 4096 bytes (taskhub.toml "
          "max_workflow_file_size): split it into several workflows, or raise the limit");
}

TEST_CASE("a workflow over max_workflow_tasks is refused, naming the limit", "[limits]") {
    TempDir dir;
    FakeCatalog catalog;
    WorkflowLimits limits;
    limits.max_tasks = 3;
    auto tasks = [](size_t n) {
        std::string out;
        for (size_t i = 0; i < n; ++i) out += "[[task]]\nid = \"t" + std::to_string(i) + "\"\nplugin = \"noop\"\n";
        return out;
    };
    CHECK(loadWorkflowFile(dir.write("three.toml", tasks(3)), {"UTC", {}, {}, limits}, catalog).workflow);
    auto four = loadWorkflowFile(dir.write("four.toml", tasks(4)), {"UTC", {}, {}, limits}, catalog);
    REQUIRE_FALSE(four.workflow);
    REQUIRE(four.problems.size() == 1);
    CHECK(four.problems[0].file == (dir.path / "four.toml").string());
    CHECK(four.problems[0].line == 1);
    CHECK(four.problems[0].message ==
          "workflow has 4 tasks; at most 3 are allowed (taskhub.toml max_workflow_tasks): split it into nested "
          "workflows, or raise the limit (up to 1048576)");
}

TEST_CASE("taskhub.toml sets the workflow limits, within bounds", "[limits]") {
    TempDir dir;
    auto defaults = loadConfig(dir.write("a.toml", "state_dir = \"s\"\n"));
    CHECK(defaults.workflow_limits.max_file_size == 16u << 20);
    CHECK(defaults.workflow_limits.max_tasks == 100'000);

    auto set = loadConfig(dir.write("b.toml", "max_workflow_file_size = \"64MB\"\nmax_workflow_tasks = 500000\n"));
    CHECK(set.workflow_limits.max_file_size == 64u << 20);
    CHECK(set.workflow_limits.max_tasks == 500'000);
    CHECK(loadConfig(dir.write("c.toml", "max_workflow_file_size = 2048\n")).workflow_limits.max_file_size ==
          2048);

    auto refused = [&](const std::string& text) {
        std::vector<Diagnostic> problems;
        if (loadDaemonConfig(dir.write("bad.toml", text), &problems)) return std::string("accepted");
        return problems.at(0).message;
    };
    CHECK(refused("max_workflow_tasks = 2000000\n") ==
          "'max_workflow_tasks' must be between 1 and 1048576, found 2000000");
    CHECK(refused("max_workflow_tasks = 0\n") == "'max_workflow_tasks' must be between 1 and 1048576, found 0");
    CHECK(refused("max_workflow_file_size = \"12 parsecs\"\n") ==
          "'max_workflow_file_size': \"12 parsecs\" is not a size (expected a number of bytes with an optional "
          "unit B, KB, MB or GB, like \"10MB\")");
    CHECK(refused("max_workflow_file_size = 100\n") == "'max_workflow_file_size' must be at least 1KB, found \"100\"");
}

TEST_CASE("text that is not UTF-8 is refused before parsing, at its line", "[utf8]") {
    CHECK_FALSE(firstInvalidUtf8("a = \"plain\"\nb = \"\xc3\xa4 \xe2\x82\xac \xf0\x9f\x98\x80\"\n"));
    CHECK(firstInvalidUtf8("a = 1\nb = '\xff'\n") == 2u);
    CHECK(firstInvalidUtf8("\xc0\xaf") == 1u);             // overlong '/'
    CHECK(firstInvalidUtf8("x\n\n\xed\xa0\x80") == 3u);    // a surrogate
    CHECK(firstInvalidUtf8("\xf4\x90\x80\x80") == 1u);     // above U+10FFFF
    CHECK(firstInvalidUtf8("\xe2\x82") == 1u);              // cut short
    CHECK(firstInvalidUtf8("\xe2\x28\xa1") == 1u);          // not a continuation byte

    // What tests/fuzz/workflow_fuzz found: invalid bytes in a literal string made toml11 read
    // past its buffer.
    TempDir dir;
    auto load = loadText(dir, "bytes.toml", "description = \"x\"\ntimezone = 'Europe/Be\xff\xff\xffrlin'\n" + kTask);
    REQUIRE(load.problems.size() == 1);
    CHECK(load.problems[0].line == 2);
    CHECK_THAT(load.problems[0].message, Catch::StartsWith("the file is not valid UTF-8"));
}

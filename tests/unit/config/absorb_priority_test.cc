// A task's own `on_failure` (a failure its run may absorb) and a workflow's `priority` (which run's
// ready tasks start first): what loads, and how each mistake is reported.
#include <catch2/catch.hpp>

#include "config/workflow.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;

TEST_CASE("on_failure on a task: fail by default, continue on plugin and workflow tasks", "[workflow][absorb]") {
    TempDir dir;
    auto load = loadText(dir, "try.toml", R"(priority = -1000

[[task]]
id = "plain"
plugin = "noop"

[[task]]
id = "try"
plugin = "shell"
command = "exit 3"
on_failure = "continue"

[[task]]
id = "strict"
plugin = "noop"
on_failure = "fail"

[[task]]
id = "child"
workflow = "other"
on_failure = "continue"
)");
    REQUIRE(messages(load) == std::vector<std::string>{});
    const Workflow& wf = *load.workflow;
    CHECK(wf.priority == -1000);
    CHECK(wf.tasks[0].on_failure == TaskOnFailure::Fail);
    CHECK(wf.tasks[1].on_failure == TaskOnFailure::Continue);
    CHECK(wf.tasks[1].params_json == R"({"command":"exit 3"})"); // not a plugin parameter
    CHECK(wf.tasks[2].on_failure == TaskOnFailure::Fail);
    CHECK(wf.tasks[3].on_failure == TaskOnFailure::Continue);
    CHECK(std::string(toString(TaskOnFailure::Continue)) == "continue");
    CHECK(std::string(toString(TaskOnFailure::Fail)) == "fail");
}

TEST_CASE("a workflow's priority defaults to 0 and takes -1000 to 1000", "[workflow][priority]") {
    TempDir dir;
    auto none = loadText(dir, "bulk.toml", "[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
    REQUIRE(messages(none) == std::vector<std::string>{});
    CHECK(none.workflow->priority == 0);
    auto top = loadText(dir, "urgent.toml", "priority = 1000\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
    REQUIRE(messages(top) == std::vector<std::string>{});
    CHECK(top.workflow->priority == 1000);
}

TEST_CASE("bad on_failure and priority values are refused with line, task and what is accepted",
          "[workflow][absorb][priority]") {
    TempDir dir;
    auto load = loadText(dir, "bad.toml", R"(priority = 1001

[[task]]
id = "a"
plugin = "noop"
on_failure = "fail_fast"

[[task]]
id = "b"
workflow = "other"
on_failure = true

[[task]]
id = "c"
plugin = "noop"
on_failure = "Continue"
)");
    CHECK(messages(load) == std::vector<std::string>{
                                "1: 'priority' must be between -1000 and 1000, found 1001",
                                "6: task 'a': 'on_failure' must be fail | continue, found \"fail_fast\"",
                                "11: task 'b': 'on_failure' must be a string, found boolean",
                                "16: task 'c': 'on_failure' must be fail | continue, found \"Continue\""});
    REQUIRE_FALSE(load.problems.empty());
    CHECK(load.problems[0].file.find("bad.toml") != std::string::npos);

    for (const char* text : {"priority = \"high\"\n", "priority = 2.5\n", "priority = -1001\n",
                             "priority = 9223372036854775807\n"}) {
        auto bad = loadText(dir, "p.toml", std::string(text) + "[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
        INFO(text);
        REQUIRE(messages(bad).size() == 1);
        CHECK(messages(bad)[0].rfind("1: 'priority' must be", 0) == 0);
    }
}

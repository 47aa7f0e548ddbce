// Resource keys of workflows and tasks (memory_max, cpu_max, tasks_max, io_weight, leftovers):
// parsing with line and key in every message, the per-task override, the refusal on workflow
// tasks, and the load-time refusal of a limit whose controller the daemon's cgroups lack.
#include <catch2/catch.hpp>

#include "config_support.h"

using namespace taskhub;
using namespace taskhub::config;
using namespace taskhub::config::testing;

namespace {

cgroup::Support allControllers() {
    return cgroup::Support{true, {"cpu", "io", "memory", "pids"}, {}, {}};
}

WorkflowLoad loadWith(const TempDir& dir, const std::string& text, const cgroup::Support& support) {
    FakeCatalog catalog;
    WorkflowDefaults defaults{"UTC"};
    defaults.containment = support;
    return loadWorkflowFile(dir.write("w.toml", text), defaults, catalog);
}

bool anyContains(const std::vector<std::string>& msgs, const std::string& part) {
    for (const auto& m : msgs) {
        if (m.find(part) != std::string::npos) return true;
    }
    return false;
}

} // namespace

TEST_CASE("limits: workflow keys apply to every plugin task; a task's own key wins, key by key", "[workflow][limits]") {
    TempDir dir;
    auto load = loadWith(dir, R"(memory_max = "256M"
cpu_max = "50%"
leftovers = "keep"

[[task]]
id = "inherits"
plugin = "shell"
command = "true"

[[task]]
id = "own"
plugin = "shell"
command = "true"
memory_max = 1048576
cpu_max = "1.5"
tasks_max = 64
io_weight = 200
leftovers = "kill"
)",
                         allControllers());
    INFO(firstProblem(load.problems));
    REQUIRE(load.workflow);
    const auto& wf = *load.workflow;
    CHECK(wf.limits.memory_max == 256u << 20);
    CHECK(wf.limits.memory_max_text == "256M");
    CHECK(wf.limits.cpu_quota_us == 50'000u);
    CHECK_FALSE(wf.limits.tasks_max);
    CHECK(wf.leftovers == cgroup::Leftovers::Keep);

    const auto& inherits = wf.tasks[0];
    CHECK(inherits.limits == wf.limits);
    CHECK(inherits.leftovers == cgroup::Leftovers::Keep);

    const auto& own = wf.tasks[1];
    CHECK(own.limits->memory_max == 1048576u);
    CHECK(own.limits->memory_max_text == "1048576");
    CHECK(own.limits->cpu_quota_us == 150'000u);
    CHECK(own.limits->cpu_max_text == "1.5");
    CHECK(own.limits->tasks_max == 64u);
    CHECK(own.limits->io_weight == 200u);
    CHECK(own.leftovers == cgroup::Leftovers::Kill);
    // The resource keys are the engine's, never the plugin's parameters.
    CHECK(own.params_json.find("memory_max") == std::string::npos);
    CHECK(own.params_json.find("leftovers") == std::string::npos);
}

TEST_CASE("limits: no keys, no limits; leftovers default to kill", "[workflow][limits]") {
    TempDir dir;
    auto load = loadWith(dir, "[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"true\"\n", cgroup::Support{});
    REQUIRE(load.workflow);
    CHECK(load.workflow->tasks[0].limits.empty());
    CHECK(load.workflow->tasks[0].leftovers == cgroup::Leftovers::Kill);
    CHECK(load.workflow->leftovers == cgroup::Leftovers::Kill);
}

TEST_CASE("limits: bad values name the line, the key and what would be right", "[workflow][limits]") {
    TempDir dir;
    auto load = loadWith(dir, R"(memory_max = "12X"
cpu_max = "150 percent"
leftovers = "maybe"

[[task]]
id = "a"
plugin = "shell"
command = "true"
memory_max = "512K"
cpu_max = "0.001"
tasks_max = 0
io_weight = 10001
leftovers = 1
)",
                         allControllers());
    REQUIRE_FALSE(load.workflow);
    const auto msgs = messages(load);
    INFO(firstProblem(load.problems));
    CHECK(anyContains(msgs, "1: 'memory_max': "));
    CHECK(anyContains(msgs, "2: 'cpu_max': cpu_max must be a share of one CPU such as \"50%\" or a number of CPUs "
                            "such as \"1.5\", found \"150 percent\""));
    CHECK(anyContains(msgs, "3: 'leftovers' must be kill | keep, found \"maybe\""));
    CHECK(anyContains(msgs, "9: task 'a': 'memory_max' must be between \"1M\" and \"1048576G\", found \"512K\""));
    CHECK(anyContains(msgs, "10: task 'a': 'cpu_max': cpu_max must be between \"1%\" (0.01 CPUs) and 4096 CPUs"));
    CHECK(anyContains(msgs, "11: task 'a': 'tasks_max'"));
    CHECK(anyContains(msgs, "12: task 'a': 'io_weight'"));
    CHECK(anyContains(msgs, "13: task 'a': 'leftovers'"));
    CHECK(msgs.size() == 8);
}

TEST_CASE("limits: cpu_max as a TOML number is a number of CPUs", "[workflow][limits]") {
    TempDir dir;
    auto load = loadWith(dir, "cpu_max = 2\n[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"true\"\n"
                              "cpu_max = 0.25\n",
                         allControllers());
    INFO(firstProblem(load.problems));
    REQUIRE(load.workflow);
    CHECK(load.workflow->limits.cpu_quota_us == 200'000u);
    CHECK(load.workflow->tasks[0].limits->cpu_quota_us == 25'000u);
    CHECK(load.workflow->tasks[0].limits->cpu_max_text == "0.25");
}

TEST_CASE("limits: a workflow task runs no process and refuses the resource keys", "[workflow][limits]") {
    TempDir dir;
    dir.write("child.toml", "[[task]]\nid = \"c\"\nplugin = \"noop\"\n");
    auto load = loadWith(dir, R"([[task]]
id = "sub"
workflow = "child"
memory_max = "64M"
leftovers = "keep"
)",
                         allControllers());
    REQUIRE_FALSE(load.workflow);
    const auto msgs = messages(load);
    CHECK(anyContains(msgs, "4: task 'sub': 'memory_max' applies to plugin tasks only (a workflow task runs no "
                            "process; set memory_max in workflow 'child' or on its tasks)"));
    CHECK(anyContains(msgs, "5: task 'sub': 'leftovers' applies to plugin tasks only"));
}

TEST_CASE("limits: a limit whose controller is missing refuses the file at its key's line", "[workflow][limits]") {
    TempDir dir;
    const cgroup::Support hybrid{true, {"hugetlb"}, {},
                                 "the memory controller belongs to cgroup v1 on this machine: boot with "
                                 "systemd.unified_cgroup_hierarchy=1"};
    auto load = loadWith(dir, R"(memory_max = "32M"
leftovers = "keep"

[[task]]
id = "a"
plugin = "shell"
command = "true"
tasks_max = 10
)",
                         hybrid);
    REQUIRE_FALSE(load.workflow);
    const auto msgs = messages(load);
    REQUIRE(msgs.size() == 2);
    CHECK(msgs[0] == "1: memory_max needs the memory controller, which taskhubd's cgroup does not offer "
                     "(available: hugetlb); the memory controller belongs to cgroup v1 on this machine: boot "
                     "with systemd.unified_cgroup_hierarchy=1");
    CHECK(msgs[1] == "8: task 'a': tasks_max needs the pids controller, which taskhubd's cgroup does not offer "
                     "(available: hugetlb); the memory controller belongs to cgroup v1 on this machine: boot "
                     "with systemd.unified_cgroup_hierarchy=1");
    // The file and line are in the diagnostic like every other.
    CHECK(load.problems[0].file.find("w.toml") != std::string::npos);
}

TEST_CASE("limits: without cgroups every limit is refused, leftovers alone is not", "[workflow][limits]") {
    TempDir dir;
    const cgroup::Support none{false, {}, "cgroup2 is not writable", {}};
    auto refused = loadWith(dir, "[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"true\"\ncpu_max = \"50%\"\n",
                            none);
    REQUIRE_FALSE(refused.workflow);
    CHECK(messages(refused) ==
          std::vector<std::string>{"5: task 'a': cpu_max needs cgroup containment, which is unavailable (cgroup2 is "
                                   "not writable); taskhubd runs tasks in process groups and cannot apply limits "
                                   "(remove the key, or give taskhubd a writable cgroup2: under systemd, "
                                   "Delegate=yes)"});
    auto kept = loadWith(dir, "leftovers = \"keep\"\n[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"true\"\n",
                         none);
    INFO(firstProblem(kept.problems));
    REQUIRE(kept.workflow);
    CHECK(kept.workflow->tasks[0].leftovers == cgroup::Leftovers::Keep);
}

TEST_CASE("limits: the default WorkflowDefaults refuse limits as cgroups unavailable", "[workflow][limits]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", "memory_max = \"1G\"\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
    REQUIRE_FALSE(load.workflow);
    CHECK(anyContains(messages(load), "1: memory_max needs cgroup containment, which is unavailable (cgroups "
                                      "unavailable)"));
}

TEST_CASE("limits: unknown top-level keys still list the resource keys", "[workflow][limits]") {
    TempDir dir;
    auto load = loadWith(dir, "memory_maxx = \"1G\"\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n", allControllers());
    REQUIRE_FALSE(load.workflow);
    CHECK(anyContains(messages(load), "unknown key 'memory_maxx'; did you mean 'memory_max'?"));
}

TEST_CASE("limits: a task whose plugin cannot be contained (no TH_CAP_CGROUP) refuses limits, never ignores them",
          "[workflow][limits]") {
    TempDir dir;
    // Its own key: refused at that key's line.
    auto own = loadWith(dir, R"([[task]]
id = "quiet"
plugin = "noop"
tasks_max = 10
)",
                        allControllers());
    CHECK_FALSE(own.workflow);
    CHECK(anyContains(messages(own), "4: task 'quiet': 'tasks_max' cannot apply: plugin noop does not declare "
                                     "TH_CAP_CGROUP (remove the key)"));
    // Inherited from the workflow: refused at the workflow's key, naming the task.
    auto inherited = loadWith(dir, R"(cpu_max = "50%"

[[task]]
id = "sh"
plugin = "shell"
command = "true"

[[task]]
id = "quiet"
plugin = "noop"
)",
                              allControllers());
    CHECK_FALSE(inherited.workflow);
    CHECK(anyContains(messages(inherited), "1: task 'quiet' inherits the workflow's 'cpu_max', but plugin noop"));
    CHECK_FALSE(anyContains(messages(inherited), "task 'sh'"));
    // leftovers alone is no limit: accepted.
    auto keep = loadWith(dir, R"(leftovers = "keep"

[[task]]
id = "quiet"
plugin = "noop"
)",
                         allControllers());
    INFO(firstProblem(keep.problems));
    CHECK(keep.workflow);
}

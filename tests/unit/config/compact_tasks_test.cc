// Tasks are held compactly (config/shared_value.h, dag::Graph): shared values read like the
// values themselves, and a large file, whose tasks are repacked after the load, reads the same as
// it was written.
#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "config/shared_value.h"
#include "config_support.h"

namespace taskhub::config::testing {

TEST_CASE("a Shared value reads like the value; copies share it; an empty one reads as empty", "[config][compact]") {
    const SharedText none;
    CHECK(none.empty());
    CHECK(none.get().empty());
    CHECK(none == "");

    SharedText a(std::string("shell"));
    const SharedText b = a; // NOLINT: the copy is the point
    CHECK(&a.get() == &b.get());
    CHECK(a == "shell");
    CHECK(std::string("shell") == a);
    CHECK_FALSE(a == "noop");
    CHECK("plugin " + a + "!" == "plugin shell!");
    CHECK(std::string_view(a) == "shell");
    a = std::string("noop"); // a new value; the copy keeps the old one
    CHECK(a == "noop");
    CHECK(b == "shell");
    a = std::string();
    CHECK(a.empty());

    Shared<std::vector<int>> codes(std::vector<int>{75, 111});
    CHECK(codes.size() == 2);
    CHECK(codes == std::vector<int>{75, 111});
    int sum = 0;
    for (int c : codes) sum += c;
    CHECK(sum == 186);
    CHECK(Shared<std::vector<int>>(std::vector<int>{}).empty());

    // Copies made and dropped on several threads at once leave the value intact.
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&codes] {
            for (int i = 0; i < 10000; ++i) {
                auto copy = codes;
                (void)copy;
            }
        });
    }
    for (auto& t : threads) t.join();
    CHECK(codes == std::vector<int>{75, 111});
}

TEST_CASE("a SharedPool hands out one copy per distinct value", "[config][compact]") {
    SharedPool<std::string> pool;
    const auto a = pool.get("shell");
    const auto b = pool.get("shell");
    const auto c = pool.get("noop");
    CHECK(&a.get() == &b.get());
    CHECK(&a.get() != &c.get());
    CHECK(c == "noop");
}

TEST_CASE("the tasks of a file share their plugin names, accounts and inherited limits", "[config][compact]") {
    TempDir dir;
    FakeCatalog catalog;
    WorkflowDefaults defaults{"UTC"};
    defaults.containment = cgroup::Support{true, {"cpu", "io", "memory", "pids"}, {}, {}};
    defaults.default_run_as = "nobody";
    auto load = loadWorkflowFile(dir.write("w.toml", R"(
memory_max = "64M"
[[task]]
id = "a"
plugin = "shell"
command = "true"
[[task]]
id = "b"
plugin = "shell"
command = "false"
depends_on = ["a"]
[[task]]
id = "c"
plugin = "shell"
command = "true"
memory_max = "32M"
depends_on = ["a", "b"]
)"), defaults, catalog);
    INFO(firstProblem(load.problems));
    REQUIRE(load.workflow);
    const auto& t = load.workflow->tasks;
    CHECK(&t[0].plugin.get() == &t[1].plugin.get());
    CHECK(t[0].run_as == "nobody");
    CHECK(&t[0].run_as.get() == &t[2].run_as.get());
    CHECK(&t[0].limits.get() == &t[1].limits.get());
    CHECK(t[0].limits->memory_max == 64u << 20);
    CHECK(t[2].limits->memory_max == 32u << 20);
    CHECK(dependsOn(*load.workflow, 2) == std::vector<std::string_view>{"a", "b"});
}

TEST_CASE("a large file reads as written after its tasks are repacked", "[config][compact]") {
    // Over 1 MiB, so that the load repacks the tasks and trims the heap: long ids and commands,
    // which live on the heap, and dependencies on two earlier tasks each.
    const size_t n = 12000;
    auto id = [](size_t i) { return "a-rather-long-task-identifier-" + std::to_string(i); };
    auto command = [](size_t i) {
        return "/usr/local/bin/etl --stage transform --part " + std::to_string(i) + " --out /srv/data/out/" +
               std::to_string(i) + ".csv";
    };
    std::string text;
    for (size_t i = 0; i < n; ++i) {
        text += "[[task]]\nid = \"" + id(i) + "\"\nplugin = \"shell\"\ncommand = \"" + command(i) + "\"\n";
        if (i >= 2) text += "depends_on = [\"" + id(i - 2) + "\", \"" + id(i / 2) + "\"]\n";
    }
    REQUIRE(text.size() > (size_t{1} << 20));
    TempDir dir;
    auto load = loadText(dir, "big.toml", text);
    INFO(firstProblem(load.problems));
    REQUIRE(load.workflow);
    const Workflow& wf = *load.workflow;
    REQUIRE(wf.tasks.size() == n);
    REQUIRE(wf.graph.size() == n);
    for (size_t i = 0; i < n; i += 997) {
        INFO("task " << i);
        CHECK(wf.tasks[i].id == id(i));
        CHECK(wf.tasks[i].params_json == "{\"command\":\"" + command(i) + "\"}");
        CHECK(wf.tasks[i].plugin == "shell");
        CHECK(wf.graph.id(static_cast<uint32_t>(i)) == id(i));
        CHECK(wf.graph.index(id(i)) == static_cast<uint32_t>(i));
        if (i >= 2) {
            const std::string a = id(i - 2), b = id(i / 2);
            CHECK(dependsOn(wf, i) == std::vector<std::string_view>{a, b});
        } else {
            CHECK(dependsOn(wf, i).empty());
        }
    }
    CHECK_FALSE(wf.graph.index("a-rather-long-task-identifier-" + std::to_string(n)));
}

} // namespace taskhub::config::testing

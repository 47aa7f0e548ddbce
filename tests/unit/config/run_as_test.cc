// run_as: the workflow's and the task's own, taskhub.toml's default_run_as and [plugins.NAME]
// user; unknown accounts and plugins that cannot honour run_as are load-time errors with line and
// key; a watched directory others can write, with tasks running as root, is a warning. Uses only
// accounts every Debian base system has (root, nobody, nogroup).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include "config/daemon_config.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;

namespace {

WorkflowLoad loadWithDefault(const TempDir& dir, const std::string& text, const std::string& default_run_as) {
    FakeCatalog catalog;
    WorkflowDefaults defaults{"UTC"};
    defaults.default_run_as = default_run_as;
    return loadWorkflowFile(dir.write("w.toml", text), defaults, catalog);
}

std::vector<std::string> configProblems(const TempDir& dir, const std::string& text) {
    std::vector<Diagnostic> problems;
    if (loadDaemonConfig(dir.write("taskhub.toml", text), &problems)) return {};
    return messages(problems);
}

} // namespace

TEST_CASE("run_as: the task's own wins over the workflow's, which wins over default_run_as", "[workflow][run_as]") {
    TempDir dir;
    auto load = loadWithDefault(dir, R"(run_as = "nobody:nogroup"

[[task]]
id = "inherits"
plugin = "shell"
command = "id"

[[task]]
id = "own"
plugin = "shell"
command = "id"
run_as = "root"
)", "nobody");
    CHECK(messages(load).empty());
    REQUIRE(load.workflow);
    const auto& tasks = load.workflow->tasks;
    CHECK(load.workflow->run_as == "nobody:nogroup");
    CHECK(tasks[0].run_as == "nobody:nogroup");
    CHECK(tasks[0].run_as_source == RunAsSource::Workflow);
    CHECK(tasks[1].run_as == "root");
    CHECK(tasks[1].run_as_source == RunAsSource::Task);
}

TEST_CASE("run_as: default_run_as applies to plugins that honour run_as, and only to them", "[workflow][run_as]") {
    TempDir dir;
    auto load = loadWithDefault(dir, R"(
[[task]]
id = "sh"
plugin = "shell"
command = "id"

[[task]]
id = "nop"
plugin = "noop"
)", "nobody");
    REQUIRE(load.workflow);
    CHECK(load.workflow->tasks[0].run_as == "nobody");
    CHECK(load.workflow->tasks[0].run_as_source == RunAsSource::Default);
    CHECK(load.workflow->tasks[1].run_as.empty());
    CHECK(load.workflow->tasks[1].run_as_source == RunAsSource::None);

    auto none = loadWithDefault(dir, "[[task]]\nid = \"sh\"\nplugin = \"shell\"\ncommand = \"id\"\n", "");
    REQUIRE(none.workflow);
    CHECK(none.workflow->tasks[0].run_as.empty());
    CHECK(none.workflow->tasks[0].run_as_source == RunAsSource::None);
}

TEST_CASE("run_as: unknown users and groups are errors naming line and key", "[workflow][run_as]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(run_as = "no-such-user-th"

[[task]]
id = "a"
plugin = "shell"
command = "id"
run_as = "nobody:no-such-group-th"

[[task]]
id = "b"
plugin = "shell"
command = "id"
run_as = "nobody:"
)");
    CHECK_FALSE(load.workflow);
    CHECK(messages(load) ==
          std::vector<std::string>{
              "1: 'run_as': no user 'no-such-user-th' in the password database (run_as names an existing account: "
              "\"user\" or \"user:group\")",
              "7: task 'a': 'run_as': no group 'no-such-group-th' in the group database (run_as names an existing "
              "account: \"user\" or \"user:group\")",
              "13: task 'b': 'run_as': the group after ':' is empty; expected \"user\" or \"user:group\" (names or "
              "numeric ids), e.g. \"nobody\" or \"backup:backup\", found \"nobody:\" (run_as names an existing "
              "account: \"user\" or \"user:group\")"});
}

TEST_CASE("run_as: a plugin that cannot honour it is refused, task- or workflow-level", "[workflow][run_as]") {
    TempDir dir;
    auto own = loadText(dir, "w.toml", R"(
[[task]]
id = "a"
plugin = "noop"
run_as = "nobody"
)");
    CHECK(messages(own) == std::vector<std::string>{
                               "5: task 'a': 'run_as' cannot be honoured: plugin noop does not declare TH_CAP_RUN_AS"});

    auto inherited = loadText(dir, "w.toml", R"(run_as = "nobody"

[[task]]
id = "sh"
plugin = "shell"
command = "id"

[[task]]
id = "nop"
plugin = "noop"
)");
    CHECK(messages(inherited) ==
          std::vector<std::string>{"1: 'run_as' cannot be honoured for task 'nop' (plugin noop): plugin noop does "
                                   "not declare TH_CAP_RUN_AS"});
}

TEST_CASE("run_as: a workflow task takes none; the child's own setting applies", "[workflow][run_as]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(run_as = "nobody"

[[task]]
id = "child"
workflow = "other"
run_as = "nobody"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{"6: task 'child': 'run_as' applies to plugin tasks only (a workflow task runs no "
                                   "process; the tasks of workflow 'other' run as that workflow's own run_as)"});
}

TEST_CASE("run_as: a watched directory others can write warns while tasks run as root", "[workflow][run_as]") {
    TempDir dir;
    TempDir box("th-box");
    REQUIRE(::chmod(box.path.c_str(), 0777) == 0);
    const std::string text = "[[trigger]]\nwatch = \"" + box.path.string() +
                             "\"\n\n[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"cat $TASKHUB_PARAM_file\"\n";
    auto root = loadText(dir, "w.toml", text);
    REQUIRE(root.workflow);
    REQUIRE(root.workflow->warnings.size() == 1);
    CHECK(root.workflow->warnings[0].line == 2);
    CHECK(root.workflow->warnings[0].message ==
          "watch " + box.path.string() + ": " + box.path.string() +
              " has mode 0777 and is world-writable, so users other than root choose the files that task(s) a "
              "handle as root; set run_as = \"user\" on the workflow or those tasks, or let only root write there");

    auto dropped = loadText(dir, "w.toml", "run_as = \"nobody\"\n" + text);
    REQUIRE(dropped.workflow);
    CHECK(dropped.workflow->warnings.empty());

    if (::geteuid() == 0) {
        // Root's own directory below the sticky /tmp: nothing to warn about.
        REQUIRE(::chmod(box.path.c_str(), 0755) == 0);
        auto safe = loadText(dir, "w.toml", text);
        REQUIRE(safe.workflow);
        CHECK(safe.workflow->warnings.empty());
    }
}

TEST_CASE("daemon config: default_run_as and [plugins.NAME] user", "[daemon_config][run_as]") {
    TempDir dir;
    auto ok = loadConfig(dir.write("taskhub.toml", R"(default_run_as = "nobody:nogroup"

[plugins.x]
isolation = "process"
user = "nobody"
)"));
    CHECK(ok.default_run_as == "nobody:nogroup");
    CHECK(ok.settingsOf("x").user == "nobody");

    CHECK(configProblems(dir, R"(default_run_as = "no-such-user-th"

[plugins.shell]
user = "nobody"

[plugins.y]
isolation = "process"
user = "nobody:no-such-group-th"
)") == std::vector<std::string>{
               "1: 'default_run_as': no user 'no-such-user-th' in the password database (expected \"user\" or "
               "\"user:group\")",
               "4: 'plugins.shell.user' applies to plugins with isolation = \"process\" (their taskhub-runner "
               "process runs as that user); plugin shell runs inside taskhubd: add isolation = \"process\", or "
               "remove 'user' (its tasks' run_as decides who they run as)",
               "8: 'plugins.y.user': no group 'no-such-group-th' in the group database (expected \"user\" or "
               "\"user:group\")"});
}

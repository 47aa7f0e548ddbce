// Config and workflow validation: every problem is reported with file, line and a message that
// says what is wrong and what would be right.
#include <catch2/catch.hpp>

#include <date/tz.h>

#include <fstream>
#include <unistd.h>

#include "config/daemon_config.h"
#include "config/workflow.h"
#include "config_support.h"
#include "test_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;
namespace fs = std::filesystem;
using taskhub::testing::TempDir;


TEST_CASE("a complete workflow loads into an immutable snapshot", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "nightly-backup.toml", R"(
description = "Nightly database backup"
timezone = "Europe/Berlin"

[[trigger]]
cron = "30 2 * * *"

[policy]
overlap = "queue_one"
on_failure = "continue"
timeout = "2h"

[[task]]
id = "dump"
plugin = "shell"
command = "pg_dump mydb > /var/backups/mydb.sql"
retries = 2
retry_delay = "30s"
timeout = "20m"
env = { PGHOST = "db" }

[[task]]
id = "upload"
plugin = "shell"
depends_on = ["dump"]
command = "rclone copy /var/backups remote:"
)");
    REQUIRE(load.problems.empty());
    const Workflow& wf = *load.workflow;
    CHECK(wf.name == "nightly-backup");
    CHECK(wf.description == "Nightly database backup");
    CHECK(wf.timezone == "Europe/Berlin");
    REQUIRE(wf.triggers.size() == 1);
    CHECK(wf.triggers[0].cron_text == "30 2 * * *");
    CHECK(wf.overlap == Overlap::QueueOne);
    CHECK(wf.on_failure == OnFailure::Continue);
    CHECK(wf.timeout == std::chrono::hours(2));
    REQUIRE(wf.tasks.size() == 2);
    CHECK(wf.tasks[0].retries == 2);
    CHECK(wf.tasks[0].retry_delay == std::chrono::seconds(30));
    CHECK(wf.tasks[0].timeout == std::chrono::minutes(20));
    CHECK(wf.tasks[0].env == std::vector<std::pair<std::string, std::string>>{{"PGHOST", "db"}});
    CHECK(wf.tasks[0].params_json == R"({"command":"pg_dump mydb > /var/backups/mydb.sql"})");
    CHECK(dependsOn(wf, 1) == std::vector<std::string_view>{"dump"});
    CHECK(dependsOn(wf, 0).empty());
    CHECK(wf.graph.size() == 2);
    CHECK(wf.version.size() == 16);
}

TEST_CASE("the default time zone comes from the daemon, the version from the content", "[workflow]") {
    TempDir dir;
    auto a = loadText(dir, "a.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    REQUIRE(a.workflow);
    CHECK(a.workflow->timezone == "UTC");
    CHECK(a.workflow->triggers.empty());
    auto b = loadText(dir, "b.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n# changed\n");
    CHECK(a.workflow->version != b.workflow->version);
}

TEST_CASE("unknown keys are errors that name the line and suggest the right key", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(descripton = "x"

[[task]]
id = "a"
plugin = "shell"
comand = "true"
)");
    CHECK(messages(load) == std::vector<std::string>{
              "1: unknown key 'descripton'; did you mean 'description'? (accepted: cpu_max, deadline, description, dst_fold, "
              "dst_gap, io_weight, keep_days, keep_runs, leftovers, log_to_journal, max_parallel_tasks, memory_max, notify, "
              "params, policy, priority, run_as, task, tasks_max, timezone, trigger)",
              "6: task 'a': plugin shell rejects parameter 'comand': unknown parameter 'comand'; did you mean "
              "'command'?"});
    CHECK(load.problems[0].str() == (dir.path / "w.toml").string() +
                                        ":1: unknown key 'descripton'; did you mean 'description'? (accepted: "
                                        "cpu_max, deadline, description, dst_fold, dst_gap, io_weight, keep_days, keep_runs, leftovers, "
                                        "log_to_journal, max_parallel_tasks, memory_max, notify, params, policy, priority, run_as, task, "
                                        "tasks_max, timezone, trigger)");
}

TEST_CASE("invalid cron expressions name the expression and the field", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "nightly.toml", R"(
[[trigger]]
cron = "61 2 * * *"

[[task]]
id = "a"
plugin = "noop"
)");
    CHECK(messages(load) == std::vector<std::string>{"3: cron \"61 2 * * *\": minute 61 out of range 0-59"});
}

TEST_CASE("bad values say what would be right", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(timezone = "Mars/Olympus"

[policy]
overlap = "sometimes"
timeout = "2 hours"

[[task]]
id = "a b"
plugin = "shell"
command = "true"
retries = -1
retry_delay = 30
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "1: unknown time zone \"Mars/Olympus\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")",
              "4: 'policy.overlap' must be skip | queue_one | queue_all | replace | allow, found \"sometimes\"",
              "5: 'policy.timeout': invalid duration \"2 hours\": missing unit after 2 (expected a number with a "
              "unit ms, s, m, h or d, like \"90s\", \"20m\", \"1h30m\")",
              "8: task id \"a b\" is invalid: use 1-128 letters, digits, '_' or '-'",
              "11: task 'a b': 'retries' must be between 0 and 100, found -1",
              "12: task 'a b': 'retry_delay' must be a string, found integer"});
}

TEST_CASE("unknown plugins and missing parameters are reported at the task", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(
[[task]]
id = "a"
plugin = "shel"

[[task]]
id = "b"
plugin = "shell"
)");
    CHECK(messages(load) == std::vector<std::string>{
                                "4: task 'a': no plugin named 'shel' is loaded (loaded: noop, shell)",
                                "6: task 'b': plugin shell rejects parameter 'command': missing required "
                                "parameter 'command'"});
}

TEST_CASE("graph problems: duplicates, unknown dependencies and cycles", "[workflow]") {
    TempDir dir;
    SECTION("duplicate id and unknown dependency") {
        auto load = loadText(dir, "w.toml", R"(
[[task]]
id = "a"
plugin = "noop"

[[task]]
id = "a"
plugin = "noop"

[[task]]
id = "c"
plugin = "noop"
depends_on = ["nope"]
)");
        CHECK(messages(load) == std::vector<std::string>{
                                    "7: duplicate task id 'a' (first defined by task #1)",
                                    "13: task 'c' depends on unknown task 'nope'"});
    }
    SECTION("a cycle is printed in order") {
        auto load = loadText(dir, "w.toml", R"(
[[task]]
id = "a"
plugin = "noop"
depends_on = ["c"]

[[task]]
id = "b"
plugin = "noop"
depends_on = ["a"]

[[task]]
id = "c"
plugin = "noop"
depends_on = ["b"]
)");
        CHECK(messages(load) == std::vector<std::string>{"5: dependency cycle: a -> c -> b -> a"});
    }
}

TEST_CASE("reserved engine keys are refused, not ignored", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(
[[trigger]]
watch = "/srv/incoming"
pattern = "*.csv"

[policy]
catchup = "sometimes"

[[task]]
id = "a"
plugin = "noop"
outputs = "x"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "7: 'policy.catchup' must be none | latest | all, found \"sometimes\"",
              "12: task 'a': 'outputs' is reserved for the engine and not supported by this version of "
              "taskhubd"});
}

TEST_CASE("file-drop triggers: watch, pattern, recursive, settle, after; the file params", "[workflow][trigger]") {
    TempDir dir;
    auto load = loadText(dir, "f.toml", R"(
[[trigger]]
watch = "/srv/incoming/"
pattern = "*.csv"
recursive = true
settle = "2s"
after = "move:/srv/done"
[[trigger]]
watch = "/srv/other"

[[task]]
id = "a"
plugin = "noop"
)");
    INFO(Catch::Detail::stringify(messages(load)));
    REQUIRE(load.workflow);
    const auto& wf = *load.workflow;
    REQUIRE(wf.triggers.size() == 2);
    const auto& t = wf.triggers[0];
    CHECK(t.kind == TriggerDef::Kind::File);
    CHECK(std::string(toString(t.kind)) == "file");
    CHECK(t.watch == "/srv/incoming");
    CHECK(t.pattern == "*.csv");
    CHECK(t.recursive);
    CHECK(t.settle == std::chrono::seconds(2));
    CHECK(t.after == TriggerDef::After::Move);
    CHECK(t.after_dir == "/srv/done");
    CHECK(t.describe() == "watch /srv/incoming pattern *.csv recursive settle 2s after move:/srv/done");
    CHECK(wf.triggers[1].describe() == "watch /srv/other pattern *");
    CHECK(wf.triggers[1].after == TriggerDef::After::Keep);
    // Runs carry the file's path, name and size as params (default empty).
    CHECK(wf.params == std::vector<std::pair<std::string, std::string>>{
                           {"file", ""}, {"file_name", ""}, {"file_size", ""}});
}

TEST_CASE("file-drop trigger mistakes are named with line, key and what would be right", "[workflow][trigger]") {
    TempDir dir;
    const std::string task = "\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n";
    auto errors = [&](const std::string& text) { return messages(loadText(dir, "e.toml", text + task)); };
    CHECK(errors("[[trigger]]\nwatch = \"incoming\"") ==
          std::vector<std::string>{"2: 'watch' must be the absolute path of a directory, e.g. \"/srv/incoming\", "
                                   "found \"incoming\""});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\npattern = \"a/*.csv\"") ==
          std::vector<std::string>{"3: 'pattern' is a glob on the file name (e.g. \"*.csv\"), not empty and without "
                                   "'/', found \"a/*.csv\""});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\nrecursive = \"yes\"") ==
          std::vector<std::string>{"3: 'recursive' must be true or false, found string"});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\nafter = \"move:done\"") ==
          std::vector<std::string>{"3: 'after' must be \"keep\", \"delete\" or \"move:/absolute/dir\", found "
                                   "\"move:done\""});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\nrecursive = true\nafter = \"move:/in/done\"") ==
          std::vector<std::string>{"1: 'after' moves files to /in/done, which is watched by this trigger (/in, "
                                   "recursive): the moved file would fire again; move them to a directory outside "
                                   "it"});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\nsettle = \"soon\"").size() == 1);
    CHECK(errors("[[trigger]]\ncron = \"* * * * *\"\npattern = \"*.csv\"") ==
          std::vector<std::string>{"3: 'pattern' only applies to file-drop triggers (watch = \"/dir\"); this one has "
                                   "'cron'"});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\njitter = \"5s\"") ==
          std::vector<std::string>{"3: 'jitter' only applies to time triggers (cron, every, at); a file fires when "
                                   "it is complete"});
    CHECK(errors("[[trigger]]\nwatch = \"/in\"\n[params]\nfile = \"x\"") ==
          std::vector<std::string>{"4: param 'file' is reserved in a workflow with a file-drop trigger (each run "
                                   "sets file, file_name and file_size from the dropped file); rename it"});
}

TEST_CASE("time triggers: cron, @reboot, every with start_at, at, jitter; catch-up and max_active_runs", "[workflow][trigger]") {
    TempDir dir;
    auto load = loadText(dir, "t.toml", R"(
[[trigger]]
cron = "H 3 * * *"
[[trigger]]
cron = "@reboot"
[[trigger]]
every = "1h30m"
start_at = 2026-12-01T00:00:00+01:00
jitter = "5m"
[[trigger]]
at = "2026-12-24T18:00:00+01:00"

[policy]
overlap = "allow"
max_active_runs = 3
catchup = "all"
catchup_window = "2d"

[[task]]
id = "a"
plugin = "noop"
)");
    INFO(Catch::Detail::stringify(messages(load)));
    REQUIRE(load.workflow);
    const auto& wf = *load.workflow;
    using Kind = TriggerDef::Kind;
    REQUIRE(wf.triggers.size() == 4);
    CHECK(wf.triggers[0].kind == Kind::Cron);
    CHECK(wf.triggers[0].describe() == "cron \"H 3 * * *\"");
    CHECK(wf.triggers[1].kind == Kind::Reboot);
    CHECK(wf.triggers[2].kind == Kind::Every);
    CHECK(wf.triggers[2].every == std::chrono::seconds(5400));
    CHECK(wf.triggers[2].describe() == "every 1h30m from 2026-11-30T23:00:00Z jitter 5m");
    CHECK(wf.triggers[3].kind == Kind::At);
    CHECK(wf.triggers[3].describe() == "at 2026-12-24T17:00:00Z");
    CHECK(wf.max_active_runs == 3);
    CHECK(wf.catchup == Catchup::All);
    CHECK(wf.catchup_window == std::chrono::hours(48));
    // H hashes the workflow name: the same file under another name picks its own minute.
    CHECK(wf.triggers[0].line == 3);
}

TEST_CASE("time trigger mistakes are named with line, key and what would be right", "[workflow][trigger]") {
    TempDir dir;
    const std::string task = "\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n";
    auto errors = [&](const std::string& trigger) {
        return messages(loadText(dir, "e.toml", trigger + task));
    };
    CHECK(errors("[[trigger]]\nevery = \"0s\"") ==
          std::vector<std::string>{"2: 'every' must be whole seconds, at least 1s, found \"0s\""});
    CHECK(errors("[[trigger]]\nat = 2026-12-24T18:00:00") ==
          std::vector<std::string>{"2: 'at' needs an offset, e.g. 2026-12-24T18:00:00+01:00 or 2026-12-24T17:00:00Z"});
    CHECK(errors("[[trigger]]\nat = \"2026-02-30T10:00:00Z\"") ==
          std::vector<std::string>{"2: 'at': \"2026-02-30T10:00:00Z\" is not an instant: there is no day 2026-02-30 "
                                   "(expected ISO 8601 with an offset, e.g. 2026-12-24T18:00:00+01:00 or "
                                   "2026-12-24T17:00:00Z)"});
    CHECK(errors("[[trigger]]\ncron = \"* * * * *\"\nat = \"2026-12-24T18:00:00Z\"") ==
          std::vector<std::string>{"1: [[trigger]] has both 'at' and 'cron': a trigger has exactly one of cron, "
                                   "every, at or watch (write one [[trigger]] for each)"});
    CHECK(errors("[[trigger]]\njitter = \"5m\"") ==
          std::vector<std::string>{"1: [[trigger]] needs one of cron, every, at or watch, e.g. cron = \"30 2 * * *\", "
                                   "every = \"90s\", at = \"2026-12-24T18:00:00+01:00\" or watch = \"/srv/incoming\""});
    CHECK(errors("[[trigger]]\ncron = \"61 * * * *\"") ==
          std::vector<std::string>{"2: cron \"61 * * * *\": minute 61 out of range 0-59"});
    CHECK(errors("[[trigger]]\nevery = \"1m\"\nstart_at = \"tomorrow\"").size() == 1);
    CHECK(errors("[policy]\nmax_active_runs = 0") ==
          std::vector<std::string>{"2: 'policy.max_active_runs' must be between 1 and 1000000, found 0"});
}

TEST_CASE("TOML syntax errors give the line", "[workflow]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", "[[task]]\nid = \"a\"\nplugin = \n");
    REQUIRE(load.problems.size() == 1);
    CHECK(load.problems[0].line == 3);
    CHECK(load.problems[0].message.rfind("TOML syntax error: ", 0) == 0);
}

TEST_CASE("one bad file never stops the others from loading", "[workflow]") {
    TempDir dir;
    dir.write("good.toml", "[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
    dir.write("bad.toml", "[[task]]\nid = \"a\"\nplugin = \"nope\"\n");
    dir.write("notes.txt", "ignored");
    dir.write(".hidden.toml", "ignored = true");
    FakeCatalog catalog;
    auto set = loadWorkflowDir(dir.path, {"UTC"}, catalog);
    CHECK(set.workflows.size() == 1);
    CHECK(set.workflows.count("good") == 1);
    REQUIRE(set.failed_files.size() == 1);
    CHECK(set.failed_files[0].filename() == "bad.toml");
    REQUIRE(set.problems.size() == 1);
    CHECK(set.problems[0].line == 3);
}

TEST_CASE("daemon config: defaults, relative paths and plugin settings", "[daemon_config]") {
    TempDir dir;
    auto file = dir.write("etc/taskhub.toml", R"(
workflows_dir = "workflows.d"
plugin_dirs = ["../plugins", "/usr/lib/taskhub/plugins"]
state_dir = "/var/lib/taskhub"
socket = "run/taskhub.sock"
timezone = "UTC"

[pool]
min_workers = 1
max_workers = 4
idle_timeout = "10s"

[plugins.shell]
max_concurrency = 8
kill_grace = "3s"
)");
    auto c = loadConfig(file);
    CHECK(c.workflows_dir == dir.path / "etc/workflows.d");
    CHECK(c.plugin_dirs == std::vector<fs::path>{dir.path / "plugins", "/usr/lib/taskhub/plugins"});
    CHECK(c.state_dir == "/var/lib/taskhub");
    CHECK(c.socket == dir.path / "etc/run/taskhub.sock");
    CHECK(c.pool.min_workers == 1);
    CHECK(c.pool.max_workers == 4);
    CHECK(c.pool.idle_timeout == std::chrono::seconds(10));
    REQUIRE(c.plugins.count("shell"));
    CHECK(c.plugins["shell"].max_concurrency == 8);
    CHECK(c.plugins["shell"].plugin_config_json == R"({"kill_grace":"3s"})");
}

TEST_CASE("daemon config: isolation and health settings of plugins", "[daemon_config]") {
    TempDir dir;
    auto file = dir.write("taskhub.toml", R"(
default_isolation = "process"

[plugins.vendor]
health_interval = "5s"
health_timeout = "500ms"
unhealthy_after = 4
healthy_after = 1
on_unhealthy = "fail"
endpoint = "https://example.invalid"

[plugins.shell]
isolation = "process"
)");
    auto c = loadConfig(file);
    CHECK(c.default_isolation == Isolation::Process);
    const auto& v = c.plugins.at("vendor");
    CHECK(v.health.interval == std::chrono::seconds(5));
    CHECK(v.health.timeout == std::chrono::milliseconds(500));
    CHECK(v.health.unhealthy_after == 4);
    CHECK(v.health.healthy_after == 1);
    CHECK(v.health.on_unhealthy == OnUnhealthy::Fail);
    CHECK_FALSE(v.isolation);
    // Engine-owned keys are not the plugin's configuration.
    CHECK(v.plugin_config_json == R"({"endpoint":"https://example.invalid"})");
    // TaskHub's own plugins run in process unless configured otherwise; others follow the default.
    CHECK(c.isolationOf("vendor") == Isolation::Process);
    CHECK(c.isolationOf("noop") == Isolation::InProcess);
    CHECK(c.isolationOf("shell") == Isolation::Process);
    CHECK(c.settingsOf("unknown").health.interval == std::chrono::seconds(30));
    CHECK(c.settingsOf("unknown").health.on_unhealthy == OnUnhealthy::Hold);
    CHECK(c.settingsOf("unknown").isolation == Isolation::Process);
}

TEST_CASE("daemon config: bad plugin settings name the key and what is allowed", "[daemon_config]") {
    TempDir dir;
    auto file = dir.write("taskhub.toml", R"([plugins.x]
isolation = "container"
on_unhealthy = "retry"
unhealthy_after = 0
health_interval = "1ms"
health_timeout = "soon"
)");
    {
        const auto problems = configRefusal(file);
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(std::to_string(p.line) + ": " + p.message);
        REQUIRE(got.size() == 5);
        CHECK(got[0] == "2: 'plugins.x.isolation' must be \"in_process\" or \"process\", found \"container\"");
        CHECK(got[1] == "3: 'plugins.x.on_unhealthy' must be \"hold\" or \"fail\", found \"retry\"");
        CHECK(got[2].rfind("4: 'plugins.x.unhealthy_after'", 0) == 0);
        CHECK(got[3] == "5: 'plugins.x.health_interval' must be at least 10ms");
        CHECK(got[4].rfind("6: 'plugins.x.health_timeout'", 0) == 0);
    }
}

TEST_CASE("daemon config: [daemon] containment", "[daemon_config]") {
    TempDir dir;
    CHECK(loadConfig(dir.write("a.toml", "")).containment == taskhub::cgroup::Containment::Auto);
    CHECK(loadConfig(dir.write("b.toml", "[daemon]\ncontainment = \"cgroup\"\n")).containment ==
          taskhub::cgroup::Containment::Cgroup);
    CHECK(loadConfig(dir.write("c.toml", "[daemon]\ncontainment = \"process-group\"\n")).containment ==
          taskhub::cgroup::Containment::ProcessGroup);
    CHECK(loadConfig(dir.write("d.toml", "[daemon]\ncontainment = \"auto\"\n")).containment ==
          taskhub::cgroup::Containment::Auto);
    {
        const auto problems = configRefusal(dir.write("e.toml", "[daemon]\ncontainment = \"cgroups\"\ncontainmnet = 1\n"));
        REQUIRE(problems.size() == 2);
        CHECK(problems[0].line == 2);
        CHECK(problems[0].message ==
              "'daemon.containment' must be \"auto\", \"cgroup\" or \"process-group\", found \"cgroups\"");
        CHECK(problems[1].line == 3);
        CHECK(problems[1].message ==
              "unknown key 'containmnet' in [daemon]; did you mean 'containment'? (accepted: containment)");
    }
    {
        const auto problems = configRefusal(dir.write("f.toml", "daemon = \"cgroup\"\n"));
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].message == "[daemon] must be a table, found string");
    }
}

TEST_CASE("daemon config: every problem is reported at once", "[daemon_config]") {
    TempDir dir;
    auto file = dir.write("taskhub.toml", R"(workflow_dir = "w"
plugin_dirs = "/usr/lib"

[pool]
min_workers = 8
max_workers = 2
idel_timeout = "1m"
)");
    {
        const auto problems = configRefusal(file);
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(std::to_string(p.line) + ": " + p.message);
        CHECK(got == std::vector<std::string>{
                         "1: unknown key 'workflow_dir'; did you mean 'workflows_dir'? (accepted: admin_group, control, "
                         "daemon, default_isolation, default_run_as, history, log_level, max_foreach_items, max_nesting_depth, max_running_tasks, "
                         "max_workflow_file_size, max_workflow_tasks, metrics, notifications, notify, plugin_dirs, plugins, pool, shutdown_grace, "
                         "socket, socket_group, "
                         "state_dir, timezone, workflows_dir)",
                         "2: 'plugin_dirs' must be an array of strings, found string",
                         "4: [pool] min_workers (8) must not exceed max_workers (2)",
                         "7: unknown key 'idel_timeout' in [pool]; did you mean 'idle_timeout'? (accepted: "
                         "idle_timeout, max_workers, min_workers)"});
    }
}

TEST_CASE("a missing config file is one clear problem", "[daemon_config]") {
    {
        const auto problems = configRefusal("/nonexistent/taskhub.toml");
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].str() == "/nonexistent/taskhub.toml: cannot open file: No such file or directory");
    }
}

TEST_CASE("daemon config: max_nesting_depth defaults to 10 and must be 1-100", "[daemon_config]") {
    TempDir dir;
    CHECK(loadConfig(dir.write("a.toml", "")).max_nesting_depth == 10);
    CHECK(loadConfig(dir.write("b.toml", "max_nesting_depth = 3\n")).max_nesting_depth == 3);
    {
        const auto problems = configRefusal(dir.write("c.toml", "max_nesting_depth = 0\n"));
        REQUIRE(problems.size() == 1);
        CHECK(problems[0].message == "'max_nesting_depth' must be between 1 and 100, found 0");
    }
}

TEST_CASE("daemon config: [history] limits and max_log_size", "[daemon_config]") {
    TempDir dir;
    auto none = loadConfig(dir.write("a.toml", "")).history;
    CHECK_FALSE(none.keep_runs);
    CHECK_FALSE(none.keep_days);
    CHECK(none.max_log_size == 64u << 20); // a default: a task printing without end cannot fill the disk
    CHECK(none.max_log_size_text == "64MB");
    auto h = loadConfig(dir.write("b.toml", "[history]\nkeep_runs = 100\nkeep_days = 7\nmax_log_size = \"10MB\"\n"))
                 .history;
    CHECK(h.keep_runs == 100);
    CHECK(h.keep_days == 7);
    CHECK(h.max_log_size == 10u << 20);
    CHECK(h.max_log_size_text == "10MB");
    CHECK(loadConfig(dir.write("c.toml", "[history]\nmax_log_size = 4096\n")).history.max_log_size == 4096);
    {
        const auto problems = configRefusal(dir.write("d.toml", "[history]\nkeep_runs = 0\nmax_log_size = \"512B\"\nkeep_day = 3\n"));
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(std::to_string(p.line) + ": " + p.message);
        CHECK(got == std::vector<std::string>{
                         "2: 'history.keep_runs' must be between 1 and 100000000, found 0",
                         "3: 'history.max_log_size' must be at least 1KB, found \"512B\"",
                         "4: unknown key 'keep_day' in [history]; did you mean 'keep_days'? (accepted: keep_days, "
                         "keep_runs, max_log_size)"});
    }
}

TEST_CASE("daemon config: [control] bounds the control socket, with defaults", "[daemon_config]") {
    TempDir dir;
    auto d = loadConfig(dir.write("a.toml", "")).control;
    CHECK(d.max_connections == 256);
    CHECK(d.max_connections_per_uid == 16);
    CHECK(d.max_request_size == 1u << 20);
    CHECK(d.request_buffer == 16u << 20);
    CHECK(d.max_answer_size == 2u << 20);
    CHECK(d.client_timeout == std::chrono::seconds(30));
    auto c = loadConfig(dir.write("b.toml", "[control]\nmax_connections = 40\nmax_connections_per_uid = 4\n"
                                                  "max_request_size = \"64KB\"\nrequest_buffer = 1048576\n"
                                                  "max_answer_size = \"1MB\"\nclient_timeout = \"5s\"\n"))
                 .control;
    CHECK(c.max_connections == 40);
    CHECK(c.max_connections_per_uid == 4);
    CHECK(c.max_request_size == 64u << 10);
    CHECK(c.request_buffer == 1u << 20);
    CHECK(c.max_answer_size == 1u << 20);
    CHECK(c.client_timeout == std::chrono::seconds(5));
    {
        const auto problems = configRefusal(dir.write("c.toml", "[control]\nmax_connections = 0\nmax_answer_size = \"1KB\"\n"
                                             "client_timeout = \"10ms\"\nmax_conections = 3\n"));
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(std::to_string(p.line) + ": " + p.message);
        CHECK(got == std::vector<std::string>{
                         "2: 'control.max_connections' must be between 1 and 100000, found 0",
                         "3: 'control.max_answer_size' must be between 64KB and 1GB, found \"1KB\"",
                         "4: 'control.client_timeout' must be at least 100ms",
                         "5: unknown key 'max_conections' in [control]; did you mean 'max_connections'? (accepted: "
                         "client_timeout, max_answer_size, max_connections, max_connections_per_uid, "
                         "max_request_size, request_buffer)"});
    }
    {
        const auto problems = configRefusal(dir.write("d.toml", "[control]\nmax_connections = 8\nmax_connections_per_uid = 9\n"
                                             "max_request_size = \"2MB\"\nrequest_buffer = \"1MB\"\n"));
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(p.message);
        CHECK(got == std::vector<std::string>{
                         "[control] max_connections_per_uid (9) must not exceed max_connections (8)",
                         "[control] request_buffer (1048576 bytes) must be at least max_request_size (2097152 "
                         "bytes): one full request line must fit"});
    }
}

TEST_CASE("daemon config: [metrics] is off by default; textfile, interval and listen address", "[daemon_config]") {
    TempDir dir;
    auto d = loadConfig(dir.write("a.toml", "")).metrics;
    CHECK(d.textfile.empty());
    CHECK(d.textfile_interval == std::chrono::seconds(15));
    CHECK(d.listen.empty());
    auto c = loadConfig(dir.write("etc/b.toml", "[metrics]\ntextfile = \"prom/taskhub.prom\"\n"
                                                  "textfile_interval = \"1m\"\nlisten = \"127.0.0.1:9464\"\n"))
                 .metrics;
    CHECK(c.textfile == dir.path / "etc/prom/taskhub.prom");
    CHECK(c.textfile_interval == std::chrono::minutes(1));
    CHECK(c.listen == "127.0.0.1:9464");
    CHECK(c.listen_host == "127.0.0.1");
    CHECK(c.listen_port == 9464);
    auto v6 = loadConfig(dir.write("c.toml", "[metrics]\nlisten = \"[::1]:9100\"\n")).metrics;
    CHECK(v6.listen_host == "::1");
    CHECK(v6.listen_port == 9100);
    {
        const auto problems = configRefusal(dir.write("d.toml", "[metrics]\ntextfile = \"/tmp/taskhub.txt\"\n"
                                                               "textfile_interval = \"100ms\"\nlisten = \"9464\"\n"
                                                               "lsiten = \"x\"\n"));
        std::vector<std::string> got;
        for (const auto& p : problems) got.push_back(std::to_string(p.line) + ": " + p.message);
        CHECK(got == std::vector<std::string>{
                         "2: 'metrics.textfile' must end in .prom (node_exporter's textfile collector reads only "
                         "*.prom files), found \"/tmp/taskhub.txt\"",
                         "3: 'metrics.textfile_interval' must be between 1s and 24h",
                         "4: 'metrics.listen': \"9464\" has no port (expected an IP address and a port, like "
                         "\"127.0.0.1:9464\" or \"[::1]:9464\")",
                         "5: unknown key 'lsiten' in [metrics]; did you mean 'listen'? (accepted: listen, textfile, "
                         "textfile_interval)"});
    }
}

TEST_CASE("listen addresses: an IP literal and a port; precise refusals", "[daemon_config]") {
    std::string host, err;
    uint16_t port = 0;
    CHECK(parseListenAddress("0.0.0.0:1", &host, &port, &err));
    CHECK((host == "0.0.0.0" && port == 1));
    CHECK(parseListenAddress("[::]:65535", &host, &port, &err));
    CHECK((host == "::" && port == 65535));
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"localhost:9464", "\"localhost\" in \"localhost:9464\" is not an IPv4 address (host names are not resolved)"},
        {"::1:9464", "\"::1:9464\": an IPv6 address needs brackets"},
        {"[::1]9464", "\"[::1]9464\" is not [IPv6 address]:port"},
        {"[127.0.0.1]:80", "\"127.0.0.1\" in \"[127.0.0.1]:80\" is not an IPv6 address"},
        {"127.0.0.1:0", "port \"0\" in \"127.0.0.1:0\" is not a number from 1 to 65535"},
        {"127.0.0.1:65536", "port \"65536\" in \"127.0.0.1:65536\" is not a number from 1 to 65535"},
        {"127.0.0.1:", "port \"\" in \"127.0.0.1:\" is not a number from 1 to 65535"},
        {"127.0.0.1:+80", "port \"+80\" in \"127.0.0.1:+80\" is not a number from 1 to 65535"},
        {":9464", "\"\" in \":9464\" is not an IPv4 address"},
    };
    for (const auto& [text, why] : bad) {
        CAPTURE(text);
        err.clear();
        CHECK_FALSE(parseListenAddress(text, &host, &port, &err));
        CHECK(err.rfind(why, 0) == 0);
        CHECK(err.find("(expected an IP address and a port, like \"127.0.0.1:9464\" or \"[::1]:9464\")") !=
              std::string::npos);
    }
}

TEST_CASE("byte sizes: a number with an optional unit, in powers of 1024", "[daemon_config]") {
    std::string err;
    CHECK(parseByteSize("1048576", &err) == 1048576u);
    CHECK(parseByteSize("512B", &err) == 512u);
    CHECK(parseByteSize("4KB", &err) == 4096u);
    CHECK(parseByteSize("4K", &err) == 4096u);
    CHECK(parseByteSize("10 MiB", &err) == 10u << 20);
    CHECK(parseByteSize("2GB", &err) == 2ull << 30);
    for (const char* bad : {"", "MB", "10XB", "-1MB", "1.5MB", "99999999999999999999"}) {
        CAPTURE(bad);
        err.clear();
        CHECK_FALSE(parseByteSize(bad, &err));
        CHECK_FALSE(err.empty());
    }
}

TEST_CASE("a workflow may set its own keep_runs and keep_days", "[workflow]") {
    TempDir dir;
    auto plain = loadText(dir, "a.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    REQUIRE(plain.workflow);
    CHECK_FALSE(plain.workflow->keep_runs);
    CHECK_FALSE(plain.workflow->keep_days);
    auto own = loadText(dir, "b.toml", "keep_runs = 20\nkeep_days = 90\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    REQUIRE(own.workflow);
    CHECK(own.workflow->keep_runs == 20);
    CHECK(own.workflow->keep_days == 90);
    auto bad = loadText(dir, "c.toml", "keep_runs = 0\nkeep_days = \"7d\"\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    CHECK_FALSE(bad.workflow);
    CHECK(messages(bad) == std::vector<std::string>{"1: 'keep_runs' must be between 1 and 100000000, found 0",
                                                    "2: 'keep_days' must be an integer, found string"});
}

TEST_CASE("file drops default to catchup = all and overlap = queue_all; time triggers to latest and skip; "
          "what [policy] says applies to both",
          "[workflow][policy]") {
    TempDir dir;
    const std::string task = "\n[[task]]\nid = \"a\"\nplugin = \"noop\"\n";
    auto defaults = loadText(dir, "box.toml", "[[trigger]]\nwatch = \"/srv/in\"\n[[trigger]]\ncron = \"* * * * *\"\n" + task);
    INFO(Catch::Detail::stringify(messages(defaults)));
    REQUIRE(defaults.workflow);
    CHECK(defaults.workflow->catchup == Catchup::Latest);
    CHECK(defaults.workflow->overlap == Overlap::Skip);
    CHECK(defaults.workflow->file_catchup == Catchup::All);
    CHECK(defaults.workflow->file_overlap == Overlap::QueueAll);

    auto set = loadText(dir, "set.toml",
                        "[[trigger]]\nwatch = \"/srv/in\"\n[policy]\ncatchup = \"latest\"\noverlap = \"skip\"\n" + task);
    INFO(Catch::Detail::stringify(messages(set)));
    REQUIRE(set.workflow);
    CHECK(set.workflow->file_catchup == Catchup::Latest);
    CHECK(set.workflow->file_overlap == Overlap::Skip);
    CHECK(set.workflow->catchup == Catchup::Latest);
    CHECK(set.workflow->overlap == Overlap::Skip);

    auto one = loadText(dir, "one.toml", "[[trigger]]\nwatch = \"/srv/in\"\n[policy]\ncatchup = \"none\"\n" + task);
    REQUIRE(one.workflow);
    CHECK(one.workflow->file_catchup == Catchup::None);
    CHECK(one.workflow->file_overlap == Overlap::QueueAll); // not written: the file default
}

// The workflow keys of nested workflows, trigger rules, retries with backoff, priorities, params,
// templates and `when` conditions: what loads, and what each mistake is reported as.
#include <catch2/catch.hpp>

#include "config/workflow.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;
using Pairs = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("every new key loads into its field", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "etl.toml", R"(max_parallel_tasks = 4

[params]
region = "eu"
date = ""
limit = 100
ratio = 0.5
dry = true

[[task]]
id = "check"
plugin = "noop"

[[task]]
id = "extract"
plugin = "shell"
depends_on = ["check"]
command = "extract --region ${params.region} --date $${DATE}"
env = { LIMIT = "${params.limit}", PLAIN = "x" }
priority = 10
trigger_rule = "one_success"
retries = 3
retry_delay = "10s"
retry_backoff = 2.5
retry_max_delay = "5m"
retry_on_exit_codes = [75, 111]
when = "params.region == 'eu' && tasks.check.outputs.ok == 'yes'"

[[task]]
id = "sub"
workflow = "child-flow"
params = { file = "${tasks.extract.outputs.path}", n = 3 }
depends_on = ["extract"]
retry_backoff = 2
trigger_rule = "always"
)");
    REQUIRE(messages(load) == std::vector<std::string>{});
    const Workflow& wf = *load.workflow;
    CHECK(wf.max_parallel_tasks == 4);
    CHECK(wf.params == Pairs{{"region", "eu"}, {"date", ""}, {"limit", "100"}, {"ratio", "0.5"}, {"dry", "true"}});

    const TaskDef& check = wf.tasks[0];
    CHECK(check.trigger_rule == TriggerRule::AllSuccess);
    CHECK(check.priority == 0);
    CHECK(check.retry_backoff == 1.0);
    CHECK(check.when.empty());
    CHECK_FALSE(check.has_templates);

    const TaskDef& extract = wf.tasks[1];
    CHECK(extract.params_json == R"({"command":"extract --region ${params.region} --date $${DATE}"})");
    CHECK(extract.env == Pairs{{"LIMIT", "${params.limit}"}, {"PLAIN", "x"}});
    CHECK(extract.priority == 10);
    CHECK(extract.trigger_rule == TriggerRule::OneSuccess);
    CHECK(extract.retries == 3);
    CHECK(extract.retry_delay == std::chrono::seconds(10));
    CHECK(extract.retry_backoff == 2.5);
    CHECK(extract.retry_max_delay == std::chrono::minutes(5));
    CHECK(extract.retry_on_exit_codes == std::vector<int>{75, 111});
    CHECK(extract.when == "params.region == 'eu' && tasks.check.outputs.ok == 'yes'");
    CHECK(extract.has_templates);
    CHECK(extract.workflow.empty());

    const TaskDef& sub = wf.tasks[2];
    CHECK(sub.workflow == "child-flow");
    CHECK(sub.plugin.empty());
    CHECK(sub.child_params == Pairs{{"file", "${tasks.extract.outputs.path}"}, {"n", "3"}});
    CHECK(sub.params_json == "{}");
    CHECK(sub.retry_backoff == 2.0);
    CHECK(sub.trigger_rule == TriggerRule::Always);
    CHECK(sub.has_templates);
}

TEST_CASE("has_templates is set by a reference or a $${ escape, in plugin params, env or child params",
          "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([params]
p = "x"

[[task]]
id = "plain"
plugin = "shell"
command = "echo $HOME costs $5"

[[task]]
id = "escape"
plugin = "shell"
command = "echo $${HOME}"

[[task]]
id = "nested"
plugin = "noop"
args = { list = ["a", "${params.p}"] }

[[task]]
id = "env"
plugin = "noop"
env = { P = "${params.p}" }

[[task]]
id = "child"
workflow = "other"
params = { p = "${params.p}" }
)");
    REQUIRE(messages(load) == std::vector<std::string>{});
    const auto& t = load.workflow->tasks;
    CHECK_FALSE(t[0].has_templates);
    CHECK(t[1].has_templates);
    CHECK(t[2].has_templates);
    CHECK(t[3].has_templates);
    CHECK(t[4].has_templates);
}

TEST_CASE("trigger rules have one name each", "[workflow][features]") {
    CHECK(std::string(toString(TriggerRule::AllSuccess)) == "all_success");
    CHECK(std::string(toString(TriggerRule::AllDone)) == "all_done");
    CHECK(std::string(toString(TriggerRule::AllFailed)) == "all_failed");
    CHECK(std::string(toString(TriggerRule::OneSuccess)) == "one_success");
    CHECK(std::string(toString(TriggerRule::OneFailed)) == "one_failed");
    CHECK(std::string(toString(TriggerRule::NoneFailed)) == "none_failed");
    CHECK(std::string(toString(TriggerRule::Always)) == "always");
    TempDir dir;
    for (auto rule : {TriggerRule::AllSuccess, TriggerRule::AllDone, TriggerRule::AllFailed, TriggerRule::OneSuccess,
                      TriggerRule::OneFailed, TriggerRule::NoneFailed, TriggerRule::Always}) {
        auto load = loadText(dir, "w.toml", std::string("[[task]]\nid = \"a\"\nplugin = \"noop\"\ntrigger_rule = \"") +
                                                toString(rule) + "\"\n");
        REQUIRE(load.workflow);
        CHECK(load.workflow->tasks[0].trigger_rule == rule);
    }
}

TEST_CASE("bad values of the new keys say what would be right", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(max_parallel_tasks = -1

[params]
my-param = "x"
list = [1]

[[task]]
id = "a"
plugin = "noop"
trigger_rule = "all_succeeded"
priority = "high"
retries = 2
retry_delay = "1m"
retry_backoff = 0.5
retry_max_delay = "30s"
retry_on_exit_codes = [1, 256]
when = 42

[[task]]
id = "b"
plugin = "noop"
retry_backoff = "2x"
retry_on_exit_codes = 3
run_as = "no-such-user-th"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "1: 'max_parallel_tasks' must be between 0 and 1000000, found -1",
              "4: param name 'my-param' is invalid: use letters, digits and '_', not starting with a digit (it is "
              "exported as TASKHUB_PARAM_my-param)",
              "10: task 'a': 'trigger_rule' must be all_success | all_done | all_failed | one_success | one_failed | "
              "none_failed | always, found \"all_succeeded\"",
              "11: task 'a': 'priority' must be an integer, found string",
              "14: task 'a': 'retry_backoff' must be between 1.0 and 100.0, found 0.5",
              "15: task 'a': 'retry_max_delay' (30s) must not be shorter than 'retry_delay' (1m), or \"0s\" for no "
              "cap",
              "16: task 'a': 'retry_on_exit_codes' entries must be between 0 and 255, found 256",
              "17: task 'a': 'when' must be a string, found integer",
              "22: task 'b': 'retry_backoff' must be a number, found string",
              "23: task 'b': 'retry_on_exit_codes' must be an array of integers 0-255, e.g. [75, 111], found "
              "integer",
              "24: task 'b': 'run_as': no user 'no-such-user-th' in the password database (run_as names an "
              "existing account: \"user\" or \"user:group\")"});
}

TEST_CASE("a task runs either a plugin or a workflow", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"(
[[task]]
id = "both"
plugin = "noop"
workflow = "other"

[[task]]
id = "neither"
command = "true"

[[task]]
id = "sub"
workflow = "other"
command = "true"
env = { A = "b" }
retry_on_exit_codes = [1]
dependson = ["both"]

[[task]]
id = "plain"
plugin = "noop"
params = { a = "b" }

[[task]]
id = "badname"
workflow = ".hidden"
params = ["x"]
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "2: task 'both' has both 'plugin' and 'workflow' (a task runs either a plugin or another workflow; keep "
              "one)",
              "7: task 'neither' has no 'plugin' or 'workflow' (e.g. plugin = \"shell\", or workflow = \"other-name\" "
              "to run another workflow)",
              "14: task 'sub': 'command' is not accepted on a workflow task, which runs workflow 'other' and has no "
              "plugin parameters (accepted: depends_on, foreach, foreach_key, id, max_failures, max_parallel, on_empty, "
              "on_failure, params, priority, retries, retry_backoff, retry_delay, retry_max_delay, timeout, trigger_rule, when, "
              "workflow)",
              "15: task 'sub': 'env' applies to plugin tasks only (pass values to the child workflow with params = { "
              "NAME = \"value\" })",
              "16: task 'sub': 'retry_on_exit_codes' applies to plugin tasks only (a workflow task has no exit code; "
              "it fails when its child run fails)",
              "17: task 'sub': 'dependson' is not accepted on a workflow task, which runs workflow 'other' and has no "
              "plugin parameters; did you mean 'depends_on'? (accepted: depends_on, foreach, foreach_key, id, "
              "max_failures, max_parallel, on_empty, on_failure, params, priority, retries, retry_backoff, retry_delay, "
              "retry_max_delay, timeout, trigger_rule, when, workflow)",
              "22: task 'plain': 'params' is only for workflow tasks (with workflow = \"...\"); a plugin task's "
              "parameters are keys of the task itself",
              "26: task 'badname': 'workflow' must name a workflow (its file name without .toml: letters, digits, "
              "'_', '-' or '.', not starting with '.'), found \".hidden\"",
              "27: task 'badname': 'params' must be a table of the child workflow's params, e.g. params = { date = "
              "\"${params.date}\" }, found array"});
}

TEST_CASE("a task running its own workflow is a cycle, found in the file itself", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "loop.toml", "[[task]]\nid = \"again\"\nworkflow = \"loop\"\n");
    CHECK(messages(load) == std::vector<std::string>{"3: task 'again': workflow reference cycle: loop -> loop (a "
                                                     "workflow cannot run itself, directly or through other "
                                                     "workflows)"});
}

TEST_CASE("template syntax errors name the key, the column and the fix", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([params]
region = "eu"

[[task]]
id = "a"
plugin = "shell"
command = "echo ${params.region"
cwd = "${HOME}"
env = { X = "${params.}" }

[[task]]
id = "b"
workflow = "other"
params = { f = "${tasks.a.output.x}" }
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "7: task 'a': 'command': column 6: '${' is not closed (expected '}' after the reference; write '$${' "
              "for a literal '${')",
              "8: task 'a': 'cwd': column 3: unknown reference 'HOME' (expected ${params.NAME} or "
              "${tasks.ID.outputs.NAME})",
              "9: task 'a': 'env.X': column 10: expected a param name after 'params.', found '}' (a name is"
              " letters, digits and '_', not starting with a digit)",
              "14: task 'b': 'params.f': column 11: expected 'outputs' after 'tasks.a.', found 'output' (expected "
              "${params.NAME} or ${tasks.ID.outputs.NAME})"});
}

TEST_CASE("when syntax errors name the column and the fix", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([params]
region = "eu"

[[task]]
id = "a"
plugin = "noop"
when = "params.region = 'eu'"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{"7: task 'a': 'when': column 15: '=' is not an operator (expected '==')"});
}

TEST_CASE("paths load; item and index (with paths) are refused outside a task with foreach", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([params]
regions = '["eu","us"]'

[[task]]
id = "list"
plugin = "shell"
command = "echo"

[[task]]
id = "use"
plugin = "shell"
depends_on = ["list"]
command = "cp ${tasks.list.outputs.files[0]} ${tasks.list.outputs.cfg.db.host} ${params.regions.length}"
when = "tasks.list.outputs.files.length > 0"

[[task]]
id = "each"
plugin = "shell"
depends_on = ["list"]
command = "convert ${item} ${item.name}"
when = "index > 0"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "20: task 'each': 'command': ${item}: ${item} and ${index} are only available in a task with foreach "
              "(they are the item of the instance that runs)",
              "20: task 'each': 'command': ${item.name}: ${item} and ${index} are only available in a task with "
              "foreach (they are the item of the instance that runs)",
              "21: task 'each': 'when': index: ${item} and ${index} are only available in a task with foreach (they "
              "are the item of the instance that runs)"});
}

TEST_CASE("references must name a declared param or an upstream task", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([params]
region = "eu"
date = ""

[[task]]
id = "extract"
plugin = "shell"
command = "extract ${params.regoin} ${tasks.extract.outputs.x}"

[[task]]
id = "side"
plugin = "noop"

[[task]]
id = "load"
plugin = "shell"
depends_on = ["extract"]
command = "load ${tasks.extrct.outputs.path} ${tasks.side.outputs.n}"
when = "tasks.side.state == 'succeeded' || params.day"

[[task]]
id = "report"
plugin = "noop"
depends_on = ["load"]
when = "tasks.extract.outputs.path != '' && tasks.extract.state == 'succeeded'"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "8: task 'extract': 'command': ${params.regoin}: no param 'regoin' is declared; did you mean "
              "'region'? (declared: date, region)",
              "8: task 'extract': 'command': ${tasks.extract.outputs.x}: a task cannot refer to its own outputs or "
              "state (only to tasks it depends on, directly or through others)",
              "18: task 'load': 'command': ${tasks.extrct.outputs.path}: no task 'extrct' in this workflow; did you "
              "mean 'extract'?",
              "18: task 'load': 'command': ${tasks.side.outputs.n}: task 'side' is not upstream of 'load' (add "
              "\"side\" to depends_on, directly or through another task)",
              "19: task 'load': 'when': tasks.side.state: task 'side' is not upstream of 'load' (add \"side\" to "
              "depends_on, directly or through another task)",
              "19: task 'load': 'when': params.day: no param 'day' is declared; did you mean 'date'? (declared: "
              "date, region)"});
}

TEST_CASE("a param reference without any [params] says how to declare it", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", "[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = \"echo ${params.x}\"\n");
    CHECK(messages(load) == std::vector<std::string>{"4: task 'a': 'command': ${params.x}: no param 'x' is declared "
                                                     "(declare it with a default under [params], e.g. x = \"\")"});
}

TEST_CASE("the plugin validates its parameters with the templates as written", "[workflow][features]") {
    TempDir dir;
    // The stand-in shell plugin requires `command`; a template in it does not hide the key.
    auto load = loadText(dir, "w.toml", R"([params]
cmd = "true"

[[task]]
id = "a"
plugin = "shell"
command = "${params.cmd}"
)");
    REQUIRE(load.workflow);
    CHECK(load.workflow->tasks[0].params_json == R"({"command":"${params.cmd}"})");
}

TEST_CASE("retry_max_delay of 0s means no cap, whatever retry_delay is", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", "[[task]]\nid = \"a\"\nplugin = \"noop\"\nretry_delay = \"1m\"\n"
                                        "retry_max_delay = \"0s\"\nretry_backoff = 3\n");
    REQUIRE(messages(load) == std::vector<std::string>{});
    CHECK(load.workflow->tasks[0].retry_max_delay.count() == 0);
    CHECK(load.workflow->tasks[0].retry_backoff == 3.0);
}

TEST_CASE("references reach upstream tasks at any depth; each use of an unknown task is reported",
          "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"([[task]]
id = "a"
plugin = "noop"

[[task]]
id = "b"
plugin = "noop"
depends_on = ["a"]

[[task]]
id = "side"
plugin = "noop"

[[task]]
id = "c"
plugin = "noop"
depends_on = ["b"]
x = "${tasks.a.outputs.p} ${tasks.b.outputs.p} ${tasks.side.outputs.p} ${tasks.a.outputs.q} ${tasks.sid.outputs.p}"

[[task]]
id = "d"
plugin = "noop"
depends_on = ["side", "c"]
when = "tasks.a.state == 'succeeded' && tasks.side.state == 'succeeded' && tasks.sid.state == 'failed'"
)");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "18: task 'c': 'x': ${tasks.side.outputs.p}: task 'side' is not upstream of 'c' (add \"side\" to "
              "depends_on, directly or through another task)",
              "18: task 'c': 'x': ${tasks.sid.outputs.p}: no task 'sid' in this workflow; did you mean 'side'?",
              "24: task 'd': 'when': tasks.sid.state: no task 'sid' in this workflow; did you mean 'side'?"});
}

TEST_CASE("log_to_journal: the workflow's value, a task's own, and what is refused", "[workflow][features]") {
    TempDir dir;
    auto load = loadText(dir, "chatty.toml", R"(log_to_journal = true

[[task]]
id = "a"
plugin = "noop"

[[task]]
id = "b"
plugin = "noop"
log_to_journal = false
)");
    REQUIRE(messages(load) == std::vector<std::string>{});
    CHECK(load.workflow->log_to_journal);
    CHECK_FALSE(load.workflow->tasks[0].log_to_journal.has_value());
    CHECK(load.workflow->tasks[1].log_to_journal == std::optional<bool>(false));

    auto quiet = loadText(dir, "quiet.toml", "[[task]]\nid = \"a\"\nplugin = \"noop\"\n");
    REQUIRE(quiet.workflow);
    CHECK_FALSE(quiet.workflow->log_to_journal);

    auto bad = loadText(dir, "bad.toml", R"(log_to_journal = "yes"

[[task]]
id = "a"
plugin = "noop"
log_to_journal = 1

[[task]]
id = "sub"
workflow = "quiet"
log_to_journal = true
)");
    CHECK(messages(bad) ==
          std::vector<std::string>{
              "1: 'log_to_journal' must be true or false, found string",
              "6: task 'a': 'log_to_journal' must be true or false, found integer",
              "11: task 'sub': 'log_to_journal' applies to plugin tasks only (a workflow task prints nothing; set "
              "log_to_journal in workflow 'quiet')"});
}

TEST_CASE("fan-out keys: what loads, and what is refused with both keys named", "[workflow][fanout]") {
    TempDir dir;
    auto good = loadText(dir, "good.toml", R"([params]
regions = ["eu", "us"]

[[task]]
id = "list"
plugin = "noop"

[[task]]
id = "a"
plugin = "noop"
depends_on = ["list"]
foreach = "${tasks.list.outputs.files}"
max_parallel = 4
max_failures = "5%"
on_empty = "skip"

[[task]]
id = "b"
plugin = "noop"
foreach = [1, "two", {x = 3}]
foreach_key = "k${index}"
max_failures = 2
)");
    INFO(messages(good).size());
    REQUIRE(good.workflow);
    const auto& a = good.workflow->tasks[1].fan.get();
    CHECK(a.source == "${tasks.list.outputs.files}");
    CHECK(a.max_parallel == 4);
    CHECK(a.max_failures == 5);
    CHECK(a.max_failures_percent);
    CHECK(a.allowedFailures(100) == 5);
    CHECK(a.on_empty == FanOutDef::OnEmpty::Skip);
    const auto& b = good.workflow->tasks[2].fan.get();
    CHECK(b.literal == R"([1,"two",{"x":3}])");
    CHECK(b.key == "k${index}");
    CHECK(good.workflow->params[0].second == R"(["eu","us"])");

    auto bad = loadText(dir, "bad.toml", R"([[task]]
id = "list"
plugin = "noop"

[[task]]
id = "a"
plugin = "noop"
max_parallel = 2
command = "${item}"

[[task]]
id = "b"
plugin = "noop"
depends_on = ["list"]
foreach = "x ${tasks.list.outputs.files}"

[[task]]
id = "c"
plugin = "noop"
depends_on = ["list"]
foreach = "${tasks.list.outputs.files}"
trigger_rule = "always"
max_failures = "150%"
on_empty = "fail"
foreach_key = "constant"

[[task]]
id = "d"
plugin = "noop"
foreach = "${tasks.list.outputs.files}"
when = "item == 'x'"

[[task]]
id = "e"
plugin = "noop"
foreach = [1, 2]
when = "'${item}' == '1'"
)");
    CHECK_FALSE(bad.workflow);
    const auto got = messages(bad);
    auto has = [&](const std::string& m) {
        INFO(m);
        CHECK(std::any_of(got.begin(), got.end(), [&](const std::string& g) { return g.find(m) != std::string::npos; }));
    };
    has("8: task 'a': 'max_parallel' only applies to a fan-out: add foreach = \"${...}\" (a list) or remove 'max_parallel'");
    has("9: task 'a': 'command': ${item}: ${item} and ${index} are only available in a task with foreach");
    has("15: task 'b': 'foreach' must be one reference to a list, e.g. \"${tasks.list.outputs.files}\"");
    has("22: task 'c': 'foreach' reads an upstream task's output, which trigger_rule = \"always\" does not wait for");
    has("23: task 'c': 'max_failures' must be a number of instances (max_failures = 3) or a percentage of them "
        "(max_failures = \"5%\", 0% to 100%), found \"150%\"");
    has("24: task 'c': 'on_empty' must be \"succeed\" (the task succeeds with no instances) or \"skip\", found \"fail\"");
    has("25: task 'c': 'foreach_key' must use the item");
    // Conditions parse item (and paths into it), but a fan-out's `when` is decided before any item.
    has("31: task 'd': 'when': item: 'when' and 'foreach' are decided once for the whole fan-out");
    has("37: task 'e': 'when' is decided once for the whole fan-out, before any instance exists, so it cannot use "
        "${item} or ${index}");
}

TEST_CASE("fan-out keys of a literal list are checked when the file is loaded", "[workflow][fanout]") {
    TempDir dir;
    auto load = loadText(dir, "keys.toml", R"([[task]]
id = "a"
plugin = "noop"
foreach = ["x", "y", "x"]
foreach_key = "${item}"

[[task]]
id = "b"
plugin = "noop"
foreach = [{name = "eu"}, {region = "us"}]
foreach_key = "${item.name}"
)");
    CHECK_FALSE(load.workflow);
    const auto got = messages(load);
    auto has = [&](const std::string& m) {
        INFO(m);
        CHECK(std::any_of(got.begin(), got.end(), [&](const std::string& g) { return g.find(m) != std::string::npos; }));
    };
    has("5: task 'a': foreach_key \"${item}\" gives \"x\" for items 0 and 2; instance keys must be unique");
    has("11: task 'b': foreach_key \"${item.name}\" for item 1: ${item.name}: no key 'name'");
}

// Workflow tasks across files: the child must exist and load, must declare the params it is given,
// and workflows must not run each other in a cycle. One bad file never stops unrelated files.
#include <catch2/catch.hpp>

#include "config/workflow.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;

namespace {

const char* kChild = R"([params]
file = ""
mode = "fast"

[[task]]
id = "work"
plugin = "noop"
)";

std::string parentOf(const std::string& child, const std::string& params = "") {
    return "[[task]]\nid = \"sub\"\nworkflow = \"" + child + "\"\n" + params;
}

WorkflowSet loadDir(const TempDir& dir) {
    FakeCatalog catalog;
    return loadWorkflowDir(dir.path, {"UTC"}, catalog);
}

std::vector<std::string> names(const WorkflowSet& set) {
    std::vector<std::string> out;
    for (const auto& [name, wf] : set.workflows) out.push_back(name);
    return out;
}

std::vector<std::string> failed(const WorkflowSet& set) {
    std::vector<std::string> out;
    for (const auto& f : set.failed_files) out.push_back(f.filename().string());
    return out;
}

} // namespace

TEST_CASE("a workflow task naming a loaded workflow with declared params loads", "[workflow][refs]") {
    TempDir dir;
    dir.write("child.toml", kChild);
    dir.write("parent.toml", parentOf("child", "params = { file = \"/x\", mode = \"slow\" }\n"));
    auto set = loadDir(dir);
    CHECK(messages(set.problems) == std::vector<std::string>{});
    CHECK(names(set) == std::vector<std::string>{"child", "parent"});
}

TEST_CASE("an unknown child workflow is reported at the task, with a suggestion", "[workflow][refs]") {
    TempDir dir;
    dir.write("child.toml", kChild);
    dir.write("parent.toml", parentOf("chlid"));
    auto set = loadDir(dir);
    CHECK(messages(set.problems) ==
          std::vector<std::string>{"3: task 'sub': no workflow named 'chlid'; did you mean 'child'? (expected the file " +
                                   (dir.path / "chlid.toml").string() + ")"});
    CHECK(set.problems[0].file == (dir.path / "parent.toml").string());
    CHECK(names(set) == std::vector<std::string>{"child"});
    CHECK(failed(set) == std::vector<std::string>{"parent.toml"});
}

TEST_CASE("child params must be declared by the child", "[workflow][refs]") {
    TempDir dir;
    dir.write("child.toml", kChild);
    dir.write("bare.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    dir.write("parent.toml", R"([[task]]
id = "sub"
workflow = "child"
params = { file = "/x", fille = "/y" }

[[task]]
id = "other"
workflow = "bare"
params = { x = "1" }
)");
    auto set = loadDir(dir);
    CHECK(messages(set.problems) ==
          std::vector<std::string>{"4: task 'sub': 'params.fille': workflow 'child' declares no param 'fille'; did you "
                                   "mean 'file'? (declared: file, mode)",
                                   "9: task 'other': 'params.x': workflow 'bare' declares no param 'x' (it declares no "
                                   "params)"});
    CHECK(failed(set) == std::vector<std::string>{"parent.toml"});
}

TEST_CASE("reference cycles are rejected, each member naming its cycle", "[workflow][refs]") {
    TempDir dir;
    dir.write("a.toml", "[[task]]\nid = \"first\"\nplugin = \"noop\"\n\n[[task]]\nid = \"to-b\"\nworkflow = \"b\"\n");
    dir.write("b.toml", parentOf("c"));
    dir.write("c.toml", parentOf("a"));
    dir.write("d.toml", parentOf("a")); // not on the cycle, but runs a workflow that does not load
    dir.write("e.toml", parentOf("e"));
    dir.write("ok.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    auto set = loadDir(dir);
    CHECK(messages(set.problems) ==
          std::vector<std::string>{
              "7: task 'to-b': workflow reference cycle: a -> b -> c -> a (a workflow cannot run itself, directly or "
              "through other workflows)",
              "3: task 'sub': workflow reference cycle: b -> c -> a -> b (a workflow cannot run itself, directly or "
              "through other workflows)",
              "3: task 'sub': workflow reference cycle: c -> a -> b -> c (a workflow cannot run itself, directly or "
              "through other workflows)",
              "3: task 'sub': workflow 'a' did not load (fix the problems reported for a.toml)",
              "3: task 'sub': workflow reference cycle: e -> e (a workflow cannot run itself, directly or through "
              "other workflows)"});
    CHECK(names(set) == std::vector<std::string>{"ok"});
    CHECK(failed(set) == std::vector<std::string>{"a.toml", "b.toml", "c.toml", "d.toml", "e.toml"});
}

TEST_CASE("a workflow running a workflow that did not load says so, transitively", "[workflow][refs]") {
    TempDir dir;
    dir.write("broken.toml", "[[task]]\nid = \"t\"\nplugin = \"nope\"\n");
    dir.write("mid.toml", parentOf("broken"));
    dir.write("top.toml", parentOf("mid"));
    dir.write("fine.toml", parentOf("ok"));
    dir.write("ok.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    auto set = loadDir(dir);
    CHECK(messages(set.problems) == std::vector<std::string>{
                                        "3: task 't': no plugin named 'nope' is loaded (loaded: noop, shell)",
                                        "3: task 'sub': workflow 'broken' did not load (fix the problems reported "
                                        "for broken.toml)",
                                        "3: task 'sub': workflow 'mid' did not load (fix the problems reported for "
                                        "mid.toml)"});
    CHECK(names(set) == std::vector<std::string>{"fine", "ok"});
    CHECK(failed(set) == std::vector<std::string>{"broken.toml", "mid.toml", "top.toml"});
}

TEST_CASE("validateWorkflowFiles checks references against the workflows directory", "[workflow][refs]") {
    TempDir dir;
    dir.write("workflows.d/child.toml", kChild);
    dir.write("workflows.d/parent.toml", parentOf("child", "params = { nope = \"1\" }\n"));
    dir.write("workflows.d/broken.toml", "[[task]]\nid = \"t\"\nplugin = \"nope\"\n");
    // A new version of parent.toml replaces the directory's file of the same name.
    auto fixed = dir.write("new/parent.toml", parentOf("child", "params = { mode = \"slow\" }\n"));
    auto usesBroken = dir.write("new/uses-broken.toml", parentOf("broken"));
    auto unknown = dir.write("new/unknown.toml", parentOf("nothing"));
    auto loop = dir.write("new/loop.toml", parentOf("loop2"));
    auto loop2 = dir.write("new/loop2.toml", parentOf("loop"));
    FakeCatalog catalog;
    auto results = validateWorkflowFiles({fixed, usesBroken, unknown, loop, loop2}, dir.path / "workflows.d", {"UTC"},
                                         catalog);
    REQUIRE(results.size() == 5);
    CHECK(messages(results[0]) == std::vector<std::string>{});
    CHECK(results[0].workflow);
    CHECK(messages(results[1]) == std::vector<std::string>{"3: task 'sub': workflow 'broken' did not load (fix the "
                                                           "problems reported for broken.toml)"});
    CHECK_FALSE(results[1].workflow);
    CHECK(messages(results[2]) == std::vector<std::string>{"3: task 'sub': no workflow named 'nothing' (expected the "
                                                           "file " + (dir.path / "workflows.d/nothing.toml").string() +
                                                           ")"});
    CHECK(messages(results[3]) == std::vector<std::string>{"3: task 'sub': workflow reference cycle: loop -> loop2 -> "
                                                           "loop (a workflow cannot run itself, directly or through "
                                                           "other workflows)"});
    CHECK(messages(results[4]) == std::vector<std::string>{"3: task 'sub': workflow reference cycle: loop2 -> loop -> "
                                                           "loop2 (a workflow cannot run itself, directly or through "
                                                           "other workflows)"});
}

TEST_CASE("validateWorkflowFiles without a workflows directory checks the files among themselves",
          "[workflow][refs]") {
    TempDir dir;
    auto child = dir.write("child.toml", kChild);
    auto parent = dir.write("parent.toml", parentOf("child", "params = { file = \"x\" }\n"));
    FakeCatalog catalog;
    auto results = validateWorkflowFiles({parent, child}, dir.path / "missing", {"UTC"}, catalog);
    REQUIRE(results.size() == 2);
    CHECK(messages(results[0]) == std::vector<std::string>{});
    CHECK(messages(results[1]) == std::vector<std::string>{});
}

TEST_CASE("several tasks running the same workflows: the first on a cycle names it, the others say "
          "their child did not load",
          "[workflow][refs]") {
    TempDir dir;
    dir.write("a.toml", "[[task]]\nid = \"c1\"\nworkflow = \"ok\"\n\n[[task]]\nid = \"c2\"\nworkflow = \"ok\"\n\n"
                        "[[task]]\nid = \"b1\"\nworkflow = \"b\"\n\n[[task]]\nid = \"b2\"\nworkflow = \"b\"\n");
    dir.write("b.toml", parentOf("a") + "\n[[task]]\nid = \"again\"\nworkflow = \"a\"\n");
    dir.write("ok.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    auto set = loadDir(dir);
    CHECK(messages(set.problems) ==
          std::vector<std::string>{
              "11: task 'b1': workflow reference cycle: a -> b -> a (a workflow cannot run itself, directly or "
              "through other workflows)",
              "15: task 'b2': workflow 'b' did not load (fix the problems reported for b.toml)",
              "3: task 'sub': workflow reference cycle: b -> a -> b (a workflow cannot run itself, directly or "
              "through other workflows)",
              "7: task 'again': workflow 'a' did not load (fix the problems reported for a.toml)"});
    CHECK(names(set) == std::vector<std::string>{"ok"});
    CHECK(failed(set) == std::vector<std::string>{"a.toml", "b.toml"});
}

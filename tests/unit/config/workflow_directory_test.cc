// The workflows directory as the daemon runs it: last good versions, retirement, and updates file
// by file that give the same result as reading the whole directory again.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <thread>
#include <sstream>
#include <sys/stat.h>

#include "config/workflow_directory.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;
using Kind = WorkflowDirectory::Change::Kind;

namespace {

std::string noopWorkflow(const std::string& description) {
    return "description = \"" + description + "\"\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n";
}

std::string parentOf(const std::string& child) {
    return "[[task]]\nid = \"sub\"\nworkflow = \"" + child + "\"\n";
}

// "kind name" for each change, in order.
std::vector<std::string> kinds(const std::vector<WorkflowDirectory::Change>& changes) {
    std::vector<std::string> out;
    for (const auto& c : changes) out.push_back(std::string(toString(c.kind)) + " " + c.name);
    return out;
}

// name=version of each running workflow.
std::vector<std::string> running(const WorkflowDirectory& d) {
    std::vector<std::string> out;
    for (const auto& [name, wf] : d.running()) out.push_back(name + "=" + wf->version);
    return out;
}

std::vector<std::string> problems(const WorkflowDirectory& d) {
    std::vector<std::string> out;
    for (const auto& p : d.problems()) out.push_back(p.str());
    return out;
}

} // namespace

TEST_CASE("an update loads a new file, replaces a changed one and retires a deleted one", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("a.toml", noopWorkflow("one"));
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    CHECK(kinds(d.reloadAll()) == std::vector<std::string>{"added a"});
    const auto first = d.running().at("a");

    dir.write("b.toml", noopWorkflow("two"));
    CHECK(kinds(d.update({"b.toml"})) == std::vector<std::string>{"added b"});
    CHECK(d.running().at("a") == first); // untouched

    dir.write("a.toml", noopWorkflow("changed"));
    auto changes = d.update({"a.toml"});
    REQUIRE(kinds(changes) == std::vector<std::string>{"changed a"});
    CHECK(changes[0].old_version == first->version);
    CHECK(changes[0].version == d.running().at("a")->version);
    CHECK(d.running().at("a")->description == "changed");

    // The same content written again changes nothing.
    dir.write("a.toml", noopWorkflow("changed"));
    CHECK(d.update({"a.toml"}).empty());

    std::filesystem::remove(dir.path / "b.toml");
    CHECK(kinds(d.update({"b.toml"})) == std::vector<std::string>{"retired b"});
    CHECK(d.running().count("b") == 0);
}

TEST_CASE("a broken file keeps its last good version until it is fixed", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("a.toml", noopWorkflow("good"));
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    d.reloadAll();
    const std::string good = d.running().at("a")->version;

    dir.write("a.toml", "[[task]]\nid = \"t\"\nplugin = \"noop\"\nbroken = \n");
    auto changes = d.update({"a.toml"});
    REQUIRE(kinds(changes) == std::vector<std::string>{"invalid a"});
    CHECK(changes[0].version == good);
    CHECK(d.running().at("a")->version == good);
    REQUIRE(d.failedFiles() == 1);
    CHECK(problems(d).at(0).rfind((dir.path / "a.toml").string() + ":4: ", 0) == 0);

    dir.write("a.toml", noopWorkflow("good"));
    CHECK(kinds(d.update({"a.toml"})) == std::vector<std::string>{"fixed a"});
    CHECK(d.failedFiles() == 0);
    CHECK(d.running().at("a")->version == good);
}

TEST_CASE("files that run a changed workflow are checked again", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("child.toml", noopWorkflow("child"));
    dir.write("parent.toml", parentOf("child"));
    dir.write("grand.toml", parentOf("parent"));
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    CHECK(kinds(d.reloadAll()) == std::vector<std::string>{"added child", "added grand", "added parent"});

    std::filesystem::remove(dir.path / "child.toml");
    CHECK(kinds(d.update({"child.toml"})) ==
          std::vector<std::string>{"retired child", "invalid grand", "invalid parent"});
    CHECK(running(d).size() == 2); // parent and grand keep their last good versions
    CHECK(problems(d) ==
          std::vector<std::string>{
              (dir.path / "grand.toml").string() +
                  ":3: task 'sub': workflow 'parent' did not load (fix the problems reported for parent.toml)",
              (dir.path / "parent.toml").string() + ":3: task 'sub': no workflow named 'child' (expected the file " +
                  (dir.path / "child.toml").string() + ")"});

    dir.write("child.toml", noopWorkflow("back"));
    CHECK(kinds(d.update({"child.toml"})) == std::vector<std::string>{"added child", "fixed grand", "fixed parent"});
    CHECK(problems(d).empty());
}

TEST_CASE("a cycle made by one file is refused and the files in it keep running", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("a.toml", parentOf("b"));
    dir.write("b.toml", noopWorkflow("leaf"));
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    d.reloadAll();
    dir.write("b.toml", parentOf("a"));
    CHECK(kinds(d.update({"b.toml"})) == std::vector<std::string>{"invalid a", "invalid b"});
    CHECK(d.running().at("b")->description == "leaf");
}

TEST_CASE("names that are not workflow files are ignored", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    d.reloadAll();
    for (const char* name : {".a.toml.swp", "a.toml~", "4913", "a.toml.tmp", "a.toml.part", "#a.toml#", ".a.toml"}) {
        dir.write(name, "this is not TOML [");
        CHECK(d.update({name}).empty());
        CHECK(isWorkflowFileName(name) == false);
    }
    CHECK(d.problems().empty());
    CHECK(isWorkflowFileName("a.toml"));
}

TEST_CASE("a file the file check refuses does not load, with the reason", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("a.toml", noopWorkflow("good"));
    WorkflowDefaults defaults{"UTC"};
    defaults.read_file = [](const std::filesystem::path& p, std::string* text) -> std::optional<std::string> {
        struct stat st {};
        if (::stat(p.c_str(), &st) == 0 && (st.st_mode & S_IWGRP)) return p.string() + " is group-writable";
        std::ifstream in(p);
        std::stringstream ss;
        ss << in.rdbuf();
        *text = ss.str();
        return std::nullopt;
    };
    WorkflowDirectory d(dir.path, defaults, catalog);
    d.reloadAll();
    ::chmod((dir.path / "a.toml").c_str(), 0664);
    CHECK(kinds(d.update({"a.toml"})) == std::vector<std::string>{"invalid a"});
    CHECK(problems(d) == std::vector<std::string>{(dir.path / "a.toml").string() + ": file refused: " +
                                                  (dir.path / "a.toml").string() + " is group-writable"});
}

TEST_CASE("a directory that cannot be read changes nothing", "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("w/a.toml", noopWorkflow("good"));
    WorkflowDirectory d(dir.path / "w", {"UTC"}, catalog);
    d.reloadAll();
    std::filesystem::rename(dir.path / "w", dir.path / "gone");
    CHECK(d.reloadAll().empty());
    CHECK(running(d).size() == 1);
    REQUIRE(problems(d).size() == 1);
    CHECK(problems(d)[0].find("cannot read workflows directory") != std::string::npos);
    std::filesystem::rename(dir.path / "gone", dir.path / "w");
    d.reloadAll();
    CHECK(problems(d).empty());
}

TEST_CASE("updates file by file give the same result as reading the whole directory", "[workflow][directory]") {
    // Random edits of 8 files that run each other (with params the child may not declare),
    // break, and disappear. After each edit, one directory is updated with the edited file and
    // the other reads everything; running versions and problems must agree.
    TempDir dir;
    FakeCatalog catalog;
    std::mt19937 rng(42);
    auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    auto name = [](int i) { return "w" + std::to_string(i); };
    for (int i = 0; i < 8; ++i) dir.write(name(i) + ".toml", noopWorkflow(name(i)));
    WorkflowDirectory incremental(dir.path, {"UTC"}, catalog);
    WorkflowDirectory full(dir.path, {"UTC"}, catalog);
    incremental.reloadAll();
    full.reloadAll();
    for (int step = 0; step < 400; ++step) {
        const int i = pick(8);
        const std::string file = name(i) + ".toml";
        switch (pick(5)) {
        case 0: std::filesystem::remove(dir.path / file); break;
        case 1: dir.write(file, "[[task]]\nid = \"t\"\nplugin = \"shell\"\ncomand = \"x\"\n"); break;
        case 2: dir.write(file, noopWorkflow("v" + std::to_string(pick(3))) + "[params]\nmode = \"a\"\n"); break;
        default: {
            std::string text = noopWorkflow("p" + std::to_string(step));
            for (int k = 0, n = pick(3); k < n; ++k) {
                text += "[[task]]\nid = \"run" + std::to_string(k) + "\"\nworkflow = \"" + name(pick(9)) + "\"\n";
                if (pick(2)) text += "params = { mode = \"b\" }\n";
            }
            dir.write(file, text);
        }
        }
        incremental.update({file});
        full.reloadAll();
        INFO("step " << step << ", file " << file);
        REQUIRE(running(incremental) == running(full));
        REQUIRE(problems(incremental) == problems(full));
    }
}

TEST_CASE("prepared on another thread and applied in order, batches give what reloadAll and update give",
          "[workflow][directory]") {
    TempDir dir;
    FakeCatalog catalog;
    dir.write("a.toml", noopWorkflow("one"));
    dir.write("b.toml", parentOf("a"));
    WorkflowDirectory d(dir.path, {"UTC"}, catalog);
    std::shared_ptr<WorkflowDirectory::Batch> all;
    std::thread([&] { all = d.prepareAll(catalog); }).join();
    CHECK(d.running().empty()); // nothing changes before apply()
    CHECK(kinds(d.apply(*all)) == std::vector<std::string>{"added a", "added b"});

    // Prepared in order, applied in order: the deletion after the change wins.
    dir.write("a.toml", noopWorkflow("changed"));
    std::shared_ptr<WorkflowDirectory::Batch> change, removal;
    std::thread([&] { change = d.prepareSome({"a.toml"}, catalog); }).join();
    std::filesystem::remove(dir.path / "a.toml");
    std::thread([&] { removal = d.prepareSome({"a.toml", "ignored.txt"}, catalog); }).join();
    CHECK(kinds(d.apply(*change)) == std::vector<std::string>{"changed a"});
    CHECK(kinds(d.apply(*removal)) == std::vector<std::string>{"retired a", "invalid b"});

    CHECK(d.running().count("b") == 1); // its last good version keeps running
    WorkflowDirectory fresh(dir.path, {"UTC"}, catalog);
    fresh.reloadAll();
    CHECK(problems(fresh) == problems(d));
}

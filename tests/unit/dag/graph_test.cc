// DAG validation and the way a run moves through its graph with the all_success rule.
#include <catch2/catch.hpp>

#include "dag/graph.h"

using namespace taskhub::dag;

namespace {

std::vector<std::string> names(const Graph& g, const std::vector<uint32_t>& nodes) {
    std::vector<std::string> out;
    for (auto n : nodes) out.push_back(g.id(n));
    return out;
}

using Strings = std::vector<std::string>;

} // namespace

TEST_CASE("validate reports duplicates, unknown and self dependencies", "[dag]") {
    auto problems = validate({{"a", {}}, {"a", {}}, {"b", {"b", "zzz"}}, {"", {}}});
    REQUIRE(problems.size() == 4);
    CHECK(problems[0].node == 1);
    CHECK(problems[0].message == "duplicate task id 'a' (first defined by task #1)");
    CHECK(problems[1].message == "task id must not be empty");
    CHECK(problems[2].message == "task 'b' depends on itself");
    CHECK(problems[3].message == "task 'b' depends on unknown task 'zzz'");
    CHECK(problems[3].key == "depends_on");
}

TEST_CASE("validate names a cycle in order, once", "[dag]") {
    auto problems = validate({{"x", {}}, {"a", {"x", "c"}}, {"b", {"a"}}, {"c", {"b"}}});
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].message == "dependency cycle: a -> c -> b -> a");
    CHECK(validate({{"a", {}}, {"b", {"a"}}, {"c", {"a", "b"}}}).empty());
}

TEST_CASE("a diamond becomes ready in dependency order", "[dag]") {
    std::vector<NodeSpec> specs{{"a", {}}, {"b", {"a"}}, {"c", {"a"}}, {"d", {"b", "c"}}};
    Graph g(specs);
    Progress p(g);
    CHECK(names(g, p.start()) == Strings{"a"});
    std::vector<uint32_t> ready, skipped;
    p.finish(0, Outcome::Succeeded, &ready, &skipped);
    CHECK(names(g, ready) == Strings{"b", "c"});
    ready.clear();
    p.finish(2, Outcome::Succeeded, &ready, &skipped);
    CHECK(ready.empty()); // d still waits for b
    p.finish(1, Outcome::Succeeded, &ready, &skipped);
    CHECK(names(g, ready) == Strings{"d"});
    CHECK(skipped.empty());
}

TEST_CASE("independent roots start together in file order", "[dag]") {
    Graph g({{"z", {}}, {"y", {"z"}}, {"x", {}}});
    Progress p(g);
    CHECK(names(g, p.start()) == Strings{"z", "x"});
}

TEST_CASE("a failure skips everything downstream, transitively, and nothing else", "[dag]") {
    // a -> b -> c, a -> d, e (independent)
    Graph g({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {"a"}}, {"e", {}}});
    Progress p(g);
    CHECK(names(g, p.start()) == Strings{"a", "e"});
    std::vector<uint32_t> ready, skipped;
    p.finish(0, Outcome::Succeeded, &ready, &skipped);
    CHECK(names(g, ready) == Strings{"b", "d"});
    ready.clear();
    p.finish(1, Outcome::Failed, &ready, &skipped);
    CHECK(ready.empty());
    CHECK(names(g, skipped) == Strings{"c"});
    skipped.clear();
    p.finish(3, Outcome::Succeeded, &ready, &skipped);
    p.finish(4, Outcome::Succeeded, &ready, &skipped);
    CHECK(ready.empty());
    CHECK(skipped.empty());
}

TEST_CASE("a join waits for all inputs and is skipped if any did not succeed", "[dag]") {
    Graph g({{"a", {}}, {"b", {}}, {"j", {"a", "b"}}, {"k", {"j"}}});
    Progress p(g);
    p.start();
    std::vector<uint32_t> ready, skipped;
    p.finish(0, Outcome::Cancelled, &ready, &skipped);
    CHECK(skipped.empty()); // j still waits for b
    p.finish(1, Outcome::Succeeded, &ready, &skipped);
    CHECK(ready.empty());
    CHECK(names(g, skipped) == Strings{"j", "k"});
}

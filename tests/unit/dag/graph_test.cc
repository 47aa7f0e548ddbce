// DAG validation and the way a run moves through its graph with the all_success rule.
#include <catch2/catch.hpp>

#include <algorithm>

#include "dag/graph.h"

using namespace taskhub::dag;

namespace {

std::vector<std::string> names(const Graph& g, const std::vector<uint32_t>& nodes) {
    std::vector<std::string> out;
    for (auto n : nodes) out.emplace_back(g.id(n));
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

TEST_CASE("a join is skipped as soon as one input did not succeed", "[dag]") {
    Graph g({{"a", {}}, {"b", {}}, {"j", {"a", "b"}}, {"k", {"j"}}});
    Progress p(g);
    p.start();
    std::vector<uint32_t> ready, skipped;
    p.finish(0, Outcome::Cancelled, &ready, &skipped);
    CHECK(names(g, skipped) == Strings{"j", "k"}); // all_success can no longer be met
    skipped.clear();
    p.finish(1, Outcome::Succeeded, &ready, &skipped);
    CHECK(ready.empty());
    CHECK(skipped.empty()); // reported once only
}

namespace {

// What happens to node j (depends on a and b, rule `rule`) when a ends with `first` and then b
// with `second`: "R1"/"K1" ready/skipped right after a, "R2"/"K2" after b, "-" never decided.
std::string decide(TriggerRule rule, Outcome first, Outcome second) {
    Graph g({{"a", {}}, {"b", {}}, {"j", {"a", "b"}}});
    Progress p(g, {TriggerRule::AllSuccess, TriggerRule::AllSuccess, rule});
    std::vector<uint32_t> started = p.start();
    if (std::find(started.begin(), started.end(), 2u) != started.end()) return "R0";
    std::vector<uint32_t> ready, skipped;
    p.finish(0, first, &ready, &skipped);
    if (!ready.empty()) return "R1";
    if (!skipped.empty()) return "K1";
    p.finish(1, second, &ready, &skipped);
    if (!ready.empty()) return "R2";
    if (!skipped.empty()) return "K2";
    return "-";
}

} // namespace

TEST_CASE("trigger rules: the truth table for two upstream tasks", "[dag][rules]") {
    using O = Outcome;
    using R = TriggerRule;
    constexpr O S = O::Succeeded, F = O::Failed, K = O::Skipped, C = O::Cancelled;
    struct Row {
        R rule;
        O first, second;
        const char* expected;
    };
    // Decided as early as the outcome is certain; a cancelled upstream counts as failed.
    const Row rows[] = {
        {R::AllSuccess, S, S, "R2"}, {R::AllSuccess, S, F, "K2"}, {R::AllSuccess, F, S, "K1"},
        {R::AllSuccess, S, K, "K2"}, {R::AllSuccess, K, S, "K1"}, {R::AllSuccess, C, S, "K1"},
        {R::AllFailed, F, F, "R2"}, {R::AllFailed, F, C, "R2"}, {R::AllFailed, F, S, "K2"},
        {R::AllFailed, S, F, "K1"}, {R::AllFailed, K, F, "K1"}, {R::AllFailed, F, K, "K2"},
        {R::AllDone, S, S, "R2"}, {R::AllDone, F, K, "R2"}, {R::AllDone, C, F, "R2"},
        {R::AllDone, K, K, "R2"},
        {R::OneSuccess, S, F, "R1"}, {R::OneSuccess, F, S, "R2"}, {R::OneSuccess, F, K, "K2"},
        {R::OneSuccess, K, K, "K2"}, {R::OneSuccess, C, F, "K2"},
        {R::OneFailed, F, S, "R1"}, {R::OneFailed, S, F, "R2"}, {R::OneFailed, S, C, "R2"},
        {R::OneFailed, S, K, "K2"}, {R::OneFailed, K, S, "K2"},
        {R::NoneFailed, S, S, "R2"}, {R::NoneFailed, S, K, "R2"}, {R::NoneFailed, K, K, "R2"},
        {R::NoneFailed, F, S, "K1"}, {R::NoneFailed, S, C, "K2"},
        {R::Always, F, F, "R0"}, {R::Always, S, S, "R0"},
    };
    for (const Row& row : rows) {
        INFO(toString(row.rule) << " after " << static_cast<int>(row.first) << ", "
                                << static_cast<int>(row.second));
        CHECK(decide(row.rule, row.first, row.second) == row.expected);
    }
}

TEST_CASE("trigger rules: a node without upstream starts at once under every rule", "[dag][rules]") {
    for (TriggerRule rule : {TriggerRule::AllSuccess, TriggerRule::AllDone, TriggerRule::AllFailed,
                             TriggerRule::OneSuccess, TriggerRule::OneFailed,
                             TriggerRule::NoneFailed, TriggerRule::Always}) {
        Graph g(std::vector<NodeSpec>{NodeSpec{"a", {}}});
        Progress p(g, {rule});
        CHECK(p.start() == std::vector<uint32_t>{0});
    }
}

TEST_CASE("trigger rules: skips propagate as the rules downstream say", "[dag][rules]") {
    // a fails; b (all_success) is skipped; c (none_failed, after b) runs since a skip is not a
    // failure; d (all_done, after b) runs; e (all_success, after b) is skipped.
    Graph g({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"d", {"b"}}, {"e", {"b"}}});
    Progress p(g, {TriggerRule::AllSuccess, TriggerRule::AllSuccess, TriggerRule::NoneFailed,
                   TriggerRule::AllDone, TriggerRule::AllSuccess});
    p.start();
    std::vector<uint32_t> ready, skipped;
    p.finish(0, Outcome::Failed, &ready, &skipped);
    CHECK(names(g, skipped) == Strings{"b", "e"});
    CHECK(names(g, ready) == Strings{"c", "d"});
}

TEST_CASE("restore: a retried node runs again, its skipped dependants are decided anew", "[dag]") {
    // a -> b -> c; a failed, b and c were skipped. Retrying a: a ready, b and c wait.
    Graph g({{"a", {}}, {"b", {"a"}}, {"c", {"b"}}, {"x", {}}});
    Progress p(g);
    std::vector<uint32_t> ready, skipped;
    p.restore({std::nullopt, std::nullopt, std::nullopt, Outcome::Succeeded}, &ready, &skipped);
    CHECK(names(g, ready) == Strings{"a"});
    CHECK(skipped.empty());
    ready.clear();
    p.finish(0, Outcome::Succeeded, &ready, &skipped);
    CHECK(names(g, ready) == Strings{"b"});

    // Retrying only b while a keeps its failure: b is skipped again at once, and so is c.
    Progress q(g);
    ready.clear();
    q.restore({Outcome::Failed, std::nullopt, std::nullopt, Outcome::Succeeded}, &ready, &skipped);
    CHECK(ready.empty());
    CHECK(names(g, skipped) == Strings{"b", "c"});
}

TEST_CASE("a large graph finds every id and keeps every edge as written", "[dag]") {
    // Ids of varied length, each node depending on up to three earlier ones (in the order given).
    const uint32_t n = 5000;
    std::vector<std::string> ids;
    for (uint32_t i = 0; i < n; ++i) ids.push_back(std::string(i % 7 + 1, 'a' + static_cast<char>(i % 26)) + std::to_string(i));
    std::vector<NodeSpec> specs(n);
    std::vector<std::vector<uint32_t>> deps(n), dependents(n);
    for (uint32_t i = 0; i < n; ++i) {
        specs[i].id = ids[i];
        for (uint32_t d : {i / 2, i / 3 + 1, i - 1}) {
            if (i == 0 || d >= i || std::find(deps[i].begin(), deps[i].end(), d) != deps[i].end()) continue;
            specs[i].depends_on.push_back(ids[d]);
            deps[i].push_back(d);
            dependents[d].push_back(i);
        }
    }
    REQUIRE(validate(specs).empty());
    const Graph g(specs);
    REQUIRE(g.size() == n);
    for (uint32_t i = 0; i < n; ++i) {
        INFO(ids[i]);
        REQUIRE(g.id(i) == ids[i]);
        REQUIRE(g.index(ids[i]) == i);
        REQUIRE(std::vector<uint32_t>(g.dependencies(i).begin(), g.dependencies(i).end()) == deps[i]);
        REQUIRE(std::vector<uint32_t>(g.dependents(i).begin(), g.dependents(i).end()) == dependents[i]);
    }
    CHECK_FALSE(g.index("nobody"));
    CHECK_FALSE(g.index(""));
    CHECK_FALSE(Graph().index("a"));
    CHECK(Graph().size() == 0);
}

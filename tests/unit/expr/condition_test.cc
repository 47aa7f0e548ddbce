// `when` conditions: the grammar, comparison rules, truthiness and syntax errors with columns.
#include <catch2/catch.hpp>

#include <map>

#include "expr/condition.h"

using namespace taskhub::expr;

namespace {

std::map<std::string, std::string> values = {{"params.region", "eu"},   {"params.count", "10"},
                                             {"params.zero", "0"},      {"params.off", "false"},
                                             {"params.empty", ""},      {"tasks.check.outputs.ok", "yes"},
                                             {"tasks.check.state", "succeeded"}};

std::optional<std::string> lookup(const Ref& r) {
    auto it = values.find(toString(r));
    if (it == values.end()) return std::nullopt;
    return it->second;
}

bool eval(std::string_view text) {
    std::string err;
    auto r = Condition::parse(text, &err);
    if (!r) FAIL("unexpected parse error for " << text << ": " << err);
    return r->evaluate(lookup);
}

std::string error(std::string_view text) {
    std::string err;
    if (Condition::parse(text, &err)) FAIL("expected a parse error for: " << text);
    return err;
}

} // namespace

TEST_CASE("comparisons of refs and literals", "[condition]") {
    CHECK(eval("params.region == 'eu'"));
    CHECK(eval("params.region == \"eu\""));
    CHECK_FALSE(eval("params.region != 'eu'"));
    CHECK(eval("tasks.check.outputs.ok == 'yes' && tasks.check.state == 'succeeded'"));
    CHECK(eval("params.region=='eu'&&params.count>9"));
}

TEST_CASE("numeric when both sides are numbers, else text", "[condition]") {
    CHECK(eval("params.count > 9"));        // 10 > 9 as numbers
    CHECK(eval("params.count > '9'"));      // a quoted number is still a number
    CHECK(eval("params.count == 10.0"));
    CHECK(eval("-1 < 0.5"));
    CHECK(eval("params.region > 'abc'"));   // "eu" > "abc" as text
    CHECK(eval("'10' < '9x'"));             // "9x" is not a number: bytewise
    CHECK(eval("params.count >= 10 && params.count <= 10"));
}

TEST_CASE("a lone operand is true unless it is empty, 0 or false", "[condition]") {
    CHECK(eval("params.region"));
    CHECK(eval("'0.0'"));
    CHECK(eval("true"));
    CHECK_FALSE(eval("params.zero"));
    CHECK_FALSE(eval("params.off"));
    CHECK_FALSE(eval("params.empty"));
    CHECK_FALSE(eval("false"));
    CHECK_FALSE(eval("0"));
}

TEST_CASE("a missing output is the empty text", "[condition]") {
    CHECK(eval("tasks.check.outputs.missing == ''"));
    CHECK_FALSE(eval("tasks.check.outputs.missing"));
    CHECK(eval("!tasks.check.outputs.missing"));
}

TEST_CASE("precedence: ! binds tighter than &&, && tighter than ||, parentheses group", "[condition]") {
    CHECK(eval("true || false && false"));      // true || (false && false)
    CHECK_FALSE(eval("(true || false) && false"));
    CHECK_FALSE(eval("!true && false"));
    CHECK(eval("!(true && false)"));
    CHECK(eval("!!params.region"));
    CHECK(eval("!params.region == 'x'"));       // ! applies to the comparison
    CHECK(eval("(params.region == 'eu') == true"));
}

TEST_CASE("quoted strings take a backslash-escaped character literally", "[condition]") {
    values["params.q"] = "it's \"x\"";
    CHECK(eval(R"(params.q == 'it\'s "x"')"));
    CHECK(eval(R"(params.q == "it's \"x\"")"));
    values.erase("params.q");
}

TEST_CASE("refs are listed in order, including task state", "[condition]") {
    std::string err;
    auto c = *Condition::parse("tasks.a-1.state == 'failed' || params.x || tasks.b.outputs.y", &err);
    REQUIRE(c.refs().size() == 3);
    CHECK(c.refs()[0] == Ref{Ref::TaskState, "a-1", ""});
    CHECK(c.refs()[1] == Ref{Ref::Param, "", "x"});
    CHECK(c.refs()[2] == Ref{Ref::Output, "b", "y"});
}

TEST_CASE("condition syntax errors name the column, what is wrong and what would be right", "[condition]") {
    CHECK(error("") == "column 1: the condition is empty (expected e.g. params.region == 'eu')");
    CHECK(error("params.region = 'eu'") == "column 15: '=' is not an operator (expected '==')");
    CHECK(error("params.a & params.b") == "column 10: '&' is not an operator (expected '&&')");
    CHECK(error("params.a | params.b") == "column 10: '|' is not an operator (expected '||')");
    CHECK(error("region == 'eu'") ==
          "column 1: unknown name 'region' (expected params.NAME, tasks.ID.outputs.NAME, tasks.ID.state, a quoted "
          "string, a number, true, false or '('; quote text, like 'region')");
    CHECK(error("params.region == 'eu") == "column 18: quoted string is not closed (expected a closing ')");
    CHECK(error("params.region ==") ==
          "column 17: expected a value (params.NAME, tasks.ID.outputs.NAME, tasks.ID.state, a quoted string, a "
          "number, true, false or '('), found the end of the condition");
    CHECK(error("(params.a == 'x'") == "column 17: expected ')' to close the '(' at column 1, found the end of "
                                       "the condition");
    CHECK(error("params.a 'x'") == "column 10: expected an operator (&&, ||, ==, !=, <, <=, >, >=) or the end of "
                                   "the condition, found ''x''");
    CHECK(error("1 < params.a < 3") == "column 14: comparisons cannot be chained, found '<' after a comparison "
                                       "(use parentheses, e.g. (a == b) == c)");
    CHECK(error("tasks.a.outputs") == "column 16: expected '.' after 'tasks.a.outputs', found the end of the text "
                                      "(expected params.NAME, tasks.ID.outputs.NAME or tasks.ID.state)");
    CHECK(error("tasks.a.status == 'x'") == "column 9: expected 'outputs' or 'state' after 'tasks.a.', found "
                                            "'status' (expected params.NAME, tasks.ID.outputs.NAME or tasks.ID.state)");
    CHECK(error("tasks.a.state.x") == "column 14: unexpected '.' after 'tasks.a.state' (expected params.NAME, "
                                      "tasks.ID.outputs.NAME or tasks.ID.state)");
    CHECK(error("params.n > 1.") == "column 12: invalid number '1.' (expected digits with an optional '-' and "
                                    "fraction, like 3, -1 or 2.5)");
    CHECK(error("params.a # x") == "column 10: unexpected character '#' (expected a value, an operator or a "
                                   "parenthesis)");
}

// Templates: ${params.NAME} and ${tasks.ID.outputs.NAME}, $${ as a literal ${, and messages that
// name the column.
#include <catch2/catch.hpp>

#include <map>
#include <stdexcept>

#include "expr/template.h"

using namespace taskhub::expr;

namespace {

// params.region = "eu", params.quote = a"b\c, tasks.extract.outputs.path = /data/x.csv
std::optional<std::string> lookup(const Ref& r) {
    static const std::map<std::string, std::string> values = {
        {"params.region", "eu"},
        {"params.quote", "a\"b\\c"},
        {"params.tmpl", "${params.region}"},
        {"tasks.extract.outputs.path", "/data/x.csv"}};
    auto it = values.find(toString(r));
    if (it == values.end()) return std::nullopt;
    return it->second;
}

Template parsed(std::string_view text) {
    std::string err;
    auto r = Template::parse(text, &err);
    if (!r) FAIL("unexpected parse error: " << err);
    return *r;
}

std::string error(std::string_view text) {
    std::string err;
    if (Template::parse(text, &err)) FAIL("expected a parse error for: " << text);
    return err;
}

} // namespace

TEST_CASE("references are replaced by their values", "[template]") {
    auto t = parsed("extract --region ${params.region} --to ${tasks.extract.outputs.path}!");
    CHECK(t.expand(lookup) == "extract --region eu --to /data/x.csv!");
    REQUIRE(t.refs().size() == 2);
    CHECK(t.refs()[0] == Ref{Ref::Param, "", "region"});
    CHECK(t.refs()[1] == Ref{Ref::Output, "extract", "path"});
    CHECK_FALSE(t.empty());
}

TEST_CASE("task ids may contain '-' and '_'", "[template]") {
    auto t = parsed("${tasks.load-db_2.outputs.rows}");
    REQUIRE(t.refs().size() == 1);
    CHECK(t.refs()[0] == Ref{Ref::Output, "load-db_2", "rows"});
}

TEST_CASE("unknown values expand to nothing, values are never re-expanded", "[template]") {
    CHECK(parsed("[${params.missing}]").expand(lookup) == "[]");
    CHECK(parsed("${params.tmpl}").expand(lookup) == "${params.region}");
}

TEST_CASE("$${ is a literal ${ and other dollars are literal", "[template]") {
    auto t = parsed("echo $${HOME} $HOME $$ ${params.region} $");
    CHECK(t.expand(lookup) == "echo ${HOME} $HOME $$ eu $");
    CHECK(t.refs().size() == 1);
    auto escaped = parsed("$${x}");
    CHECK(escaped.refs().empty());
    CHECK_FALSE(escaped.empty()); // expanding changes the text
    CHECK(escaped.expand(lookup) == "${x}");
    auto plain = parsed("plain $text");
    CHECK(plain.empty());
    CHECK(plain.expand(lookup) == "plain $text");
}

TEST_CASE("template syntax errors name the column, what is wrong and what would be right", "[template]") {
    CHECK(error("echo ${params.region") ==
          "column 6: '${' is not closed (expected '}' after the reference; write '$${' for a literal '${')");
    CHECK(error("a ${}") == "column 3: empty reference '${}' (expected ${params.NAME} or ${tasks.ID.outputs.NAME})");
    CHECK(error("${HOME}") ==
          "column 3: unknown reference 'HOME' (expected ${params.NAME} or ${tasks.ID.outputs.NAME})");
    CHECK(error("${params}") == "column 9: expected '.' after 'params', found '}' (expected ${params.NAME} or "
                                "${tasks.ID.outputs.NAME})");
    CHECK(error("${params.1x}") == "column 10: expected a param name after 'params.', found '1x' (a name is "
                                   "letters, digits and '_', not starting with a digit)");
    CHECK(error("${params.region:-eu}") == "column 16: unexpected ':' after '${params.region' (expected '}')");
    CHECK(error("${ params.region }") == "column 3: expected a reference, found ' ' (expected ${params.NAME} or "
                                         "${tasks.ID.outputs.NAME})");
    CHECK(error("${tasks.a.output.x}") == "column 11: expected 'outputs' after 'tasks.a.', found 'output' "
                                          "(expected ${params.NAME} or ${tasks.ID.outputs.NAME})");
    CHECK(error("${tasks.a.state}") == "column 11: expected 'outputs' after 'tasks.a.', found 'state' (expected "
                                       "${params.NAME} or ${tasks.ID.outputs.NAME})");
    CHECK(error("${tasks..outputs.x}") == "column 9: expected a task id after 'tasks.', found '.' (expected "
                                          "${params.NAME} or ${tasks.ID.outputs.NAME})");
    CHECK(error("${tasks.a.outputs.}") == "column 19: expected an output name after 'tasks.a.outputs.', found "
                                          "'}' (a name is letters, digits and '_', not starting with a digit)");
}

TEST_CASE("expandJsonStrings expands every string value and escapes the result", "[template]") {
    const std::string in =
        R"({"command":"run ${params.region}","args":["${params.quote}",1,true],"nested":{"p":"${tasks.extract.outputs.path}","k":"$${x}"},"n":2.5})";
    CHECK(expandJsonStrings(in, lookup) ==
          R"({"command":"run eu","args":["a\"b\\c",1,true],"nested":{"p":"/data/x.csv","k":"${x}"},"n":2.5E0})");
}

TEST_CASE("expandJsonStrings leaves keys, untemplated text and invalid templates alone", "[template]") {
    CHECK(expandJsonStrings(R"({"${params.region}":"x"})", lookup) == R"({"${params.region}":"x"})");
    const std::string plain = R"({"command": "echo hi"})";
    CHECK(expandJsonStrings(plain, lookup) == plain); // returned as it is, spacing included
    CHECK(expandJsonStrings(R"({"a":"${nope}","b":"${params.region}"})", lookup) ==
          R"({"a":"${nope}","b":"eu"})");
    CHECK_THROWS_AS(expandJsonStrings(R"(["${params.region}"])", lookup), std::invalid_argument);
}

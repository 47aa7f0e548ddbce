// Paths into JSON values after a reference: .KEY, [N] and .length in templates and conditions,
// the item and index roots, and navigate(), which follows a path and says precisely why it
// cannot.
#include <catch2/catch.hpp>

#include <map>

#include "expr/condition.h"
#include "expr/template.h"

using namespace taskhub::expr;

namespace {

Ref only(std::string_view text) {
    std::string err;
    auto t = Template::parse(text, &err);
    if (!t) FAIL("unexpected parse error: " << err);
    REQUIRE(t->refs().size() == 1);
    return t->refs()[0];
}

std::string error(std::string_view text) {
    std::string err;
    if (Template::parse(text, &err)) FAIL("expected a parse error for: " << text);
    return err;
}

PathStep key(const char* k) { return {PathStep::Key, k, 0}; }
PathStep index(uint64_t i) { return {PathStep::Index, "", i}; }
PathStep length() { return {PathStep::Length, "", 0}; }

std::string navError(std::string_view json, std::string_view path_text) {
    std::string err;
    const Ref ref = only("${params.p" + std::string(path_text) + "}");
    if (navigate(json, ref.path, &err)) FAIL("expected navigate() to fail for " << path_text);
    return err;
}

std::string nav(std::string_view json, std::string_view path_text) {
    std::string err;
    const Ref ref = only("${params.p" + std::string(path_text) + "}");
    auto v = navigate(json, ref.path, &err);
    if (!v) FAIL("navigate() failed: " << err);
    return *v;
}

} // namespace

TEST_CASE("a path follows params, outputs and items", "[path]") {
    CHECK(only("${tasks.list.outputs.files[0]}") ==
          Ref{Ref::Output, "list", "files", {index(0)}});
    CHECK(only("${tasks.cfg.outputs.db.host}") == Ref{Ref::Output, "cfg", "db", {key("host")}});
    CHECK(only("${tasks.list.outputs.files.length}") == Ref{Ref::Output, "list", "files", {length()}});
    CHECK(only("${params.regions[2].name.length}") ==
          Ref{Ref::Param, "", "regions", {index(2), key("name"), length()}});
    CHECK(only("${item}") == Ref{Ref::Item, "", "", {}});
    CHECK(only("${item.name}") == Ref{Ref::Item, "", "", {key("name")}});
    CHECK(only("${item[0][1]}") == Ref{Ref::Item, "", "", {index(0), index(1)}});
    CHECK(only("${index}") == Ref{Ref::Index, "", "", {}});
    CHECK(toString(only("${tasks.a.outputs.m[10].k_2.length}")) == "tasks.a.outputs.m[10].k_2.length");
    CHECK(toString(only("${item.a[3]}")) == "item.a[3]");
    // Text right after a reference stays text.
    std::string err;
    auto t = Template::parse("${item.name}.csv ${index}-x", &err);
    REQUIRE(t);
    CHECK(t->refs().size() == 2);
    CHECK(t->literals()[1] == ".csv ");
    CHECK(t->expand([](const Ref& r) -> std::optional<std::string> {
        return r.kind == Ref::Index ? "7" : "n";
    }) == "n.csv 7-x");
}

TEST_CASE("a bad path is refused with the column and what would be right", "[path]") {
    CHECK(error("${tasks.a.outputs.f[x]}") ==
          "column 21: expected an array index like [0] after 'tasks.a.outputs.f', found 'x' (an index is a "
          "non-negative decimal of at most 18 digits)");
    CHECK(error("${params.p[-1]}") ==
          "column 12: expected an array index like [0] after 'params.p', found '-' (an index is a non-negative "
          "decimal of at most 18 digits)");
    CHECK(error("${params.p[1}") ==
          "column 13: expected an array index like [0] after 'params.p', found '}' (an index is a non-negative "
          "decimal of at most 18 digits)");
    CHECK(error("${params.p.0}") ==
          "column 12: expected a key or 'length' after 'params.p.', found '0' (a key is letters, digits and '_', "
          "not starting with a digit; write [N] for an array element)");
    CHECK(error("${params.p.}") ==
          "column 12: expected a key or 'length' after 'params.p.', found '}' (a key is letters, digits and '_', "
          "not starting with a digit; write [N] for an array element)");
    CHECK(error("${params.p.length.x}") ==
          "column 18: '.length' must be the last step of 'params.p.length' (it is a number)");
    CHECK(error("${index.x}") == "column 8: 'index' is a number and takes no path (use item.... for the item's parts)");
    CHECK(error("${params.p[1234567890123456789]}").find("at most 18 digits") != std::string::npos);
    CHECK(error("${tasks.a.state}").find("expected 'outputs' after 'tasks.a.'") != std::string::npos);
}

TEST_CASE("conditions read lengths, elements and fields", "[path][condition]") {
    std::string err;
    auto c = Condition::parse("tasks.list.outputs.files.length > 0 && tasks.cfg.outputs.db.port == 5432 && "
                              "tasks.list.outputs.files[1] == 'b' && item.k != index",
                              &err);
    REQUIRE(c);
    REQUIRE(c->refs().size() == 5);
    CHECK(c->refs()[0] == Ref{Ref::Output, "list", "files", {length()}});
    CHECK(c->refs()[3] == Ref{Ref::Item, "", "", {key("k")}});
    CHECK(c->refs()[4] == Ref{Ref::Index, "", "", {}});
    const std::map<std::string, std::string> json = {{"files", R"(["a","b"])"}, {"db", R"({"port":5432})"}};
    auto lookup = [&](const Ref& r) -> std::optional<std::string> {
        if (r.kind == Ref::Item) return "x";
        if (r.kind == Ref::Index) return "0";
        std::string e;
        return navigate(json.at(r.name), r.path, &e);
    };
    CHECK(c->evaluate(lookup));
    auto empty = Condition::parse("tasks.list.outputs.files.length > 0", &err);
    REQUIRE(empty);
    CHECK_FALSE(empty->evaluate([](const Ref& r) {
        std::string e;
        return navigate("[]", r.path, &e);
    }));
    CHECK_FALSE(Condition::parse("tasks.a.outputs.f. == 1", &err));
    CHECK(err.rfind("column 19: expected a key or 'length' after 'tasks.a.outputs.f.'", 0) == 0);
}

TEST_CASE("navigate renders the value at the path for text", "[path][navigate]") {
    const std::string doc = R"({"files":["a b.csv","c.csv"],"db":{"host":"h","port":5432,"ratio":1.5,"on":true,"x":null},
                               "name":"caf\u00e9","nested":[[1,2],[3]],"empty":{}})";
    CHECK(nav(doc, ".files[0]") == "a b.csv");          // a string: its content
    CHECK(nav(doc, ".files") == R"(["a b.csv","c.csv"])"); // an array: compact JSON
    CHECK(nav(doc, ".db.port") == "5432");
    CHECK(nav(doc, ".db.ratio") == "1.5");
    CHECK(nav(doc, ".db.on") == "true");
    CHECK(nav(doc, ".db.x") == "null");
    CHECK(nav(doc, ".nested[0]") == "[1,2]");
    CHECK(nav(doc, ".nested[0][1]") == "2");
    CHECK(nav(doc, ".files.length") == "2");
    CHECK(nav(doc, ".db.length") == "5");
    CHECK(nav(doc, ".name.length") == "4"); // characters, not bytes
    CHECK(nav(doc, ".empty.length") == "0");
    CHECK(nav(doc, "") == R"({"files":["a b.csv","c.csv"],"db":{"host":"h","port":5432,"ratio":1.5,"on":true,)"
                          R"("x":null},"name":"café","nested":[[1,2],[3]],"empty":{}})");
}

TEST_CASE("navigate says which step failed and what the value was", "[path][navigate]") {
    const std::string doc = R"({"files":["a","b","c"],"db":{"host":"h","port":5432},"n":7})";
    CHECK(navError(doc, ".files[12]") == ".files[12]: index out of range (array of 3)");
    CHECK(navError(doc, ".db.user") == ".db.user: no key 'user' (an object with keys host, port)");
    CHECK(navError(doc, ".files.x") == ".files.x: not an object (it is an array of 3)");
    CHECK(navError(doc, ".db[0]") == ".db[0]: not an array (it is an object with keys host, port)");
    CHECK(navError(doc, ".n.length") == ".n.length: the number 7 has no length (only an array, object or string has one)");
    CHECK(navError(doc, ".files[0].x") == ".files[0].x: not an object (it is a string of 1 characters)");
    CHECK(navError("not json", ".x").rfind(": not JSON text (", 0) == 0);
}

TEST_CASE("a plain text value has only a length", "[path][navigate]") {
    std::string err;
    CHECK(navigateText("caf\xc3\xa9", {length()}, &err) == "4");
    CHECK(navigateText("abc", {}, &err) == "abc");
    CHECK_FALSE(navigateText("abc", {key("x")}, &err));
    CHECK(err == ".x: a plain text value has no fields; only .length applies (publish it with ::set-output-json to "
                 "read into it)");
    CHECK_FALSE(navigateText("abc", {index(0), length()}, &err));
    CHECK(err.rfind("[0]: a plain text value has no elements", 0) == 0);
}

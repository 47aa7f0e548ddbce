// The rules every task output meets, however it was published: the name syntax, 4 KiB per value,
// 64 KiB per attempt, a later value replacing an earlier one in place.
#include <catch2/catch.hpp>

#include <string>

#include "plugin_host/outputs.h"

using namespace taskhub::plugin_host;
using taskhub::model::NameValues;

TEST_CASE("output names are identifiers", "[outputs]") {
    for (const char* ok : {"a", "_", "Z9", "row_count", "_x_1"}) {
        INFO(ok);
        CHECK(isOutputName(ok));
    }
    for (const char* bad : {"", "9a", "a-b", "a.b", "a b", "ä", "a=b"}) {
        INFO(bad);
        CHECK_FALSE(isOutputName(bad));
    }
}

TEST_CASE("a later value replaces the earlier one and keeps its place", "[outputs]") {
    OutputSet set;
    std::string err;
    REQUIRE(set.set("a", "1", &err));
    REQUIRE(set.set("b", "2", &err));
    REQUIRE(set.set("a", "three", &err));
    CHECK(set.values() == NameValues{{"a", "three"}, {"b", "2"}});
    CHECK(set.bytes() == 1 + 5 + 1 + 1);
    CHECK(set.take() == NameValues{{"a", "three"}, {"b", "2"}});
    CHECK(set.empty());
    CHECK(set.bytes() == 0);
    REQUIRE(set.set("a", "", &err)); // empty values are values
    CHECK(set.values() == NameValues{{"a", ""}});
}

TEST_CASE("an invalid name is refused, naming it and the rule", "[outputs]") {
    OutputSet set;
    std::string err;
    CHECK_FALSE(set.set("1x", "v", &err));
    CHECK(err == "invalid output name '1x': a name starts with a letter or '_' and continues with "
                 "letters, digits or '_'");
    CHECK(set.empty());
}

TEST_CASE("one value may hold 4 KiB, not more", "[outputs]") {
    OutputSet set;
    std::string err;
    CHECK(set.set("v", std::string(4096, 'x'), &err));
    CHECK_FALSE(set.set("v", std::string(4097, 'x'), &err));
    CHECK(err == "output 'v' is 4097 bytes, over the limit of 4 KiB (4096 bytes) for one value");
    CHECK(set.values()[0].second.size() == 4096); // unchanged
}

TEST_CASE("all outputs of an attempt may hold 64 KiB, names included", "[outputs]") {
    OutputSet set;
    std::string err;
    // 16 outputs "o10".."o25" of 4093 bytes: 16 * (3 + 4093) = 65536 bytes exactly.
    for (int i = 10; i < 26; ++i) REQUIRE(set.set("o" + std::to_string(i), std::string(4093, 'x'), &err));
    CHECK(set.bytes() == 65536);
    CHECK_FALSE(set.set("z", "", &err));
    CHECK(err == "output 'z' would bring the attempt's outputs to 65537 bytes, over the limit of "
                 "64 KiB (65536 bytes, names and values) for all plain outputs of an attempt");
    // Replacing a value by a shorter one makes room; the total is what counts.
    REQUIRE(set.set("o10", "", &err));
    CHECK(set.set("z", "y", &err));
    CHECK(set.bytes() == 65536 - 4093 + 2);
}

// ---- typed (JSON) outputs ----

TEST_CASE("a JSON output is stored compact, a JSON string becomes a plain output", "[outputs][json]") {
    OutputSet set;
    std::string err;
    REQUIRE(set.setJson("files", " [ \"a.csv\" ,\n \"b c.csv\" ] ", &err));
    REQUIRE(set.setJson("cfg", R"({"db": {"host": "h", "port": 5432}, "ratio": 1.50, "on": true, "x": null})", &err));
    REQUIRE(set.setJson("name", R"("caf\u00e9")", &err));
    CHECK(set.jsonValues() == NameValues{{"files", R"(["a.csv","b c.csv"])"},
                                         {"cfg", R"({"db":{"host":"h","port":5432},"ratio":1.5,"on":true,"x":null})"}});
    CHECK(set.values() == NameValues{{"name", "caf\xc3\xa9"}});
    REQUIRE(set.setJson("n", "-12", &err));
    REQUIRE(set.setJson("e", "1e300", &err));
    CHECK(set.jsonValues()[2] == std::pair<std::string, std::string>{"n", "-12"});
    CHECK(set.jsonValues()[3] == std::pair<std::string, std::string>{"e", "1e+300"});
}

TEST_CASE("a name is plain or typed, and a later set of either kind replaces the other", "[outputs][json]") {
    OutputSet set;
    std::string err;
    REQUIRE(set.set("a", "1", &err));
    REQUIRE(set.set("b", "2", &err));
    REQUIRE(set.setJson("a", "[1]", &err));
    CHECK(set.values() == NameValues{{"b", "2"}});
    CHECK(set.jsonValues() == NameValues{{"a", "[1]"}});
    CHECK(set.bytes() == 1 + 1 + 1 + 3);
    REQUIRE(set.set("a", "back", &err));
    CHECK(set.values() == NameValues{{"b", "2"}, {"a", "back"}});
    CHECK(set.jsonValues().empty());
    REQUIRE(set.setJson("b", R"("still plain")", &err)); // a JSON string stays plain
    CHECK(set.values() == NameValues{{"b", "still plain"}, {"a", "back"}});
    CHECK(set.take() == NameValues{{"b", "still plain"}, {"a", "back"}});
    REQUIRE(set.setJson("b", "{}", &err)); // the index forgot the plain names taken
    CHECK(set.takeJson() == NameValues{{"b", "{}"}});
    CHECK(set.empty());
}

TEST_CASE("bad JSON values are refused precisely, naming the output", "[outputs][json]") {
    auto refusal = [](std::string_view json) {
        OutputSet set;
        std::string err;
        CHECK_FALSE(set.setJson("v", json, &err));
        CHECK(set.empty());
        return err;
    };
    CHECK(refusal("[1,") == "output 'v' is not valid JSON: it ends before the value is complete (3 bytes)");
    CHECK(refusal("[1] [2]") == "output 'v' is not one JSON value: text follows it at byte 5 of 7");
    CHECK(refusal("  ") == "output 'v' is not valid JSON: the value is empty (expected e.g. [\"a\",\"b\"], {\"k\":1} or 3)");
    CHECK(refusal("[\"\xff\"]") == "output 'v' is not valid JSON: invalid UTF-8 at byte 3 of 5");
    CHECK(refusal("{'a': 1}").rfind("output 'v' is not valid JSON: ", 0) == 0);
    CHECK(refusal(std::string(65, '[') + std::string(65, ']')).rfind("output 'v' is not valid JSON: nested more "
                                                                     "than 64 levels deep", 0) == 0);
    OutputSet set;
    std::string err;
    CHECK(set.setJson("ok", std::string(64, '[') + std::string(64, ']'), &err));
    CHECK_FALSE(set.setJson("2bad", "[]", &err));
    CHECK(err.rfind("invalid output name '2bad'", 0) == 0);
}

TEST_CASE("JSON outputs: 1 MiB for one value, 1 MiB for all; plain ones keep their caps", "[outputs][json]") {
    // One value: 1 MiB as given.
    std::string big = "[\"" + std::string(1024 * 1024 - 4, 'x') + "\"]";
    REQUIRE(big.size() == 1024 * 1024);
    OutputSet set;
    std::string err;
    CHECK_FALSE(set.setJson("big", big + " ", &err));
    CHECK(err == "output 'big' is 1048577 bytes of JSON, over the limit of 1 MiB (1048576 bytes) for one JSON value");
    // All outputs: names plus values, plain and typed, at most 1 MiB.
    REQUIRE(set.set("p", "1", &err));
    CHECK_FALSE(set.setJson("big", big, &err));
    CHECK(err == "output 'big' would bring the attempt's outputs to 1048581 bytes, over the limit of 1 MiB "
                 "(1048576 bytes, names and values, JSON as stored) for all outputs of an attempt");
    const std::string fits = "[\"" + std::string(1024 * 1024 - 4 - 5, 'x') + "\"]";
    CHECK(set.setJson("big", fits, &err));
    CHECK(set.bytes() == 1024 * 1024);
    // A JSON string is a plain output, under the 4 KiB cap.
    CHECK_FALSE(set.setJson("s", "\"" + std::string(4097, 'y') + "\"", &err));
    CHECK(err == "output 's' is 4097 bytes, over the limit of 4 KiB (4096 bytes) for one value");
}

TEST_CASE("UTF-8 is checked strictly", "[outputs][json]") {
    CHECK_FALSE(firstInvalidUtf8("plain \xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80"));
    CHECK(firstInvalidUtf8("ab\xff") == 2u);
    CHECK(firstInvalidUtf8("\xc0\xaf") == 0u);         // overlong '/'
    CHECK(firstInvalidUtf8("x\xed\xa0\x80") == 1u);    // a surrogate
    CHECK(firstInvalidUtf8("\xf4\x90\x80\x80") == 0u); // over U+10FFFF
    CHECK(firstInvalidUtf8("\xe2\x9c") == 0u);         // cut short
}

TEST_CASE("a JSON number too large for a double is refused, not stored as null", "[outputs]") {
    OutputSet set;
    std::string err;
    CHECK_FALSE(set.setJson("n", "1e400", &err));
    CHECK(err == "output 'n' is not valid JSON for TaskHub: a number is too large to hold (over about 1.8e308); "
                 "write it as a string");
    CHECK_FALSE(set.setJson("deep", R"({"a": [1, -1e999]})", &err));
    CHECK(set.setJson("ok", "[1.5e300]", &err));
}

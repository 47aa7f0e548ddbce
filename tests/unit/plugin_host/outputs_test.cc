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
                 "64 KiB (65536 bytes, names and values) for all outputs of an attempt");
    // Replacing a value by a shorter one makes room; the total is what counts.
    REQUIRE(set.set("o10", "", &err));
    CHECK(set.set("z", "y", &err));
    CHECK(set.bytes() == 65536 - 4093 + 2);
}

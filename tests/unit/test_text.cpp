#include "util/text.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <string_view>
#include <vector>

using namespace hearth;

TEST_CASE("trim with and without a character set", "[text]") {
    CHECK(trim(" \t\r\n x y \v\f") == "x y");
    CHECK(trim("   ").empty());
    CHECK(trim(" \t1 Gi\t ", " \t") == "1 Gi");
    CHECK(trim("\n512M\n", " \t") == "\n512M\n"); // line breaks kept
    CHECK(trim("xxaxx", "x") == "a");
    CHECK(trim("xxxx", "x").empty());
    CHECK(trim("", " ").empty());
}

TEST_CASE("join of strings and of views", "[text]") {
    CHECK(join(std::vector<std::string>{"a", "b", "c"}, "/") == "a/b/c");
    CHECK(join(std::vector<std::string_view>{"a", "", "c"}, ", ") == "a, , c");
    CHECK(join(std::vector<std::string_view>{}, "/").empty());
    CHECK(join(std::vector<std::string_view>{"only"}, "/") == "only");
}

TEST_CASE("ASCII case and classes", "[text]") {
    CHECK(iequals("CPython", "cpython"));
    CHECK_FALSE(iequals("CPython", "cpytho"));
    CHECK_FALSE(iequals("\xc3\x89", "\xc3\xa9")); // only ASCII folds
    CHECK(starts_with_ci("Requires-Dist: x", "requires-dist:"));
    CHECK_FALSE(starts_with_ci("Req", "requires"));
    CHECK(ascii_lower('Q') == 'q');
    CHECK(ascii_lower('[') == '[');
    CHECK(is_ascii_alnum('7'));
    CHECK_FALSE(is_ascii_alpha('\xe9'));
}

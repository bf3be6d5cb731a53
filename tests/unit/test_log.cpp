#include "util/log.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace hearth;

TEST_CASE("text rendering quotes only what needs it", "[log]") {
    CHECK(log::render(log::Format::text, "started", {{"pid", 12}, {"path", "/a/b"}}) ==
          "started pid=12 path=/a/b");
    CHECK(log::render(log::Format::text, "x", {{"reason", "two words"}}) ==
          "x reason=\"two words\"");
    CHECK(log::render(log::Format::text, "x", {{"ok", true}, {"s", 1.5}}) == "x ok=true s=1.5");
}

TEST_CASE("json rendering is valid JSON even for invalid UTF-8", "[log]") {
    std::string line = log::render(log::Format::json, "exited",
                                   {{"code", 3}, {"text", std::string_view("bad \xff\xfe bytes")}});
    auto j = nlohmann::json::parse("{" + line + "}");
    CHECK(j["msg"] == "exited");
    CHECK(j["code"] == 3);
    CHECK(j["text"].get<std::string>().find("bad") == 0);
}

TEST_CASE("format and level names", "[log]") {
    log::Format f{};
    CHECK(log::parse_format("json", f));
    CHECK(f == log::Format::json);
    CHECK_FALSE(log::parse_format("yaml", f));
    spdlog::level::level_enum l{};
    CHECK(log::parse_level("warn", l));
    CHECK(l == spdlog::level::warn);
    CHECK_FALSE(log::parse_level("chatty", l));
}

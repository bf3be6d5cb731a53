// Structured load errors: parsing with bounds and type checks, the JSON round
// trip, and the Python-style traceback rendering hearthctl shows.

#include "health/load_error.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

using namespace hearth;
using namespace hearth::health;
using nlohmann::json;

namespace {

const char* const chained = R"({
  "type": "RuntimeError", "message": "outer problem",
  "frames": [{"file": "/app/chain.py", "line": 11, "function": "cause"}],
  "cause": {"type": "ValueError", "message": "inner problem", "via": "cause",
            "frames": [{"file": "/app/chain.py", "line": 9, "function": "cause"},
                       {"file": "/app/chain.py", "line": 5, "function": "inner"}]}})";

std::string error_of(std::string_view text) {
    auto r = parse_load_error(text);
    REQUIRE_FALSE(r.ok());
    return r.error().message;
}

} // namespace

TEST_CASE("load error: a chained document parses into the struct", "[health][load_error]") {
    auto r = parse_load_error(chained);
    REQUIRE(r.ok());
    const LoadError& e = *r;
    CHECK(e.type == "RuntimeError");
    CHECK(e.message == "outer problem");
    REQUIRE(e.frames.size() == 1);
    CHECK(e.frames[0] == LoadFrame{"/app/chain.py", 11, "cause"});
    REQUIRE(e.cause);
    CHECK_FALSE(e.cause_is_context);
    CHECK(e.cause->type == "ValueError");
    CHECK(e.cause->frames.size() == 2);
    CHECK(e.cause->frames[1].function == "inner");
    CHECK_FALSE(e.cause->cause);
}

TEST_CASE("load error: to_json round-trips", "[health][load_error]") {
    auto r = parse_load_error(chained);
    REQUIRE(r.ok());
    json j = to_json(*r);
    CHECK(j["cause"]["via"] == "cause");
    CHECK_FALSE(j.contains("via")); // only causes say how they were linked
    CHECK_FALSE(j.contains("frames_omitted"));
    auto again = load_error_from_json(j);
    REQUIRE(again.ok());
    CHECK(to_json(*again) == j);
}

TEST_CASE("load error: rendered as Python prints it", "[health][load_error]") {
    auto r = parse_load_error(chained);
    REQUIRE(r.ok());
    CHECK(render_traceback(*r) == "Traceback (most recent call last):\n"
                                  "  File \"/app/chain.py\", line 9, in cause\n"
                                  "  File \"/app/chain.py\", line 5, in inner\n"
                                  "ValueError: inner problem\n"
                                  "\n"
                                  "The above exception was the direct cause of the following "
                                  "exception:\n"
                                  "\n"
                                  "Traceback (most recent call last):\n"
                                  "  File \"/app/chain.py\", line 11, in cause\n"
                                  "RuntimeError: outer problem\n");

    LoadError ctx;
    ctx.type = "KeyError";
    ctx.message = "'x'";
    ctx.cause = std::make_unique<LoadError>();
    ctx.cause->type = "ValueError";
    ctx.cause_is_context = true;
    CHECK(render_traceback(ctx) == "ValueError\n"
                                   "\n"
                                   "During handling of the above exception, another exception "
                                   "occurred:\n"
                                   "\n"
                                   "KeyError: 'x'\n");
}

TEST_CASE("load error: trimmed frames and a SyntaxError location render", "[health][load_error]") {
    auto r = parse_load_error(R"({"type": "app.chain.Custom", "message": "bottom",
        "frames": [{"file": "/a.py", "line": 1, "function": "deep"},
                   {"file": "/a.py", "line": 3, "function": "deep"},
                   {"file": "/b.py", "line": 2, "function": ""}],
        "frames_omitted": 298, "omitted_at": 1})");
    REQUIRE(r.ok());
    CHECK(r->frames_omitted == 298);
    CHECK(r->omitted_at == 1);
    CHECK(render_traceback(*r) == "Traceback (most recent call last):\n"
                                  "  File \"/a.py\", line 1, in deep\n"
                                  "  ... 298 frames omitted ...\n"
                                  "  File \"/a.py\", line 3, in deep\n"
                                  "  File \"/b.py\", line 2\n"
                                  "app.chain.Custom: bottom\n");
    json j = to_json(*r);
    CHECK(j["frames_omitted"] == 298);
    CHECK(j["omitted_at"] == 1);
}

TEST_CASE("load error: fields are type-checked and named", "[health][load_error]") {
    CHECK(error_of("not json") == "load error: not valid JSON");
    CHECK(error_of("[]") == "load error: not an object");
    CHECK(error_of(R"({"message": "m"})") == "type: missing");
    CHECK(error_of(R"({"type": ""})") == "type: empty");
    CHECK(error_of(R"({"type": 3})") == "type: not a string");
    CHECK(error_of(R"({"type": "E", "message": 1})") == "message: not a string");
    CHECK(error_of(R"({"type": "E", "frames": {}})") == "frames: not an array");
    CHECK(error_of(R"({"type": "E", "frames": [1]})") == "frames[0]: not an object");
    CHECK(error_of(R"({"type": "E", "frames": [{"line": 1}]})") == "frames[0].file: missing");
    CHECK(error_of(R"({"type": "E", "frames": [{"file": "f", "line": -1}]})") ==
          "frames[0].line: negative");
    CHECK(error_of(R"({"type": "E", "frames": [{"file": "f", "line": "7"}]})") ==
          "frames[0].line: not a non-negative integer");
    CHECK(error_of(R"({"type": "E", "frames": [{"file": "f", "line": 1.5}]})") ==
          "frames[0].line: not a non-negative integer");
    CHECK(error_of(R"({"type": "E", "cause": {"type": "F", "via": "sideways"}})") ==
          "cause.via: must be \"cause\" or \"context\"");
    CHECK(error_of(R"({"type": "E", "cause": {"type": "F", "frames": [{"file": 2}]}})") ==
          "cause.frames[0].file: not a string");
    CHECK(error_of(R"({"type": "E", "frames": [], "frames_omitted": 3, "omitted_at": 2})") ==
          "omitted_at: past the last frame");
    // Optional parts may be absent or null; unknown keys are ignored.
    auto r = parse_load_error(R"({"type": "E", "message": null, "frames": null, "cause": null,
                                  "notes": ["x"]})");
    REQUIRE(r.ok());
    CHECK(r->message.empty());
    CHECK(r->frames.empty());
    CHECK(render_traceback(*r) == "E\n");
}

TEST_CASE("load error: size, depth, frame count and string length are bounded",
          "[health][load_error]") {
    std::string big =
        R"({"type": "E", "message": ")" + std::string(max_load_error_bytes, 'x') + R"("})";
    auto r = parse_load_error(big);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::too_large);

    json deep = {{"type", "E0"}};
    for (std::size_t i = 1; i < max_load_error_depth + 1; ++i)
        deep = {{"type", "E" + std::to_string(i)}, {"cause", deep}};
    auto d = parse_load_error(deep.dump());
    REQUIRE_FALSE(d.ok());
    CHECK(d.error().code == Errc::invalid_argument);
    CHECK(d.error().message.find("chain deeper than") != std::string::npos);
    // One link fewer is fine.
    CHECK(load_error_from_json(deep["cause"]).ok());

    json frames = json::array();
    for (std::size_t i = 0; i <= max_load_error_frames; ++i)
        frames.push_back({{"file", "f"}, {"line", 1}, {"function", "g"}});
    auto f = load_error_from_json({{"type", "E"}, {"frames", frames}});
    REQUIRE_FALSE(f.ok());
    CHECK(f.error().message == "frames: more than 1000 frames");

    auto s = load_error_from_json(
        {{"type", "E"}, {"message", std::string(max_load_error_string + 1, 'm')}});
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().message == "message: longer than 16384 bytes");
}

TEST_CASE("load error: copies are deep", "[health][load_error]") {
    auto r = parse_load_error(chained);
    REQUIRE(r.ok());
    LoadError copy = *r;
    copy.cause->message = "changed";
    CHECK(r->cause->message == "inner problem");
    LoadError assigned;
    assigned = copy;
    CHECK(to_json(assigned) == to_json(copy));
}

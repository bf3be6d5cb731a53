#include "daemon/options.hpp"

#include <catch2/catch.hpp>
#include <vector>

using namespace hearth;

namespace {
std::variant<Options, std::string> parse(std::vector<const char*> args) {
    args.insert(args.begin(), "hearth");
    return parse_options(static_cast<int>(args.size()), args.data());
}
std::string error_of(std::vector<const char*> args) {
    auto r = parse(std::move(args));
    REQUIRE(std::holds_alternative<std::string>(r));
    return std::get<std::string>(r);
}
Options ok(std::vector<const char*> args) {
    auto r = parse(std::move(args));
    if (auto* e = std::get_if<std::string>(&r)) FAIL(*e);
    return std::get<Options>(r);
}
} // namespace

TEST_CASE("defaults", "[options]") {
    Options o = ok({});
    CHECK(o.state_dir == "/var/lib/hearth");
    CHECK(o.run_dir == "/run/hearth");
    CHECK(o.grace_s == 10.0);
    CHECK(o.command.empty());
    CHECK(o.log_format == log::Format::text);
}

TEST_CASE("values in both spellings and the main command", "[options]") {
    Options o =
        ok({"--state-dir", "/s", "--run-dir=/r", "--grace", "2.5", "--log-format=json",
            "--log-level", "debug", "--python", "/usr/bin/python3", "--", "sh", "-c", "exit 3"});
    CHECK(o.state_dir == "/s");
    CHECK(o.run_dir == "/r");
    CHECK(o.grace_s == 2.5);
    CHECK(o.log_format == log::Format::json);
    CHECK(o.log_level == spdlog::level::debug);
    CHECK(o.python == std::vector<std::string>{"/usr/bin/python3"});
    CHECK(o.command == std::vector<std::string>{"sh", "-c", "exit 3"});
}

TEST_CASE("the command may start without --, and its options stay its own", "[options]") {
    Options o = ok({"--grace", "1", "sleep", "--help"});
    CHECK_FALSE(o.help);
    CHECK(o.command == std::vector<std::string>{"sleep", "--help"});
}

TEST_CASE("bad usage names the problem", "[options]") {
    CHECK(error_of({"--bogus"}) == "unknown option '--bogus'");
    CHECK(error_of({"-x"}) == "unknown option '-x'");
    CHECK(error_of({"--grace"}) == "option --grace needs a value");
    CHECK(error_of({"--grace", "soon"}).find("'soon'") != std::string::npos);
    CHECK(error_of({"--grace=-1"}).find("'-1'") != std::string::npos);
    CHECK(error_of({"--state-dir", "relative"}).find("absolute path") != std::string::npos);
    CHECK(error_of({"--log-format", "xml"}).find("unknown format 'xml'") != std::string::npos);
    CHECK(error_of({"--log-level", "loud"}).find("unknown level 'loud'") != std::string::npos);
    CHECK(error_of({"--help=yes"}) == "option --help takes no value");
}

TEST_CASE("help and version flags", "[options]") {
    CHECK(ok({"-h"}).help);
    CHECK(ok({"--help"}).help);
    CHECK(ok({"-V"}).version);
    CHECK(ok({"--version"}).version);
    CHECK(usage().find("--grace SECONDS") != std::string::npos);
}

TEST_CASE("cpu placement: spread by default, shared on request", "[options]") {
    CHECK(ok({}).cpu_spread);
    CHECK(ok({"--cpu-placement", "spread"}).cpu_spread);
    CHECK_FALSE(ok({"--cpu-placement=shared"}).cpu_spread);
    CHECK(error_of({"--cpu-placement", "pinned"}) ==
          "option --cpu-placement: unknown placement 'pinned' (spread, shared)");
    CHECK(error_of({"--cpu-placement"}) == "option --cpu-placement needs a value");
}

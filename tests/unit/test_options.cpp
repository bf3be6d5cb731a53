#include "daemon/options.hpp"
#include "launch/launch.hpp"
#include "launch/pex_info.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <vector>

using namespace hearth;

namespace {
Result<Options> parse(std::vector<const char*> args, const cli::Env& env = {}) {
    args.insert(args.begin(), "hearth");
    return parse_options(static_cast<int>(args.size()), args.data(), env);
}
std::string error_of(std::vector<const char*> args, const cli::Env& env = {}) {
    auto r = parse(std::move(args), env);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::invalid_argument);
    CHECK(r.error().message.find('\n') == std::string::npos);
    return r.error().message;
}
Options ok(std::vector<const char*> args, const cli::Env& env = {}) {
    auto r = parse(std::move(args), env);
    if (!r) FAIL(r.error().message);
    return std::move(r).value();
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
    // The wording of hearthctl, now that both use one parser (was "option
    // --grace needs a value" / "option --help takes no value").
    CHECK(error_of({"--grace"}) == "option '--grace' requires a value");
    CHECK(error_of({"--grace", "soon"}) == "--grace: expected seconds from 0 to 86400, got 'soon'");
    CHECK(error_of({"--grace=-1"}).find("'-1'") != std::string::npos);
    CHECK(error_of({"--state-dir", "relative"}) ==
          "--state-dir: expected an absolute path, got 'relative'");
    CHECK(error_of({"--log-format", "xml"}).find("unknown format 'xml'") != std::string::npos);
    CHECK(error_of({"--log-level", "loud"}).find("unknown level 'loud'") != std::string::npos);
    CHECK(error_of({"--help=yes"}) == "option '--help' does not take a value");
    CHECK(error_of({"--fetch-attempts", "101"}) ==
          "--fetch-attempts: expected a whole number from 1 to 100, got '101'");
    CHECK(error_of({"--max-pids", "0"}) == "--max-pids: expected a positive whole number, got '0'");
    CHECK(error_of({"--store-max-bytes", "0"}) == "--store-max-bytes: must not be 0");
    CHECK(error_of({"--cgroup-parent", "/a/.."}).rfind("--cgroup-parent: expected a path", 0) == 0);
    CHECK(error_of({"--user="}) == "--user: expected a name or a number");
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
          "--cpu-placement: unknown placement 'pinned' (spread, shared)");
    CHECK(error_of({"--cpu-placement"}) == "option '--cpu-placement' requires a value");
}

// ---------------------------------------------------------------------------
// Configuration from the environment

TEST_CASE("every option but help and version has its HEARTH_ variable", "[options][env]") {
    for (const cli::OptSpec& spec : option_specs()) {
        INFO(spec.name);
        const bool action = spec.name == "help" || spec.name == "version";
        CHECK(spec.env == !action);
        const std::string var = cli::env_name(kEnvPrefix, spec.name);
        // No option may take a name hearth gives its revisions.
        CHECK(std::find(std::begin(kReservedEnv), std::end(kReservedEnv), var) ==
              std::end(kReservedEnv));
        // --help lists the variable beside the option.
        if (spec.env) CHECK(usage().find(var) != std::string::npos);
    }
    CHECK(cli::env_name(kEnvPrefix, "log-format") == "HEARTH_LOG_FORMAT");
}

TEST_CASE("the environment sets what the command line leaves out", "[options][env]") {
    const cli::Env env = {
        {"HEARTH_STATE_DIR", "/env/state"},
        {"HEARTH_RUN_DIR", "/env/run"},
        {"HEARTH_GRACE", "3"},
        {"HEARTH_LOG_FORMAT", "json"},
        {"HEARTH_CPU_PLACEMENT", "shared"},
        {"HEARTH_MAX_MEMORY", "2Gi"},
        {"HEARTH_FETCH_ATTEMPTS", "7"},
        {"HEARTH_PYTHON", "/usr/bin/python3:/opt/py/bin/python3.11"},
        {"HEARTH_USER", "nobody"},
    };
    Options o = ok({}, env);
    CHECK(o.state_dir == "/env/state");
    CHECK(o.run_dir == "/env/run");
    CHECK(o.grace_s == 3);
    CHECK(o.log_format == log::Format::json);
    CHECK_FALSE(o.cpu_spread);
    CHECK(o.max_memory == std::uint64_t{2} << 30);
    CHECK(o.fetch_attempts == 7);
    CHECK(o.python == std::vector<std::string>{"/usr/bin/python3", "/opt/py/bin/python3.11"});
    CHECK(o.user == "nobody");
}

TEST_CASE("a flag wins over its variable", "[options][env]") {
    const cli::Env env = {{"HEARTH_STATE_DIR", "/env/state"},
                          {"HEARTH_GRACE", "not a number"},
                          {"HEARTH_PYTHON", "/env/python3"},
                          {"HEARTH_LOG_LEVEL", "debug"}};
    Options o = ok({"--state-dir=/flag/state", "--grace", "1", "--python", "/flag/python3"}, env);
    CHECK(o.state_dir == "/flag/state");
    CHECK(o.grace_s == 1); // the bad variable is not even read
    CHECK(o.python == std::vector<std::string>{"/flag/python3"});
    CHECK(o.log_level == spdlog::level::debug); // not on the command line: from the variable
}

TEST_CASE("a bad variable is an error naming the variable", "[options][env]") {
    CHECK(error_of({}, {{"HEARTH_GRACE", "soon"}}) ==
          "HEARTH_GRACE: expected seconds from 0 to 86400, got 'soon'");
    CHECK(error_of({}, {{"HEARTH_STATE_DIR", "state"}}) ==
          "HEARTH_STATE_DIR: expected an absolute path, got 'state'");
    CHECK(error_of({}, {{"HEARTH_LOG_FORMAT", "xml"}}) ==
          "HEARTH_LOG_FORMAT: unknown format 'xml' (text, json)");
    CHECK(error_of({}, {{"HEARTH_PYTHON", "/usr/bin/python3:python3"}}) ==
          "HEARTH_PYTHON: expected an absolute path, got 'python3'");
    // --help and --version still work, whatever the environment holds.
    CHECK(ok({"--help"}, {{"HEARTH_GRACE", "soon"}}).help);
    CHECK(ok({"-V"}, {{"HEARTH_GRACE", "soon"}}).version);
}

TEST_CASE("other HEARTH_ variables and empty ones are ignored", "[options][env]") {
    cli::Env env = {
        // Set by the test harness and tools, and hearthctl's own.
        {"HEARTH", "/build/src/hearth"},
        {"HEARTHCTL", "/build/src/hearthctl"},
        {"HEARTH_SOURCE_ROOT", "/src"},
        {"HEARTH_TESTS_MUST_WORK", "1"},
        {"HEARTH_SOCKET", "/tmp/x.sock"},
        // Not configuration: an image may pin its release in the environment.
        {"HEARTH_VERSION", "0.1.0"},
        {"HEARTH_HELP", "1"},
        // Empty counts as unset.
        {"HEARTH_GRACE", ""},
    };
    for (std::string_view reserved : kReservedEnv)
        env[std::string(reserved)] = "whatever";
    Options o = ok({}, env);
    CHECK_FALSE(o.help);
    CHECK_FALSE(o.version);
    CHECK(o.grace_s == 10.0);
    CHECK(o.state_dir == "/var/lib/hearth");
}

TEST_CASE("--help lists each option with its variable", "[options][env]") {
    const std::string text = usage();
    CHECK(text.find("  --state-dir DIR                   HEARTH_STATE_DIR\n") != std::string::npos);
    CHECK(text.find("  --log-format FORMAT               HEARTH_LOG_FORMAT\n") !=
          std::string::npos);
    CHECK(text.find("  -h, --help\n") != std::string::npos);
    CHECK(text.find("HEARTH_HELP") == std::string::npos);
    CHECK(text.find("HEARTH_VERSION") == std::string::npos);
}

TEST_CASE("the reserved names are the HEARTH_ variables revisions get", "[options][env]") {
    // Every HEARTH_ variable a launch plan sets is listed as reserved in
    // kReservedEnv (and in hearth(8)), for both runtimes.
    PexInfo info;
    info.entry_point = "app";
    for (Runtime runtime : {Runtime::native, Runtime::pex}) {
        LaunchInput in;
        in.runtime = runtime;
        in.python = "/usr/bin/python3";
        in.boot_script = "/state/lib/hearth_boot.py";
        in.source_tree = "/state/trees/sha256/aa";
        in.deps_tree = "/state/trees/sha256/bb";
        in.source_info = &info;
        in.sys_path = {"/state/trees/sha256/aa"};
        in.location = "web";
        in.revision_id = "web-1";
        in.scratch_dir = "/state/scratch/web-1";
        LaunchPlan plan = plan_launch(in);
        REQUIRE(plan.error.empty());
        int seen = 0;
        for (const std::string& kv : plan.env) {
            if (kv.rfind("HEARTH_", 0) != 0) continue;
            const std::string name = kv.substr(0, kv.find('='));
            INFO(name);
            CHECK(std::find(std::begin(kReservedEnv), std::end(kReservedEnv), name) !=
                  std::end(kReservedEnv));
            ++seen;
        }
        CHECK(seen >= 2); // at least HEARTH_LOCATION and HEARTH_REVISION
    }
}

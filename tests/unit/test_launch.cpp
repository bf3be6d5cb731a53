#include "control/rpc.hpp"
#include "daemon/deploy.hpp"
#include "launch/launch.hpp"

#include <algorithm>
#include <catch2/catch.hpp>

using namespace hearth;
using nlohmann::json;

namespace {

LaunchInput base_input(const PexInfo& info) {
    LaunchInput in;
    in.python = "/usr/bin/python3.11";
    in.boot_script = "/state/lib/hearth_boot.py";
    in.source_tree = "/state/trees/sha256/aa";
    in.deps_tree = "/state/trees/sha256/bb";
    in.source_info = &info;
    in.sys_path = {"/state/trees/sha256/aa", "/state/trees/sha256/bb/.deps/x.whl"};
    in.location = "analytics";
    in.revision_id = "analytics-1";
    in.scratch_dir = "/state/scratch/analytics-1";
    in.pycache_dir = "/state/pycache";
    in.pex_root = "/state/pex-root";
    in.host_path = "/usr/bin:/bin";
    in.host_home = "/root";
    return in;
}

std::string env_value(const LaunchPlan& plan, const std::string& key) {
    for (const auto& kv : plan.env)
        if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
    return "<unset>";
}

} // namespace

TEST_CASE("native launch puts the entry module on the command line", "[launch]") {
    PexInfo info;
    info.entry_point = "app.main";
    info.inject_args = {"--from-pex"};
    info.inject_python_args = {"-X", "dev"};
    LaunchInput in = base_input(info);
    in.args = {"--port", "1"};
    LaunchPlan plan = plan_launch(in);
    REQUIRE(plan.error.empty());
    CHECK(plan.argv == std::vector<std::string>{"/usr/bin/python3.11", "-s", "-X", "dev",
                                                "/state/lib/hearth_boot.py", "-m", "app.main",
                                                "--from-pex", "--port", "1"});
    CHECK(env_value(plan, "HEARTH_SYS_PATH") ==
          "/state/trees/sha256/aa:/state/trees/sha256/bb/.deps/x.whl");
    CHECK(env_value(plan, "HEARTH_INHERIT_PATH") == "false");
    CHECK(env_value(plan, "TMPDIR") == "/state/scratch/analytics-1");
    CHECK(env_value(plan, "PYTHONPYCACHEPREFIX") == "/state/pycache");
    CHECK(env_value(plan, "LANG") == "C.UTF-8");
    CHECK(env_value(plan, "PATH") == "/usr/bin:/bin");
}

TEST_CASE("the environment is clean: nothing of hearth's own leaks", "[launch]") {
    ::setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
    ::setenv("HEARTH_TEST_SECRET", "x", 1);
    PexInfo info;
    info.entry_point = "app";
    LaunchPlan plan = plan_launch(base_input(info));
    for (const auto& kv : plan.env) {
        CHECK(kv.rfind("PYTHONDONTWRITEBYTECODE=", 0) != 0);
        CHECK(kv.rfind("HEARTH_TEST_SECRET=", 0) != 0);
    }
    ::unsetenv("PYTHONDONTWRITEBYTECODE");
    ::unsetenv("HEARTH_TEST_SECRET");
}

TEST_CASE("inject_env fills defaults; the deploy's env wins", "[launch]") {
    PexInfo info;
    info.entry_point = "app";
    info.inject_env = {{"MODE", "pex"}, {"ONLY_PEX", "1"}};
    LaunchInput in = base_input(info);
    in.deploy_env = {{"MODE", "deploy"}, {"EXTRA", "y"}};
    LaunchPlan plan = plan_launch(in);
    CHECK(env_value(plan, "MODE") == "deploy");
    CHECK(env_value(plan, "ONLY_PEX") == "1");
    CHECK(env_value(plan, "EXTRA") == "y");
}

TEST_CASE("an explicit entry module replaces PEX-INFO's and its inject_args", "[launch]") {
    PexInfo info;
    info.entry_point = "app.main:run";
    info.inject_args = {"--injected"};
    LaunchInput in = base_input(info);
    in.module = "other.mod";
    LaunchPlan plan = plan_launch(in);
    REQUIRE(plan.error.empty());
    CHECK(std::find(plan.argv.begin(), plan.argv.end(), "other.mod") != plan.argv.end());
    CHECK(std::find(plan.argv.begin(), plan.argv.end(), "--injected") == plan.argv.end());
}

TEST_CASE("script entry points and missing entries", "[launch]") {
    PexInfo info;
    info.script = "serve";
    LaunchPlan plan = plan_launch(base_input(info));
    REQUIRE(plan.error.empty());
    CHECK(std::find(plan.argv.begin(), plan.argv.end(), "--script") != plan.argv.end());

    PexInfo none;
    plan = plan_launch(base_input(none));
    CHECK(plan.error.find("no entry_point") != std::string::npos);
}

TEST_CASE("pex runtime composes with PEX_PATH", "[launch]") {
    PexInfo info;
    info.entry_point = "app.main";
    LaunchInput in = base_input(info);
    in.runtime = Runtime::pex;
    in.module = "app.other";
    in.args = {"a"};
    LaunchPlan plan = plan_launch(in);
    REQUIRE(plan.error.empty());
    CHECK(plan.argv ==
          std::vector<std::string>{"/usr/bin/python3.11", "/state/trees/sha256/aa", "a"});
    CHECK(env_value(plan, "PEX_PATH") == "/state/trees/sha256/bb");
    CHECK(env_value(plan, "PEX_ROOT") == "/state/pex-root");
    CHECK(env_value(plan, "PEX_MODULE") == "app.other");
    CHECK(env_value(plan, "HEARTH_SYS_PATH") == "<unset>");
}

namespace {
const std::string hex_a(64, 'a');
const std::string hex_b(64, 'b');
json good_params() {
    return {{"location", "analytics"},
            {"deps", {{"path", "/x/deps.pex"}, {"sha256", hex_a}}},
            {"source", {{"url", "file:///x/source.pex"}, {"sha256", hex_b}}}};
}
std::string rejection(const json& params) {
    try {
        parse_deploy_params(params);
    } catch (const rpc::RpcError& f) {
        CHECK(f.error().code == rpc::invalid_params);
        return f.error().message;
    }
    FAIL("accepted");
    return {};
}
} // namespace

TEST_CASE("deploy params parse", "[deploy]") {
    json p = good_params();
    p["runtime"] = "pex";
    p["entry"] = {{"module", "m"}, {"args", {"1", "2"}}};
    p["env"] = {{"K", "V"}};
    p["min_uptime_s"] = 0.5;
    DeploySpec spec = parse_deploy_params(p);
    CHECK(spec.location == "analytics");
    CHECK(spec.deps.path == "/x/deps.pex");
    CHECK(spec.source.path == "/x/source.pex");
    CHECK(spec.runtime == Runtime::pex);
    CHECK(*spec.module == "m");
    CHECK(spec.args == std::vector<std::string>{"1", "2"});
    CHECK(spec.env.at("K") == "V");
    CHECK(spec.min_uptime_s == 0.5);
}

TEST_CASE("deploy params errors name the field", "[deploy]") {
    json p = good_params();
    p["location"] = "Bad Name";
    CHECK(rejection(p).rfind("params.location:", 0) == 0);
    p = good_params();
    p["deps"]["sha256"] = "abc";
    CHECK(rejection(p).rfind("params.deps.sha256:", 0) == 0);
    p = good_params();
    p["source"]["url"] = "ftp://host/x";
    CHECK(rejection(p).find("unsupported URL scheme 'ftp'") != std::string::npos);
    p = good_params();
    p["deps"]["path"] = "relative.pex";
    CHECK(rejection(p).rfind("params.deps.path:", 0) == 0);
    p = good_params();
    p["runtime"] = "docker";
    CHECK(rejection(p).find("unknown runtime 'docker'") != std::string::npos);
    p = good_params();
    p["env"] = {{"A=B", "x"}};
    CHECK(rejection(p).rfind("params.env", 0) == 0);
    p = good_params();
    p.erase("source");
    CHECK(rejection(p).find("source") != std::string::npos);
}

TEST_CASE("location names", "[deploy]") {
    CHECK(valid_location_name("analytics"));
    CHECK(valid_location_name("a.b_c-9"));
    CHECK_FALSE(valid_location_name(""));
    CHECK_FALSE(valid_location_name("-x"));
    CHECK_FALSE(valid_location_name("Upper"));
    CHECK_FALSE(valid_location_name(std::string(64, 'a')));
    CHECK(valid_location_name(std::string(63, 'a')));
}

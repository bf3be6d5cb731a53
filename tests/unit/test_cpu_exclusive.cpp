// limits.cpu_exclusive: parsing, the conditions hearth's options put on it,
// and hearthctl's --cpu-exclusive. The placement itself is in
// test_cpu_spread.cpp, the kernel side in cgroup_cpu_exclusive.sh.

#include "ctl.hpp"
#include "deploy.hpp"
#include "rpc.hpp"

#include <catch2/catch.hpp>

using namespace hearth;
using nlohmann::json;

namespace {

json deploy_params(json limits) {
    return {{"location", "api"},
            {"deps", {{"path", "/x/deps.pex"}, {"sha256", std::string(64, 'a')}}},
            {"source", {{"path", "/x/source.pex"}, {"sha256", std::string(64, 'b')}}},
            {"limits", std::move(limits)}};
}

std::string rejection(const json& params, const DeployPolicy& policy = {}) {
    try {
        parse_deploy_params(params, policy);
    } catch (const rpc::Failure& f) {
        CHECK(f.error().code == rpc::invalid_params);
        return f.error().message;
    }
    FAIL("accepted: " + params.dump());
    return {};
}

} // namespace

TEST_CASE("cpu_exclusive: parsed, shown, and only with cpus", "[deploy]") {
    DeploySpec spec = parse_deploy_params(deploy_params({{"cpus", 1}, {"cpu_exclusive", true}}));
    CHECK(spec.limits.cpu_exclusive);
    CHECK(limits_to_json(spec.limits) == json{{"cpus", 1.0}, {"cpu_exclusive", true}});
    spec = parse_deploy_params(deploy_params({{"cpus", 1}, {"cpu_exclusive", false}}));
    CHECK_FALSE(spec.limits.cpu_exclusive);
    CHECK_FALSE(limits_to_json(spec.limits).contains("cpu_exclusive"));

    CHECK(rejection(deploy_params({{"cpu_exclusive", true}})) ==
          "params.limits.cpu_exclusive: needs limits.cpus (how many CPUs to reserve)");
    CHECK(rejection(deploy_params({{"cpus", 1}, {"cpu_exclusive", "yes"}}))
              .rfind("params.limits.cpu_exclusive", 0) == 0);
    CHECK(rejection(deploy_params({{"cpu_exclusiv", true}})).find("cpu_exclusive, pids") !=
          std::string::npos);

    // hearth's --default-cpus is a size too; --cpu-placement shared has no
    // CPU sets to reserve from.
    DeployPolicy policy;
    policy.default_limits.cpu_quota = 2;
    CHECK(
        parse_deploy_params(deploy_params({{"cpu_exclusive", true}}), policy).limits.cpu_exclusive);
    policy.cpu_placement = false;
    CHECK(rejection(deploy_params({{"cpus", 1}, {"cpu_exclusive", true}}), policy) ==
          "params.limits.cpu_exclusive: hearth runs with --cpu-placement shared");
}

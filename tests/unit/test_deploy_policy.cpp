// Deploy params added for isolation and restarts (limits, restart, stop,
// user/group, http sources), the ceiling of hearth's options, and the
// restart policy's decisions.

#include "control/rpc.hpp"
#include "daemon/deploy.hpp"
#include "daemon/options.hpp"

#include <catch2/catch.hpp>
#include <signal.h>
#include <uv.h>

using namespace hearth;
using nlohmann::json;

namespace {
const std::string hex_a(64, 'a');
const std::string hex_b(64, 'b');

json base() {
    return {{"location", "analytics"},
            {"deps", {{"path", "/x/deps.pex"}, {"sha256", hex_a}}},
            {"source",
             {{"url", "https://bucket.example/source.pex?X-Amz-Signature=s"}, {"sha256", hex_b}}}};
}

std::string rejection(const json& params, const DeployPolicy& policy = {}) {
    try {
        parse_deploy_params(params, policy);
    } catch (const rpc::RpcError& f) {
        CHECK(f.error().code == rpc::invalid_params);
        return f.error().message;
    }
    FAIL("accepted: " + params.dump());
    return {};
}

json with_limits(json limits) {
    json p = base();
    p["limits"] = std::move(limits);
    return p;
}
} // namespace

TEST_CASE("http and https sources are kept as URLs", "[deploy]") {
    DeploySpec spec = parse_deploy_params(base());
    CHECK(spec.source.url == "https://bucket.example/source.pex?X-Amz-Signature=s");
    CHECK(spec.source.path.empty());
    CHECK(spec.deps.url.empty());
    json p = base();
    p["deps"] = {{"url", "http://127.0.0.1:8080/d.pex"}, {"sha256", hex_a}};
    CHECK(parse_deploy_params(p).deps.url == "http://127.0.0.1:8080/d.pex");
    p["deps"]["url"] = "http://host/a b.pex";
    CHECK(rejection(p).find("params.deps.url") != std::string::npos);
}

TEST_CASE("limits parse from sizes, numbers and millicores", "[deploy]") {
    json p = base();
    p["limits"] = {{"memory", "512Mi"},
                   {"memory_high", 400 * 1024 * 1024},
                   {"cpus", "500m"},
                   {"cpu_weight", 200},
                   {"pids", 64}};
    DeploySpec spec = parse_deploy_params(p);
    CHECK(*spec.limits.memory_max == 512ull << 20);
    CHECK(*spec.limits.memory_high == 400ull << 20);
    CHECK(*spec.limits.cpu_quota == Approx(0.5));
    CHECK(*spec.limits.cpu_weight == 200);
    CHECK(*spec.limits.pids_max == 64);
    CHECK(limits_to_json(spec.limits) == json{{"memory", 512ull << 20},
                                              {"memory_high", 400ull << 20},
                                              {"cpus", 0.5},
                                              {"cpu_weight", 200},
                                              {"pids", 64}});
}

TEST_CASE("cpu_weight idle", "[deploy]") {
    json p = base();
    p["limits"] = {{"cpu_weight", "idle"}, {"cpus", 0.5}};
    DeploySpec spec = parse_deploy_params(p);
    CHECK(spec.limits.cpu_idle);
    CHECK_FALSE(spec.limits.cpu_weight);
    CHECK(limits_to_json(spec.limits) == json{{"cpus", 0.5}, {"cpu_weight", "idle"}});
    // A default weight does not override idle.
    DeployPolicy policy;
    policy.default_limits.cpu_weight = 500;
    CHECK(parse_deploy_params(p, policy).limits.cpu_idle);
    CHECK_FALSE(parse_deploy_params(p, policy).limits.cpu_weight);
    p["limits"] = {{"cpu_weight", "low"}};
    CHECK(rejection(p) ==
          "params.limits.cpu_weight: expected an integer from 1 to 10000 or \"idle\", got \"low\"");
}

TEST_CASE("invalid limits name the field", "[deploy]") {
    auto with = [](json limits) {
        json p = base();
        p["limits"] = std::move(limits);
        return rejection(p);
    };
    CHECK(with({{"cpus", -1}}).rfind("params.limits.cpus:", 0) == 0);
    CHECK(with({{"cpus", "fast"}}).rfind("params.limits.cpus:", 0) == 0);
    CHECK(with({{"memory", "12q"}}).rfind("params.limits.memory:", 0) == 0);
    CHECK(with({{"memory", 1000}}).find("at least 1Mi") != std::string::npos);
    CHECK(with({{"pids", 0}}).rfind("params.limits.pids", 0) == 0);
    CHECK(with({{"cpu_weight", 10001}}).rfind("params.limits.cpu_weight", 0) == 0);
    CHECK(with({{"swap", 1}}).rfind("params.limits.swap: unknown limit", 0) == 0);
    json p = base();
    p["limits"] = "lots";
    CHECK(rejection(p).find("params.limits") != std::string::npos);
}

TEST_CASE("hearth's defaults fill in and its ceiling holds", "[deploy]") {
    DeployPolicy policy;
    policy.default_limits.memory_max = 256ull << 20;
    policy.default_limits.pids_max = 100;
    policy.max_limits.memory_max = 1ull << 30;
    policy.max_limits.cpu_quota = 2.0;
    DeploySpec spec = parse_deploy_params(base(), policy);
    CHECK(*spec.limits.memory_max == 256ull << 20);
    CHECK(*spec.limits.pids_max == 100);
    CHECK(*spec.limits.cpu_quota == Approx(2.0)); // the ceiling applies to "unlimited"
    json p = base();
    p["limits"] = {{"memory", "2Gi"}};
    CHECK(rejection(p, policy) == "params.limits.memory: 2 GiB exceeds hearth's ceiling 1 GiB");
    p["limits"] = {{"cpus", 3}};
    CHECK(rejection(p, policy).rfind("params.limits.cpus: 3 exceeds", 0) == 0);
}

TEST_CASE("restart and stop specs", "[deploy]") {
    DeploySpec d = parse_deploy_params(base());
    CHECK(d.restart.policy == RestartPolicy::on_failure);
    CHECK_FALSE(d.restart.max_restarts);
    CHECK(d.stop.signal == SIGTERM);

    json p = base();
    p["restart"] = "always";
    CHECK(parse_deploy_params(p).restart.policy == RestartPolicy::always);
    p["restart"] = {{"policy", "on-failure"}, {"max_restarts", 3}, {"window_s", 30}};
    DeploySpec r = parse_deploy_params(p);
    CHECK(*r.restart.max_restarts == 3);
    CHECK(r.restart.window_s == 30);
    p["restart"] = "sometimes";
    CHECK(rejection(p).rfind("params.restart: unknown policy 'sometimes'", 0) == 0);

    p = base();
    p["stop"] = {{"signal", "SIGINT"}, {"grace_s", 2.5}};
    DeploySpec s = parse_deploy_params(p);
    CHECK(s.stop.signal == SIGINT);
    CHECK(s.stop.grace_s == 2.5);
    p["stop"] = {{"signal", "TERMINATE"}};
    CHECK(rejection(p).rfind("params.stop.signal: unknown signal", 0) == 0);
    p["stop"] = {{"grace_s", -1}};
    CHECK(rejection(p).rfind("params.stop.grace_s", 0) == 0);

    CHECK(parse_signal_name("USR1") == SIGUSR1);
    CHECK(parse_signal_name("9") == 9);
    CHECK(parse_signal_name("0") == -1);
    CHECK(parse_signal_name("SIG") == -1);
}

TEST_CASE("the restart policy decides with backoff and a window", "[deploy]") {
    uv_loop_t loop;
    uv_loop_init(&loop);
    {
        DeploySpec spec = parse_deploy_params(base());
        spec.restart.max_restarts = 3;
        spec.restart.window_s = 100;
        Revision rev(&loop, "analytics", 1, spec);
        auto t0 = Clock::now();
        std::vector<double> delays;
        for (int i = 0; i < 3; ++i) {
            RestartDecision d = decide_restart(rev, false, 0.5, t0 + std::chrono::seconds(i));
            REQUIRE(d.restart);
            delays.push_back(d.delay_s);
        }
        CHECK(delays == std::vector<double>{1, 2, 4});
        RestartDecision fourth = decide_restart(rev, false, 0.5, t0 + std::chrono::seconds(3));
        CHECK_FALSE(fourth.restart);
        CHECK(fourth.why_not.find("max_restarts 3") != std::string::npos);

        // Outside the window the old failures no longer count; a process that
        // stayed up resets the backoff.
        RestartDecision later = decide_restart(rev, false, 120, t0 + std::chrono::seconds(500));
        CHECK(later.restart);
        CHECK(later.delay_s == 1);

        rev.spec.restart.policy = RestartPolicy::on_failure;
        CHECK_FALSE(decide_restart(rev, true, 1, t0).restart); // clean exit
        rev.spec.restart.policy = RestartPolicy::always;
        rev.spec.restart.max_restarts.reset();
        CHECK(decide_restart(rev, true, 1, t0 + std::chrono::seconds(501)).restart);
        rev.spec.restart.policy = RestartPolicy::never;
        CHECK(decide_restart(rev, false, 1, t0).why_not == "restart policy never");

        // The backoff doubles to its cap.
        rev.spec.restart.policy = RestartPolicy::always;
        rev.backoff_step = 20;
        CHECK(decide_restart(rev, false, 1, t0 + std::chrono::seconds(502)).delay_s ==
              restart_backoff_max_s);
    }
    uv_run(&loop, UV_RUN_DEFAULT); // close the revision's timer
    uv_loop_close(&loop);
}

TEST_CASE("isolation and store options", "[options]") {
    const char* argv[] = {"hearth",
                          "--cgroup-driver",
                          "none",
                          "--cgroup-parent",
                          "/hearth/test",
                          "--default-memory",
                          "256Mi",
                          "--max-cpus",
                          "1.5",
                          "--max-pids",
                          "100",
                          "--store-max-bytes=2Gi",
                          "--fetch-stall-timeout",
                          "2",
                          "--fetch-attempts",
                          "1",
                          "--user",
                          "nobody",
                          "--extract-max-ratio",
                          "50"};
    auto r = parse_options(static_cast<int>(std::size(argv)), argv);
    REQUIRE(r.ok());
    const Options& o = r.value();
    CHECK(o.cgroup_none);
    CHECK(o.cgroup_parent == "/hearth/test");
    CHECK(*o.default_memory == 256ull << 20);
    CHECK(*o.max_cpus == Approx(1.5));
    CHECK(*o.max_pids == 100);
    CHECK(*o.store_max_bytes == 2ull << 30);
    CHECK(o.fetch_stall_timeout_s == 2);
    CHECK(o.fetch_attempts == 1);
    CHECK(o.user == "nobody");
    CHECK(o.extract_max_ratio == 50);

    auto error = [](std::vector<const char*> args) {
        args.insert(args.begin(), "hearth");
        auto e = parse_options(static_cast<int>(args.size()), args.data());
        REQUIRE_FALSE(e.ok());
        return e.error().message;
    };
    CHECK(error({"--cgroup-driver", "v3"}).find("unknown mode 'v3'") != std::string::npos);
    CHECK(error({"--cgroup-parent", "relative"}).find("--cgroup-parent") != std::string::npos);
    CHECK(error({"--cgroup-parent", "/a/../b"}).find("--cgroup-parent") != std::string::npos);
    CHECK(error({"--store-max-bytes", "lots"}).rfind("--store-max-bytes:", 0) == 0);
    CHECK(error({"--max-pids", "0"}).find("positive whole number") != std::string::npos);
    CHECK(error({"--default-cpus", "-2"}).rfind("--default-cpus:", 0) == 0);
}

TEST_CASE("cpu_exclusive: parsed, shown, and only with cpus", "[deploy]") {
    DeploySpec spec = parse_deploy_params(with_limits({{"cpus", 1}, {"cpu_exclusive", true}}));
    CHECK(spec.limits.cpu_exclusive);
    CHECK(limits_to_json(spec.limits) == json{{"cpus", 1.0}, {"cpu_exclusive", true}});
    spec = parse_deploy_params(with_limits({{"cpus", 1}, {"cpu_exclusive", false}}));
    CHECK_FALSE(spec.limits.cpu_exclusive);
    CHECK_FALSE(limits_to_json(spec.limits).contains("cpu_exclusive"));

    CHECK(rejection(with_limits({{"cpu_exclusive", true}})) ==
          "params.limits.cpu_exclusive: needs limits.cpus (how many CPUs to reserve)");
    CHECK(rejection(with_limits({{"cpus", 1}, {"cpu_exclusive", "yes"}}))
              .rfind("params.limits.cpu_exclusive", 0) == 0);
    CHECK(rejection(with_limits({{"cpu_exclusiv", true}}))
              .find("cpu_exclusive, cpu_slice_us, pids") != std::string::npos);

    // hearth's --default-cpus is a size too; --cpu-placement shared has no
    // CPU sets to reserve from.
    DeployPolicy policy;
    policy.default_limits.cpu_quota = 2;
    CHECK(parse_deploy_params(with_limits({{"cpu_exclusive", true}}), policy).limits.cpu_exclusive);
    policy.cpu_placement = false;
    CHECK(rejection(with_limits({{"cpus", 1}, {"cpu_exclusive", true}}), policy) ==
          "params.limits.cpu_exclusive: hearth runs with --cpu-placement shared");
}

TEST_CASE("cpu_slice_us: the kernel's bounds, shown back", "[deploy]") {
    DeploySpec spec = parse_deploy_params(with_limits({{"cpu_slice_us", 100}}));
    REQUIRE(spec.limits.cpu_slice_us);
    CHECK(*spec.limits.cpu_slice_us == 100);
    CHECK(limits_to_json(spec.limits) == json{{"cpu_slice_us", 100}});
    CHECK(parse_deploy_params(with_limits({{"cpu_slice_us", 100000}})).limits.cpu_slice_us ==
          100000u);
    CHECK_FALSE(parse_deploy_params(with_limits({})).limits.cpu_slice_us);
    for (const json& bad : {json(99), json(100001), json(0), json(-5), json(1.5), json("100")})
        CHECK(rejection(with_limits({{"cpu_slice_us", bad}}))
                  .rfind("params.limits.cpu_slice_us", 0) == 0);
}

// hearthctl's pure parts for session 2: deploy limits/restart/stop/user flags
// and --params merging, the cache and status tables, progress lines, and the
// `deploy --wait` outcome. No daemon: whole commands are in test_client.cpp.

#include "ctl/ctl.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

using nlohmann::json;
namespace ctl = hearth::ctl;

namespace {

const std::string kA = std::string(64, 'a');
const std::string kB = std::string(64, 'b');
const std::string kF = std::string(64, 'f');

ctl::ParseResult parse(std::vector<std::string> argv) {
    return ctl::parse_args(argv);
}

// A hasher that records what it was asked to hash; "missing" paths fail.
struct FakeHasher {
    std::vector<std::string> hashed;
    ctl::Hasher fn() {
        return [this](const std::string& path, std::string& err) -> std::optional<std::string> {
            hashed.push_back(path);
            if (path.find("missing") != std::string::npos) {
                err = "open " + path + ": No such file or directory";
                return std::nullopt;
            }
            return kF;
        };
    }
};

// Parses argv (which must be valid) and builds params over `base`.
ctl::DeployBuild build(std::vector<std::string> argv, const json& base, FakeHasher& h) {
    auto r = parse(std::move(argv));
    INFO("parse error: " << r.error);
    REQUIRE(r.ok());
    return ctl::deploy_params(r.args, base, "/work", h.fn());
}

json state_event(const std::string& id, const std::string& previous, const std::string& state) {
    return {{"type", "state"},      {"ts", "T"},     {"location", "web"}, {"id", id},
            {"previous", previous}, {"state", state}};
}

json progress_event(const std::string& id) {
    return {{"type", "progress"},  {"ts", "T"},
            {"location", "web"},   {"id", id},
            {"artifact", "deps"},  {"fetched_bytes", 1024},
            {"total_bytes", 4096}, {"state", "fetching"}};
}

} // namespace

// ---------------------------------------------------------------------------
// deploy flags -> params

TEST_CASE("deploy flags: every new flag's exact params JSON", "[ctl]") {
    FakeHasher h;
    auto b = build(
        {"deploy",           "web",    "--deps",          "/d.pex",     "--deps-sha256",  kA,
         "--source",         "/s.pex", "--source-sha256", kB,           "--memory",       "512Mi",
         "--memory-high",    "400Mi",  "--cpus",          "500m",       "--cpu-weight",   "200",
         "--pids",           "64",     "--restart",       "on-failure", "--max-restarts", "3",
         "--restart-window", "120",    "--stop-signal",   "sigint",     "--stop-grace",   "5",
         "--user",           "nobody", "--group",         "65534"},
        nullptr, h);
    REQUIRE(b.ok());
    CHECK(h.hashed.empty()); // both digests were given
    json expected = {
        {"location", "web"},
        {"deps", {{"path", "/d.pex"}, {"sha256", kA}}},
        {"source", {{"path", "/s.pex"}, {"sha256", kB}}},
        {"limits",
         {{"memory", "512Mi"},
          {"memory_high", "400Mi"},
          {"cpus", 0.5},
          {"cpu_weight", 200},
          {"pids", 64}}},
        {"restart", {{"policy", "on-failure"}, {"max_restarts", 3}, {"window_s", 120.0}}},
        {"stop", {{"signal", "INT"}, {"grace_s", 5.0}}},
        {"user", "nobody"},
        {"group", "65534"},
    };
    CHECK(*b.params == expected);
    // Integers stay integers on the wire (cpu_weight 200, not 200.0).
    CHECK((*b.params)["limits"]["cpu_weight"].is_number_integer());
    CHECK((*b.params)["limits"]["cpus"].is_number_float());
}

TEST_CASE("deploy flags: --cpu-weight idle", "[ctl]") {
    FakeHasher h;
    auto b = build({"deploy", "batch", "--deps", "/d.pex", "--deps-sha256", kA, "--source",
                    "/s.pex", "--source-sha256", kB, "--cpu-weight", "idle"},
                   nullptr, h);
    REQUIRE(b.ok());
    CHECK((*b.params)["limits"] == json{{"cpu_weight", "idle"}});
}

TEST_CASE("deploy flags: --cpu-exclusive", "[ctl]") {
    FakeHasher h;
    std::vector<std::string> args = {"deploy",          "api", "--deps",   "/d.pex",
                                     "--deps-sha256",   kA,    "--source", "/s.pex",
                                     "--source-sha256", kB,    "--cpus",   "1"};
    auto plain = build(args, nullptr, h);
    REQUIRE(plain.ok());
    CHECK((*plain.params)["limits"] == json{{"cpus", 1.0}});
    args.push_back("--cpu-exclusive");
    auto b = build(args, nullptr, h);
    REQUIRE(b.ok());
    CHECK((*b.params)["limits"] == json{{"cpus", 1.0}, {"cpu_exclusive", true}});
    args.insert(args.end(), {"--cpu-slice-us", "100"});
    auto s = build(args, nullptr, h);
    REQUIRE(s.ok());
    CHECK((*s.params)["limits"] ==
          json{{"cpus", 1.0}, {"cpu_exclusive", true}, {"cpu_slice_us", 100}});
}

TEST_CASE("deploy flags: restart forms and defaults left to hearth", "[ctl]") {
    FakeHasher h;
    const std::vector<std::string> basic = {"deploy", "web",      "--deps",
                                            "d.pex",  "--source", "s.pex"};
    auto with = [&](std::vector<std::string> extra) {
        auto argv = basic;
        argv.insert(argv.end(), extra.begin(), extra.end());
        auto b = build(argv, nullptr, h);
        REQUIRE(b.ok());
        return *b.params;
    };
    json plain = with({});
    CHECK_FALSE(plain.contains("limits"));
    CHECK_FALSE(plain.contains("restart"));
    CHECK_FALSE(plain.contains("stop"));
    CHECK_FALSE(plain.contains("user"));
    CHECK(plain["deps"] == json{{"path", "/work/d.pex"}, {"sha256", kF}});

    CHECK(with({"--restart", "never"})["restart"] == "never");
    CHECK(with({"--restart", "always"})["restart"] == "always");
    // A count without a policy spells out hearth's default policy.
    CHECK(with({"--max-restarts", "0"})["restart"] ==
          json{{"policy", "on-failure"}, {"max_restarts", 0}});
    CHECK(with({"--restart-window", "1.5"})["restart"] ==
          json{{"policy", "on-failure"}, {"window_s", 1.5}});
    CHECK(with({"--stop-signal", "SIGKILL"})["stop"] == json{{"signal", "KILL"}});
    CHECK(with({"--stop-signal", "winch"})["stop"] == json{{"signal", "WINCH"}});
    CHECK(with({"--stop-grace", "0"})["stop"] == json{{"grace_s", 0.0}});
    CHECK(with({"--cpus", "2"})["limits"] == json{{"cpus", 2.0}});
    CHECK(with({"--memory", "1073741824"})["limits"] == json{{"memory", "1073741824"}});
    CHECK(with({"--memory", "1Mi"})["limits"] == json{{"memory", "1Mi"}});
    CHECK(with({"--user", "1000"})["user"] == "1000");
}

TEST_CASE("deploy --params: the file is the base, flags override its fields", "[ctl]") {
    FakeHasher h;
    json file = {
        {"location", "analytics"},
        {"deps", {{"path", "dist/deps.pex"}}}, // relative, no digest: hashed by hearthctl
        {"source", {{"url", "https://x/s.pex"}, {"sha256", kB}}},
        {"runtime", "pex"},
        {"env", {{"A", "1"}, {"B", "2"}}},
        {"limits", {{"memory", "1Gi"}, {"pids", 10}}},
        {"restart", {{"policy", "always"}, {"max_restarts", 5}}},
        {"stop", {{"signal", "TERM"}, {"grace_s", 30}}},
        {"user", "app"},
        {"min_uptime_s", 3},
    };
    SECTION("no flags: the file as is, plus digests and absolute paths") {
        auto b = build({"deploy", "--params", "p.json"}, file, h);
        REQUIRE(b.ok());
        json expected = file;
        expected["deps"] = {{"path", "/work/dist/deps.pex"}, {"sha256", kF}};
        CHECK(*b.params == expected);
        CHECK(h.hashed == std::vector<std::string>{"/work/dist/deps.pex"});
    }
    SECTION("flags override single fields and leave the rest") {
        auto b = build({"deploy", "--params", "p.json", "--env", "B=3", "--memory", "256Mi",
                        "--restart", "never", "--stop-grace", "2", "--user", "other",
                        "--source-sha256", kA, "--min-uptime", "0"},
                       file, h);
        REQUIRE(b.ok());
        const json& p = *b.params;
        CHECK(p["location"] == "analytics");
        CHECK(p["env"] == json{{"A", "1"}, {"B", "3"}});
        CHECK(p["limits"] == json{{"memory", "256Mi"}, {"pids", 10}});
        CHECK(p["restart"] == json{{"policy", "never"}, {"max_restarts", 5}});
        CHECK(p["stop"] == json{{"signal", "TERM"}, {"grace_s", 2.0}});
        CHECK(p["user"] == "other");
        CHECK(p["runtime"] == "pex");
        CHECK(p["min_uptime_s"] == 0.0);
        // A lone --source-sha256 replaces the file's digest, keeps its URL.
        CHECK(p["source"] == json{{"url", "https://x/s.pex"}, {"sha256", kA}});
    }
    SECTION("LOCATION, --deps and --module replace whole fields") {
        json f = file;
        f["entry"] = {{"module", "old.mod"}, {"args", {"--old"}}};
        f["restart"] = "on-failure";
        auto b = build({"deploy", "web", "--params", "-", "--deps", "https://y/d.pex",
                        "--deps-sha256", kA, "--module", "new.mod", "--max-restarts", "2"},
                       f, h);
        REQUIRE(b.ok());
        const json& p = *b.params;
        CHECK(p["location"] == "web");
        CHECK(p["deps"] == json{{"url", "https://y/d.pex"}, {"sha256", kA}});
        CHECK(p["entry"] == json{{"module", "new.mod"}, {"args", json::array()}});
        // The file's string policy is kept inside the object form.
        CHECK(p["restart"] == json{{"policy", "on-failure"}, {"max_restarts", 2}});
        CHECK(h.hashed.empty());
    }
    SECTION("fields hearthctl does not know pass through untouched") {
        json f = file;
        f["future_field"] = {{"x", 1}};
        f["limits"] = "weird"; // hearth will say what is wrong with it
        auto b = build({"deploy", "--params", "p.json"}, f, h);
        REQUIRE(b.ok());
        CHECK((*b.params)["future_field"] == json{{"x", 1}});
        CHECK((*b.params)["limits"] == "weird");
        // ...unless a flag needs the object.
        auto c = build({"deploy", "--params", "p.json", "--pids", "5"}, f, h);
        REQUIRE(c.ok());
        CHECK((*c.params)["limits"] == json{{"pids", 5}});
    }
}

TEST_CASE("deploy --params: errors after merging", "[ctl]") {
    FakeHasher h;
    struct Case {
        json file;
        std::vector<std::string> extra;
        int status;
        std::string error;
    };
    json ok_art = {{"path", "/d.pex"}, {"sha256", kA}};
    std::vector<Case> cases = {
        {json::object(),
         {},
         ctl::exit_usage,
         "missing LOCATION (an argument, or \"location\" in --params)"},
        {{{"location", "Bad Name"}},
         {},
         ctl::exit_usage,
         "--params: invalid \"location\" \"Bad Name\": expected ^[a-z0-9][a-z0-9_.-]{0,62}$"},
        {{{"location", 7}},
         {},
         ctl::exit_usage,
         "--params: invalid \"location\" 7: expected ^[a-z0-9][a-z0-9_.-]{0,62}$"},
        {{{"location", "web"}, {"source", ok_art}},
         {},
         ctl::exit_usage,
         "missing --deps FILE|URL (or \"deps\" in --params)"},
        {{{"location", "web"}, {"deps", ok_art}},
         {},
         ctl::exit_usage,
         "missing --source FILE|URL (or \"source\" in --params)"},
        {{{"location", "web"}, {"deps", {{"url", "https://x/d.pex"}}}, {"source", ok_art}},
         {},
         ctl::exit_usage,
         "deps (from --params) is a URL, so --deps-sha256 is required"},
        {{{"location", "web"}, {"deps", {{"path", "/missing.pex"}}}, {"source", ok_art}},
         {},
         ctl::exit_failed,
         "deps (from --params): open /missing.pex: No such file or directory"},
        {{{"location", "web"}, {"deps", ok_art}},
         {"--source", "missing.pex"},
         ctl::exit_failed,
         "--source: open /work/missing.pex: No such file or directory"},
    };
    for (const auto& c : cases) {
        INFO("file: " << c.file.dump());
        std::vector<std::string> argv = {"deploy", "--params", "p.json"};
        argv.insert(argv.end(), c.extra.begin(), c.extra.end());
        auto b = build(argv, c.file, h);
        CHECK_FALSE(b.ok());
        CHECK(b.status == c.status);
        CHECK(b.error == c.error);
    }
    // A URL whose digest comes from the flag is fine.
    auto fine =
        build({"deploy", "--params", "p.json", "--deps-sha256", kB},
              {{"location", "web"}, {"deps", {{"url", "https://x/d.pex"}}}, {"source", ok_art}}, h);
    REQUIRE(fine.ok());
    CHECK((*fine.params)["deps"] == json{{"url", "https://x/d.pex"}, {"sha256", kB}});
}

TEST_CASE("deploy flags: usage errors are one line naming the flag", "[ctl]") {
    struct Case {
        std::vector<std::string> extra;
        std::string error;
    };
    std::vector<Case> cases = {
        {{"--memory", "512m"},
         "deploy: --memory: invalid byte size \"512m\": lowercase \"m\" is ambiguous; use Ki, Mi, "
         "Gi, Ti (1024-based) or k, M, G, T (1000-based)"},
        {{"--memory", "1k"}, "deploy: --memory: must be at least 1Mi (1048576 bytes), got '1k'"},
        {{"--memory-high", "lots"},
         "deploy: --memory-high: invalid byte size \"lots\": unknown "
         "unit \"lots\" (use k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, "
         "optionally followed by B)"},
        {{"--cpus", "0"}, "deploy: --cpus: invalid CPU count \"0\": must be greater than 0"},
        {{"--cpus", "2000"}, "deploy: --cpus: invalid CPU count \"2000\": must be at most 1024"},
        {{"--cpu-weight", "0"},
         "deploy: --cpu-weight: expected an integer from 1 to 10000 or 'idle', got '0'"},
        {{"--cpu-weight", "10001"},
         "deploy: --cpu-weight: expected an integer from 1 to 10000 or 'idle', got '10001'"},
        {{"--cpu-weight", "lazy"},
         "deploy: --cpu-weight: expected an integer from 1 to 10000 or 'idle', got 'lazy'"},
        {{"--cpu-slice-us", "99"},
         "deploy: --cpu-slice-us: expected microseconds from 100 to 100000, got '99'"},
        {{"--cpu-slice-us", "0.5"},
         "deploy: --cpu-slice-us: expected microseconds from 100 to 100000, got '0.5'"},
        {{"--pids", "0"}, "deploy: --pids: expected an integer of at least 1, got '0'"},
        {{"--pids", "1.5"}, "deploy: --pids: expected an integer of at least 1, got '1.5'"},
        {{"--restart", "sometimes"},
         "deploy: --restart: expected 'never', 'on-failure' or 'always', got 'sometimes'"},
        {{"--max-restarts", "-1"},
         "deploy: --max-restarts: expected a non-negative integer, got '-1'"},
        {{"--restart-window", "0"},
         "deploy: --restart-window: expected a positive number of seconds, got '0'"},
        {{"--stop-signal", "STOP"},
         "deploy: --stop-signal: expected one of HUP INT QUIT TERM USR1 USR2 KILL WINCH (SIG "
         "prefix optional), got 'STOP'"},
        {{"--stop-grace", "3601"},
         "deploy: --stop-grace: expected seconds from 0 to 3600, got '3601'"},
        {{"--user", ""}, "deploy: --user: empty value"},
        {{"--group="}, "deploy: --group: empty value"},
        {{"--params", ""}, "deploy: --params: empty value"},
    };
    for (const auto& c : cases) {
        std::vector<std::string> argv = {"deploy", "web", "--deps", "d", "--source", "s"};
        argv.insert(argv.end(), c.extra.begin(), c.extra.end());
        INFO("argv: " << json(argv).dump());
        auto r = parse(argv);
        CHECK_FALSE(r.ok());
        CHECK(r.error == c.error);
        CHECK(r.error.find('\n') == std::string::npos);
    }
    // Without --params, LOCATION/--deps/--source stay required at parse time;
    // with it they may come from the file.
    CHECK(parse({"deploy"}).error == "deploy: missing LOCATION");
    CHECK(parse({"deploy", "web", "--source", "s"}).error == "deploy: missing --deps FILE|URL");
    auto deferred = parse({"deploy", "--params", "p.json", "--wait"});
    REQUIRE(deferred.ok());
    CHECK(deferred.args.params_file == "p.json");
    CHECK(deferred.args.location.empty());
    // A URL flag needs its digest even with --params.
    CHECK(parse({"deploy", "--params", "p.json", "--deps", "http://x/d.pex"}).error ==
          "deploy: --deps is a URL, so --deps-sha256 is required");
}

TEST_CASE("cache command line", "[ctl]") {
    auto ls = parse({"cache", "ls", "--json"});
    REQUIRE(ls.ok());
    CHECK(ls.args.command == "cache");
    CHECK(ls.args.subcommand == "ls");
    CHECK(ls.args.json);
    CHECK(ls.args.location.empty());

    auto gc = parse({"cache", "gc", "--target", "1.5Gi"});
    REQUIRE(gc.ok());
    CHECK(gc.args.subcommand == "gc");
    REQUIRE(gc.args.target_bytes);
    CHECK(*gc.args.target_bytes == 1610612736u);
    CHECK_FALSE(parse({"cache", "gc"}).args.target_bytes);

    CHECK(parse({"cache"}).error == "cache: missing subcommand (ls or gc)");
    CHECK(parse({"cache", "rm"}).error == "cache: unknown subcommand 'rm' (expected ls or gc)");
    CHECK(parse({"cache", "ls", "x"}).error == "cache: unexpected argument 'x'");
    CHECK(parse({"cache", "ls", "--target", "1Gi"}).error ==
          "cache: --target: only valid for 'cache gc'");
    CHECK(parse({"cache", "gc", "--target", "-1"}).error ==
          "cache: --target: invalid byte size \"-1\": negative sizes are not allowed");
    CHECK(parse({"status", "--target", "1Gi"}).error ==
          "option '--target' is not valid for 'status'");
    CHECK(parse({"status", "--memory", "1Gi"}).error ==
          "option '--memory' is not valid for 'status'");
}

// ---------------------------------------------------------------------------
// --params files

TEST_CASE("parse_params_text and read_params_file", "[ctl]") {
    std::string err;
    auto ok =
        ctl::parse_params_text(R"({"location":"web","limits":{"memory":"1Gi"}})", "p.json", err);
    REQUIRE(ok);
    CHECK((*ok)["limits"]["memory"] == "1Gi");

    CHECK_FALSE(ctl::parse_params_text("[1,2]", "p.json", err));
    CHECK(err == "p.json must hold a JSON object of deploy params, not an array");
    CHECK_FALSE(ctl::parse_params_text("42", "standard input", err));
    CHECK(err == "standard input must hold a JSON object of deploy params, not a number");
    CHECK_FALSE(ctl::parse_params_text("{\"location\":", "p.json", err));
    CHECK(err.rfind("p.json is not valid JSON: parse error at line 1, column 13", 0) == 0);
    CHECK(err.find("json.exception") == std::string::npos);
    CHECK(err.find('\n') == std::string::npos);

    CHECK_FALSE(ctl::read_params_file("/nonexistent/p.json", nullptr, err));
    CHECK(err == "cannot read /nonexistent/p.json: No such file or directory");
    CHECK_FALSE(ctl::read_params_file("/", nullptr, err));
    CHECK(err == "cannot read /: Is a directory");

    // "-" reads the given stream.
    char text[] = R"({"location":"from-stdin"})";
    std::FILE* in = ::fmemopen(text, sizeof(text) - 1, "r");
    REQUIRE(in);
    auto got = ctl::read_params_file("-", in, err);
    std::fclose(in);
    REQUIRE(got);
    CHECK((*got)["location"] == "from-stdin");

    char empty[] = " ";
    in = ::fmemopen(empty, 1, "r");
    REQUIRE(in);
    CHECK_FALSE(ctl::read_params_file("-", in, err));
    std::fclose(in);
    CHECK(err.rfind("standard input is not valid JSON: ", 0) == 0);
}

// ---------------------------------------------------------------------------
// --wait outcome

TEST_CASE("deploy --wait: the outcome of an event sequence", "[ctl]") {
    const std::string id = "web-2";
    auto ev = [&](const std::string& prev, const std::string& state) {
        return state_event(id, prev, state);
    };
    // ready -> 0
    CHECK(ctl::wait_outcome(id, {ev("", "pending"), progress_event(id), ev("pending", "fetching"),
                                 ev("loading", "ready")}) == 0);
    // failed -> 1
    CHECK(ctl::wait_outcome(id, {ev("", "pending"), ev("loading", "failed")}) == 1);
    // backoff before ever being ready -> 1
    CHECK(ctl::wait_outcome(id, {ev("starting", "loading"), ev("loading", "backoff"),
                                 ev("backoff", "starting"), ev("loading", "ready")}) == 1);
    // stopped before ready -> 1
    CHECK(ctl::wait_outcome(id, {ev("loading", "stopping")}) == 1);
    // Nothing decisive yet.
    CHECK_FALSE(ctl::wait_outcome(id, {ev("", "pending"), ev("pending", "fetching")}));
    // Another revision's failure and backoff are none of our business.
    CHECK_FALSE(ctl::wait_outcome(
        id, {state_event("web-1", "ready", "backoff"), state_event("web-1", "loading", "failed")}));
    // Unknown event types, odd shapes and a state-less legacy event are ignored.
    json odd_type = ev("loading", "failed");
    odd_type["type"] = "health";
    json legacy_ready = ev("loading", "ready");
    legacy_ready.erase("type"); // older hearth: no "type" means a state event
    CHECK(ctl::wait_outcome(
              id,
              {odd_type, json("text"), json::array(), json(nullptr), {{"id", 7}}, legacy_ready}) ==
          0);
}

TEST_CASE("deploy --wait: backoff after ready is ignored", "[ctl]") {
    ctl::DeployWaiter w("web-2");
    CHECK(w.feed(state_event("web-2", "loading", "ready")) == ctl::WaitVerdict::ready);
    CHECK(w.ever_ready());
    CHECK(w.feed(state_event("web-2", "ready", "backoff")) == ctl::WaitVerdict::waiting);
    CHECK(w.feed(state_event("web-2", "loading", "backoff")) == ctl::WaitVerdict::waiting);

    // "previous":"ready" proves it was ready even if that event was missed.
    ctl::DeployWaiter fresh("web-2");
    CHECK(fresh.feed(state_event("web-2", "ready", "backoff")) == ctl::WaitVerdict::waiting);
    CHECK(fresh.feed(state_event("web-2", "loading", "backoff")) == ctl::WaitVerdict::waiting);

    ctl::DeployWaiter never("web-2");
    CHECK(never.feed(state_event("web-2", "loading", "backoff")) == ctl::WaitVerdict::backoff);
    CHECK_FALSE(never.ever_ready());

    CHECK(ctl::wait_exit_status(ctl::WaitVerdict::ready) == 0);
    CHECK(ctl::wait_exit_status(ctl::WaitVerdict::backoff) == 1);
    CHECK(ctl::wait_exit_status(ctl::WaitVerdict::waiting) == -1);
}

TEST_CASE("deploy --wait: what a backoff or failure prints", "[ctl]") {
    const double now = 86400.0; // 1970-01-02T00:00:00Z
    json rev = {{"id", "web-2"},      {"state", "backoff"},
                {"reason", "exited"}, {"exit_code", 3},
                {"restarts", 0},      {"next_attempt_at", "1970-01-02T00:00:02.000Z"},
                {"backoff_s", 2.0},   {"stderr_tail", {"ValueError: boom"}}};
    json ev = state_event("web-2", "loading", "backoff");
    ev["reason"] = "exited";
    ev["message"] = "process exited with code 3";
    ev["revision"] = rev;
    CHECK(ctl::wait_failure_report("web-2", ev, ctl::WaitVerdict::backoff, now) ==
          "hearthctl: deploy: web-2 is in backoff after exited: process exited with code 3\n"
          "  hearth will retry at 1970-01-02T00:00:02.000Z (in 2s); hearthctl does not wait for "
          "restarts\n"
          "  exit code: 3\n"
          "  stderr (last 1 lines):\n"
          "    ValueError: boom\n");

    // Fields only in the revision object are found there too.
    json oom_rev = {
        {"reason", "oom_killed"}, {"message", "memory limit 64 MiB"}, {"signal", "SIGKILL"}};
    json failed = state_event("web-2", "loading", "failed");
    failed["revision"] = oom_rev;
    CHECK(ctl::wait_failure_report("web-2", failed, ctl::WaitVerdict::failed, now) ==
          "hearthctl: deploy: web-2 failed: oom_killed: memory limit 64 MiB\n"
          "  signal: SIGKILL\n");

    json stopped = state_event("web-2", "loading", "stopping");
    stopped["message"] = "stop requested";
    CHECK(ctl::wait_failure_report("web-2", stopped, ctl::WaitVerdict::stopped, now) ==
          "hearthctl: deploy: web-2 was stopped before it became ready: stop requested\n");
}

// ---------------------------------------------------------------------------
// Progress and events

TEST_CASE("progress lines", "[ctl]") {
    json ev = progress_event("web-2");
    ev["fetched_bytes"] = 1572864; // 1.5 MiB
    ev["total_bytes"] = 41943040;  // 40 MiB
    CHECK(ctl::format_progress(ev) == "deps 1.5 MiB/40 MiB (3%)");
    ev["total_bytes"] = nullptr;
    CHECK(ctl::format_progress(ev) == "deps 1.5 MiB/?");
    CHECK(ctl::format_event(ev) == "T web web-2 progress deps 1.5 MiB/?");
    ev["total_bytes"] = 1024; // more than announced: never over 100%
    CHECK(ctl::format_progress(ev) == "deps 1.5 MiB/1 KiB (100%)");
    CHECK(ctl::format_progress(json::object()) == "? ?/?");

    json unknown = {{"type", "health"}, {"ts", "T"}, {"location", "web"}, {"id", "web-2"}};
    CHECK(ctl::format_event(unknown) == "T web web-2 health");
    unknown["state"] = "ready";
    CHECK(ctl::format_event(unknown) == "T web web-2 health ready");
    // A state event with an explicit type prints as before.
    CHECK(ctl::format_event(state_event("web-2", "loading", "backoff")) ==
          "T web web-2 loading -> backoff");
}

// ---------------------------------------------------------------------------
// Tables

TEST_CASE("status table: MEM and RESTARTS columns", "[ctl]") {
    json ready = {{"id", "web-2"},
                  {"state", "ready"},
                  {"runtime", "native"},
                  {"pid", 42},
                  {"restarts", 2},
                  {"limits", {{"memory", 536870912}}},
                  {"cgroup", {{"memory_current", 12897485}}}};
    json no_limit = {{"id", "web-1"},
                     {"state", "stopped"},
                     {"runtime", "native"},
                     {"restarts", 0},
                     {"cgroup", {{"memory_current", 1048576}}}};
    json old_daemon = {
        {"id", "web-0"}, {"state", "failed"}, {"runtime", "native"}, {"reason", "exited"}};
    json status = {{"locations",
                    {{{"location", "web"},
                      {"active", "web-2"},
                      {"revisions", {ready, no_limit, old_daemon}}}}}};
    CHECK(
        ctl::format_table(ctl::status_rows(status, 0)) ==
        "LOCATION  ID      STATE    PID  UPTIME  RUNTIME  CACHE  MEM             RESTARTS  REASON\n"
        "web       web-2*  ready    42   -       native   -      12.3MiB/512MiB  2         -\n"
        "web       web-1   stopped  -    -       native   -      1MiB/-          0         -\n"
        "web       web-0   failed   -    -       native   -      -               -         "
        "exited\n");

    CHECK(ctl::mem_cell({{"limits", {{"memory", 1073741824}}}}) == "-/1GiB");
    CHECK(ctl::mem_cell({{"limits", {{"memory", "2Gi"}}}}) == "-/2GiB"); // tolerated
    CHECK(ctl::mem_cell({{"cgroup", {{"memory_current", "x"}}}}) == "-");
    CHECK(ctl::mem_cell(json::object()) == "-");
    CHECK(ctl::compact_bytes(1536) == "1.5KiB");
    CHECK(ctl::compact_bytes(12) == "12B");
}

TEST_CASE("status LOCATION detail lines", "[ctl]") {
    const double now = 86400.0 + 65; // 1970-01-02T00:01:05Z
    json backoff = {
        {"id", "web-3"},
        {"state", "backoff"},
        {"state_since", "1970-01-02T00:01:00Z"},
        {"restarts", 1},
        {"restart", "on-failure"},
        {"next_attempt_at", "1970-01-02T00:01:09Z"},
        {"backoff_s", 4.0},
        {"reason", "oom_killed"},
        {"message", "memory limit exceeded"},
        {"signal", "SIGKILL"},
        {"limits", {{"memory", 67108864}, {"cpus", 0.5}, {"pids", 64}}},
        {"cgroup",
         {{"driver", "none"},
          {"enforcement", "degraded"},
          {"degraded", {"memory: userspace watchdog (no cgroup)", "cpus: not enforced"}},
          {"memory_current", 0},
          {"cpu_usage_usec", 1250000}}},
        {"oom",
         {{"limit", 67108864}, {"peak", 70254592}, {"oom_kills", 1}, {"source", "watchdog"}}},
        {"deps", {{"fetched_bytes", 2048}, {"total_bytes", 2048}}},
        {"source", {{"cache_hit", true}}},
        {"user", "nobody"},
        {"group", "nogroup"},
        {"stop", {{"signal", "TERM"}, {"grace_s", 10}}},
    };
    json older = {{"id", "web-2"}, {"state", "ready"}};
    json status = {{"locations",
                    {{{"location", "web"}, {"active", nullptr}, {"revisions", {backoff, older}}}}}};
    std::vector<std::string> expected = {
        "web-3 (newest):",
        "  state         backoff for 5s",
        "  cgroup        none, degraded",
        "  degraded      memory: userspace watchdog (no cgroup)",
        "  degraded      cpus: not enforced",
        "  limits        memory 64 MiB, cpus 0.5, pids 64",
        "  usage         memory 0 B, cpu 1.25s",
        "  restarts      1 (policy on-failure)",
        "  backoff       next attempt at 1970-01-02T00:01:09Z (in 4s), backoff 4s",
        "  last failure  oom_killed: memory limit exceeded (signal SIGKILL)",
        "  oom           killed by the watchdog: peak 67 MiB of limit 64 MiB, oom kills 1",
        "  fetch         deps 2 KiB/2 KiB (100%)",
        "  user          nobody:nogroup",
        "  stop          TERM, grace 10s",
    };
    CHECK(ctl::status_detail(status, now) == expected);

    // The active revision wins over the newest; absent parts are left out.
    status["locations"][0]["active"] = "web-2";
    CHECK(ctl::status_detail(status, now) ==
          std::vector<std::string>{"web-2 (active):", "  state   ready", "  limits  none"});

    CHECK(ctl::status_detail(json::object(), now).empty());
    CHECK(ctl::status_detail({{"locations", {{{"location", "web"}, {"revisions", json::array()}}}}},
                             now)
              .empty());
}

TEST_CASE("cache ls table and total line", "[ctl]") {
    const double now = 86400.0 + 3600; // 1970-01-02T01:00:00Z
    json list = {
        {"budget_bytes", 10737418240ull},
        {"used_bytes", 1610612736},
        {"entries",
         {{{"kind", "blob"},
           {"sha256", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
           {"bytes", 1073741824},
           {"last_used", "1970-01-02T00:59:30.500Z"},
           {"pinned_by", {"analytics-3", "web-1"}}},
          {{"kind", "tree"},
           {"sha256", "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"},
           {"bytes", 536870912},
           {"last_used", "1970-01-01T23:00:00Z"},
           {"pinned_by", json::array()}}}},
    };
    CHECK(ctl::format_table(ctl::cache_rows(list, now)) ==
          "KIND  SHA256        SIZE    LAST-USED  PINNED-BY\n"
          "blob  0123456789ab  1GiB    29s ago    analytics-3,web-1\n"
          "tree  fedcba987654  512MiB  2h00m ago  -\n");
    CHECK(ctl::cache_total_line(list) == "used 1.5 GiB of budget 10 GiB (2 entries, 1 GiB pinned)");

    json empty = {{"budget_bytes", 100}, {"used_bytes", 0}, {"entries", json::array()}};
    CHECK(ctl::cache_rows(empty, now).size() == 1);
    CHECK(ctl::cache_total_line(empty) == "used 0 B of budget 100 B (0 entries, 0 B pinned)");
    CHECK(ctl::cache_total_line(json::object()) == "used ? of budget ? (0 entries, 0 B pinned)");
    // hearth's own pinned sum wins over adding up the entries.
    list["pinned_bytes"] = 2147483648;
    CHECK(ctl::cache_total_line(list) == "used 1.5 GiB of budget 10 GiB (2 entries, 2 GiB pinned)");
}

TEST_CASE("cache gc lines", "[ctl]") {
    json result = {{"evicted",
                    {{{"kind", "tree"}, {"sha256", std::string(64, 'c')}, {"bytes", 2097152}},
                     {{"kind", "blob"}, {"sha256", std::string(64, 'd')}, {"bytes", 1024}}}},
                   {"freed_bytes", 2098176},
                   {"used_bytes", 5242880}};
    CHECK(ctl::cache_gc_lines(result) == std::vector<std::string>{"evicted tree cccccccccccc 2 MiB",
                                                                  "evicted blob dddddddddddd 1 KiB",
                                                                  "freed 2 MiB; used now 5 MiB"});
    CHECK(
        ctl::cache_gc_lines({{"evicted", json::array()}, {"freed_bytes", 0}, {"used_bytes", 10}}) ==
        std::vector<std::string>{"nothing to evict; used 10 B"});
    CHECK(ctl::cache_gc_lines({{"evicted", json::array()},
                               {"used_bytes", 10},
                               {"message", "objects in use (1 GiB) exceed the target"}}) ==
          std::vector<std::string>{"nothing to evict; used 10 B",
                                   "objects in use (1 GiB) exceed the target"});
}

#pragma once
// Readiness and liveness probes: the deploy parameters that configure them
// and the attempts themselves, run on the loop.
//
// Kinds (deploy `readiness` / `liveness`, issue 13):
//   {"notify": {}}                          readiness only: READY=1 on the
//                                           revision's NOTIFY_SOCKET (health/notify.hpp)
//   {"tcp": {"port": N | "auto"}}           a TCP connect to 127.0.0.1:port
//   {"http": {"port": N | "auto", "path": "/healthz"}}   GET, success on 2xx
//   {"exec": {"argv": ["cmd", ...]}}        exit status 0, run in the
//                                           revision's environment, cgroup and user
//   {"none": {}}                            readiness: the min_uptime_s rule;
//                                           liveness: no probe
// beside the kind, in the same object: timeout_s (readiness only, default
// 180), period_s (readiness 1, liveness 10), attempt_timeout_s (1), and for
// liveness failure_threshold (3) and action ("report" or "restart").
// "auto" (the default port) probes the revision's own PORT.
//
// Each attempt ends in one of three outcomes, kept apart because they call
// for different reactions: `success`; `unreachable` (nothing answered:
// connection refused, no answer within the attempt timeout; often transient,
// e.g. still loading); `error` (something answered and said no: HTTP non-2xx,
// a non-zero exit; definitive).
//
// Threading: Probe and PeriodicProbe are loop-thread only and never block
// except the fork+exec of an exec probe (as every spawn in hearth). No
// exception escapes into libuv or libcurl: one thrown by a caller's callback
// is caught and logged.

#include "init/init.hpp"
#include "init/spawn.hpp"
#include "store/fetch.hpp"
#include "util/uv_util.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <uv.h>
#include <vector>

namespace hearth::health {

enum class ProbeKind { none, notify, tcp, http, exec };
const char* probe_kind_name(ProbeKind kind) noexcept; // "none", "notify", ...

enum class LivenessAction { report, restart };
const char* liveness_action_name(LivenessAction action) noexcept; // "report", "restart"

struct ProbeSpec {
    ProbeKind kind = ProbeKind::none;
    bool port_auto = true;          // tcp/http: probe the revision's PORT
    std::uint16_t port = 0;         // tcp/http when !port_auto
    std::string path = "/";         // http: absolute path (with any query)
    std::vector<std::string> argv;  // exec: argv[0] is looked up in the revision's PATH
    double timeout_s = 180;         // readiness: budget from the start of loading
    double period_s = 1;            // between the starts of two attempts
    double attempt_timeout_s = 1;   // one attempt
    unsigned failure_threshold = 3; // liveness: consecutive failures before unhealthy
    LivenessAction action = LivenessAction::report; // liveness
    bool operator==(const ProbeSpec&) const = default;
};

// Parse deploy's `readiness` / `liveness` values. `where` names the value in
// errors ("params.readiness"). Throws rpc::RpcError(invalid_params) naming the
// offending field, e.g. "params.readiness.http.port: must be 1-65535 or
// \"auto\"" or "params.readiness: give exactly one of notify, tcp, http,
// exec, none". Liveness refuses `notify` and `timeout_s` (there is no
// loading budget after ready); readiness refuses failure_threshold and action.
// Unknown keys are ignored (newer clients may send more).
ProbeSpec parse_readiness(const nlohmann::json& value, std::string_view where = "params.readiness");
ProbeSpec parse_liveness(const nlohmann::json& value, std::string_view where = "params.liveness");

// The spec in the deploy syntax, for status and state.json (parse_* reads it
// back to an equal spec).
nlohmann::json to_json(const ProbeSpec& spec, bool liveness);

enum class ProbeOutcome { success, unreachable, error };
const char* probe_outcome_name(ProbeOutcome outcome) noexcept; // "success", ...

struct ProbeResult {
    ProbeOutcome outcome = ProbeOutcome::unreachable;
    // One line for people, e.g. "HTTP 503 from http://127.0.0.1:20001/healthz",
    // "127.0.0.1:20001: connection refused", "exited with code 3: db down".
    std::string message;
    std::uint64_t duration_ms = 0;
    long http_status = 0; // http: the status received, 0 if none
    bool ok() const noexcept { return outcome == ProbeOutcome::success; }
};

// What a probe acts on; the daemon fills it per revision. Pointers are not
// owned and must outlive the Probe.
struct ProbeTarget {
    std::uint16_t port = 0;     // the revision's PORT; used when spec.port_auto
    Fetcher* fetcher = nullptr; // http
    Init* init = nullptr;       // exec: reaps the probe command
    // exec: how the revision's own processes are spawned (env, cwd, cgroup,
    // uid/gid, nice, affinity...). path, argv and stdio are replaced; the
    // command gets its own process group, and is KILLed (group) when it
    // outlives the attempt timeout.
    SpawnRequest exec_base;
};

// One attempt at a time against one target.
class Probe {
public:
    using Done = std::function<void(const ProbeResult& result)>;

    Probe(uv_loop_t* loop, ProbeSpec spec, ProbeTarget target);
    // Cancels an attempt in flight; its `done` never runs. An exec command
    // still running is left to its own timeout (killing it here could hit a
    // reused pid after it was reaped).
    ~Probe();
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;

    // Starts one attempt; cancels one in flight first (without its callback).
    // `done` runs exactly once, on the loop, never inside run(), unless the
    // attempt is cancelled or the Probe destroyed. It may destroy the Probe.
    void run(Done done);
    // Cancels an attempt in flight; its `done` never runs.
    void cancel() noexcept;
    bool running() const noexcept { return static_cast<bool>(done_); }

    const ProbeSpec& spec() const noexcept { return spec_; }
    std::uint16_t port() const noexcept { return spec_.port_auto ? target_.port : spec_.port; }

    struct Token; // lets late completions find out the Probe is gone

private:
    void start_tcp();
    void start_http();
    void start_exec();
    void finish(ProbeResult result) noexcept;
    void fail_later(ProbeOutcome outcome, std::string message);
    std::string endpoint() const;

    uv_loop_t* loop_;
    ProbeSpec spec_;
    ProbeTarget target_;
    std::shared_ptr<Token> token_;
    std::uint64_t attempt_ = 0; // id of the attempt in flight (or the last one)
    std::uint64_t started_ = 0; // uv_now() at its start
    Done done_;
    Timer timer_;                 // attempt timeout, and deferred immediate failures
    std::function<void()> abort_; // releases what the attempt in flight holds
};

// Repeats attempts every period_s (measured from the start of one attempt to
// the start of the next; attempts never overlap: a slow one delays the next).
// Each result goes to `on_result` with the count of consecutive failures
// (0 after a success) and, while failing, the uv_now() of the first failure
// of the run (the `unhealthy_since` candidate; 0 after a success). Readiness
// stops it on the first success (or its own deadline); liveness compares
// the count with failure_threshold. `on_result` may stop or destroy it.
class PeriodicProbe {
public:
    using OnResult = std::function<void(const ProbeResult& result, unsigned consecutive_failures,
                                        std::uint64_t failing_since_ms)>;
    PeriodicProbe(uv_loop_t* loop, ProbeSpec spec, ProbeTarget target, OnResult on_result);
    // Starts probing after `delay_ms` (0: at the next loop turn). Restarts a
    // running one (counters kept).
    void start(std::uint64_t delay_ms = 0);
    // No further attempt or callback until start(); counters kept.
    void stop() noexcept;
    bool active() const noexcept { return active_; }
    unsigned consecutive_failures() const noexcept { return failures_; }
    Probe& probe() noexcept { return probe_; }

private:
    void attempt();
    uv_loop_t* loop_;
    Probe probe_;
    OnResult on_result_;
    Timer timer_;
    bool active_ = false;
    unsigned failures_ = 0;
    std::uint64_t failing_since_ = 0;
    std::uint64_t attempt_started_ = 0;
};

} // namespace hearth::health

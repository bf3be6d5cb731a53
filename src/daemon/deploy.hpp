#pragma once
// The deployment model: locations, their revisions, and the deploy request.
//
// A location is a named code location; each deploy creates a revision that
// moves pending -> fetching -> extracting -> starting -> loading -> ready, or
// ends failed with a machine-readable reason; stop moves it through stopping
// to stopped. This file holds the data and its JSON form (hearth-protocol(7));
// revisions.hpp drives the transitions. Loop thread only.

#include "health/notify.hpp"
#include "health/probe.hpp"
#include "init/spawn.hpp"
#include "isolation/cgroup.hpp"
#include "launch/output.hpp"
#include "util/names.hpp" // valid_location_name, used with this header
#include "util/uv_util.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace hearth {

enum class State {
    pending,
    fetching,
    extracting,
    starting,
    loading,
    ready,
    failed,
    backoff,
    stopping,
    stopped
};
const char* state_name(State s) noexcept;
// Live = holds (or is about to hold) a process or a pin on the store.
bool is_live(State s) noexcept;
bool is_final(State s) noexcept;

enum class Runtime { native, pex };
const char* runtime_name(Runtime r) noexcept;

// Failure reasons of hearth-protocol(7).
namespace reason {
inline constexpr const char* fetch_error = "fetch_error";
inline constexpr const char* digest_mismatch = "digest_mismatch";
inline constexpr const char* bad_archive = "bad_archive";
inline constexpr const char* no_interpreter = "no_interpreter";
inline constexpr const char* spawn_error = "spawn_error";
inline constexpr const char* exited = "exited";
inline constexpr const char* no_space = "no_space";
inline constexpr const char* oom_killed = "oom_killed";
inline constexpr const char* readiness_timeout = "readiness_timeout";
inline constexpr const char* load_error = "load_error";
} // namespace reason

struct ArtifactSpec {
    std::string path;   // local absolute path (from "path" or a file:// "url"), or
    std::string url;    // an http:// or https:// URL (exactly one of the two is set)
    std::string sha256; // 64 lowercase hex
};

enum class RestartPolicy { never, on_failure, always };
const char* restart_policy_name(RestartPolicy p) noexcept;

struct RestartSpec {
    RestartPolicy policy = RestartPolicy::on_failure;
    std::optional<int> max_restarts; // within window_s; unlimited when unset
    double window_s = 600;
};

struct StopSpec {
    int signal = 15; // SIGTERM
    double grace_s = 10;
};

// What hearth's options impose on every deploy: defaults for what a deploy
// leaves out, and a ceiling it may not exceed.
struct DeployPolicy {
    cgroup::Limits default_limits;
    cgroup::Limits max_limits;
    StopSpec default_stop;
    std::string default_user;
    std::string default_group;
    // --cpu-placement spread: CPU sets, hence limits.cpu_exclusive, exist.
    bool cpu_placement = true;
};

// A validated `deploy` request.
struct DeploySpec {
    std::string location;
    ArtifactSpec deps;
    ArtifactSpec source;
    Runtime runtime = Runtime::native;
    std::optional<std::string> module; // entry.module; else PEX-INFO's entry point
    std::vector<std::string> args;     // entry.args
    std::map<std::string, std::string> env;
    std::string cwd;
    double min_uptime_s = 1.0;
    // How `loading` becomes `ready` (health/probe.hpp); kind none = the
    // min_uptime_s rule.
    health::ProbeSpec readiness;
    cgroup::Limits limits; // requested ones merged over the policy's defaults
    RestartSpec restart;
    StopSpec stop;
    std::string user;  // name or number; "" = hearth's own
    std::string group; // likewise
};

// Validates `deploy` params; throws rpc::RpcError (-32602) naming the field,
// including a limit above the policy's ceiling.
DeploySpec parse_deploy_params(const nlohmann::json& params, const DeployPolicy& policy = {});

// A stop signal: a name of the shared table (util/names.hpp, "TERM" or
// "SIGTERM") or a number (1..64); -1 otherwise.
int parse_signal_name(std::string_view name) noexcept;

// Limits as JSON ({"memory": bytes, "cpus": 0.5, ...}; only the set ones).
nlohmann::json limits_to_json(const cgroup::Limits& limits);

struct ArtifactStatus {
    bool cache_hit = false;
    std::uint64_t bytes = 0;
    std::string tree; // extracted tree path once known
    // HTTP sources: progress of the download (kept afterwards).
    std::optional<std::uint64_t> fetched_bytes;
    std::optional<std::uint64_t> total_bytes;
};

using Clock = std::chrono::steady_clock;
using WallClock = std::chrono::system_clock;

struct Revision {
    Revision(uv_loop_t* loop, std::string location, int number, DeploySpec spec);

    std::string id; // "<location>-<number>"
    std::string location;
    int number;
    DeploySpec spec;

    State state = State::pending;
    WallClock::time_point created_at;
    WallClock::time_point state_since;
    Clock::time_point phase_started;
    std::map<std::string, double> timings_ms;

    ArtifactStatus deps, source;
    std::string python;
    std::vector<std::string> command;
    std::vector<std::string> launch_env; // the environment of every (re)start
    std::string launch_cwd;
    std::string scratch_dir;
    // The deploy's user/group, resolved once on the thread pool when the
    // deploy was accepted and used by every (re)start: NSS is never asked
    // again on the loop, and a restart runs as the identity the deploy was
    // validated with even if the passwd database changed meanwhile.
    Identity identity;

    pid_t pid = -1; // also the process group and session id
    bool process_running = false;
    std::optional<int> wait_status;
    Clock::time_point process_started;
    WallClock::time_point process_since; // the latest start or exit, for status

    // The revision's endpoint, held from `starting` until it ends: its PORT
    // (0 = none yet) and private runtime directory (HEARTH_RUNTIME_DIR).
    std::uint16_t port = 0;
    std::string runtime_dir;

    // Readiness of the current process (reset at each start).
    enum class Readiness { pending, ready, failed } readiness = Readiness::pending;
    WallClock::time_point loading_since;       // when `loading` was entered
    std::optional<Clock::time_point> deadline; // readiness.timeout_s from then, extensible
    std::optional<WallClock::time_point> readiness_since; // when ready/failed
    std::string progress;                                 // latest STATUS= text
    std::optional<int> notify_errno;                      // latest ERRNO=
    std::optional<nlohmann::json> load_error; // health::to_json(LoadError) once reported
    // A failure decided while the process still runs (readiness timeout, a
    // reported load error): the process tree is killed and after_exit ends
    // the revision with this reason instead of `exited`, without restart.
    const char* forced_reason = nullptr;
    std::string forced_message;
    std::string last_probe; // the latest failed probe attempt, for the timeout message
    // The revision's cgroup as /proc/PID/cgroup names it (notify senders are
    // checked against it); "" with the none driver (its session then).
    std::string cgroup_relpath;
    std::string cgroup_controller; // "" = unified hierarchy, else a v1 controller
    std::unique_ptr<health::NotifyListener> notify;
    std::unique_ptr<health::PeriodicProbe> probe;
    Timer deadline_timer; // readiness deadline

    // Resources (see isolation.hpp): the revision's cgroup while it exists.
    std::shared_ptr<cgroup::Cgroup> cgroup;
    enum class CgroupState {
        none,
        creating,
        ready,
        failed,
        removing
    } cgroup_state = CgroupState::none;
    std::string cgroup_error;                          // when failed
    bool start_waiting = false;                        // start_process waits for the cgroup
    std::string cgroup_driver;                         // driver name, for status
    bool enforced = false;                             // limits enforced by the kernel
    bool memory_by_watchdog = false;                   // limits.memory held by hearth's watchdog
    bool sched_idle = false;                           // cpu_weight idle without cpu.idle
    std::optional<int> nice;                           // CPU limits without cgroups (LimitsReport)
    std::vector<std::string> degraded;                 // what is not, and what stands in
    std::vector<int> cpus;                             // CPUs it is confined to (empty: all)
    bool cpus_by_cgroup = false;                       // by a cpuset, not only its own affinity
    bool cpus_exclusive = false;                       // `cpus` are its own (limits.cpu_exclusive)
    cgroup::Usage usage;                               // last sample (final counters once removed)
    std::optional<Clock::time_point> usage_sampled_at; // when `usage` was read; for status
    std::uint64_t oom_kills_baseline = 0;              // oom_kill counter when the process started
    std::optional<nlohmann::json> oom;                 // set when killed for memory

    // Restart policy.
    int restarts = 0;                       // restarts performed
    int backoff_step = 0;                   // consecutive quick failures
    std::deque<Clock::time_point> failures; // within the restart window
    std::optional<WallClock::time_point> next_attempt_at;
    double backoff_s = 0;
    bool ever_ready = false;
    bool restored = false; // deployed from state.json when hearth started
    bool ending = false;   // cgroup removal under way before the final state

    std::string reason;  // when failed
    std::string message; // when failed or stopped
    std::vector<std::string> stderr_tail;

    LineRing output_ring;
    std::unique_ptr<OutputCapture> output;
    Timer timer;                                 // min uptime, then stop grace
    std::vector<std::function<void()>> on_ended; // run once the revision is stopped/failed

    nlohmann::json to_json() const;
};

struct Location {
    std::string name;
    std::string active;                              // id of the serving revision, "" if none
    std::deque<std::unique_ptr<Revision>> revisions; // newest first

    Revision* find(std::string_view id);
    nlohmann::json to_json() const;
};

std::string format_timestamp(WallClock::time_point t);

// The restart policy's verdict on a process that ended on its own.
struct RestartDecision {
    bool restart = false;
    double delay_s = 0;  // backoff before the next start
    std::string why_not; // when not restarting: "restart policy never", "5 restarts within 600 s"
};
inline constexpr double restart_backoff_initial_s = 1;
inline constexpr double restart_backoff_max_s = 300;
inline constexpr double restart_stable_s = 60; // a process up this long resets the backoff
// Decides and records the failure in `rev` (failures within the window,
// backoff step). `clean_exit`: exit code 0. `ran_s`: how long the process ran.
RestartDecision decide_restart(Revision& rev, bool clean_exit, double ran_s, Clock::time_point now);

} // namespace hearth

#pragma once
// The deployment model: locations, their revisions, and the deploy request.
//
// A location is a named code location; each deploy creates a revision that
// moves pending -> fetching -> extracting -> starting -> loading -> ready, or
// ends failed with a machine-readable reason; stop moves it through stopping
// to stopped. This file holds the data and its JSON form (hearth-protocol(7));
// the daemon drives the transitions. Loop thread only.

#include "output.hpp"
#include "uv_util.hpp"

#include <nlohmann/json.hpp>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth {

enum class State { pending, fetching, extracting, starting, loading, ready, failed, backoff, stopping, stopped };
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
} // namespace reason

struct ArtifactSpec {
    std::string path;   // local absolute path (from "path" or a file:// "url")
    std::string sha256; // 64 lowercase hex
};

// A validated `deploy` request.
struct DeploySpec {
    std::string location;
    ArtifactSpec deps;
    ArtifactSpec source;
    Runtime runtime = Runtime::native;
    std::optional<std::string> module;  // entry.module; else PEX-INFO's entry point
    std::vector<std::string> args;      // entry.args
    std::map<std::string, std::string> env;
    std::string cwd;
    double min_uptime_s = 1.0;
};

// Validates `deploy` params; throws rpc::Failure (-32602) naming the field.
DeploySpec parse_deploy_params(const nlohmann::json& params);
// ^[a-z0-9][a-z0-9_.-]{0,62}$
bool valid_location_name(std::string_view name) noexcept;

struct ArtifactStatus {
    bool cache_hit = false;
    std::uint64_t bytes = 0;
    std::string tree; // extracted tree path once known
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
    std::string scratch_dir;

    pid_t pid = -1; // also the process group and session id
    bool process_running = false;
    std::optional<int> wait_status;

    std::string reason;  // when failed
    std::string message; // when failed or stopped
    std::vector<std::string> stderr_tail;

    LineRing output_ring;
    std::unique_ptr<OutputCapture> output;
    Timer timer; // min uptime, then stop grace
    bool stop_requested = false;
    std::vector<std::function<void()>> on_ended; // run once the revision is stopped/failed

    nlohmann::json to_json() const;
};

struct Location {
    std::string name;
    std::string active; // id of the serving revision, "" if none
    std::deque<std::unique_ptr<Revision>> revisions; // newest first

    Revision* find(std::string_view id);
    nlohmann::json to_json() const;
};

std::string format_timestamp(WallClock::time_point t);

} // namespace hearth

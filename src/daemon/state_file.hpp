#pragma once
// The desired state that survives a restart (issue 13): every location and
// the deploy params of its serving revision, in `<state_dir>/state.json`.
//
//   {"version": 1,
//    "locations": {"analytics": {"params": {...deploy params as received...},
//                                "stopped": false}}}
//
// The file holds `env` values, so it is mode 0600 and everything shown to
// people goes through redact_env. Writes are atomic (write, fsync, rename,
// fsync of the directory): a crash leaves the old or the new file. Loading a
// file that cannot be used sets it aside and starts empty: hearth must come
// up even when its last state is lost.

#include "util/error.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <uv.h>

namespace hearth {

inline constexpr int state_file_version = 1;

struct DesiredLocation {
    nlohmann::json params; // the serving revision's `deploy` params, as received
    bool stopped = false;  // `stop` keeps the location, stopped
    bool operator==(const DesiredLocation&) const = default;
};

struct DesiredState {
    std::map<std::string, DesiredLocation> locations; // by location name
    bool operator==(const DesiredState&) const = default;
};

// The file's JSON form (above). Pure.
nlohmann::json desired_state_to_json(const DesiredState& state);
// The reverse. Fails invalid_argument naming what is wrong when the version
// is not state_file_version, a location name is invalid, or an entry is
// not {"params": object, "stopped": bool}. Pure; never throws but bad_alloc.
Result<DesiredState> desired_state_from_json(const nlohmann::json& doc);

// `<state_dir>/state.json`
std::string state_file_path(const std::string& state_dir);

// Writes `state` to state_file_path atomically, mode 0600 (whatever the
// umask or an older file's mode). Blocking; any thread; never throws but
// bad_alloc.
Status write_state_file(const std::string& state_dir, const DesiredState& state);

struct LoadedState {
    DesiredState state;    // empty when there was no usable file
    bool found = false;    // a state.json existed
    std::string set_aside; // where an unusable file was moved; "" when none
    std::string problem;   // why it was unusable; "" when it was fine
};

// Reads state_file_path. No file: an empty state. A file that cannot be read
// or parsed, or fails desired_state_from_json (truncated, corrupt, a newer
// version), is renamed to `state.json.corrupt-<UTC timestamp>` (`now`; a
// numeric suffix is added if that exists) with an error log line, and an
// empty state is returned: hearth starts empty rather than refusing to
// start. When even the rename fails the file is left where it is (the next
// write replaces it) and `set_aside` stays "". Blocking (call before the
// loop runs, or on the pool); never throws but bad_alloc.
LoadedState
load_state_file(const std::string& state_dir,
                std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// A copy of deploy `params` fit to be shown (status, events, logs): `env`
// becomes the sorted array of its variable names, values dropped. Any
// other value is returned unchanged; params without `env` are unchanged.
// Pure.
nlohmann::json redact_env(const nlohmann::json& params);

// Keeps state.json in step with the daemon, from the loop.
//
// changed() says the desired state changed. The writer asks `snapshot` (on
// the loop) for the current state and writes it on the thread pool. At most
// one write is in flight: changes during a write mark the state dirty, and
// when the write completes exactly one more write starts, with a snapshot
// taken then (the latest). So a burst of N changes costs at most 2 writes,
// and the file always ends with the state of the last change.
//
// A failed write is logged (error) and kept in last_error(); the next change
// retries. Loop thread only. Destroying the writer with a write in flight is
// safe: the write finishes on the pool and its completion is ignored (but the
// loop must still run until run_blocking's jobs are done, as usual).
class StateWriter {
public:
    using Snapshot = std::function<DesiredState()>;

    // `snapshot` runs on the loop, must be cheap-ish and must not throw.
    StateWriter(uv_loop_t* loop, std::string state_dir, Snapshot snapshot);
    ~StateWriter();
    StateWriter(const StateWriter&) = delete;
    StateWriter& operator=(const StateWriter&) = delete;

    // The desired state changed: schedule a write (see above).
    void changed();
    // `done` runs on the loop once every change made before this call is on
    // disk (or its write failed): at once (synchronously) when nothing is
    // pending, else after the last write in the chain. For shutdown.
    void flush(std::function<void()> done);

    bool idle() const;                              // no write in flight, nothing dirty
    std::uint64_t writes() const;                   // writes completed (ok or failed)
    const std::optional<Error>& last_error() const; // of the latest write; nullopt after a success

private:
    struct Shared;
    void start_write();
    std::shared_ptr<Shared> shared_;
};

} // namespace hearth

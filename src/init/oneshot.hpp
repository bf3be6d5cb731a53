#pragma once
// Runs a short-lived command on the loop and captures its output: interpreter
// probes now, exec readiness checks and metadata extraction later.

#include "init/init.hpp"
#include "init/spawn.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <uv.h>

namespace hearth {

struct OneshotResult {
    bool started = false;   // false: spawn failed, see error
    pid_t pid = -1;         // the process (and group) when started
    std::string error;      // spawn failure message
    int wait_status = 0;    // valid when started
    bool timed_out = false; // killed after the timeout
    std::string out;        // stdout, at most max_output bytes
    std::string err;        // stderr, at most max_output bytes
    bool truncated = false; // some output was beyond max_output
};

// Spawns `request` (its stdout/stderr are replaced by pipes; it gets its own
// process group) and calls `done` on the loop once the process was reaped and
// its pipes closed, or after `timeout_ms` (then the group is KILLed first).
// `init` must outlive the call. Loop thread only. Returns the pid (also the
// process group) or -1 when spawning failed (`done` has then already run).
pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, uint64_t timeout_ms,
                  std::size_t max_output, std::function<void(OneshotResult)> done);

} // namespace hearth

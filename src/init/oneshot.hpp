#pragma once
// Runs a short-lived command on the loop and captures its output: interpreter
// probes, metadata extraction (health/metadata.hpp), and later exec readiness
// checks.

#include "init/init.hpp"
#include "init/spawn.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <uv.h>

namespace hearth {

struct OneshotResult {
    bool started = false;      // false: spawn failed, see error
    pid_t pid = -1;            // the process (and group) when started
    std::string error;         // spawn failure message
    int spawn_exit_code = 0;   // when not started: 127 (not found) or 126 (cannot execute)
    int wait_status = 0;       // valid when started
    bool timed_out = false;    // killed after the timeout
    std::string out;           // stdout, at most OneshotOptions::max_stdout bytes (the first ones)
    std::string err;           // stderr, at most max_stderr bytes (first or last, see stderr_tail)
    bool out_overflow = false; // stdout had more than max_stdout bytes
    bool err_overflow = false; // stderr had more than max_stderr bytes
    bool truncated = false;    // out_overflow || err_overflow
    bool killed = false;       // hearth killed it (timeout or kill_on_stdout_overflow)
};

struct OneshotOptions {
    std::uint64_t timeout_ms = 10000;
    std::size_t max_stdout = 4096;
    std::size_t max_stderr = 4096;
    // Keep the last max_stderr bytes of stderr (a traceback ends there)
    // instead of the first ones.
    bool stderr_tail = false;
    // Kill the command as soon as stdout passes max_stdout (its result can
    // no longer be used, so it need not run into the timeout).
    bool kill_on_stdout_overflow = false;
    // When hearth kills the command: besides its process group, also every
    // descendant reachable through parent links at that moment (a child that
    // called setsid() is in another group). The tree is stopped with SIGSTOP
    // first, so nothing forks or gets reparented while it is walked, then
    // killed. A process that was already reparented to hearth before the kill
    // is out of reach: `on_kill` (e.g. the revision cgroup's kill) covers it.
    bool kill_tree = false;
    // Runs on the loop right after hearth killed the command (timeout or
    // overflow), with the command's pid. May be empty. Must not throw.
    std::function<void(pid_t)> on_kill;
};

// Spawns `request` (its stdout/stderr are replaced by pipes; it gets its own
// process group) and calls `done` on the loop once the process was reaped and
// its pipes closed (or given up on 100 ms after the reap: a grandchild may keep
// them open), or after `timeout_ms` (then the group, and with kill_tree the
// tree, is KILLed first). `init` must outlive the call. Loop thread only;
// spawn blocks until the child has exec'd. Returns the pid (also the process
// group) or -1 when spawning failed (`done` has then already run, with
// started = false). To cancel, SIGKILL the returned process group: `done`
// still runs once, after the reap. `done` must not throw.
pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, OneshotOptions options,
                  std::function<void(OneshotResult)> done);

// The interpreter probe's form: `max_output` bounds stdout and stderr alike
// (first bytes kept); on timeout only the process group is killed.
pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, uint64_t timeout_ms,
                  std::size_t max_output, std::function<void(OneshotResult)> done);

// Stops (SIGSTOP) and then SIGKILLs `pid`, every member of process group
// `pid` and every descendant of either, found by walking /proc. Returns how
// many processes were signalled. Blocking (reads /proc); loop thread or any
// thread; never throws but bad_alloc.
int kill_process_tree(pid_t pid);

} // namespace hearth

#pragma once
// The revision state machine: every location's revisions, their pipeline and
// their processes (the state diagram is in deploy.hpp and ARCHITECTURE.md).
//
//   pending -> fetching -> extracting -> starting -> loading -> ready
//   any live state -> stopping -> stopped; failures -> failed
//   a process that ends on its own -> backoff -> starting (restart policy)
//
// What it drives is behind interfaces (seams.hpp, IsolationApi): the store's
// jobs, isolation, processes and the launch preparation; the daemon passes
// the real ones, the [state-machine] unit tests fakes. Clock: libuv timers
// of the loop (min uptime, stop grace, backoff, usage sampling).
//
// Threading: loop thread only. Nothing here blocks on NSS, the disk or
// cgroupfs in a request path: identities are resolved before deploy() (on
// the thread pool), scratch directories are made and removed on the pool,
// and usage counters are sampled on the pool (every usage_interval_ms, and
// right after each spawn and at ready) so `status` serves cached figures.
// Two reads stay on the loop, on the exit and OOM paths only (never a
// request): the counters that tell an OOM kill from a plain SIGKILL, read at
// once so that a restart cannot race them. spawn() waits for the child's
// exec (spawn.hpp), as every supervisor's fork does.
//
// Every asynchronous completion looks its revision up again by id: it may
// have been stopped or removed meanwhile. Revisions are owned here
// (Location::revisions); a Revision& stays valid until trim_history()
// drops it, which happens only in finish_revision.

#include "daemon/events.hpp"
#include "daemon/seams.hpp"
#include "health/ports.hpp"
#include "health/probe.hpp"
#include "isolation/isolation.hpp"
#include "launch/output.hpp"
#include "store/store.hpp"
#include "store/store_gc.hpp"
#include "util/uv_util.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <uv.h>
#include <vector>

namespace hearth {

class Revisions {
public:
    struct Config {
        std::string state_dir;                        // logs/<location>/, scratch/<id>
        std::uint64_t usage_interval_ms = 1000;       // background sampling of counters
        std::chrono::milliseconds kill_timeout{2000}; // wait for a cgroup to empty
        // Each revision's runtime directory is <runtime_root>/<id> (mode
        // 0700, its user's; removed when it ends); "" = <state_dir>/run.
        std::string runtime_root;
        health::PortRange port_range; // PORT of each revision
        Init* init = nullptr;         // reaps exec readiness probes; null: they fail
    };

    // Every reference must outlive this object. `forwarder` may be null.
    Revisions(uv_loop_t* loop, Config config, Artifacts& artifacts, IsolationApi& isolation,
              ProcessHost& processes, Preparer& preparer, Events& events,
              StdoutForwarder* forwarder);
    ~Revisions();
    Revisions(const Revisions&) = delete;
    Revisions& operator=(const Revisions&) = delete;

    // Starts the background sampling of usage counters.
    void start();

    // Creates a pending revision (a `state` event) and starts its pipeline.
    // `identity`: spec.user/spec.group already resolved (empty when none).
    Revision& deploy(DeploySpec spec, Identity identity);

    // Stops the location's live revisions (only `only` when given) and calls
    // `done(ids stopped)` once each is stopped. The reply of `stop`.
    void stop_location(Location& loc, std::optional<std::string> only, std::string why,
                       std::function<void(std::vector<std::string>)> done);
    // Stops every live revision of `name`, then forgets the location unless
    // a deploy arrived meanwhile. `done(ids stopped)`.
    void remove_location(const std::string& name,
                         std::function<void(std::vector<std::string>)> done);
    // Init's stop hook: stops every live revision, then `done`.
    void stop_all(std::function<void()> done);
    // Stops one revision; `done` once it is stopped (or at once if ended).
    void stop(Revision& rev, std::string why, std::function<void()> done);

    Revision* find(const std::string& id);
    Location* find_location(const std::string& name);
    const std::map<std::string, Location>& locations() const { return locations_; }
    // Process groups of running revisions.
    std::vector<pid_t> process_groups() const;
    // Objects live revisions use (the GC keeps them).
    std::set<ObjectKey> pinned_objects() const;
    // Live revisions by object they use, for cache.list's pinned_by.
    std::map<ObjectKey, std::vector<std::string>> users_of_objects() const;

    // Reads what is left in every revision's output pipes now (exit, logs).
    void drain_output();
    // Stops the sampling timer (before exit).
    void stop_sampling();

    // From the store's downloads, isolation's OOM watch and watchdog, and
    // its CPU placement.
    void on_fetch_progress(const std::string& hex, std::uint64_t fetched,
                           std::optional<std::uint64_t> total);
    void on_oom_kill(const std::string& id, const cgroup::OomChange& change);
    void on_watchdog_kill(const std::string& id, std::uint64_t rss, std::uint64_t limit);
    // Exclusive CPUs came or went: every running revision, and hearth
    // itself, onto its CPUs now (IsolationApi::move_cpus).
    void move_to_cpus();

private:
    // The pipeline, one step each.
    void fetch(const std::string& id);
    void extract(const std::string& id);
    void make_room(const std::string& id);
    void prepare(const std::string& id);
    // The cgroup is created while the revision fetches and extracts, so its
    // start does not wait for it; start_process picks it up (or waits).
    void prepare_cgroup(const std::string& id);
    void start_process(const std::string& id);
    void spawn_process(const std::string& id);
    void on_min_uptime(Revision& rev);
    // Readiness (issue 13): the endpoint made in `starting` (port, runtime
    // directory, notify socket), the probes and deadline armed at each
    // `loading`, and what ends them.
    void make_endpoint(const std::string& id, std::function<void()> next);
    void arm_readiness(Revision& rev, const SpawnRequest& spawned);
    void disarm_readiness(Revision& rev);
    void on_notify(const std::string& id, const health::NotifyMessage& message);
    bool notify_sender_ok(const std::string& id, pid_t sender);
    void on_readiness_deadline(const std::string& id);
    // Ends a running revision with `reason`: kills its process tree; after_exit
    // then fails it so (no restart).
    void fail_running(Revision& rev, const char* reason, std::string message);
    void become_ready(Revision& rev);
    void release_endpoint(Revision& rev);
    std::vector<std::string> stderr_tail_of(const Revision& rev) const;
    void conclude_exit(const std::string& id);
    void on_process_exit(const std::string& id, int wait_status);
    // After the exit and the kill of what the process left: reason, restart.
    void after_exit(const std::string& id);
    void restart_after_backoff(const std::string& id);

    // Usage counters: one revision now (after spawn, at ready), or every
    // live one (the timer). Thread pool for cgroups; the none driver's
    // figures come from the watchdog's last scan.
    // `periodic`: the timer's sample (clears sampling_ when done).
    void sample_usage(std::vector<std::string> ids, bool periodic = false);
    void sample_all();
    // On the exit and OOM paths only (see the header comment).
    void read_usage_now(Revision& rev);

    void fail(Revision& rev, const char* reason, std::string message);
    // Removes the revision's cgroup (reading its final counters), then
    // enters `final_state` and runs the on_ended callbacks.
    void end_revision(Revision& rev, State final_state);
    void set_state(Revision& rev, State state);
    void finish_revision(Revision& rev);
    void trim_history(Location& loc);
    Location& location_of(const Revision& rev);

    uv_loop_t* loop_;
    Config config_;
    Artifacts& artifacts_;
    IsolationApi& isolation_;
    ProcessHost& processes_;
    Preparer& preparer_;
    Events& events_;
    StdoutForwarder* forwarder_;
    std::map<std::string, Location> locations_;
    std::map<std::string, int> next_numbers_; // last revision number per location name
    health::PortAllocator ports_;
    std::unique_ptr<Fetcher> fetcher_; // http probes; made on first use
    Timer sample_timer_;
    bool sampling_ = false; // a periodic sample is on the pool
};

} // namespace hearth

#pragma once
// The daemon: the control methods of hearth-protocol(7) and the deployment
// state machine behind them, on one libuv loop. Blocking work (copying,
// hashing, extracting, reading PEX-INFO) runs on libuv's thread pool and
// reports back to the loop; nothing here takes a lock.

#include "control/control.hpp"
#include "daemon/deploy.hpp"
#include "daemon/options.hpp"
#include "init/init.hpp"
#include "init/spawn.hpp"
#include "isolation/isolation.hpp"
#include "launch/output.hpp"
#include "launch/pex_info.hpp"
#include "launch/python.hpp"
#include "store/fetch.hpp"
#include "store/store.hpp"
#include "store/store_gc.hpp"

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <uv.h>
#include <vector>

namespace hearth {

class Daemon {
public:
    Daemon(uv_loop_t* loop, const Options& options, Init& init);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens the store, installs the boot script, listens on the control
    // socket. Returns "" or an error message. Blocking (start-up only).
    std::string start();

    // Init's stop hook: stops every revision, then calls `done`.
    void stop_all(std::function<void()> done);
    // Process groups of running revisions (init leaves them to stop_all).
    std::vector<pid_t> process_groups() const;
    // Right before exit: drain captured output, flush forwarding, close the
    // control socket.
    void before_exit();
    // After the loop has stopped and the thread pool is idle (so no cgroup
    // creation or removal is still running): removes the cgroup directories
    // hearth created at start, so a clean exit leaves nothing in cgroupfs.
    void remove_own_cgroups();

private:
    struct Subscriber {
        std::weak_ptr<control::Connection> conn;
        std::string location; // "" = all
    };
    struct Follower {
        std::weak_ptr<control::Connection> conn;
        std::string revision_id;
    };
    struct InspectResult;
    struct ComposeResult;

    void register_methods();
    nlohmann::json hearth_info() const;

    // Pipeline, one step each; every async completion looks the revision up
    // again by id, since it may have been stopped or removed meanwhile.
    Revision& create_revision(DeploySpec spec);
    void fetch(const std::string& id);
    void extract(const std::string& id);
    void inspect(const std::string& id);
    void compose(const std::string& id, std::shared_ptr<InspectResult> inspected);
    void launch(const std::string& id, std::shared_ptr<InspectResult> inspected,
                std::vector<std::string> sys_path);
    // (Re)starts the revision's process: creates its cgroup first if needed.
    void prepare_cgroup(const std::string& id);
    // Resolves the deploy's user/group; false after failing the revision.
    bool identity_of(Revision& rev, Identity& who);
    void start_process(const std::string& id);
    void spawn_process(const std::string& id);
    void on_min_uptime(Revision& rev);
    void on_process_exit(const std::string& id, int wait_status);
    // After the exit and the kill of what the process left: reason, restart.
    void after_exit(const std::string& id);
    void on_oom_kill(const std::string& id, const cgroup::OomChange& change);
    void on_watchdog_kill(const std::string& id, std::uint64_t rss, std::uint64_t limit);
    void refresh_usage(Revision& rev);
    // Exclusive CPUs came or went: every running revision, and hearth
    // itself, onto its CPUs now (Isolation::move_cpus).
    void move_to_cpus();
    void fail(Revision& rev, const char* reason, std::string message);
    // Removes the revision's cgroup (reading its final counters), then
    // enters `final_state` and runs the on_ended callbacks.
    void end_revision(Revision& rev, State final_state);
    void set_state(Revision& rev, State state);
    void stop_revision(Revision& rev, std::string why, std::function<void()> done);
    void finish_revision(Revision& rev);
    void trim_history(Location& loc);

    Revision* find_revision(const std::string& id);
    Location& location_of(const Revision& rev);
    Location& require_location(const std::string& name);

    // Interpreters on this machine, probed once (asynchronously) on first use.
    void with_interpreters(std::function<void(const std::vector<Interpreter>&)> cb);
    void probe_next(std::size_t index);

    // Shared store work: one job per digest however many revisions need it.
    using StoreDone = std::function<void(bool ok, std::string reason, std::string message,
                                         ArtifactStatus status)>;
    void store_blob(const ArtifactSpec& artifact, StoreDone done);
    void store_tree(const std::string& sha256, StoreDone done);
    // Starts the work of a shared job; calls the function given exactly once
    // with the outcome, on the loop.
    using JobStarter = std::function<void(std::function<void(StoreResult)>)>;
    void shared_store_job(const std::string& key, JobStarter start, const char* failure_reason,
                          StoreDone done);
    JobStarter blocking_job(std::function<StoreResult()> work);
    void finish_store_job(const std::string& key, const char* failure_reason, StoreResult result);
    // Downloads `url` into a new blob, verified against `hex`.
    void download(const std::string& url, const std::string& hex,
                  std::function<void(StoreResult)> finished);
    void on_fetch_progress(const std::string& hex, const FetchProgress& progress);
    void notify_subscribers(const std::string& location, const nlohmann::json& params);

    // Garbage collection. Runs alone: store jobs wait while it runs (a job
    // could otherwise find a tree as a hit that the GC is deleting), and it
    // never evicts what a live revision or a running job uses.
    struct GcOutcome {
        GcPlan plan;
        bool applied = false; // the plan's evictions were made
        std::uint64_t freed = 0;
        std::string error;
    };
    struct GcRequest {
        std::uint64_t target;
        bool force; // apply the plan even when it cannot reach the target
        std::function<void(const GcOutcome&)> done;
    };
    std::set<ObjectKey> pinned_objects() const;
    void run_gc(std::uint64_t target, bool force, std::function<void(const GcOutcome&)> done);
    void start_gc();
    // After extraction: evicts what is needed to keep the store in budget;
    // fails the revision with no_space when its objects cannot fit.
    void ensure_space(const std::string& id);

    void emit_event(const Revision& rev, std::optional<State> previous); // nullopt: just created
    void on_output_line(const std::string& revision_id, const LogLine& line);

    uv_loop_t* loop_;
    const Options& options_;
    Init& init_;
    Store store_;
    DeployPolicy policy_;
    Isolation isolation_;
    control::ControlServer server_;
    std::unique_ptr<StdoutForwarder> forwarder_;
    std::string boot_script_path_;
    std::chrono::steady_clock::time_point started_at_;

    std::map<std::string, Location> locations_;
    std::map<std::string, int> next_numbers_; // last revision number per location name
    std::vector<Subscriber> subscribers_;
    std::vector<Follower> followers_;

    bool interpreters_probed_ = false;
    bool probing_ = false;
    std::vector<Interpreter> interpreters_;
    std::vector<std::function<void(const std::vector<Interpreter>&)>> interpreter_waiters_;
    std::vector<std::string> probe_candidates_;
    std::vector<std::string> probe_seen_; // realpaths of interpreters found
    pid_t probe_pid_ = -1;                // the running probe's process group
    Timer probe_timer_;

    std::map<std::string, std::vector<StoreDone>> inflight_; // "blob:<hex>" / "tree:<hex>"
    std::unique_ptr<Fetcher> fetcher_;                       // created by the first http(s) deploy
    std::uint64_t store_budget_ = 0;
    std::uint64_t store_used_ = 0;   // as of the last GC or cache.list
    std::uint64_t store_pinned_ = 0; // likewise
    bool gc_running_ = false;
    std::vector<GcRequest> gc_queue_;
    std::vector<std::function<void()>> deferred_jobs_; // store jobs waiting for the GC
};

// The embedded native-runtime bootstrap (src/launch/hearth_boot.py).
extern const char* const boot_script_text;

} // namespace hearth

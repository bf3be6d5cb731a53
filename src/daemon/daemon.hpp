#pragma once
// The daemon: wires the parts of hearth's control plane together on one
// libuv loop and owns them.
//
//   methods.hpp      the control methods of hearth-protocol(7)
//   revisions.hpp    the revision state machine (pipeline, processes)
//   store_jobs.hpp   the store's shared jobs, downloads and GC
//   prepare.hpp      the `starting` step (PEX-INFO, interpreter, sys.path)
//   interpreters.hpp the interpreter probe
//   events.hpp       event and log fan-out
//   desired.hpp      the desired state kept in state.json (restored at start)
//
// Threading: loop thread only. Blocking work (copying, hashing, extracting,
// reading PEX-INFO, NSS, cgroup counters) runs on libuv's thread pool and
// reports back to the loop; nothing here takes a lock. start() blocks
// (start-up only); nothing else does.

#include "control/control.hpp"
#include "daemon/deploy.hpp"
#include "daemon/desired.hpp"
#include "daemon/events.hpp"
#include "daemon/interpreters.hpp"
#include "daemon/methods.hpp"
#include "daemon/options.hpp"
#include "daemon/prepare.hpp"
#include "daemon/revisions.hpp"
#include "daemon/store_jobs.hpp"
#include "health/capacity.hpp"
#include "init/init.hpp"
#include "isolation/isolation.hpp"
#include "launch/output.hpp"
#include "store/store.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <uv.h>
#include <vector>

namespace hearth {

class Daemon {
public:
    // `options` and `init` outlive the daemon.
    Daemon(uv_loop_t* loop, const Options& options, Init& init);
    ~Daemon();
    Daemon(const Daemon&) = delete;
    Daemon& operator=(const Daemon&) = delete;

    // Opens the store, installs the boot script, listens on the control
    // socket. Returns "" or an error message. Blocking (start-up only).
    std::string start();

    // Init's stop hook: writes the desired state (a shutdown keeps it), stops
    // every revision, then calls `done`.
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
    // Init as the state machine's ProcessHost: spawn() and the reaper.
    class InitProcesses final : public ProcessHost {
    public:
        explicit InitProcesses(Init& init) : init_(init) {}
        SpawnResult spawn(const SpawnRequest& request) override;
        void watch(pid_t pid, std::function<void(int)> cb) override;
        bool shutting_down() const override { return init_.shutting_down(); }

    private:
        Init& init_;
    };

    uv_loop_t* loop_;
    const Options& options_;
    Init& init_;
    Store store_;
    DeployPolicy policy_;
    Isolation isolation_;
    control::ControlServer server_;
    std::unique_ptr<StdoutForwarder> forwarder_;
    std::string boot_script_path_;
    Events events_;
    Interpreters interpreters_;
    StoreJobs store_jobs_;
    InitProcesses processes_;
    std::unique_ptr<LaunchPreparer> preparer_;
    health::Capacity capacity_;
    // Before revisions_: it outlives the state machine whose events it hears.
    std::unique_ptr<DesiredStateKeeper> desired_;
    std::unique_ptr<Revisions> revisions_;
    std::unique_ptr<MethodContext> methods_;
};

// The embedded native-runtime bootstrap (src/launch/hearth_boot.py).
extern const char* const boot_script_text;

} // namespace hearth

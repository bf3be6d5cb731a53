#pragma once
// What the revision state machine (revisions.hpp) drives, as small
// interfaces: the store's shared jobs, processes, and the preparation of a
// launch. With isolation's IsolationApi (isolation.hpp) these are every way
// the state machine reaches the system, so its tests run on a real loop with
// fakes, without root (tests/unit/test_state_machine.cpp).
//
// Every method is called on the loop thread and calls back on it, never
// from inside the call unless its contract says so; callbacks may outlive
// the revision they were for (the state machine looks it up again by id).

#include "daemon/deploy.hpp"
#include "init/spawn.hpp"
#include "util/error.hpp"

#include <functional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace hearth {

// The outcome of bringing one artifact into the store: `reason` is a
// hearth-protocol(7) failure reason (reason::*) when !ok.
struct ArtifactOutcome {
    bool ok = false;
    const char* reason = "";
    std::string message;
    ArtifactStatus status;
};
using ArtifactDone = std::function<void(ArtifactOutcome)>;

class Artifacts {
public:
    virtual ~Artifacts() = default;
    // The artifact's blob in the store (copied, downloaded, or a hit). May
    // call `done` from inside the call (a blob the store already has).
    virtual void store_blob(const ArtifactSpec& artifact, ArtifactDone done) = 0;
    // The blob's extracted tree (extracted, or a hit).
    virtual void store_tree(const std::string& sha256, ArtifactDone done) = 0;
    // After extraction: evicts what is needed to keep the store within its
    // budget. `done(true, "")`, or `done(false, message)` when the objects in
    // use (this revision's included) cannot fit.
    virtual void make_room(std::function<void(bool fits, std::string message)> done) = 0;
    // A revision failed while storing: what only it used is unpinned now,
    // and the store may be over budget; collect in the background.
    virtual void collect() = 0;
};

// Processes of revisions: spawn() (blocking until the child's exec, as
// spawn.hpp says) and the reaper's exit notification (Init).
class ProcessHost {
public:
    virtual ~ProcessHost() = default;
    virtual SpawnResult spawn(const SpawnRequest& request) = 0;
    // `cb(wait_status)` on the loop once `pid` has been reaped.
    virtual void watch(pid_t pid, std::function<void(int wait_status)> cb) = 0;
    virtual bool shutting_down() const = 0;
};

// The command of a revision's process, ready to spawn.
struct LaunchPlanned {
    std::string python; // the interpreter chosen
    std::vector<std::string> command;
    std::vector<std::string> env;
    std::string cwd;
};
// Why a step failed: a reason::* and a message for people.
struct StepFailure {
    const char* reason = reason::spawn_error;
    std::string message;
};

// The `starting` step: from the revision's extracted trees to its command
// (reads PEX-INFO, picks an interpreter, composes sys.path, prepares the
// scratch directory rev.scratch_dir, owned by rev.identity). Blocking parts
// run on the thread pool; `done` on the loop, never from inside the call.
class Preparer {
public:
    virtual ~Preparer() = default;
    virtual void prepare(const Revision& rev,
                         std::function<void(Result<LaunchPlanned, StepFailure>)> done) = 0;
};

} // namespace hearth

#pragma once
// The control methods of hearth-protocol(7): one handler per JSON-RPC
// method (methods.cpp), registered from one table.
//
// Handlers run on the loop thread, validate their params (throwing
// rpc::RpcError, which the control server turns into the JSON-RPC error) and
// either answer at once or keep the Reply for an asynchronous answer. They
// never block: the thread pool resolves deploy identities, lists the cache
// and collects garbage; `status` serves usage counters sampled in the
// background (revisions.hpp). To add a method: write its handler in
// methods.cpp, add it to the table there, document it in hearth-protocol(7).

#include "control/control.hpp"
#include "daemon/deploy.hpp"
#include "daemon/desired.hpp"
#include "daemon/events.hpp"
#include "daemon/options.hpp"
#include "daemon/revisions.hpp"
#include "daemon/state_file.hpp"
#include "daemon/store_jobs.hpp"
#include "health/capacity.hpp"
#include "init/init.hpp"
#include "isolation/isolation.hpp"

#include <chrono>
#include <set>
#include <string>
#include <uv.h>

namespace hearth {

// What the handlers work on; owned by the Daemon, which outlives the server.
struct MethodContext {
    uv_loop_t* loop;
    const Options& options;
    Init& init;
    const DeployPolicy& policy;
    Revisions& revisions;
    StoreJobs& store;
    Events& events;
    const Isolation& isolation;
    std::chrono::steady_clock::time_point started_at;
    DesiredStateKeeper& desired;
    // Read once at start (health/capacity.hpp): status.capacity and the
    // deploy-time check.
    const health::Capacity& capacity;
};

// The JSON-RPC error code of a deploy whose limits do not fit the free
// capacity (hearth-protocol(7)); data {"resource", "asked", "free"}.
inline constexpr int insufficient_capacity = -32005;

// Adds every method to `server`. `ctx` must outlive the server.
void register_methods(control::ControlServer& server, MethodContext& ctx);

// Redeploys every location of `loaded` that is not stopped, from its saved
// params, as `deploy` would (identity resolved here, blocking: start-up
// only; the capacity check applies). Each revision is marked restored; a
// location that cannot be redeployed (its params no longer valid, no
// capacity) is logged and kept in the desired state. Hands the whole state
// to ctx.desired first.
void restore_locations(MethodContext& ctx, const LoadedState& loaded);

} // namespace hearth

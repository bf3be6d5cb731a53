#pragma once
// The desired state as the daemon changes it, kept in step with state.json
// (state_file.hpp; issue 13, "Surviving a restart").
//
// Per location: the deploy params, as received, of its serving revision, or
// of the latest deploy while none of its revisions has served yet; and
// whether it was stopped. The methods report what a request changes
// (deployed, stopped, removed); which revision serves is read from the
// state machine after every `state` event (poke), one loop turn later, so
// that a revision that just became ready is already the location's active
// one. A change of the snapshot schedules a write through StateWriter (on
// the pool, coalesced, mode 0600).
//
// Threading: loop thread only; nothing here blocks.

#include "daemon/revisions.hpp"
#include "daemon/state_file.hpp"
#include "store/store_gc.hpp"
#include "util/uv_util.hpp"

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <uv.h>

namespace hearth {

class DesiredStateKeeper {
public:
    // `revisions` outlives this object.
    DesiredStateKeeper(uv_loop_t* loop, std::string state_dir, const Revisions& revisions);
    DesiredStateKeeper(const DesiredStateKeeper&) = delete;
    DesiredStateKeeper& operator=(const DesiredStateKeeper&) = delete;

    // The state read from state.json at start; its locations are kept (the
    // stopped ones too) until a request changes them. Writes nothing.
    void restore(const DesiredState& state);
    // A deploy of `location` was accepted as revision `id`, from `params`
    // as received (env values included: they go to state.json only).
    void deployed(const std::string& location, const std::string& id, nlohmann::json params);
    // `stop` of the whole location (or of its last live revision).
    void stopped(const std::string& location);
    // `remove`: the location is forgotten.
    void removed(const std::string& location);
    // Something in the state machine changed: reconcile on the next loop turn.
    void poke();
    // `done` once every change so far is on disk (StateWriter::flush).
    void flush(std::function<void()> done);

    // The current desired state (what the next write holds).
    DesiredState snapshot() const;
    // The store objects the desired state names (blob and tree of the deps
    // and source of every location that is not stopped), so that GC keeps
    // what a restart needs.
    std::set<ObjectKey> pinned_objects() const;

private:
    struct Entry {
        nlohmann::json params;
        bool stopped = false;
        bool served = false; // params are those of a revision that served
    };
    void reconcile();

    const Revisions& revisions_;
    std::map<std::string, Entry> entries_;
    std::map<std::string, nlohmann::json> params_by_id_; // live and recent revisions
    DesiredState written_;                               // the snapshot last handed to the writer
    Timer timer_;
    bool poked_ = false;
    StateWriter writer_;
};

} // namespace hearth

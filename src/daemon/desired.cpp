#include "daemon/desired.hpp"

#include <iterator>

namespace hearth {

using nlohmann::json;

DesiredStateKeeper::DesiredStateKeeper(uv_loop_t* loop, std::string state_dir,
                                       const Revisions& revisions)
    : revisions_(revisions), timer_(loop),
      writer_(loop, std::move(state_dir), [this] { return snapshot(); }) {}

void DesiredStateKeeper::restore(const DesiredState& state) {
    for (const auto& [name, loc] : state.locations)
        entries_[name] = Entry{loc.params, loc.stopped, false};
    written_ = snapshot();
}

void DesiredStateKeeper::deployed(const std::string& location, const std::string& id, json params) {
    params_by_id_[id] = params;
    Entry& e = entries_[location];
    e.stopped = false;
    // A redeploy replaces the desired params only once it serves (reconcile).
    if (!e.served) e.params = std::move(params);
    reconcile();
}

void DesiredStateKeeper::stopped(const std::string& location) {
    if (auto it = entries_.find(location); it != entries_.end()) {
        it->second.stopped = true;
        // Nothing serves now: the next deploy's params are the desired ones.
        it->second.served = false;
    }
    reconcile();
}

void DesiredStateKeeper::removed(const std::string& location) {
    entries_.erase(location);
    reconcile();
}

void DesiredStateKeeper::poke() {
    if (poked_) return;
    poked_ = true;
    // One loop turn later: the event of a revision becoming ready is
    // published before the state machine makes it the active one.
    timer_.start(0, [this] {
        poked_ = false;
        reconcile();
    });
}

void DesiredStateKeeper::flush(std::function<void()> done) {
    reconcile();
    writer_.flush(std::move(done));
}

DesiredState DesiredStateKeeper::snapshot() const {
    DesiredState s;
    for (const auto& [name, e] : entries_)
        s.locations[name] = DesiredLocation{e.params, e.stopped};
    return s;
}

std::set<ObjectKey> DesiredStateKeeper::pinned_objects() const {
    std::set<ObjectKey> pins;
    for (const auto& [name, e] : entries_) {
        // A stopped location is not redeployed at start: like a stopped
        // revision, it pins nothing (the store may need the room).
        if (e.stopped) continue;
        for (const char* key : {"deps", "source"}) {
            auto a = e.params.find(key);
            if (a == e.params.end() || !a->is_object()) continue;
            auto sha = a->find("sha256");
            if (sha == a->end() || !sha->is_string()) continue;
            pins.emplace(ObjectKind::blob, sha->get<std::string>());
            pins.emplace(ObjectKind::tree, sha->get<std::string>());
        }
    }
    return pins;
}

void DesiredStateKeeper::reconcile() {
    const auto& locations = revisions_.locations();
    for (auto& [name, e] : entries_) {
        auto loc = locations.find(name);
        if (loc == locations.end() || loc->second.active.empty()) continue;
        if (auto p = params_by_id_.find(loc->second.active); p != params_by_id_.end()) {
            e.params = p->second;
            e.served = true;
        }
    }
    // Forget the params of revisions the state machine no longer holds.
    for (auto it = params_by_id_.begin(); it != params_by_id_.end();) {
        bool held = false;
        for (const auto& [name, loc] : locations)
            for (const auto& rev : loc.revisions)
                if (rev->id == it->first) held = true;
        it = held ? std::next(it) : params_by_id_.erase(it);
    }
    DesiredState now = snapshot();
    if (now == written_) return;
    written_ = std::move(now);
    writer_.changed();
}

} // namespace hearth

#include "daemon/methods.hpp"

#include "control/rpc.hpp"
#include "util/log.hpp"
#include "util/units.hpp"
#include "util/uv_util.hpp"
#include "version.hpp"

#include <algorithm>
#include <unistd.h>

namespace hearth {

namespace {

using control::Reply;
using nlohmann::json;
using ConnPtr = std::shared_ptr<control::Connection>;
using Ctx = MethodContext;

Location& require_location(Ctx& c, const std::string& name) {
    Location* loc = c.revisions.find_location(name);
    if (!loc) throw rpc::unknown_location_error(name);
    return *loc;
}

json hearth_info(const Ctx& c) {
    double uptime =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - c.started_at).count();
    return {{"version", HEARTH_VERSION},
            {"pid", ::getpid()},
            {"uptime_s", uptime},
            {"state_dir", c.options.state_dir},
            {"run_dir", c.options.run_dir},
            {"cgroup_driver", c.isolation.driver_name()},
            {"shutting_down", c.init.shutting_down()}};
}

void ping(Ctx& c, const json&, Reply reply, const ConnPtr&) {
    json info = hearth_info(c);
    reply.result({{"pong", true},
                  {"version", info["version"]},
                  {"pid", info["pid"]},
                  {"uptime_s", info["uptime_s"]},
                  {"cgroup_driver", info["cgroup_driver"]},
                  {"shutting_down", info["shutting_down"]}});
}

void version(Ctx&, const json&, Reply reply, const ConnPtr&) {
    reply.result({{"version", HEARTH_VERSION}});
}

// The sum of the limits of every live revision.
health::Committed committed_now(const Revisions& revisions) {
    health::Committed committed;
    for (const auto& [name, loc] : revisions.locations())
        for (const auto& rev : loc.revisions)
            if (is_live(rev->state)) health::commit(committed, rev->spec.limits);
    return committed;
}

// The insufficient_capacity error when `spec`'s limits do not fit next to
// the live revisions (its location's serving one counted once: it is the
// one being replaced); nullopt when they fit or hearth runs --overcommit.
std::optional<rpc::Error> capacity_refusal(const Ctx& c, const DeploySpec& spec) {
    if (c.options.overcommit) return std::nullopt;
    cgroup::Limits asked = spec.limits;
    // A capacity that could not be read (0) is not a reason to refuse.
    if (c.capacity.memory_bytes == 0) asked.memory_max.reset();
    if (c.capacity.cpus <= 0) asked.cpu_quota.reset();
    health::Committed committed = committed_now(c.revisions);
    std::optional<cgroup::Limits> replaced;
    if (auto it = c.revisions.locations().find(spec.location);
        it != c.revisions.locations().end() && !it->second.active.empty())
        for (const auto& rev : it->second.revisions)
            if (rev->id == it->second.active && is_live(rev->state)) replaced = rev->spec.limits;
    health::Fit fit = health::fits(c.capacity, committed, asked, replaced);
    if (fit.fits) return std::nullopt;
    json data = {{"resource", fit.resource}};
    if (fit.resource == "memory") {
        std::uint64_t used = committed.memory_bytes;
        if (replaced && replaced->memory_max) used -= std::min(used, *replaced->memory_max);
        data["asked"] = *asked.memory_max;
        data["free"] = c.capacity.memory_bytes - std::min(used, c.capacity.memory_bytes);
    } else {
        double used = committed.cpus;
        if (replaced && replaced->cpu_quota) used = std::max(0.0, used - *replaced->cpu_quota);
        data["asked"] = *asked.cpu_quota;
        data["free"] = std::max(0.0, c.capacity.cpus - used);
    }
    return rpc::Error{insufficient_capacity, fit.message, std::move(data)};
}

// Checks capacity and starts the revision; `restored`: from state.json.
// Returns the revision, or the error that refused it.
Result<Revision*, rpc::Error> start_deploy(Ctx& c, DeploySpec spec, Identity who,
                                           const json& params, bool restored) {
    if (auto refusal = capacity_refusal(c, spec)) return *refusal;
    Revision& rev = c.revisions.deploy(std::move(spec), std::move(who));
    rev.restored = restored;
    c.desired.deployed(rev.location, rev.id, params);
    return &rev;
}

void accept_deploy(Ctx& c, DeploySpec spec, Identity who, const json& params, Reply& reply) {
    auto rev = start_deploy(c, std::move(spec), std::move(who), params, false);
    if (!rev) return reply.error(rev.error());
    reply.result({{"location", rev.value()->location}, {"id", rev.value()->id}});
}

void deploy(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    if (c.init.shutting_down()) throw rpc::shutting_down_error();
    DeploySpec spec = parse_deploy_params(params, c.policy);
    if (spec.user.empty() && spec.group.empty())
        return accept_deploy(c, std::move(spec), {}, params, reply);
    // NSS may ask a directory server: on the pool, once per deploy (the
    // revision keeps the result for its restarts; deploy.hpp).
    std::string user = spec.user, group = spec.group;
    auto pending =
        std::make_shared<std::pair<DeploySpec, Reply>>(std::move(spec), std::move(reply));
    run_blocking<Result<Identity>>(
        c.loop, [user, group] { return resolve_identity(user, group); },
        [&c, pending, user, params](std::optional<Result<Identity>> who, const std::string& error) {
            Reply& r = pending->second;
            if (!who) return r.error(rpc::internal_error, "resolving the identity: " + error);
            if (!*who) {
                const Error& e = who->error();
                bool is_user = e.code == Errc::unknown_user && !user.empty();
                return r.error(
                    rpc::invalid_params_at(is_user ? "params.user" : "params.group", e.message)
                        .error());
            }
            if (c.init.shutting_down()) return r.error(rpc::shutting_down_error().error());
            accept_deploy(c, std::move(pending->first), std::move(who->value()), params, r);
        });
}

void stop(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    Location& loc = require_location(c, rpc::require_string(params, "location"));
    auto only = rpc::optional_string(params, "id");
    if (only && !loc.find(*only)) throw rpc::unknown_revision_error(*only);
    auto shared = std::make_shared<Reply>(std::move(reply));
    // The whole location: stopped in the desired state at once (a deploy
    // after this request undoes it). One revision: only if it was the last
    // live one.
    if (!only) c.desired.stopped(loc.name);
    std::string name = loc.name;
    bool one = only.has_value();
    c.revisions.stop_location(loc, only, "stopped by request",
                              [&c, shared, name, one](std::vector<std::string> stopped) {
                                  if (one) {
                                      const Location* l = c.revisions.find_location(name);
                                      bool live = false;
                                      if (l)
                                          for (const auto& rev : l->revisions)
                                              live = live || is_live(rev->state);
                                      if (l && !live) c.desired.stopped(name);
                                  }
                                  shared->result({{"stopped", std::move(stopped)}});
                              });
}

void remove(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    std::string name = rpc::require_string(params, "location");
    require_location(c, name);
    auto shared = std::make_shared<Reply>(std::move(reply));
    // Forgotten at once: a deploy while the revisions stop brings it back.
    c.desired.removed(name);
    c.revisions.remove_location(name, [shared, name](std::vector<std::string> stopped) {
        shared->result({{"removed", name}, {"stopped", std::move(stopped)}});
    });
}

void status(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    // Usage counters are the background samples (with their age): no
    // cgroupfs read here.
    json locs = json::array();
    if (auto name = rpc::optional_string(params, "location")) {
        locs.push_back(require_location(c, *name).to_json());
    } else {
        for (const auto& entry : c.revisions.locations())
            locs.push_back(entry.second.to_json());
    }
    json info = hearth_info(c);
    info["cgroup"] = c.isolation.describe();
    info["store"] = {{"budget_bytes", c.store.budget()},
                     {"used_bytes", c.store.used()},
                     {"pinned_bytes", c.store.pinned()}};
    reply.result({{"hearth", std::move(info)},
                  {"capacity", health::capacity_to_json(c.capacity, committed_now(c.revisions))},
                  {"locations", std::move(locs)}});
}

void logs(Ctx& c, const json& params, Reply reply, const ConnPtr& conn) {
    Location& loc = require_location(c, rpc::require_string(params, "location"));
    Revision* rev = nullptr;
    if (auto id = rpc::optional_string(params, "id")) {
        rev = loc.find(*id);
        if (!rev) throw rpc::unknown_revision_error(*id);
    } else if (!loc.active.empty()) {
        rev = loc.find(loc.active);
    } else if (!loc.revisions.empty()) {
        rev = loc.revisions.front().get();
    }
    if (!rev)
        throw rpc::RpcError(rpc::unknown_revision, "location '" + loc.name + "' has no revisions");
    auto tail = rpc::optional_integer(params, "tail", 0, 10000).value_or(100);
    bool follow = rpc::optional_bool(params, "follow").value_or(false);
    if (rev->output) rev->output->drain_now();
    json lines = json::array();
    for (const auto& line : rev->output_ring.tail(static_cast<size_t>(tail)))
        lines.push_back({{"ts", format_timestamp(line.time)},
                         {"stream", line.stream == Stream::err ? "stderr" : "stdout"},
                         {"text", line.text}});
    reply.result(
        {{"id", rev->id}, {"lines", std::move(lines)}, {"dropped", rev->output_ring.dropped()}});
    if (follow) c.events.follow(conn, rev->id);
}

void subscribe(Ctx& c, const json& params, Reply reply, const ConnPtr& conn) {
    std::string loc = rpc::optional_string(params, "location").value_or("");
    if (!loc.empty() && !valid_location_name(loc))
        throw rpc::invalid_params_at("params.location", "'" + loc + "' is not a valid name");
    c.events.subscribe(conn, loc);
    reply.result({{"subscribed", true}});
}

void cache_list(Ctx& c, const json&, Reply reply, const ConnPtr&) {
    auto shared = std::make_shared<Reply>(std::move(reply));
    c.store.list(
        [&c, shared](std::optional<std::vector<CacheEntry>> entries, const std::string& error) {
            if (!entries) return shared->error(rpc::internal_error, "cache.list: " + error);
            auto users = c.revisions.users_of_objects();
            json list = json::array();
            std::uint64_t used = 0, pinned = 0;
            for (const auto& e : *entries) {
                used += e.bytes;
                auto it = users.find({e.kind, e.sha256});
                json by = it == users.end() ? json::array() : json(it->second);
                if (!by.empty()) pinned += e.bytes;
                list.push_back({{"kind", object_kind_name(e.kind)},
                                {"sha256", e.sha256},
                                {"bytes", e.bytes},
                                {"last_used", format_timestamp(e.last_used)},
                                {"pinned_by", std::move(by)}});
            }
            c.store.set_figures(used, pinned);
            shared->result({{"budget_bytes", c.store.budget()},
                            {"used_bytes", used},
                            {"pinned_bytes", pinned},
                            {"entries", std::move(list)}});
        });
}

void cache_gc(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    std::uint64_t target = c.store.budget();
    if (auto it = params.find("target_bytes"); it != params.end() && !it->is_null()) {
        std::string err;
        if (!parse_bytes(*it, target, err))
            throw rpc::invalid_params_at("params.target_bytes", err);
    }
    auto shared = std::make_shared<Reply>(std::move(reply));
    // An operator's request: free what can be freed even when objects in use
    // keep the store above the target.
    c.store.run_gc(target, true, [&c, shared, target](const StoreJobs::GcOutcome& out) {
        if (!out.error.empty() && out.plan.evict.empty())
            return shared->error(rpc::internal_error, "cache.gc: " + out.error);
        json evicted = json::array();
        if (out.applied)
            for (const auto& e : out.plan.evict)
                evicted.push_back(
                    {{"kind", object_kind_name(e.kind)}, {"sha256", e.sha256}, {"bytes", e.bytes}});
        json result = {{"evicted", std::move(evicted)},
                       {"freed_bytes", out.freed},
                       {"used_bytes", c.store.used()},
                       {"target_bytes", target},
                       {"pinned_bytes", out.plan.pinned_bytes}};
        if (!out.plan.fits)
            result["message"] = "objects in use (" + format_bytes(out.plan.pinned_bytes) +
                                ") exceed the target; everything else was evicted";
        shared->result(std::move(result));
    });
}

void shutdown(Ctx& c, const json&, Reply reply, const ConnPtr&) {
    reply.result({{"shutting_down", true}});
    c.init.request_shutdown("shutdown requested over the control socket");
}

using Method = void (*)(Ctx&, const json&, Reply, const ConnPtr&);

constexpr std::pair<const char*, Method> methods[] = {
    {"ping", ping},
    {"version", version},
    {"deploy", deploy},
    {"stop", stop},
    {"remove", remove},
    {"status", status},
    {"logs", logs},
    {"events.subscribe", subscribe},
    {"cache.list", cache_list},
    {"cache.gc", cache_gc},
    {"shutdown", shutdown},
};

} // namespace

void restore_locations(MethodContext& c, const LoadedState& loaded) {
    c.desired.restore(loaded.state);
    for (const auto& [name, want] : loaded.state.locations) {
        if (want.stopped) {
            log::info("location restored stopped", {{"location", name}});
            continue;
        }
        std::string problem;
        try {
            DeploySpec spec = parse_deploy_params(want.params, c.policy);
            Identity who;
            if (!spec.user.empty() || !spec.group.empty()) {
                auto resolved = resolve_identity(spec.user, spec.group);
                if (!resolved) throw rpc::RpcError(rpc::invalid_params, resolved.error().message);
                who = std::move(resolved.value());
            }
            auto rev = start_deploy(c, std::move(spec), std::move(who), want.params, true);
            if (rev) {
                log::info("location restored", {{"location", name}, {"id", rev.value()->id}});
                continue;
            }
            problem = rev.error().message;
        } catch (const rpc::RpcError& e) {
            problem = e.error().message;
        }
        // Kept in the desired state: a later start (more capacity, the user
        // back in passwd) may restore it; a deploy or remove replaces it.
        log::error("cannot restore location", {{"location", name}, {"error", problem}});
    }
}

void register_methods(control::ControlServer& server, MethodContext& ctx) {
    for (const auto& [name, method] : methods)
        server.add_method(
            name, [&ctx, method = method](const json& params, Reply reply, const ConnPtr& conn) {
                method(ctx, params, std::move(reply), conn);
            });
}

} // namespace hearth

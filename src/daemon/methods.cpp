#include "daemon/methods.hpp"

#include "control/rpc.hpp"
#include "util/log.hpp"
#include "util/units.hpp"
#include "util/uv_util.hpp"
#include "version.hpp"

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

void accept_deploy(Ctx& c, DeploySpec spec, Identity who, Reply& reply) {
    Revision& rev = c.revisions.deploy(std::move(spec), std::move(who));
    reply.result({{"location", rev.location}, {"id", rev.id}});
}

void deploy(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    if (c.init.shutting_down()) throw rpc::shutting_down_error();
    DeploySpec spec = parse_deploy_params(params, c.policy);
    if (spec.user.empty() && spec.group.empty())
        return accept_deploy(c, std::move(spec), {}, reply);
    // NSS may ask a directory server: on the pool, once per deploy (the
    // revision keeps the result for its restarts; deploy.hpp).
    std::string user = spec.user, group = spec.group;
    auto pending =
        std::make_shared<std::pair<DeploySpec, Reply>>(std::move(spec), std::move(reply));
    run_blocking<Result<Identity>>(
        c.loop, [user, group] { return resolve_identity(user, group); },
        [&c, pending, user](std::optional<Result<Identity>> who, const std::string& error) {
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
            accept_deploy(c, std::move(pending->first), std::move(who->value()), r);
        });
}

void stop(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    Location& loc = require_location(c, rpc::require_string(params, "location"));
    auto only = rpc::optional_string(params, "id");
    if (only && !loc.find(*only)) throw rpc::unknown_revision_error(*only);
    auto shared = std::make_shared<Reply>(std::move(reply));
    c.revisions.stop_location(loc, only, "stopped by request",
                              [shared](std::vector<std::string> stopped) {
                                  shared->result({{"stopped", std::move(stopped)}});
                              });
}

void remove(Ctx& c, const json& params, Reply reply, const ConnPtr&) {
    std::string name = rpc::require_string(params, "location");
    require_location(c, name);
    auto shared = std::make_shared<Reply>(std::move(reply));
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
    reply.result({{"hearth", std::move(info)}, {"locations", std::move(locs)}});
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

void register_methods(control::ControlServer& server, MethodContext& ctx) {
    for (const auto& [name, method] : methods)
        server.add_method(
            name, [&ctx, method = method](const json& params, Reply reply, const ConnPtr& conn) {
                method(ctx, params, std::move(reply), conn);
            });
}

} // namespace hearth

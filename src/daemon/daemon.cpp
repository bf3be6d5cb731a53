#include "daemon/daemon.hpp"

#include "control/rpc.hpp"
#include "init/exit_status.hpp"
#include "init/oneshot.hpp"
#include "init/spawn.hpp"
#include "launch/launch.hpp"
#include "store/extract.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/units.hpp"
#include "util/uv_util.hpp"
#include "version.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace hearth {

using nlohmann::json;

namespace {

constexpr std::size_t ended_revisions_kept = 5;
constexpr std::size_t stderr_tail_lines = 20;
constexpr uint64_t probe_timeout_ms = 10000;

double elapsed_ms(Clock::time_point since) {
    return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v ? v : fallback;
}

} // namespace

struct Daemon::InspectResult {
    PexInfo source_info;
    PexInfo deps_info;
};

namespace {
DeployPolicy policy_from(const Options& o) {
    DeployPolicy p;
    p.default_limits.memory_max = o.default_memory;
    p.default_limits.cpu_quota = o.default_cpus;
    p.default_limits.pids_max = o.default_pids;
    p.max_limits.memory_max = o.max_memory;
    p.max_limits.cpu_quota = o.max_cpus;
    p.max_limits.pids_max = o.max_pids;
    p.default_stop.signal = SIGTERM;
    p.default_stop.grace_s = o.grace_s;
    p.default_user = o.user;
    p.default_group = o.group;
    p.cpu_placement = o.cpu_spread;
    return p;
}
} // namespace

Daemon::Daemon(uv_loop_t* loop, const Options& options, Init& init)
    : loop_(loop), options_(options), init_(init), store_(options.state_dir),
      policy_(policy_from(options)), isolation_(loop, options), server_(loop),
      started_at_(std::chrono::steady_clock::now()), probe_timer_(loop) {}

Daemon::~Daemon() = default;

std::string Daemon::start() {
    if (Status made = make_dirs(options_.state_dir); !made) return made.error().message;
    if (StoreResult opened = store_.open(); !opened.ok()) return opened.error;
    store_budget_ = options_.store_max_bytes.value_or(default_store_budget(options_.state_dir));
    if (store_budget_ == 0)
        return "cannot size the store budget of " + options_.state_dir + "; pass --store-max-bytes";
    for (const char* sub : {"lib", "logs", "scratch", "pycache", "pex-root"})
        if (Status made = make_dirs(options_.state_dir + "/" + sub); !made)
            return made.error().message;
    boot_script_path_ = options_.state_dir + "/lib/hearth_boot.py";
    if (Status written =
            write_file_atomic(boot_script_path_, boot_script_text, 0644, /*skip_if_equal=*/true);
        !written)
        return written.error().message;
    // Scratch directories of revisions from an earlier run are garbage.
    if (Status removed = remove_all(options_.state_dir + "/scratch"); !removed)
        log::warn("cannot remove old scratch directories", {{"error", removed.error().message}});
    if (Status made = make_dirs(options_.state_dir + "/scratch"); !made)
        return made.error().message;

    isolation_.start();
    isolation_.on_oom = [this](const std::string& name, const cgroup::OomChange& change) {
        on_oom_kill(name, change);
    };
    isolation_.on_watchdog = [this](const std::string& name, std::uint64_t rss,
                                    std::uint64_t limit) { on_watchdog_kill(name, rss, limit); };
    isolation_.on_cpus_changed = [this] { move_to_cpus(); };

    forwarder_ = std::make_unique<StdoutForwarder>(STDOUT_FILENO);
    register_methods();
    if (auto err = server_.listen_unix(options_.run_dir + "/control.sock"); !err.empty())
        return err;
    log::info("control socket listening", {{"path", options_.run_dir + "/control.sock"}});
    // Probe interpreters in the background soon after start: a version
    // manager's shims can take seconds, which the first deploy should not
    // wait for, while the main command and the socket come first.
    probe_timer_.start(100, [this] { with_interpreters([](const std::vector<Interpreter>&) {}); });
    return {};
}

// ---- control methods -------------------------------------------------------

json Daemon::hearth_info() const {
    double uptime =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
    return {{"version", HEARTH_VERSION},
            {"pid", ::getpid()},
            {"uptime_s", uptime},
            {"state_dir", options_.state_dir},
            {"run_dir", options_.run_dir},
            {"cgroup_driver", isolation_.driver_name()},
            {"shutting_down", init_.shutting_down()}};
}

void Daemon::register_methods() {
    using control::Reply;
    using ConnPtr = std::shared_ptr<control::Connection>;

    server_.add_method("ping", [this](const json&, Reply reply, const ConnPtr&) {
        json info = hearth_info();
        reply.result({{"pong", true},
                      {"version", info["version"]},
                      {"pid", info["pid"]},
                      {"uptime_s", info["uptime_s"]},
                      {"cgroup_driver", info["cgroup_driver"]},
                      {"shutting_down", info["shutting_down"]}});
    });

    server_.add_method("version", [](const json&, Reply reply, const ConnPtr&) {
        reply.result({{"version", HEARTH_VERSION}});
    });

    server_.add_method("deploy", [this](const json& params, Reply reply, const ConnPtr&) {
        if (init_.shutting_down()) throw rpc::shutting_down_error();
        DeploySpec spec = parse_deploy_params(params, policy_);
        if (!spec.user.empty() || !spec.group.empty()) {
            Identity who = resolve_identity(spec.user, spec.group);
            if (!who.error.empty())
                throw rpc::invalid_params_at(spec.user.empty() ||
                                                     who.error.find("user") == std::string::npos
                                                 ? "params.group"
                                                 : "params.user",
                                             who.error);
        }
        Revision& rev = create_revision(std::move(spec));
        reply.result({{"location", rev.location}, {"id", rev.id}});
        fetch(rev.id);
    });

    server_.add_method("stop", [this](const json& params, Reply reply, const ConnPtr&) {
        Location& loc = require_location(rpc::require_string(params, "location"));
        auto only = rpc::optional_string(params, "id");
        if (only && !loc.find(*only)) throw rpc::unknown_revision_error(*only);
        auto stopped = std::make_shared<std::vector<std::string>>();
        auto pending = std::make_shared<int>(1);
        auto shared_reply = std::make_shared<Reply>(std::move(reply));
        auto one_done = [stopped, pending, shared_reply] {
            if (--*pending == 0) shared_reply->result({{"stopped", *stopped}});
        };
        for (auto& rev : loc.revisions) {
            if (!is_live(rev->state) || (only && rev->id != *only)) continue;
            stopped->push_back(rev->id);
            ++*pending;
            stop_revision(*rev, "stopped by request", one_done);
        }
        one_done();
    });

    server_.add_method("remove", [this](const json& params, Reply reply, const ConnPtr&) {
        std::string name = rpc::require_string(params, "location");
        Location& loc = require_location(name);
        auto stopped = std::make_shared<std::vector<std::string>>();
        auto pending = std::make_shared<int>(1);
        auto shared_reply = std::make_shared<Reply>(std::move(reply));
        auto one_done = [this, name, stopped, pending, shared_reply] {
            if (--*pending != 0) return;
            auto it = locations_.find(name);
            // A deploy may have arrived while stopping; then keep the location.
            bool busy = false;
            if (it != locations_.end())
                for (auto& r : it->second.revisions)
                    busy |= is_live(r->state);
            if (it != locations_.end() && !busy) locations_.erase(it);
            log::info("location removed", {{"location", name}});
            shared_reply->result({{"removed", name}, {"stopped", *stopped}});
        };
        for (auto& rev : loc.revisions) {
            if (!is_live(rev->state)) continue;
            stopped->push_back(rev->id);
            ++*pending;
            stop_revision(*rev, "location removed", one_done);
        }
        one_done();
    });

    server_.add_method("status", [this](const json& params, Reply reply, const ConnPtr&) {
        for (auto& [name, loc] : locations_)
            for (auto& rev : loc.revisions)
                refresh_usage(*rev);
        json locs = json::array();
        if (auto name = rpc::optional_string(params, "location")) {
            locs.push_back(require_location(*name).to_json());
        } else {
            for (const auto& entry : locations_)
                locs.push_back(entry.second.to_json());
        }
        json info = hearth_info();
        info["cgroup"] = isolation_.describe();
        info["store"] = {{"budget_bytes", store_budget_},
                         {"used_bytes", store_used_},
                         {"pinned_bytes", store_pinned_}};
        reply.result({{"hearth", std::move(info)}, {"locations", std::move(locs)}});
    });

    server_.add_method("logs", [this](const json& params, Reply reply, const ConnPtr& conn) {
        Location& loc = require_location(rpc::require_string(params, "location"));
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
            throw rpc::RpcError(rpc::unknown_revision,
                                "location '" + loc.name + "' has no revisions");
        auto tail = rpc::optional_integer(params, "tail", 0, 10000).value_or(100);
        bool follow = rpc::optional_bool(params, "follow").value_or(false);
        if (rev->output) rev->output->drain_now();
        json lines = json::array();
        for (const auto& line : rev->output_ring.tail(static_cast<size_t>(tail)))
            lines.push_back({{"ts", format_timestamp(line.time)},
                             {"stream", line.stream == Stream::err ? "stderr" : "stdout"},
                             {"text", line.text}});
        reply.result({{"id", rev->id},
                      {"lines", std::move(lines)},
                      {"dropped", rev->output_ring.dropped()}});
        if (follow) {
            conn->set_subscriber(true);
            followers_.push_back({conn, rev->id});
        }
    });

    server_.add_method("events.subscribe", [this](const json& params, Reply reply,
                                                  const ConnPtr& conn) {
        std::string loc = rpc::optional_string(params, "location").value_or("");
        if (!loc.empty() && !valid_location_name(loc))
            throw rpc::invalid_params_at("params.location", "'" + loc + "' is not a valid name");
        conn->set_subscriber(true);
        subscribers_.push_back({conn, loc});
        reply.result({{"subscribed", true}});
    });

    server_.add_method("cache.list", [this](const json&, Reply reply, const ConnPtr&) {
        auto shared_reply = std::make_shared<Reply>(std::move(reply));
        run_blocking<std::vector<CacheEntry>>(
            loop_, [this] { return store_.list_cache(); },
            [this, shared_reply](std::optional<std::vector<CacheEntry>> entries,
                                 std::string error) {
                if (!entries)
                    return shared_reply->error(
                        rpc::Error{rpc::internal_error, "cache.list: " + error, {}});
                std::map<ObjectKey, std::vector<std::string>> users;
                for (const auto& [name, loc] : locations_)
                    for (const auto& rev : loc.revisions) {
                        if (!is_live(rev->state)) continue;
                        for (const ArtifactSpec* a : {&rev->spec.deps, &rev->spec.source})
                            for (ObjectKind k : {ObjectKind::blob, ObjectKind::tree}) {
                                auto& ids = users[{k, a->sha256}];
                                if (std::find(ids.begin(), ids.end(), rev->id) == ids.end())
                                    ids.push_back(rev->id);
                            }
                    }
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
                store_used_ = used;
                store_pinned_ = pinned;
                shared_reply->result({{"budget_bytes", store_budget_},
                                      {"used_bytes", used},
                                      {"pinned_bytes", pinned},
                                      {"entries", std::move(list)}});
            });
    });

    server_.add_method("cache.gc", [this](const json& params, Reply reply, const ConnPtr&) {
        std::uint64_t target = store_budget_;
        if (auto it = params.find("target_bytes"); it != params.end() && !it->is_null()) {
            std::string err;
            if (!parse_bytes(*it, target, err))
                throw rpc::invalid_params_at("params.target_bytes", err);
        }
        auto shared_reply = std::make_shared<Reply>(std::move(reply));
        // An operator's request: free what can be freed even when objects in
        // use keep the store above the target.
        run_gc(target, true, [this, shared_reply, target](const GcOutcome& out) {
            if (!out.error.empty() && out.plan.evict.empty())
                return shared_reply->error(
                    rpc::Error{rpc::internal_error, "cache.gc: " + out.error, {}});
            json evicted = json::array();
            if (out.applied)
                for (const auto& e : out.plan.evict)
                    evicted.push_back({{"kind", object_kind_name(e.kind)},
                                       {"sha256", e.sha256},
                                       {"bytes", e.bytes}});
            json result = {{"evicted", std::move(evicted)},
                           {"freed_bytes", out.freed},
                           {"used_bytes", store_used_},
                           {"target_bytes", target},
                           {"pinned_bytes", out.plan.pinned_bytes}};
            if (!out.plan.fits)
                result["message"] = "objects in use (" + format_bytes(out.plan.pinned_bytes) +
                                    ") exceed the target; everything else was evicted";
            shared_reply->result(std::move(result));
        });
    });

    server_.add_method("shutdown", [this](const json&, Reply reply, const ConnPtr&) {
        reply.result({{"shutting_down", true}});
        init_.request_shutdown("shutdown requested over the control socket");
    });
}

Location& Daemon::require_location(const std::string& name) {
    auto it = locations_.find(name);
    if (it == locations_.end()) throw rpc::unknown_location_error(name);
    return it->second;
}

Revision* Daemon::find_revision(const std::string& id) {
    // ids are "<location>-<number>" and locations may contain '-': try each.
    for (auto& [name, loc] : locations_)
        if (id.size() > name.size() && id.compare(0, name.size(), name) == 0)
            if (Revision* r = loc.find(id)) return r;
    return nullptr;
}

Location& Daemon::location_of(const Revision& rev) {
    return locations_.at(rev.location);
}

// ---- events and output -----------------------------------------------------

void Daemon::notify_subscribers(const std::string& location, const json& params) {
    std::erase_if(subscribers_, [&](const Subscriber& s) {
        auto conn = s.conn.lock();
        if (!conn || !conn->open()) return true;
        if (s.location.empty() || s.location == location) conn->notify("event", params);
        return false;
    });
}

void Daemon::emit_event(const Revision& rev, std::optional<State> previous) {
    json params = {{"ts", format_timestamp(rev.state_since)},
                   {"type", "state"},
                   {"location", rev.location},
                   {"id", rev.id},
                   {"state", state_name(rev.state)},
                   {"previous", previous ? json(state_name(*previous)) : json(nullptr)},
                   {"revision", rev.to_json()}};
    if (!rev.reason.empty()) params["reason"] = rev.reason;
    if (!rev.message.empty()) params["message"] = rev.message;
    notify_subscribers(rev.location, params);
}

void Daemon::on_output_line(const std::string& revision_id, const LogLine& line) {
    if (followers_.empty()) return;
    Revision* rev = find_revision(revision_id);
    std::erase_if(followers_, [&](const Follower& f) {
        auto conn = f.conn.lock();
        if (!conn || !conn->open()) return true;
        if (f.revision_id == revision_id)
            conn->notify("log", {{"location", rev ? rev->location : ""},
                                 {"id", revision_id},
                                 {"ts", format_timestamp(line.time)},
                                 {"stream", line.stream == Stream::err ? "stderr" : "stdout"},
                                 {"text", line.text}});
        return false;
    });
}

void Daemon::set_state(Revision& rev, State state) {
    State previous = rev.state;
    if (previous == state) return;
    double phase_ms = elapsed_ms(rev.phase_started);
    if (!is_final(previous) && previous != State::ready)
        rev.timings_ms[state_name(previous)] = phase_ms;
    rev.state = state;
    rev.state_since = WallClock::now();
    rev.phase_started = Clock::now();
    log::info("revision " + std::string(state_name(state)),
              {{"location", rev.location}, {"id", rev.id}, {"previous", state_name(previous)}});
    emit_event(rev, previous);
}

// ---- the pipeline ------------------------------------------------------------

Revision& Daemon::create_revision(DeploySpec spec) {
    auto [it, inserted] = locations_.try_emplace(spec.location);
    Location& loc = it->second;
    if (inserted) loc.name = spec.location;
    // Numbers survive `remove`, so a later deploy never reuses an id (and
    // never appends to an old revision's log file).
    int number = ++next_numbers_[spec.location];
    std::string name = spec.location; // copied first: `spec` is moved below
    auto rev = std::make_unique<Revision>(loop_, std::move(name), number, std::move(spec));
    Revision& ref = *rev;
    loc.revisions.push_front(std::move(rev));
    log::info("deploy accepted", {{"location", ref.location},
                                  {"id", ref.id},
                                  {"deps", ref.spec.deps.sha256},
                                  {"source", ref.spec.source.sha256}});
    emit_event(ref, std::nullopt);
    return ref;
}

void Daemon::fail(Revision& rev, const char* reason, std::string message) {
    if (rev.ending || is_final(rev.state)) return;
    rev.reason = reason;
    // Library messages (libarchive's) may end in a newline.
    while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back())))
        message.pop_back();
    rev.message = std::move(message);
    log::warn("revision failed", {{"location", rev.location},
                                  {"id", rev.id},
                                  {"reason", rev.reason},
                                  {"message", rev.message}});
    // A revision that failed while bringing objects into the store (a blob
    // too big to extract within the budget, say) may have left it over
    // budget; what only it used is unpinned now.
    bool was_storing = rev.state == State::fetching || rev.state == State::extracting;
    end_revision(rev, State::failed);
    if (was_storing) run_gc(store_budget_, false, [](const GcOutcome&) {});
}

void Daemon::move_to_cpus() {
    isolation_.move_self();
    for (auto& [name, loc] : locations_) {
        for (auto& rev : loc.revisions) {
            if (is_final(rev->state)) continue;
            rev->cpus = isolation_.cpus_of(rev->id);
            rev->cpus_exclusive = isolation_.cpus_exclusive(rev->id);
            bool has_cgroup = rev->cgroup && !isolation_.is_none();
            if (!rev->process_running && !has_cgroup) continue;
            isolation_.move_cpus(rev->id, has_cgroup ? rev->cgroup.get() : nullptr,
                                 rev->process_running ? rev->pid : -1);
            if (has_cgroup) rev->cpus_by_cgroup = rev->cgroup->confines_cpus();
        }
    }
}

void Daemon::end_revision(Revision& rev, State final_state) {
    if (rev.ending) return;
    rev.timer.stop();
    rev.next_attempt_at.reset();
    Location& loc = location_of(rev);
    if (loc.active == rev.id) loc.active.clear();
    isolation_.unwatch(rev.id);
    isolation_.release_cpus(rev.id);
    if (!rev.cgroup) {
        set_state(rev, final_state);
        finish_revision(rev);
        return;
    }
    // The final state is announced once the cgroup is gone, so whoever sees
    // `stopped` or `failed` also sees nothing of the revision left running.
    rev.ending = true;
    refresh_usage(rev);
    std::string id = rev.id;
    isolation_.remove(std::move(rev.cgroup), [this, id, final_state](cgroup::Removal removal) {
        Revision* r = find_revision(id);
        if (!r) return;
        r->ending = false;
        if (removal.usage.memory_peak) r->usage.memory_peak = removal.usage.memory_peak;
        if (removal.usage.cpu_usage_usec) r->usage.cpu_usage_usec = removal.usage.cpu_usage_usec;
        r->usage.memory_current.reset();
        r->usage.pids_current.reset();
        set_state(*r, final_state);
        finish_revision(*r);
    });
}

void Daemon::fetch(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev || rev->state != State::pending) return;
    set_state(*rev, State::fetching);
    prepare_cgroup(id);
    auto remaining = std::make_shared<int>(2);
    auto failed = std::make_shared<bool>(false);
    auto on_done = [this, id, remaining, failed](bool is_deps) {
        return [this, id, remaining, failed, is_deps](bool ok, std::string reason,
                                                      std::string message, ArtifactStatus st) {
            Revision* r = find_revision(id);
            if (!r || r->state != State::fetching) return;
            ArtifactStatus& target = is_deps ? r->deps : r->source;
            // Keep the download's progress figures.
            auto fetched = target.fetched_bytes;
            auto total = target.total_bytes;
            target = st;
            target.fetched_bytes = fetched;
            target.total_bytes = total;
            if (!ok && !*failed) {
                *failed = true;
                // shared_store_job already classified the failure.
                fail(*r, reason.c_str(), (is_deps ? "deps: " : "source: ") + message);
                return;
            }
            if (--*remaining == 0 && !*failed) extract(id);
        };
    };
    store_blob(rev->spec.deps, on_done(true));
    store_blob(rev->spec.source, on_done(false));
}

void Daemon::extract(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev) return;
    set_state(*rev, State::extracting);
    auto remaining = std::make_shared<int>(2);
    auto failed = std::make_shared<bool>(false);
    auto on_done = [this, id, remaining, failed](bool is_deps) {
        return [this, id, remaining, failed, is_deps](bool ok, std::string reason,
                                                      std::string message, ArtifactStatus st) {
            Revision* r = find_revision(id);
            if (!r || r->state != State::extracting) return;
            ArtifactStatus& target = is_deps ? r->deps : r->source;
            target.tree = st.tree;
            // A hit means nothing was copied or extracted for this revision.
            target.cache_hit = target.cache_hit && st.cache_hit;
            if (!ok && !*failed) {
                *failed = true;
                fail(*r, reason == reason::no_space ? reason::no_space : reason::bad_archive,
                     (is_deps ? "deps: " : "source: ") + message);
                return;
            }
            if (--*remaining == 0 && !*failed) ensure_space(id);
        };
    };
    store_tree(rev->spec.deps.sha256, on_done(true));
    store_tree(rev->spec.source.sha256, on_done(false));
}

void Daemon::inspect(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev) return;
    set_state(*rev, State::starting);
    std::string source_tree = rev->source.tree, deps_tree = rev->deps.tree;
    run_blocking<std::pair<std::shared_ptr<InspectResult>, std::string>>(
        loop_,
        [source_tree, deps_tree] {
            auto result = std::make_shared<InspectResult>();
            std::string err;
            if (!load_pex_info(source_tree, result->source_info, err))
                return std::make_pair(std::shared_ptr<InspectResult>(), "source: " + err);
            if (!load_pex_info(deps_tree, result->deps_info, err))
                return std::make_pair(std::shared_ptr<InspectResult>(), "deps: " + err);
            return std::make_pair(result, std::string());
        },
        [this, id](auto result, std::string error) {
            Revision* r = find_revision(id);
            if (!r || r->state != State::starting) return;
            if (!result) return fail(*r, reason::bad_archive, "reading PEX-INFO: " + error);
            if (!result->first) return fail(*r, reason::bad_archive, result->second);
            compose(id, result->first);
        });
}

void Daemon::compose(const std::string& id, std::shared_ptr<InspectResult> inspected) {
    with_interpreters([this, id, inspected](const std::vector<Interpreter>& found) {
        Revision* rev = find_revision(id);
        if (!rev || rev->state != State::starting) return;
        // Both pex files may constrain the interpreter; honour both.
        std::vector<Constraint> source_c, deps_c;
        std::string err;
        if (!parse_constraints(inspected->source_info.interpreter_constraints, source_c, err) ||
            !parse_constraints(inspected->deps_info.interpreter_constraints, deps_c, err))
            return fail(*rev, reason::bad_archive, "interpreter_constraints: " + err);
        const Interpreter* chosen = nullptr;
        for (const auto& interp : found)
            if (satisfies(interp, source_c) && satisfies(interp, deps_c)) {
                chosen = &interp;
                break;
            }
        if (!chosen) {
            std::string have;
            for (const auto& i : found)
                have += (have.empty() ? "" : ", ") + i.implementation + " " + i.version() + " (" +
                        i.path + ")";
            std::string want = describe(source_c);
            if (!deps_c.empty()) want += (want.empty() ? "" : " and ") + describe(deps_c);
            return fail(*rev, reason::no_interpreter,
                        "no interpreter satisfies " +
                            (want.empty() ? std::string("any constraint") : want) +
                            "; found: " + (have.empty() ? "none" : have));
        }
        rev->python = chosen->path;
        if (rev->spec.runtime == Runtime::pex) return launch(id, inspected, {});

        PythonTarget target;
        target.major = chosen->major;
        target.minor = chosen->minor;
        target.micro = chosen->micro;
        utsname uts{};
        if (::uname(&uts) == 0) target.machine = uts.machine;
        target.implementation = chosen->implementation == "PyPy" ? "pypy" : "cpython";
        std::string source_tree = rev->source.tree, deps_tree = rev->deps.tree;
        run_blocking<std::pair<std::vector<std::string>, std::string>>(
            loop_,
            [source_tree, deps_tree, inspected, target] {
                std::vector<PexTree> trees = {{source_tree, &inspected->source_info},
                                              {deps_tree, &inspected->deps_info}};
                std::vector<std::string> path;
                std::string error;
                if (!build_sys_path(trees, target, path, error)) path.clear();
                return std::make_pair(std::move(path), std::move(error));
            },
            [this, id, inspected](auto result, std::string error) {
                Revision* r = find_revision(id);
                if (!r || r->state != State::starting) return;
                if (!result) return fail(*r, reason::bad_archive, "composing sys.path: " + error);
                if (!result->second.empty()) return fail(*r, reason::bad_archive, result->second);
                launch(id, inspected, std::move(result->first));
            });
    });
}

bool Daemon::identity_of(Revision& rev, Identity& who) {
    if (rev.spec.user.empty() && rev.spec.group.empty()) return true;
    who = resolve_identity(rev.spec.user, rev.spec.group);
    if (who.error.empty()) return true;
    fail(rev, reason::spawn_error, who.error);
    return false;
}

void Daemon::launch(const std::string& id, std::shared_ptr<InspectResult> inspected,
                    std::vector<std::string> sys_path) {
    Revision* rev = find_revision(id);
    if (!rev || rev->state != State::starting) return;

    Identity who;
    if (!identity_of(*rev, who)) return;

    rev->scratch_dir = options_.state_dir + "/scratch/" + rev->id;
    if (Status removed = remove_all(rev->scratch_dir); !removed)
        return fail(*rev, reason::spawn_error, removed.error().message);
    if (::mkdir(rev->scratch_dir.c_str(), 0700) < 0)
        return fail(*rev, reason::spawn_error,
                    "cannot create " + rev->scratch_dir + ": " + std::strerror(errno));
    std::string pycache = options_.state_dir + "/pycache";
    if (who.uid) {
        // An unprivileged environment owns its scratch directory and a
        // bytecode cache of its own: the shared one is root's.
        pycache += "/uid-" + std::to_string(*who.uid);
        if (Status made = make_dirs(pycache); !made)
            return fail(*rev, reason::spawn_error, made.error().message);
        for (const std::string& dir : {rev->scratch_dir, pycache})
            if (::chown(dir.c_str(), *who.uid, who.gid.value_or(static_cast<gid_t>(-1))) < 0)
                return fail(*rev, reason::spawn_error,
                            "cannot chown " + dir + ": " + std::strerror(errno));
    }

    LaunchInput in;
    in.runtime = rev->spec.runtime;
    in.python = rev->python;
    in.boot_script = boot_script_path_;
    in.source_tree = rev->source.tree;
    in.deps_tree = rev->deps.tree;
    in.source_info = &inspected->source_info;
    in.sys_path = std::move(sys_path);
    in.module = rev->spec.module;
    in.args = rev->spec.args;
    in.deploy_env = rev->spec.env;
    in.location = rev->location;
    in.revision_id = rev->id;
    in.scratch_dir = rev->scratch_dir;
    in.pycache_dir = pycache;
    in.pex_root = options_.state_dir + "/pex-root";
    in.host_path = env_or("PATH", "");
    in.host_home = who.uid ? (who.home.empty() ? rev->scratch_dir : who.home) : env_or("HOME", "");
    LaunchPlan plan = plan_launch(in);
    if (!plan.error.empty()) return fail(*rev, reason::bad_archive, plan.error);
    rev->command = plan.argv;
    rev->launch_env = plan.env;
    rev->launch_cwd = rev->spec.cwd.empty() ? rev->scratch_dir : rev->spec.cwd;
    start_process(id);
}

// The cgroup is created while the revision fetches and extracts, so its
// start does not wait for it; start_process picks it up (or waits for it).
void Daemon::prepare_cgroup(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev || rev->cgroup_state != Revision::CgroupState::none) return;
    rev->cgroup_driver = isolation_.driver_name();
    rev->cgroup_state = Revision::CgroupState::creating;
    isolation_.create(
        rev->id, rev->location, rev->spec.limits,
        [this, id](std::shared_ptr<cgroup::Cgroup> cg, std::string error) {
            Revision* r = find_revision(id);
            if (!r || is_final(r->state) || r->ending) {
                // Ended meanwhile, without this cgroup.
                if (cg) isolation_.remove(std::move(cg), [](cgroup::Removal) {});
                return;
            }
            if (!cg) {
                r->cgroup_state = Revision::CgroupState::failed;
                r->cgroup_error = error;
                if (r->state == State::starting) start_process(id);
                return;
            }
            r->cgroup = std::move(cg);
            r->cgroup_state = Revision::CgroupState::ready;
            // Before any process runs in it (each start gets a new cgroup):
            // read after the spawn, an OOM kill in the first instants would
            // vanish into the baseline and look like a plain SIGKILL.
            if (!isolation_.is_none())
                r->oom_kills_baseline = r->cgroup->oom_counters().oom_kill.value_or(0);
            r->cpus_by_cgroup = r->cgroup->confines_cpus();
            const auto& l = r->spec.limits;
            r->degraded = r->cgroup->unenforced();
            bool any_limit = l.memory_max || l.memory_high || l.cpu_quota || l.cpu_weight ||
                             l.cpu_idle || l.pids_max;
            if (isolation_.is_none()) {
                r->degraded.clear();
                if (l.memory_max)
                    r->degraded.push_back("memory: hearth's RSS watchdog (no cgroup)");
                if (l.memory_high) r->degraded.push_back("memory_high: not enforced (no cgroup)");
                if (l.cpu_quota || l.cpu_weight)
                    r->degraded.push_back("cpus: lower priority (nice 10), no quota");
                if (l.cpu_idle)
                    r->degraded.push_back("cpu_weight idle: SCHED_IDLE policy (no cgroup)");
                if (l.pids_max) r->degraded.push_back("pids: not enforced (no cgroup)");
                if (!any_limit)
                    r->degraded.push_back("no cgroup: stop reaches the session tree only");
            }
            if (l.cpu_slice_us && !kernel_has_custom_slices())
                r->degraded.push_back("cpu_slice_us: ignored by this kernel (custom slices: Linux "
                                      "6.12+)");
            r->enforced = r->degraded.empty();
            // No kernel memory limit (no cgroups, or no memory hierarchy):
            // hearth's watchdog holds the revision to it instead.
            bool kernel_memory = !isolation_.is_none();
            for (const auto& u : r->cgroup->unenforced())
                kernel_memory &= u.rfind("memory_max", 0) != 0;
            r->memory_by_watchdog = l.memory_max && !kernel_memory;
            // No cpu.idle (driver none, no cpu hierarchy, kernel before
            // 5.15): the processes take the SCHED_IDLE policy themselves.
            r->sched_idle = false;
            for (const auto& u : r->cgroup->unenforced())
                r->sched_idle |= l.cpu_idle && u.rfind("cpu_idle", 0) == 0;
            if (r->state == State::starting && r->start_waiting) start_process(id);
        });
    // Assigned by create() at once: status shows the CPUs from now on.
    rev->cpus = isolation_.cpus_of(id);
    rev->cpus_exclusive = isolation_.cpus_exclusive(id);
}

void Daemon::start_process(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev || rev->state != State::starting) return;
    switch (rev->cgroup_state) {
    case Revision::CgroupState::none:
        rev->start_waiting = true;
        return prepare_cgroup(id);
    case Revision::CgroupState::creating:
    case Revision::CgroupState::removing:
        rev->start_waiting = true;
        return;
    case Revision::CgroupState::failed:
        return fail(*rev, reason::spawn_error, "cgroup: " + rev->cgroup_error);
    case Revision::CgroupState::ready:
        rev->start_waiting = false;
        return spawn_process(id);
    }
}

void Daemon::spawn_process(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev || rev->state != State::starting) return;

    Identity who;
    if (!identity_of(*rev, who)) return;

    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) < 0)
        return fail(*rev, reason::spawn_error, std::string("pipe: ") + std::strerror(errno));
    Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) < 0)
        return fail(*rev, reason::spawn_error, std::string("pipe: ") + std::strerror(errno));
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);

    SpawnRequest req;
    req.path = rev->command[0];
    req.argv = rev->command;
    req.env = rev->launch_env;
    req.cwd = rev->launch_cwd;
    req.new_session = true;
    req.stdin_fd = spawn_dev_null;
    req.stdout_fd = out_write.get();
    req.stderr_fd = err_write.get();
    req.cgroup = isolation_.is_none() ? nullptr : rev->cgroup.get();
    req.uid = who.uid;
    req.gid = who.gid;
    req.groups = who.groups;
    if (isolation_.is_none() && (rev->spec.limits.cpu_quota || rev->spec.limits.cpu_weight))
        req.nice = 10;
    req.sched_idle = rev->sched_idle;
    if (rev->spec.limits.cpu_slice_us)
        req.sched_slice_ns = std::uint64_t{*rev->spec.limits.cpu_slice_us} * 1000;
    // Now, not at cgroup creation: exclusive CPUs may have come or gone.
    rev->cpus = isolation_.cpus_of(id);
    rev->cpus_exclusive = isolation_.cpus_exclusive(id);
    if (!rev->cpus.empty()) req.affinity = to_cpu_set(rev->cpus);
    SpawnResult spawned = spawn(req);
    out_write.reset();
    err_write.reset();
    if (spawned.pid <= 0) return fail(*rev, reason::spawn_error, spawned.message);

    rev->pid = spawned.pid;
    rev->process_running = true;
    rev->process_started = Clock::now();
    rev->wait_status.reset();
    log::info("revision process started", {{"location", rev->location},
                                           {"id", rev->id},
                                           {"pid", rev->pid},
                                           {"python", rev->python},
                                           {"cgroup", rev->cgroup_driver},
                                           {"restarts", rev->restarts}});
    init_.watch(rev->pid, [this, id](int status) { on_process_exit(id, status); });
    std::optional<std::uint64_t> watchdog_limit;
    if (rev->memory_by_watchdog) watchdog_limit = rev->spec.limits.memory_max;
    isolation_.watch(rev->id, isolation_.is_none() ? nullptr : rev->cgroup.get(), rev->pid,
                     watchdog_limit);

    std::string log_dir = options_.state_dir + "/logs/" + rev->location;
    if (Status made = make_dirs(log_dir); !made)
        log::warn("revision logs will not be written",
                  {{"revision", rev->id}, {"error", made.error().message}});
    if (rev->output) rev->output->drain_now();
    rev->output = std::make_unique<OutputCapture>(
        loop_, std::move(out_read), std::move(err_read), rev->output_ring,
        std::make_unique<RotatingFile>(log_dir, rev->id), forwarder_.get(), rev->location);
    rev->output->on_line = [this, id](const LogLine& line) { on_output_line(id, line); };
    rev->output->start();

    set_state(*rev, State::loading);
    rev->timer.start(static_cast<uint64_t>(rev->spec.min_uptime_s * 1000.0 + 0.5), [this, id] {
        if (Revision* r = find_revision(id)) on_min_uptime(*r);
    });
}

void Daemon::on_min_uptime(Revision& rev) {
    if (rev.state != State::loading) return;
    Location& loc = location_of(rev);
    Revision* current = loc.active.empty() ? nullptr : loc.find(loc.active);
    if (current && current->number > rev.number && current->state == State::ready) {
        // A newer revision became ready first: this one is already superseded.
        set_state(rev, State::ready);
        stop_revision(rev, "superseded by " + current->id, [] {});
        return;
    }
    set_state(rev, State::ready);
    rev.ever_ready = true;
    loc.active = rev.id;
    // Blue/green: only now that the new revision serves, stop the older ones.
    for (auto& other : loc.revisions)
        if (other.get() != &rev && other->number < rev.number && is_live(other->state) &&
            other->state != State::stopping)
            stop_revision(*other, "replaced by " + rev.id, [] {});
}

void Daemon::on_process_exit(const std::string& id, int wait_status) {
    Revision* rev = find_revision(id);
    if (!rev) return;
    rev->process_running = false;
    rev->wait_status = wait_status;
    rev->timer.stop();
    // The last words of a crashing process are still in the pipe.
    if (rev->output) rev->output->drain_now();
    log::info("revision process " + describe_wait_status(wait_status),
              {{"location", rev->location}, {"id", rev->id}, {"pid", rev->pid}});
    // A revision is its cgroup (or, without one, its process group and
    // session): what its main process left behind (children that ignore
    // TERM, a crashed server's workers, setsid escapees) goes with it.
    isolation_.kill_all(rev->cgroup, rev->pid, std::chrono::milliseconds(2000),
                        [this, id](cgroup::KillResult killed) {
                            if (!killed.error.empty())
                                log::warn("cannot kill everything of the revision",
                                          {{"id", id}, {"error", killed.error}});
                            after_exit(id);
                        });
}

void Daemon::after_exit(const std::string& id) {
    Revision* rev = find_revision(id);
    if (!rev || rev->process_running || !rev->wait_status) return;
    isolation_.unwatch(rev->id);
    refresh_usage(*rev);
    if (rev->state == State::stopping) return end_revision(*rev, State::stopped);
    if (is_final(rev->state) || rev->ending) return;

    int wait_status = *rev->wait_status;
    // Counters first: the kernel may report the exit before the OOM event
    // reached us (containerd had this race), and 137 alone proves nothing.
    if (!rev->oom && rev->cgroup && !isolation_.is_none()) {
        cgroup::OomCounters c = rev->cgroup->oom_counters();
        if (c.oom_kill.value_or(0) > rev->oom_kills_baseline) {
            json oom = {{"oom_kills", *c.oom_kill - rev->oom_kills_baseline}, {"source", "kernel"}};
            if (rev->spec.limits.memory_max) oom["limit"] = *rev->spec.limits.memory_max;
            if (rev->usage.memory_peak) oom["peak"] = *rev->usage.memory_peak;
            rev->oom = std::move(oom);
        }
    }
    std::vector<std::string> tail;
    for (const auto& line : rev->output_ring.tail(rev->output_ring.size()))
        if (line.stream == Stream::err) tail.push_back(line.text);
    if (tail.size() > stderr_tail_lines) tail.erase(tail.begin(), tail.end() - stderr_tail_lines);
    rev->stderr_tail = std::move(tail);

    const char* why = rev->oom ? reason::oom_killed : reason::exited;
    std::string message = "process " + describe_wait_status(wait_status);
    if (rev->oom) {
        message =
            "killed for memory (limit " +
            (rev->oom->contains("limit") ? format_bytes((*rev->oom)["limit"].get<std::uint64_t>())
                                         : "?") +
            (rev->oom->contains("peak")
                 ? ", peak " + format_bytes((*rev->oom)["peak"].get<std::uint64_t>())
                 : std::string()) +
            ", by the " + (*rev->oom)["source"].get<std::string>() + "); " + message;
    }
    bool clean = !rev->oom && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
    double ran_s = std::chrono::duration<double>(Clock::now() - rev->process_started).count();
    RestartDecision d = decide_restart(*rev, clean, ran_s, Clock::now());
    if (!d.restart || init_.shutting_down()) {
        if (rev->restarts > 0 && !d.why_not.empty()) message += "; not restarted: " + d.why_not;
        return fail(*rev, why, message);
    }
    rev->reason = why;
    rev->message = message;
    rev->backoff_s = d.delay_s;
    // The next start gets a fresh cgroup. Besides fresh counters, this
    // matters because kernels with cgroup.kill's kill_seq (6.15+) SIGKILL a
    // child that clone3(CLONE_INTO_CGROUP) puts into a cgroup killed before:
    // the sequence number the fork records is not the target cgroup's.
    if (rev->cgroup) {
        rev->cgroup_state = Revision::CgroupState::removing;
        isolation_.remove(std::move(rev->cgroup), [this, id](cgroup::Removal removal) {
            Revision* r = find_revision(id);
            if (!r || r->cgroup_state != Revision::CgroupState::removing) return;
            if (removal.usage.cpu_usage_usec)
                r->usage.cpu_usage_usec = removal.usage.cpu_usage_usec;
            r->cgroup_state = Revision::CgroupState::none;
            if (r->state == State::starting && r->start_waiting) prepare_cgroup(id);
        });
    }
    rev->next_attempt_at = WallClock::now() + std::chrono::duration_cast<WallClock::duration>(
                                                  std::chrono::duration<double>(d.delay_s));
    log::warn("revision will be restarted", {{"location", rev->location},
                                             {"id", rev->id},
                                             {"reason", why},
                                             {"message", message},
                                             {"backoff_s", d.delay_s},
                                             {"restarts", rev->restarts}});
    set_state(*rev, State::backoff);
    rev->timer.start(static_cast<uint64_t>(d.delay_s * 1000.0 + 0.5), [this, id] {
        Revision* r = find_revision(id);
        if (!r || r->state != State::backoff) return;
        ++r->restarts;
        r->oom.reset();
        r->next_attempt_at.reset();
        set_state(*r, State::starting);
        start_process(id);
    });
}

void Daemon::on_oom_kill(const std::string& id, const cgroup::OomChange& change) {
    Revision* rev = find_revision(id);
    if (!rev || !rev->process_running || rev->state == State::stopping || rev->oom) return;
    refresh_usage(*rev);
    json oom = {{"oom_kills", change.after.oom_kill.value_or(0) - rev->oom_kills_baseline},
                {"source", "kernel"}};
    if (rev->spec.limits.memory_max) oom["limit"] = *rev->spec.limits.memory_max;
    if (rev->usage.memory_peak) oom["peak"] = *rev->usage.memory_peak;
    rev->oom = oom;
    // Like memory.oom.group: a revision that lost a process to the OOM killer
    // is not trusted to carry on half-dead; the whole of it goes.
    log::warn("OOM kill in revision; killing the revision",
              {{"location", rev->location}, {"id", rev->id}, {"oom", oom.dump()}});
    isolation_.kill_all(rev->cgroup, rev->pid, std::chrono::milliseconds(2000),
                        [](cgroup::KillResult) {});
}

void Daemon::on_watchdog_kill(const std::string& id, std::uint64_t rss, std::uint64_t limit) {
    Revision* rev = find_revision(id);
    if (!rev || !rev->process_running || rev->state == State::stopping || rev->oom) return;
    rev->oom = json{{"limit", limit}, {"peak", rss}, {"oom_kills", 1}, {"source", "watchdog"}};
    log::warn("revision above its memory limit; the watchdog kills it",
              {{"location", rev->location}, {"id", rev->id}, {"rss", rss}, {"limit", limit}});
    isolation_.kill_all(rev->cgroup, rev->pid, std::chrono::milliseconds(2000),
                        [](cgroup::KillResult) {});
}

void Daemon::refresh_usage(Revision& rev) {
    if (rev.ending || is_final(rev.state)) return;
    if (isolation_.is_none()) {
        if (rev.process_running) {
            cgroup::Usage u = isolation_.watchdog_usage(rev.id);
            if (u.memory_current) rev.usage = u;
        }
        return;
    }
    if (rev.cgroup) rev.usage = rev.cgroup->usage();
}

void Daemon::stop_revision(Revision& rev, std::string why, std::function<void()> done) {
    if (is_final(rev.state)) {
        done();
        return;
    }
    rev.on_ended.push_back(std::move(done));
    if (rev.state == State::stopping || rev.ending) return;
    rev.message = std::move(why);
    rev.reason.clear();
    Location& loc = location_of(rev);
    if (loc.active == rev.id) loc.active.clear();
    if (!rev.process_running) {
        // Still in the pipeline or in backoff: pending work sees the state
        // and drops out.
        if (rev.wait_status && !rev.ending && rev.state != State::backoff) {
            // Exited, and its leftovers are being killed: after_exit ends it.
            set_state(rev, State::stopping);
            return;
        }
        end_revision(rev, State::stopped);
        return;
    }
    set_state(rev, State::stopping);
    isolation_.signal_all(isolation_.is_none() ? nullptr : rev.cgroup.get(), rev.pid,
                          rev.spec.stop.signal);
    std::string id = rev.id;
    double grace = rev.spec.stop.grace_s;
    rev.timer.start(static_cast<uint64_t>(grace * 1000.0 + 0.5), [this, id, grace] {
        Revision* r = find_revision(id);
        if (!r || !r->process_running) return;
        log::warn("revision did not stop within the grace period; killing",
                  {{"id", id}, {"grace_s", grace}});
        isolation_.kill_all(r->cgroup, r->pid, std::chrono::milliseconds(2000),
                            [](cgroup::KillResult) {});
    });
}

void Daemon::finish_revision(Revision& rev) {
    rev.timer.stop();
    if (!rev.scratch_dir.empty()) {
        std::string dir = std::exchange(rev.scratch_dir, std::string());
        run_blocking<Status>(
            loop_, [dir] { return remove_all(dir); },
            [dir](std::optional<Status> removed, std::string error) {
                if (removed && !removed->ok()) error = removed->error().message;
                if (!error.empty())
                    log::warn("cannot remove scratch directory", {{"error", error}});
            });
    }
    auto callbacks = std::move(rev.on_ended);
    rev.on_ended.clear();
    trim_history(location_of(rev)); // may destroy `rev`; nothing below uses it
    for (auto& cb : callbacks)
        cb();
}

void Daemon::trim_history(Location& loc) {
    size_t ended = 0;
    std::erase_if(loc.revisions, [&](const std::unique_ptr<Revision>& r) {
        if (!is_final(r->state) || r->process_running) return false;
        // Keep a revision whose output is still draining out of its pipes.
        return ++ended > ended_revisions_kept;
    });
}

void Daemon::stop_all(std::function<void()> done) {
    // Probe results no longer matter, and a slow version-manager shim must
    // not hold up the exit.
    if (probe_pid_ > 0) ::kill(-probe_pid_, SIGKILL);
    auto pending = std::make_shared<int>(1);
    auto shared_done = std::make_shared<std::function<void()>>(std::move(done));
    auto one_done = [pending, shared_done] {
        if (--*pending == 0) (*shared_done)();
    };
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions)
            if (is_live(rev->state)) {
                ++*pending;
                stop_revision(*rev, "hearth is shutting down", one_done);
            }
    one_done();
}

std::vector<pid_t> Daemon::process_groups() const {
    std::vector<pid_t> groups;
    for (const auto& [name, loc] : locations_)
        for (const auto& rev : loc.revisions)
            if (rev->process_running) groups.push_back(rev->pid);
    return groups;
}

void Daemon::remove_own_cgroups() {
    isolation_.remove_own_directories();
}

void Daemon::before_exit() {
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions)
            if (rev->output) rev->output->drain_now();
    if (forwarder_) forwarder_->flush_and_stop(std::chrono::milliseconds(2000));
    server_.close(nullptr);
}

// ---- interpreters --------------------------------------------------------------

void Daemon::with_interpreters(std::function<void(const std::vector<Interpreter>&)> cb) {
    if (interpreters_probed_) return cb(interpreters_);
    interpreter_waiters_.push_back(std::move(cb));
    if (probing_) return;
    probing_ = true;
    probe_candidates_ = python_candidates(env_or("PATH", ""), options_.python);
    interpreters_.clear();
    probe_next(0);
}

// Probes run one at a time: spawn() waits for the child's exec, and on a busy
// 2-core machine a child competing with other probes (version-manager shims
// are shell scripts) is scheduled late, stalling the loop each time.
void Daemon::probe_next(std::size_t index) {
    if (index >= probe_candidates_.size() || init_.shutting_down()) {
        interpreters_probed_ = true;
        probing_ = false;
        std::string names;
        for (const auto& i : interpreters_)
            names += (names.empty() ? "" : ", ") + i.path + " " + i.version();
        log::info("interpreters found", {{"count", interpreters_.size()}, {"interpreters", names}});
        auto waiters = std::move(interpreter_waiters_);
        interpreter_waiters_.clear();
        for (auto& w : waiters)
            w(interpreters_);
        return;
    }
    const std::string candidate = probe_candidates_[index];
    SpawnRequest req;
    req.argv = probe_argv(candidate);
    req.path = req.argv[0];
    req.env = std::vector<std::string>{"PATH=" + env_or("PATH", ""), "LANG=C.UTF-8"};
    probe_pid_ = run_oneshot(
        loop_, init_, std::move(req), probe_timeout_ms, 4096,
        [this, index, candidate](OneshotResult r) {
            probe_pid_ = -1;
            std::string err;
            std::optional<Interpreter> found;
            if (r.started && WIFEXITED(r.wait_status) && WEXITSTATUS(r.wait_status) == 0)
                found = parse_probe_output(r.out, err);
            else
                err = r.started ? describe_wait_status(r.wait_status) : r.error;
            if (!found) {
                log::debug("interpreter probe failed", {{"candidate", candidate}, {"error", err}});
            } else {
                // Shims and aliases (python3, python3.11, a pyenv shim) often
                // resolve to one binary: keep the first name of each.
                char* real = ::realpath(found->path.c_str(), nullptr);
                std::string key = real ? real : found->path;
                std::free(real);
                if (std::find(probe_seen_.begin(), probe_seen_.end(), key) == probe_seen_.end()) {
                    probe_seen_.push_back(key);
                    interpreters_.push_back(*found);
                }
            }
            probe_next(index + 1);
        });
}

// ---- store -------------------------------------------------------------------

namespace {
bool is_no_space(const StoreResult& r) {
    return r.status == StoreStatus::no_space ||
           (r.status == StoreStatus::io_error &&
            r.error.find(std::strerror(ENOSPC)) != std::string::npos);
}
} // namespace

void Daemon::shared_store_job(const std::string& key, JobStarter start, const char* failure_reason,
                              StoreDone done) {
    auto& waiters = inflight_[key];
    waiters.push_back(std::move(done));
    if (waiters.size() > 1) return; // the running job answers everyone
    if (gc_running_) {
        deferred_jobs_.push_back([this, key, start = std::move(start), failure_reason]() mutable {
            start([this, key, failure_reason](StoreResult r) {
                finish_store_job(key, failure_reason, std::move(r));
            });
        });
        return;
    }
    start([this, key, failure_reason](StoreResult r) {
        finish_store_job(key, failure_reason, std::move(r));
    });
}

void Daemon::finish_store_job(const std::string& key, const char* failure_reason, StoreResult r) {
    {
        auto node = inflight_.extract(key);
        ArtifactStatus st;
        std::string why = failure_reason;
        st.cache_hit = r.hit;
        st.bytes = r.bytes;
        st.tree = r.path;
        if (r.status == StoreStatus::digest_mismatch)
            why = reason::digest_mismatch;
        else if (is_no_space(r))
            why = reason::no_space;
        for (auto& cb : node.mapped())
            cb(r.ok(), why, r.error, st);
    }
    if (inflight_.empty() && !gc_queue_.empty()) start_gc();
}

// ---- garbage collection ---------------------------------------------------------

std::set<ObjectKey> Daemon::pinned_objects() const {
    std::set<ObjectKey> pins;
    for (const auto& [name, loc] : locations_)
        for (const auto& rev : loc.revisions) {
            // An ending revision's process is already gone: it uses nothing.
            if (!is_live(rev->state) || rev->ending) continue;
            for (const ArtifactSpec* a : {&rev->spec.deps, &rev->spec.source}) {
                pins.emplace(ObjectKind::blob, a->sha256);
                pins.emplace(ObjectKind::tree, a->sha256);
            }
        }
    for (const auto& [key, waiters] : inflight_) {
        auto colon = key.find(':');
        pins.emplace(key.compare(0, colon, "tree") == 0 ? ObjectKind::tree : ObjectKind::blob,
                     key.substr(colon + 1));
    }
    return pins;
}

void Daemon::run_gc(std::uint64_t target, bool force, std::function<void(const GcOutcome&)> done) {
    gc_queue_.push_back({target, force, std::move(done)});
    // Jobs in flight finish first (they are pinned, but a tree they publish
    // must be counted); finish_store_job starts the GC when the last ends.
    if (!gc_running_ && inflight_.empty()) start_gc();
}

void Daemon::start_gc() {
    if (gc_running_ || gc_queue_.empty()) return;
    gc_running_ = true;
    // One request per pass, each planned afresh: requests differ in target
    // and in whether a plan that cannot reach it is applied anyway.
    GcRequest request = std::move(gc_queue_.front());
    gc_queue_.erase(gc_queue_.begin());
    auto pins = pinned_objects();
    std::uint64_t target = request.target;
    bool force = request.force;
    run_blocking<GcOutcome>(
        loop_,
        [this, target, force, pins] {
            GcOutcome out;
            out.plan = plan_gc(store_.list_cache(), pins, target);
            // A plan that does not fit is applied only on request (cache.gc):
            // for a deploy, evicting everything else would not help.
            if (!out.plan.fits && !force) return out;
            for (const auto& e : out.plan.evict) {
                StoreResult r = store_.evict(e.kind, e.sha256);
                if (!r.ok() && out.error.empty()) out.error = r.error;
                out.freed += r.bytes;
            }
            out.applied = true;
            return out;
        },
        [this, request = std::move(request)](std::optional<GcOutcome> out,
                                             std::string error) mutable {
            gc_running_ = false;
            GcOutcome result = out ? std::move(*out) : GcOutcome{};
            if (!out) result.error = error;
            if (out) {
                store_used_ = result.plan.used_before - (result.applied ? result.freed : 0);
                store_pinned_ = result.plan.pinned_bytes;
            }
            if (result.applied && !result.plan.evict.empty())
                log::info("store garbage collected", {{"evicted", result.plan.evict.size()},
                                                      {"freed_bytes", result.freed},
                                                      {"used_bytes", store_used_},
                                                      {"budget_bytes", store_budget_}});
            if (!result.error.empty())
                log::warn("store garbage collection", {{"error", result.error}});
            auto deferred = std::move(deferred_jobs_);
            deferred_jobs_.clear();
            for (auto& job : deferred)
                job();
            request.done(result);
            if (!gc_queue_.empty() && inflight_.empty()) start_gc();
        });
}

void Daemon::ensure_space(const std::string& id) {
    run_gc(store_budget_, false, [this, id](const GcOutcome& outcome) {
        Revision* rev = find_revision(id);
        if (!rev || rev->state != State::extracting) return;
        if (outcome.plan.fits) return inspect(id);
        fail(*rev, reason::no_space,
             "the store budget of " + format_bytes(store_budget_) + " cannot hold this revision: " +
                 "objects in use need " + format_bytes(outcome.plan.pinned_bytes) +
                 " (raise --store-max-bytes or stop other locations)");
        // fail() brings the store back within its budget: what only this
        // revision used is unpinned now.
    });
}

Daemon::JobStarter Daemon::blocking_job(std::function<StoreResult()> work) {
    return [this, work = std::move(work)](std::function<void(StoreResult)> finished) {
        run_blocking<StoreResult>(loop_, work,
                                  [finished](std::optional<StoreResult> r, std::string error) {
                                      if (r) return finished(std::move(*r));
                                      StoreResult failed;
                                      failed.status = StoreStatus::io_error;
                                      failed.error = std::move(error);
                                      finished(std::move(failed));
                                  });
    };
}

void Daemon::store_blob(const ArtifactSpec& artifact, StoreDone done) {
    std::string hex = artifact.sha256;
    if (artifact.url.empty()) {
        std::string src = artifact.path;
        shared_store_job("blob:" + hex,
                         blocking_job([this, src, hex] { return store_.import_file(src, hex); }),
                         reason::fetch_error, std::move(done));
        return;
    }
    // A digest the store has is never downloaded again, whatever the URL.
    if (store_.has_blob(hex)) {
        ArtifactStatus st;
        st.cache_hit = true;
        st.tree = store_.blob_path(hex);
        done(true, "", "", st);
        return;
    }
    std::string url = artifact.url;
    shared_store_job(
        "blob:" + hex,
        [this, url, hex](std::function<void(StoreResult)> finished) {
            download(url, hex, std::move(finished));
        },
        reason::fetch_error, std::move(done));
}

void Daemon::download(const std::string& url, const std::string& hex,
                      std::function<void(StoreResult)> finished) {
    if (!fetcher_) {
        try {
            fetcher_ = std::make_unique<Fetcher>(loop_);
        } catch (const std::exception& e) {
            StoreResult failed;
            failed.status = StoreStatus::io_error;
            failed.error = std::string("cannot start downloads: ") + e.what();
            return finished(std::move(failed));
        }
    }
    FetchOptions fo;
    fo.connect_timeout =
        std::chrono::milliseconds(static_cast<long>(options_.fetch_connect_timeout_s * 1000));
    fo.stall_timeout =
        std::chrono::milliseconds(static_cast<long>(options_.fetch_stall_timeout_s * 1000));
    // A blob bigger than the whole store budget can never be kept: refuse it
    // at its Content-Length (or its first byte too many) as no_space, rather
    // than download it all, then evict it.
    bool budget_caps = store_budget_ < options_.fetch_max_bytes;
    fo.max_bytes = std::min(options_.fetch_max_bytes, store_budget_);
    fo.max_attempts = options_.fetch_attempts;
    auto sink = std::make_shared<BlobSink>(store_);
    std::string shown = redact_url(url);
    log::info("download started", {{"url", shown}, {"sha256", hex}});
    auto started = Clock::now();
    fetcher_->start(
        url, fo, sink, [this, hex](const FetchProgress& p) { on_fetch_progress(hex, p); },
        [this, sink, hex, shown, started, budget_caps,
         finished = std::move(finished)](const FetchResult& r) {
            if (!r.ok()) {
                StoreResult failed;
                failed.status = StoreStatus::io_error;
                failed.error = r.message;
                std::string sink_error = sink->error();
                if (r.kind == FetchErrorKind::sink && !sink_error.empty()) {
                    failed.error += ": " + sink_error;
                    failed.status = sink->writer().failure_status();
                }
                if (r.kind == FetchErrorKind::too_large && budget_caps) {
                    failed.status = StoreStatus::no_space;
                    failed.error += " (the store budget, --store-max-bytes)";
                }
                log::warn("download failed", {{"url", shown}, {"error", failed.error}});
                return finished(std::move(failed));
            }
            on_fetch_progress(hex, FetchProgress{r.bytes, r.bytes, true, r.attempts});
            log::info("download finished", {{"url", shown},
                                            {"bytes", r.bytes},
                                            {"attempts", r.attempts},
                                            {"ms", elapsed_ms(started)}});
            // The hash is already complete; the commit fsyncs and renames.
            run_blocking<StoreResult>(
                loop_, [sink, hex, shown] { return sink->writer().commit(hex, shown); },
                [finished](std::optional<StoreResult> c, std::string error) {
                    if (c) return finished(std::move(*c));
                    StoreResult failed;
                    failed.status = StoreStatus::io_error;
                    failed.error = std::move(error);
                    finished(std::move(failed));
                });
        });
}

void Daemon::on_fetch_progress(const std::string& hex, const FetchProgress& p) {
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions) {
            if (rev->state != State::fetching) continue;
            for (bool is_deps : {true, false}) {
                const ArtifactSpec& spec = is_deps ? rev->spec.deps : rev->spec.source;
                if (spec.sha256 != hex || spec.url.empty()) continue;
                ArtifactStatus& st = is_deps ? rev->deps : rev->source;
                st.fetched_bytes = p.bytes;
                st.total_bytes =
                    p.total_known ? std::optional<std::uint64_t>(p.total) : std::nullopt;
                json params = {{"ts", format_timestamp(WallClock::now())},
                               {"type", "progress"},
                               {"location", rev->location},
                               {"id", rev->id},
                               {"state", state_name(rev->state)},
                               {"artifact", is_deps ? "deps" : "source"},
                               {"fetched_bytes", p.bytes},
                               {"total_bytes", p.total_known ? json(p.total) : json(nullptr)}};
                notify_subscribers(rev->location, params);
            }
        }
}

void Daemon::store_tree(const std::string& hex, StoreDone done) {
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    ExtractLimits limits;
    limits.max_entries = options_.extract_max_entries;
    limits.max_ratio = options_.extract_max_ratio;
    limits.max_bytes =
        options_.extract_max_bytes.value_or(std::min<std::uint64_t>(16ULL << 30, store_budget_));
    // When the store budget is what caps the extracted bytes, an archive over
    // it is not hostile, it does not fit: no_space, like any deploy that
    // cannot fit in the budget.
    bool budget_caps = !options_.extract_max_bytes && limits.max_bytes == store_budget_;
    std::string over_budget = "more than " + std::to_string(limits.max_bytes) + " bytes";
    shared_store_job("tree:" + hex,
                     blocking_job([this, hex, threads, limits, budget_caps, over_budget] {
                         StoreResult r = store_.ensure_tree(hex, limits, threads);
                         if (budget_caps && r.status == StoreStatus::bad_archive &&
                             r.error.find(over_budget) != std::string::npos) {
                             r.status = StoreStatus::no_space;
                             r.error += " (the store budget; raise --store-max-bytes)";
                         }
                         return r;
                     }),
                     reason::bad_archive, std::move(done));
}

} // namespace hearth

#include "daemon/revisions.hpp"

#include "daemon/barrier.hpp"
#include "health/load_error.hpp"
#include "init/exit_status.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/text.hpp"
#include "util/units.hpp"

#include <cctype>
#include <cerrno>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace hearth {

using nlohmann::json;

namespace {

constexpr std::size_t ended_revisions_kept = 5;
constexpr std::size_t stderr_tail_lines = 20;

double elapsed_ms(Clock::time_point since) {
    return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// The `oom` object of a revision killed for memory (hearth-protocol(7)).
json oom_record(std::uint64_t kills, const char* source, std::optional<std::uint64_t> limit,
                std::optional<std::uint64_t> peak) {
    json oom = {{"oom_kills", kills}, {"source", source}};
    if (limit) oom["limit"] = *limit;
    if (peak) oom["peak"] = *peak;
    return oom;
}

// Where the process `pid` is, as its /proc/PID/cgroup says: the unified
// line when it names a cgroup below the root, else a v1 line (memory
// preferred). {"", ""} when unreadable. Blocks briefly on procfs.
std::pair<std::string, std::string> cgroup_of(pid_t pid) {
    auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup");
    if (!text) return {};
    std::string v1_path, v1_controller;
    for (std::string_view line : split(*text, '\n')) {
        auto a = line.find(':');
        auto b = a == std::string_view::npos ? a : line.find(':', a + 1);
        if (b == std::string_view::npos) continue;
        std::string_view controllers = line.substr(a + 1, b - a - 1);
        std::string_view path = line.substr(b + 1);
        if (controllers.empty()) {
            if (path != "/") return {std::string(path), ""};
            continue;
        }
        for (std::string_view c : split(controllers, ',')) {
            if (c.empty() || c.rfind("name=", 0) == 0) continue;
            if (v1_path.empty() || c == "memory") {
                v1_path = path;
                v1_controller = c;
            }
        }
    }
    return {v1_path, v1_controller};
}

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", s);
    return buf;
}

// The environment of a revision's process: the prepared one, with hearth's
// endpoint variables replacing any the deploy set.
std::vector<std::string> with_endpoint_env(const std::vector<std::string>& env,
                                           const Revision& rev) {
    std::vector<std::string> out;
    for (const auto& e : env)
        if (e.rfind("PORT=", 0) != 0 && e.rfind("HEARTH_RUNTIME_DIR=", 0) != 0 &&
            e.rfind("NOTIFY_SOCKET=", 0) != 0)
            out.push_back(e);
    if (rev.port) out.push_back("PORT=" + std::to_string(rev.port));
    if (!rev.runtime_dir.empty()) out.push_back("HEARTH_RUNTIME_DIR=" + rev.runtime_dir);
    if (rev.notify) out.push_back("NOTIFY_SOCKET=" + rev.notify->path());
    return out;
}

} // namespace

Revisions::Revisions(uv_loop_t* loop, Config config, Artifacts& artifacts, IsolationApi& isolation,
                     ProcessHost& processes, Preparer& preparer, Events& events,
                     StdoutForwarder* forwarder)
    : loop_(loop), config_(std::move(config)), artifacts_(artifacts), isolation_(isolation),
      processes_(processes), preparer_(preparer), events_(events), forwarder_(forwarder),
      ports_(config_.port_range), sample_timer_(loop) {}

Revisions::~Revisions() = default;

void Revisions::start() {
    sample_timer_.start(
        config_.usage_interval_ms, [this] { sample_all(); }, config_.usage_interval_ms);
}

void Revisions::stop_sampling() {
    sample_timer_.stop();
}

// ---- lookups -------------------------------------------------------------------

Revision* Revisions::find(const std::string& id) {
    // ids are "<location>-<number>" and locations may contain '-': try each.
    for (auto& [name, loc] : locations_)
        if (id.size() > name.size() && id.compare(0, name.size(), name) == 0)
            if (Revision* r = loc.find(id)) return r;
    return nullptr;
}

Location* Revisions::find_location(const std::string& name) {
    auto it = locations_.find(name);
    return it == locations_.end() ? nullptr : &it->second;
}

Location& Revisions::location_of(const Revision& rev) {
    return locations_.at(rev.location);
}

std::vector<pid_t> Revisions::process_groups() const {
    std::vector<pid_t> groups;
    for (const auto& [name, loc] : locations_)
        for (const auto& rev : loc.revisions)
            if (rev->process_running) groups.push_back(rev->pid);
    return groups;
}

std::set<ObjectKey> Revisions::pinned_objects() const {
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
    return pins;
}

std::map<ObjectKey, std::vector<std::string>> Revisions::users_of_objects() const {
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
    return users;
}

void Revisions::drain_output() {
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions)
            if (rev->output) rev->output->drain_now();
}

// ---- requests ------------------------------------------------------------------

Revision& Revisions::deploy(DeploySpec spec, Identity identity) {
    auto [it, inserted] = locations_.try_emplace(spec.location);
    Location& loc = it->second;
    if (inserted) loc.name = spec.location;
    // Numbers survive `remove`, so a later deploy never reuses an id (and
    // never appends to an old revision's log file).
    int number = ++next_numbers_[spec.location];
    std::string name = spec.location; // copied first: `spec` is moved below
    auto rev = std::make_unique<Revision>(loop_, std::move(name), number, std::move(spec));
    rev->identity = std::move(identity);
    Revision& ref = *rev;
    loc.revisions.push_front(std::move(rev));
    log::info("deploy accepted", {{"location", ref.location},
                                  {"id", ref.id},
                                  {"deps", ref.spec.deps.sha256},
                                  {"source", ref.spec.source.sha256}});
    events_.publish_state(ref, std::nullopt);
    fetch(ref.id);
    return ref;
}

void Revisions::stop_location(Location& loc, std::optional<std::string> only, std::string why,
                              std::function<void(std::vector<std::string>)> done) {
    auto stopped = std::make_shared<std::vector<std::string>>();
    Barrier all([stopped, done = std::move(done)] { done(*stopped); });
    for (auto& rev : loc.revisions) {
        if (!is_live(rev->state) || (only && rev->id != *only)) continue;
        stopped->push_back(rev->id);
        stop(*rev, why, all.add());
    }
    all.seal();
}

void Revisions::remove_location(const std::string& name,
                                std::function<void(std::vector<std::string>)> done) {
    Location* loc = find_location(name);
    if (!loc) return done({});
    stop_location(*loc, std::nullopt, "location removed",
                  [this, name, done = std::move(done)](std::vector<std::string> stopped) {
                      auto it = locations_.find(name);
                      // A deploy may have arrived while stopping; then keep it.
                      bool busy = false;
                      if (it != locations_.end())
                          for (auto& r : it->second.revisions)
                              busy |= is_live(r->state);
                      if (it != locations_.end() && !busy) locations_.erase(it);
                      log::info("location removed", {{"location", name}});
                      done(std::move(stopped));
                  });
}

void Revisions::stop_all(std::function<void()> done) {
    Barrier all(std::move(done));
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions)
            if (is_live(rev->state)) stop(*rev, "hearth is shutting down", all.add());
    all.seal();
}

// ---- state -----------------------------------------------------------------------

void Revisions::set_state(Revision& rev, State state) {
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
    events_.publish_state(rev, previous);
}

void Revisions::fail(Revision& rev, const char* reason, std::string message) {
    if (rev.ending || is_final(rev.state)) return;
    rev.reason = reason;
    // Library messages (libarchive's) may end in a newline.
    while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back())))
        message.pop_back();
    rev.message = std::move(message);
    if (rev.pid > 0 && rev.readiness == Revision::Readiness::pending) {
        rev.readiness = Revision::Readiness::failed;
        rev.readiness_since = WallClock::now();
    }
    disarm_readiness(rev);
    log::warn("revision failed", {{"location", rev.location},
                                  {"id", rev.id},
                                  {"reason", rev.reason},
                                  {"message", rev.message}});
    // A revision that failed while bringing objects into the store (a blob
    // too big to extract within the budget, say) may have left it over
    // budget; what only it used is unpinned now.
    bool was_storing = rev.state == State::fetching || rev.state == State::extracting;
    end_revision(rev, State::failed);
    if (was_storing) artifacts_.collect();
}

void Revisions::end_revision(Revision& rev, State final_state) {
    if (rev.ending) return;
    rev.timer.stop();
    disarm_readiness(rev);
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
    // The removal reads the final counters (on the pool).
    rev.ending = true;
    std::string id = rev.id;
    isolation_.remove(std::move(rev.cgroup), [this, id, final_state](cgroup::Removal removal) {
        Revision* r = find(id);
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

void Revisions::finish_revision(Revision& rev) {
    rev.timer.stop();
    release_endpoint(rev);
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

void Revisions::trim_history(Location& loc) {
    size_t ended = 0;
    std::erase_if(loc.revisions, [&](const std::unique_ptr<Revision>& r) {
        if (!is_final(r->state) || r->process_running) return false;
        // Keep a revision whose output is still draining out of its pipes.
        return ++ended > ended_revisions_kept;
    });
}

void Revisions::stop(Revision& rev, std::string why, std::function<void()> done) {
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
    disarm_readiness(rev);
    isolation_.signal_all(isolation_.is_none() ? nullptr : rev.cgroup.get(), rev.pid,
                          rev.spec.stop.signal);
    std::string id = rev.id;
    double grace = rev.spec.stop.grace_s;
    rev.timer.start(timer_ms(grace), [this, id, grace] {
        Revision* r = find(id);
        if (!r || !r->process_running) return;
        log::warn("revision did not stop within the grace period; killing",
                  {{"id", id}, {"grace_s", grace}});
        isolation_.kill_all(r->cgroup, r->pid, config_.kill_timeout, [](cgroup::KillResult) {});
    });
}

// ---- the pipeline ------------------------------------------------------------------

void Revisions::fetch(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->state != State::pending) return;
    set_state(*rev, State::fetching);
    prepare_cgroup(id);
    Barrier both([this, id] {
        Revision* r = find(id);
        if (r && r->state == State::fetching) extract(id);
    });
    for (bool is_deps : {true, false}) {
        auto stored = [this, id, is_deps, arrived = both.add()](ArtifactOutcome out) {
            Revision* r = find(id);
            if (!r || r->state != State::fetching) return;
            ArtifactStatus& target = is_deps ? r->deps : r->source;
            // Keep the download's progress figures.
            auto fetched = target.fetched_bytes;
            auto total = target.total_bytes;
            target = out.status;
            target.fetched_bytes = fetched;
            target.total_bytes = total;
            // The store already classified the failure; the first one ends
            // the revision, and the other branch then drops out above.
            if (!out.ok)
                return fail(*r, out.reason, (is_deps ? "deps: " : "source: ") + out.message);
            arrived();
        };
        const ArtifactSpec& spec = is_deps ? rev->spec.deps : rev->spec.source;
        artifacts_.store_blob(spec, std::move(stored));
        rev = find(id); // a synchronous failure may have ended it
        if (!rev || rev->state != State::fetching) break;
    }
    both.seal();
}

void Revisions::extract(const std::string& id) {
    Revision* rev = find(id);
    if (!rev) return;
    set_state(*rev, State::extracting);
    Barrier both([this, id] {
        Revision* r = find(id);
        if (r && r->state == State::extracting) make_room(id);
    });
    for (bool is_deps : {true, false}) {
        auto extracted = [this, id, is_deps, arrived = both.add()](ArtifactOutcome out) {
            Revision* r = find(id);
            if (!r || r->state != State::extracting) return;
            ArtifactStatus& target = is_deps ? r->deps : r->source;
            target.tree = out.status.tree;
            // A hit means nothing was copied or extracted for this revision.
            target.cache_hit = target.cache_hit && out.status.cache_hit;
            if (!out.ok)
                return fail(*r,
                            out.reason == std::string_view(reason::no_space) ? reason::no_space
                                                                             : reason::bad_archive,
                            (is_deps ? "deps: " : "source: ") + out.message);
            arrived();
        };
        artifacts_.store_tree(is_deps ? rev->spec.deps.sha256 : rev->spec.source.sha256,
                              std::move(extracted));
        rev = find(id);
        if (!rev || rev->state != State::extracting) break;
    }
    both.seal();
}

void Revisions::make_room(const std::string& id) {
    artifacts_.make_room([this, id](bool fits, std::string message) {
        Revision* rev = find(id);
        if (!rev || rev->state != State::extracting) return;
        if (!fits) return fail(*rev, reason::no_space, std::move(message));
        prepare(id);
    });
}

void Revisions::prepare(const std::string& id) {
    Revision* rev = find(id);
    if (!rev) return;
    set_state(*rev, State::starting);
    rev->scratch_dir = config_.state_dir + "/scratch/" + rev->id;
    std::string scratch = rev->scratch_dir;
    preparer_.prepare(*rev, [this, id, scratch](Result<LaunchPlanned, StepFailure> planned) {
        Revision* r = find(id);
        if (!r || r->state != State::starting) {
            // Stopped meanwhile: its scratch directory may have been made
            // after finish_revision removed it.
            if (planned)
                run_blocking<Status>(
                    loop_, [scratch] { return remove_all(scratch); },
                    [](std::optional<Status>, std::string) {});
            return;
        }
        if (!planned) return fail(*r, planned.error().reason, planned.error().message);
        r->python = planned->python;
        r->command = std::move(planned->command);
        r->launch_env = std::move(planned->env);
        r->launch_cwd = std::move(planned->cwd);
        make_endpoint(id, [this, id] { start_process(id); });
    });
}

void Revisions::prepare_cgroup(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->cgroup_state != Revision::CgroupState::none) return;
    rev->cgroup_driver = isolation_.driver_name();
    rev->cgroup_state = Revision::CgroupState::creating;
    isolation_.create(rev->id, rev->location, rev->spec.limits,
                      [this, id](std::shared_ptr<cgroup::Cgroup> cg, std::string error) {
                          Revision* r = find(id);
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
                              r->oom_kills_baseline =
                                  r->cgroup->oom_counters().oom_kill.value_or(0);
                          r->cpus_by_cgroup = r->cgroup->confines_cpus();
                          LimitsReport report = isolation_.report(r->spec.limits, *r->cgroup);
                          r->degraded = std::move(report.degraded);
                          r->enforced = report.enforced;
                          r->memory_by_watchdog = report.memory_by_watchdog;
                          r->sched_idle = report.sched_idle;
                          r->nice = report.nice;
                          if (r->state == State::starting && r->start_waiting) start_process(id);
                      });
    // Assigned by create() at once: status shows the CPUs from now on.
    rev->cpus = isolation_.cpus_of(id);
    rev->cpus_exclusive = isolation_.cpus_exclusive(id);
}

void Revisions::start_process(const std::string& id) {
    Revision* rev = find(id);
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

void Revisions::spawn_process(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->state != State::starting) return;

    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) < 0)
        return fail(*rev, reason::spawn_error, "pipe: " + errno_text(errno));
    Fd out_read(out_pipe[0]), out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) < 0)
        return fail(*rev, reason::spawn_error, "pipe: " + errno_text(errno));
    Fd err_read(err_pipe[0]), err_write(err_pipe[1]);

    const Identity& who = rev->identity;
    SpawnRequest req;
    req.path = rev->command[0];
    req.argv = rev->command;
    req.env = with_endpoint_env(rev->launch_env, *rev);
    req.cwd = rev->launch_cwd;
    req.new_session = true;
    req.stdin_fd = spawn_dev_null;
    req.stdout_fd = out_write.get();
    req.stderr_fd = err_write.get();
    req.cgroup = isolation_.is_none() ? nullptr : rev->cgroup.get();
    req.uid = who.uid;
    req.gid = who.gid;
    req.groups = who.groups;
    if (rev->nice) req.nice = *rev->nice;
    req.sched_idle = rev->sched_idle;
    if (rev->spec.limits.cpu_slice_us)
        req.sched_slice_ns = std::uint64_t{*rev->spec.limits.cpu_slice_us} * 1000;
    // Now, not at cgroup creation: exclusive CPUs may have come or gone.
    rev->cpus = isolation_.cpus_of(id);
    rev->cpus_exclusive = isolation_.cpus_exclusive(id);
    if (!rev->cpus.empty()) req.affinity = to_cpu_set(rev->cpus);
    SpawnResult spawned = processes_.spawn(req);
    out_write.reset();
    err_write.reset();
    if (spawned.pid <= 0) return fail(*rev, reason::spawn_error, spawned.message);

    rev->pid = spawned.pid;
    rev->process_running = true;
    rev->process_started = Clock::now();
    rev->process_since = WallClock::now();
    if (!isolation_.is_none() && rev->cgroup)
        std::tie(rev->cgroup_relpath, rev->cgroup_controller) = cgroup_of(rev->pid);
    rev->wait_status.reset();
    log::info("revision process started", {{"location", rev->location},
                                           {"id", rev->id},
                                           {"pid", rev->pid},
                                           {"python", rev->python},
                                           {"cgroup", rev->cgroup_driver},
                                           {"restarts", rev->restarts}});
    processes_.watch(rev->pid, [this, id](int status) { on_process_exit(id, status); });
    std::optional<std::uint64_t> watchdog_limit;
    if (rev->memory_by_watchdog) watchdog_limit = rev->spec.limits.memory_max;
    isolation_.watch(rev->id, isolation_.is_none() ? nullptr : rev->cgroup.get(), rev->pid,
                     watchdog_limit);

    std::string log_dir = config_.state_dir + "/logs/" + rev->location;
    if (Status made = make_dirs(log_dir); !made)
        log::warn("revision logs will not be written",
                  {{"revision", rev->id}, {"error", made.error().message}});
    if (rev->output) rev->output->drain_now();
    rev->output = std::make_unique<OutputCapture>(
        loop_, std::move(out_read), std::move(err_read), rev->output_ring,
        std::make_unique<RotatingFile>(log_dir, rev->id), forwarder_, rev->location);
    std::string location = rev->location;
    rev->output->on_line = [this, id, location](const LogLine& line) {
        events_.publish_log(location, id, line);
    };
    rev->output->start();

    set_state(*rev, State::loading);
    // A new revision has usage figures from its first moment.
    sample_usage({id});
    arm_readiness(*rev, req);
}

void Revisions::on_min_uptime(Revision& rev) {
    if (rev.state != State::loading || rev.load_error) return;
    become_ready(rev);
}

void Revisions::become_ready(Revision& rev) {
    if (rev.state != State::loading) return;
    disarm_readiness(rev);
    rev.readiness = Revision::Readiness::ready;
    rev.readiness_since = WallClock::now();
    sample_usage({rev.id});
    Location& loc = location_of(rev);
    Revision* current = loc.active.empty() ? nullptr : loc.find(loc.active);
    if (current && current->number > rev.number && current->state == State::ready) {
        // A newer revision became ready first: this one is already superseded.
        set_state(rev, State::ready);
        stop(rev, "superseded by " + current->id, [] {});
        return;
    }
    set_state(rev, State::ready);
    rev.ever_ready = true;
    loc.active = rev.id;
    // Blue/green: only now that the new revision serves, stop the older ones.
    for (auto& other : loc.revisions)
        if (other.get() != &rev && other->number < rev.number && is_live(other->state) &&
            other->state != State::stopping)
            stop(*other, "replaced by " + rev.id, [] {});
}

// ---- readiness -------------------------------------------------------------------

void Revisions::make_endpoint(const std::string& id, std::function<void()> next) {
    Revision* rev = find(id);
    if (!rev) return;
    if (rev->port == 0) {
        auto port = ports_.allocate();
        if (!port) return fail(*rev, reason::spawn_error, port.error().message);
        rev->port = *port;
    }
    std::string root =
        config_.runtime_root.empty() ? config_.state_dir + "/run" : config_.runtime_root;
    std::string dir = path_join(root, rev->id);
    rev->runtime_dir = dir;
    Identity who = rev->identity;
    run_blocking<Status>(
        loop_,
        [root, dir, who]() -> Status {
            if (Status made = make_dirs(root); !made) return made;
            if (Status removed = remove_all(dir); !removed) return removed;
            if (::mkdir(dir.c_str(), 0700) < 0)
                return os_error(errno, "cannot create " + dir + ": " + errno_text(errno));
            // Its own user writes load_error.json and Unix sockets there.
            if (who.uid &&
                ::chown(dir.c_str(), *who.uid, who.gid.value_or(static_cast<gid_t>(-1))) < 0)
                return os_error(errno, "cannot chown " + dir + ": " + errno_text(errno));
            return {};
        },
        [this, id, dir, next = std::move(next)](std::optional<Status> made, std::string error) {
            Revision* r = find(id);
            if (!r || r->state != State::starting) {
                // Ended meanwhile: release_endpoint may have run before
                // the directory was made.
                if (!r || is_final(r->state))
                    run_blocking<Status>(
                        loop_, [dir] { return remove_all(dir); },
                        [](std::optional<Status>, std::string) {});
                return;
            }
            if (made && !made->ok()) error = made->error().message;
            if (!error.empty()) return fail(*r, reason::spawn_error, "runtime directory: " + error);
            if (r->spec.readiness.kind == health::ProbeKind::notify && !r->notify) {
                auto listener = health::NotifyListener::open(
                    loop_, r->runtime_dir + "/notify",
                    [this, id](const health::NotifyListener::Sender& sender) {
                        return notify_sender_ok(id, sender.pid);
                    },
                    [this, id](const health::NotifyMessage& message) { on_notify(id, message); });
                if (!listener)
                    return fail(*r, reason::spawn_error,
                                "notify socket: " + listener.error().message);
                r->notify = std::move(*listener);
            }
            next();
        });
}

void Revisions::release_endpoint(Revision& rev) {
    disarm_readiness(rev);
    rev.notify.reset(); // closes and unlinks the socket
    if (rev.port) ports_.release(rev.port);
    if (rev.runtime_dir.empty()) return;
    std::string dir = rev.runtime_dir;
    run_blocking<Status>(
        loop_, [dir] { return remove_all(dir); },
        [dir](std::optional<Status> removed, std::string error) {
            if (removed && !removed->ok()) error = removed->error().message;
            if (!error.empty())
                log::warn("cannot remove runtime directory", {{"path", dir}, {"error", error}});
        });
}

void Revisions::arm_readiness(Revision& rev, const SpawnRequest& spawned) {
    rev.readiness = Revision::Readiness::pending;
    rev.readiness_since.reset();
    rev.loading_since = WallClock::now();
    rev.progress.clear();
    rev.last_probe.clear();
    rev.notify_errno.reset();
    rev.load_error.reset();
    rev.forced_reason = nullptr;
    rev.forced_message.clear();
    rev.deadline.reset();
    std::string id = rev.id;
    const health::ProbeSpec& spec = rev.spec.readiness;
    if (spec.kind == health::ProbeKind::none) {
        rev.timer.start(timer_ms(rev.spec.min_uptime_s), [this, id] {
            if (Revision* r = find(id)) on_min_uptime(*r);
        });
        return;
    }
    rev.deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(spec.timeout_s));
    rev.deadline_timer.start(timer_ms(spec.timeout_s), [this, id] { on_readiness_deadline(id); });
    if (spec.kind == health::ProbeKind::notify) return;

    health::ProbeTarget target;
    target.port = rev.port;
    target.init = config_.init;
    target.exec_base = spawned;
    if (spec.kind == health::ProbeKind::http) {
        if (!fetcher_) {
            try {
                fetcher_ = std::make_unique<Fetcher>(loop_);
            } catch (const std::exception& e) {
                log::warn("http readiness probes cannot run", {{"error", e.what()}});
            }
        }
        target.fetcher = fetcher_.get();
    }
    rev.probe = std::make_unique<health::PeriodicProbe>(
        loop_, spec, std::move(target),
        [this, id](const health::ProbeResult& result, unsigned, std::uint64_t) {
            Revision* r = find(id);
            if (!r || r->state != State::loading) return;
            if (result.ok()) return become_ready(*r);
            r->last_probe = result.message;
        });
    rev.probe->start(0);
}

void Revisions::disarm_readiness(Revision& rev) {
    rev.deadline_timer.stop();
    if (rev.probe) rev.probe->stop();
    rev.probe.reset(); // allowed from inside its own callback (probe.hpp)
}

bool Revisions::notify_sender_ok(const std::string& id, pid_t sender) {
    Revision* rev = find(id);
    if (!rev || rev->pid <= 0) return false;
    Result<bool> in =
        rev->cgroup_relpath.empty()
            ? health::pid_in_session(sender, rev->pid)
            : health::pid_in_cgroup(sender, rev->cgroup_relpath, rev->cgroup_controller);
    bool ok = in && *in;
    if (!ok)
        log::warn("notify message refused: sender is not in the revision",
                  {{"id", id}, {"pid", sender}});
    return ok;
}

void Revisions::on_notify(const std::string& id, const health::NotifyMessage& message) {
    Revision* rev = find(id);
    if (!rev || !rev->process_running) return;
    for (const auto& bad : message.invalid)
        log::warn("invalid notify entry", {{"id", id}, {"entry", bad}});
    if (message.status) rev->progress = *message.status;
    if (message.errno_value) rev->notify_errno = *message.errno_value;
    if (rev->state != State::loading) return;
    if (message.load_error) {
        rev->load_error = health::to_json(*message.load_error);
        // The bootstrap exits right after reporting (and prints the
        // traceback first); an application that reported one and carries
        // on is ended after a short grace.
        rev->deadline = Clock::now() + std::chrono::seconds(2);
        rev->deadline_timer.start(2000, [this, id] { on_readiness_deadline(id); });
        return;
    }
    if (message.extend_timeout_usec && rev->deadline) {
        auto pushed = Clock::now() + std::chrono::microseconds(*message.extend_timeout_usec);
        if (pushed > *rev->deadline) {
            rev->deadline = pushed;
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(pushed - Clock::now());
            rev->deadline_timer.start(
                static_cast<std::uint64_t>(std::max<std::int64_t>(0, left.count())),
                [this, id] { on_readiness_deadline(id); });
        }
    }
    if (message.ready) become_ready(*rev);
}

void Revisions::on_readiness_deadline(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->state != State::loading || !rev->process_running) return;
    if (rev->load_error) {
        std::string text = "load error: " + rev->load_error->value("type", std::string("?")) +
                           ": " + rev->load_error->value("message", std::string());
        return fail_running(*rev, reason::load_error, std::move(text));
    }
    const health::ProbeSpec& spec = rev->spec.readiness;
    double elapsed = std::chrono::duration<double>(WallClock::now() - rev->loading_since).count();
    std::string message = "not ready within the readiness budget of " +
                          seconds_text(spec.timeout_s) + " (" + seconds_text(elapsed) +
                          " since loading began; raise it with readiness.timeout_s";
    if (spec.kind == health::ProbeKind::notify) message += " or send EXTEND_TIMEOUT_USEC";
    message += "); probe " + std::string(health::probe_kind_name(spec.kind));
    message += "; last progress: " +
               (rev->progress.empty() ? std::string("none") : "\"" + rev->progress + "\"");
    if (!rev->last_probe.empty()) message += "; last attempt: " + rev->last_probe;
    auto tail = stderr_tail_of(*rev);
    if (tail.size() > 3) tail.erase(tail.begin(), tail.end() - 3);
    message += "; stderr tail: " + (tail.empty() ? std::string("(empty)") : join(tail, " | "));
    fail_running(*rev, reason::readiness_timeout, std::move(message));
}

void Revisions::fail_running(Revision& rev, const char* why, std::string message) {
    if (!rev.process_running) return fail(rev, why, std::move(message));
    disarm_readiness(rev);
    rev.timer.stop();
    rev.readiness = Revision::Readiness::failed;
    rev.readiness_since = WallClock::now();
    rev.forced_reason = why;
    rev.forced_message = std::move(message);
    log::warn("revision readiness failed; killing it", {{"location", rev.location},
                                                        {"id", rev.id},
                                                        {"reason", why},
                                                        {"message", rev.forced_message}});
    // As for any failure: the whole process tree goes, then after_exit ends
    // the revision with this reason.
    isolation_.kill_all(rev.cgroup, rev.pid, config_.kill_timeout, [](cgroup::KillResult) {});
}

void Revisions::on_process_exit(const std::string& id, int wait_status) {
    Revision* rev = find(id);
    if (!rev) return;
    rev->process_running = false;
    rev->wait_status = wait_status;
    rev->process_since = WallClock::now();
    rev->timer.stop();
    disarm_readiness(*rev);
    // The last words of a crashing process are still in the pipe.
    if (rev->output) rev->output->drain_now();
    log::info("revision process " + describe_wait_status(wait_status),
              {{"location", rev->location}, {"id", rev->id}, {"pid", rev->pid}});
    // A revision is its cgroup (or, without one, its process group and
    // session): what its main process left behind (children that ignore
    // TERM, a crashed server's workers, setsid escapees) goes with it.
    isolation_.kill_all(rev->cgroup, rev->pid, config_.kill_timeout,
                        [this, id](cgroup::KillResult killed) {
                            if (!killed.error.empty())
                                log::warn("cannot kill everything of the revision",
                                          {{"id", id}, {"error", killed.error}});
                            after_exit(id);
                        });
}

void Revisions::after_exit(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->process_running || !rev->wait_status) return;
    isolation_.unwatch(rev->id);
    read_usage_now(*rev);
    if (rev->state == State::stopping) return end_revision(*rev, State::stopped);
    if (is_final(rev->state) || rev->ending) return;
    if (rev->runtime_dir.empty()) return conclude_exit(id);
    // The native bootstrap writes a load error it caught to the runtime
    // directory (hearth_boot.py); read (and remove, so a later start does
    // not see it) on the pool.
    std::string file = rev->runtime_dir + "/load_error.json";
    run_blocking<std::string>(
        loop_,
        [file] {
            auto text = read_file(file);
            ::unlink(file.c_str());
            return text ? *text : std::string();
        },
        [this, id](std::optional<std::string> text, std::string) {
            Revision* r = find(id);
            if (!r) return;
            if (text && !text->empty() && !r->load_error) {
                if (auto parsed = health::parse_load_error(*text))
                    r->load_error = health::to_json(*parsed);
                else
                    log::warn("unreadable load_error.json",
                              {{"id", id}, {"error", parsed.error().message}});
            }
            conclude_exit(id);
        });
}

std::vector<std::string> Revisions::stderr_tail_of(const Revision& rev) const {
    std::vector<std::string> tail;
    for (const auto& line : rev.output_ring.tail(rev.output_ring.size()))
        if (line.stream == Stream::err) tail.push_back(line.text);
    if (tail.size() > stderr_tail_lines) tail.erase(tail.begin(), tail.end() - stderr_tail_lines);
    return tail;
}

void Revisions::conclude_exit(const std::string& id) {
    Revision* rev = find(id);
    if (!rev || rev->process_running || !rev->wait_status) return;
    if (rev->state == State::stopping) return end_revision(*rev, State::stopped);
    if (is_final(rev->state) || rev->ending) return;

    int wait_status = *rev->wait_status;
    // Counters first: the kernel may report the exit before the OOM event
    // reached us (containerd had this race), and 137 alone proves nothing.
    if (!rev->oom && rev->cgroup && !isolation_.is_none()) {
        cgroup::OomCounters c = rev->cgroup->oom_counters();
        if (c.oom_kill.value_or(0) > rev->oom_kills_baseline)
            rev->oom = oom_record(*c.oom_kill - rev->oom_kills_baseline, "kernel",
                                  rev->spec.limits.memory_max, rev->usage.memory_peak);
    }
    rev->stderr_tail = stderr_tail_of(*rev);

    if (rev->forced_reason) {
        // Readiness failed while it ran: no restart, whatever the policy.
        std::string message = rev->forced_message;
        if (rev->load_error) message += "; process " + describe_wait_status(wait_status);
        return fail(*rev, rev->forced_reason, std::move(message));
    }
    const char* why = rev->oom          ? reason::oom_killed
                      : rev->load_error ? reason::load_error
                                        : reason::exited;
    std::string message = "process " + describe_wait_status(wait_status);
    if (!rev->oom && rev->load_error)
        message = "load error: " + rev->load_error->value("type", std::string("?")) + ": " +
                  rev->load_error->value("message", std::string()) + "; " + message;
    if (rev->oom) {
        const json& oom = *rev->oom;
        message = "killed for memory (limit " +
                  (oom.contains("limit") ? format_bytes(oom["limit"].get<std::uint64_t>()) : "?") +
                  (oom.contains("peak") ? ", peak " + format_bytes(oom["peak"].get<std::uint64_t>())
                                        : std::string()) +
                  ", by the " + oom["source"].get<std::string>() + "); " + message;
    }
    bool clean = !rev->oom && WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0;
    double ran_s = std::chrono::duration<double>(Clock::now() - rev->process_started).count();
    RestartDecision d = decide_restart(*rev, clean, ran_s, Clock::now());
    if (!d.restart || processes_.shutting_down()) {
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
            Revision* r = find(id);
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
    rev->timer.start(timer_ms(d.delay_s), [this, id] { restart_after_backoff(id); });
}

void Revisions::restart_after_backoff(const std::string& id) {
    Revision* r = find(id);
    if (!r || r->state != State::backoff) return;
    ++r->restarts;
    r->oom.reset();
    r->next_attempt_at.reset();
    set_state(*r, State::starting);
    start_process(id);
}

void Revisions::on_oom_kill(const std::string& id, const cgroup::OomChange& change) {
    Revision* rev = find(id);
    if (!rev || !rev->process_running || rev->state == State::stopping || rev->oom) return;
    read_usage_now(*rev);
    rev->oom = oom_record(change.after.oom_kill.value_or(0) - rev->oom_kills_baseline, "kernel",
                          rev->spec.limits.memory_max, rev->usage.memory_peak);
    // Like memory.oom.group: a revision that lost a process to the OOM killer
    // is not trusted to carry on half-dead; the whole of it goes.
    log::warn("OOM kill in revision; killing the revision",
              {{"location", rev->location}, {"id", rev->id}, {"oom", rev->oom->dump()}});
    isolation_.kill_all(rev->cgroup, rev->pid, config_.kill_timeout, [](cgroup::KillResult) {});
}

void Revisions::on_watchdog_kill(const std::string& id, std::uint64_t rss, std::uint64_t limit) {
    Revision* rev = find(id);
    if (!rev || !rev->process_running || rev->state == State::stopping || rev->oom) return;
    rev->oom = oom_record(1, "watchdog", limit, rss);
    log::warn("revision above its memory limit; the watchdog kills it",
              {{"location", rev->location}, {"id", rev->id}, {"rss", rss}, {"limit", limit}});
    isolation_.kill_all(rev->cgroup, rev->pid, config_.kill_timeout, [](cgroup::KillResult) {});
}

void Revisions::move_to_cpus() {
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

void Revisions::on_fetch_progress(const std::string& hex, std::uint64_t fetched,
                                  std::optional<std::uint64_t> total) {
    for (auto& [name, loc] : locations_)
        for (auto& rev : loc.revisions) {
            if (rev->state != State::fetching) continue;
            for (bool is_deps : {true, false}) {
                const ArtifactSpec& spec = is_deps ? rev->spec.deps : rev->spec.source;
                if (spec.sha256 != hex || spec.url.empty()) continue;
                ArtifactStatus& st = is_deps ? rev->deps : rev->source;
                st.fetched_bytes = fetched;
                st.total_bytes = total;
                events_.publish_progress(*rev, is_deps, fetched, total);
            }
        }
}

} // namespace hearth

#include "isolation/isolation.hpp"

#include "init/procscan.hpp"
#include "init/spawn.hpp"
#include "util/log.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <signal.h>

namespace hearth {

namespace {
constexpr uint64_t watchdog_interval_ms = 100;
} // namespace

Isolation::Isolation(uv_loop_t* loop, const Options& options)
    : loop_(loop), options_(options), watchdog_timer_(loop), cpu_spread_(usable_cpus()) {}

Isolation::~Isolation() {
    close();
}

void Isolation::close() {
    if (oom_poll_) {
        uv_poll_stop(oom_poll_);
        uv_close(reinterpret_cast<uv_handle_t*>(oom_poll_),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
        oom_poll_ = nullptr;
    }
    watchdog_timer_.stop();
}

bool Isolation::is_none() const {
    return !driver_ || driver_->mode() == cgroup::Mode::none;
}

void Isolation::start() {
    cgroup::Config config;
    config.force_none = options_.cgroup_none;
    config.parent = options_.cgroup_parent;
    driver_ = cgroup::open(config);
    driver_name_ = std::string(cgroup::mode_name(driver_->mode()));
    cgroup::Enforcement enforcement = driver_->enforcement();
    auto join = [](const std::vector<std::string>& items) {
        std::string out;
        for (const auto& i : items)
            out += (out.empty() ? "" : "; ") + i;
        return out;
    };
    std::string envs = join(driver_->envs_directories());
    std::string name(enforcement.name());
    if (enforcement.enforced && enforcement.degraded.empty()) {
        log::info("cgroup driver ready",
                  {{"driver", driver_name_}, {"enforcement", name}, {"envs", envs}});
    } else {
        // Said loudly: the usual unprivileged container ends up here, and an
        // operator must not believe limits hold that do not.
        log::warn(enforcement.enforced
                      ? "cgroup driver ready; some limits are not enforced"
                      : "cgroup limits are NOT enforced by the kernel; using hearth's watchdog",
                  {{"driver", driver_name_},
                   {"enforcement", name},
                   {"envs", envs},
                   {"degraded", join(enforcement.degraded)}});
    }
    std::vector<std::string> failures;
    auto stale = driver_->cleanup_stale(&failures);
    if (!stale.empty())
        log::warn("removed revision cgroups left by an earlier run",
                  {{"count", stale.size()}, {"names", join(stale)}});
    for (const auto& f : failures)
        log::error("cannot remove a stale revision cgroup", {{"error", f}});

    oom_watch_ = driver_->make_oom_watch();
    if (oom_watch_->fd() >= 0) {
        oom_poll_ = new uv_poll_t{};
        uv_poll_init(loop_, oom_poll_, oom_watch_->fd());
        oom_poll_->data = this;
        uv_poll_start(oom_poll_, UV_READABLE, on_oom_readable);
    }
}

void Isolation::remove_own_directories() {
    if (!driver_) return;
    for (const auto& stayed : driver_->remove_own_directories())
        log::warn("cgroup directory left in place at exit", {{"directory", stayed}});
}

nlohmann::json Isolation::describe() const {
    nlohmann::json j = driver_ ? driver_->describe()
                               : nlohmann::json{{"driver", "none"}, {"enforcement", "degraded"}};
    nlohmann::json exclusive = nlohmann::json::object();
    for (const auto& [cpu, location] : cpu_spread_.exclusive_owners())
        exclusive[std::to_string(cpu)] = location;
    j["cpus"] = {{"placement", options_.cpu_spread ? "spread" : "shared"},
                 {"usable", format_cpu_list(cpu_spread_.usable())},
                 {"shared", format_cpu_list(cpu_spread_.shared())},
                 {"exclusive", std::move(exclusive)}};
    return j;
}

void Isolation::create(const std::string& name, const std::string& location,
                       const cgroup::Limits& requested, Created done) {
    const cgroup::Driver* driver = driver_.get();
    cgroup::Limits limits = requested;
    std::string refused;
    if (options_.cpu_spread) {
        std::vector<int> shared_before = cpu_spread_.shared();
        if (limits.cpu_quota && limits.cpu_exclusive)
            cpu_spread_.assign_exclusive(name, location, *limits.cpu_quota, refused);
        else if (limits.cpu_quota)
            cpu_spread_.assign(name, *limits.cpu_quota);
        // Unconfined revisions get the shared pool too while CPUs are
        // reserved (their v2 cpuset; elsewhere the child's affinity).
        if (refused.empty()) limits.cpuset_cpus = format_cpu_list(cpus_of(name));
        if (cpu_spread_.shared() != shared_before) {
            log::info("CPUs reserved", {{"id", name},
                                        {"location", location},
                                        {"cpus", limits.cpuset_cpus},
                                        {"shared", format_cpu_list(cpu_spread_.shared())}});
            if (on_cpus_changed) on_cpus_changed();
        }
    }
    using Made = std::pair<std::shared_ptr<cgroup::Cgroup>, std::string>;
    run_blocking<Made>(
        loop_,
        [driver, name, limits, refused] {
            std::string error = refused;
            std::shared_ptr<cgroup::Cgroup> cg;
            if (error.empty()) cg = driver->create(name, limits, error);
            return Made(std::move(cg), std::move(error));
        },
        [this, driver, name, cpus = limits.cpuset_cpus,
         done = std::move(done)](std::optional<Made> made, std::string error) {
            if (!made) return done(nullptr, error);
            if (!made->first)
                return done(nullptr,
                            made->second.empty() ? "cgroup creation failed" : made->second);
            // Exclusive CPUs came or went while the cgroup was being made:
            // its cpuset has the old pool (affinity is read at spawn).
            std::string now = format_cpu_list(cpus_of(name));
            if (now != cpus && driver->cpusets()) made->first->set_cpus(now);
            // The kernel refused the set (CPUs outside the parent's cpuset):
            // the child's affinity will fail the same way, so say so.
            if (!now.empty() && driver->cpusets() && !made->first->confines_cpus())
                log::warn("cpuset.cpus refused; the revision may run on every CPU of its parent",
                          {{"id", name}, {"cpus", now}});
            done(std::move(made->first), {});
        });
}

std::vector<int> Isolation::cpus_of(const std::string& name) const {
    std::vector<int> own = cpu_spread_.cpus_of(name);
    if (!own.empty()) return own;
    std::vector<int> pool = cpu_spread_.shared();
    return pool.size() == cpu_spread_.usable().size() ? std::vector<int>{} : pool;
}

bool Isolation::cpus_exclusive(const std::string& name) const {
    return cpu_spread_.is_exclusive(name);
}

void Isolation::release_cpus(const std::string& name) {
    if (!cpu_spread_.release(name)) return;
    log::info("exclusive CPUs released",
              {{"id", name}, {"shared", format_cpu_list(cpu_spread_.shared())}});
    if (on_cpus_changed) on_cpus_changed();
}

namespace {

// Sets the affinity of every thread of the processes `list_pids` returns,
// until a pass meets no thread it has not already set (a thread created
// during a pass inherits its creator's old mask, so the next pass catches
// it). Returns the first error other than ESRCH (the thread ended).
int set_affinity_everywhere(const std::function<std::vector<pid_t>()>& list_pids,
                            const cpu_set_t& set) {
    constexpr int max_passes = 8;
    std::set<pid_t> done;
    int first_error = 0;
    for (int pass = 0; pass < max_passes; ++pass) {
        bool fresh = false;
        for (pid_t pid : list_pids()) {
            // error_code forms throughout: a process may exit mid-listing,
            // and nothing may throw into the loop's callbacks.
            std::error_code ec;
            std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec);
            for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
                pid_t tid = static_cast<pid_t>(std::atoi(it->path().filename().c_str()));
                if (tid <= 0 || !done.insert(tid).second) continue;
                fresh = true;
                if (::sched_setaffinity(tid, sizeof set, &set) != 0 && errno != ESRCH &&
                    !first_error)
                    first_error = errno;
            }
        }
        if (!fresh) return first_error;
    }
    // Still new threads after every pass: a workload that keeps starting
    // threads. Those started after the last pass have the old mask.
    return first_error ? first_error : EAGAIN;
}

} // namespace

void Isolation::move_cpus(const std::string& name, cgroup::Cgroup* cg, pid_t session) {
    std::vector<int> cpus = cpus_of(name);
    // The v2 cpuset alone is not enough: the child set its own affinity at
    // spawn, and since Linux 6.2 the kernel keeps that request and
    // intersects every later cpuset.cpus with it, so a widened set would
    // still leave the threads on the old CPUs. Rewrite the affinity too.
    if (cg && !is_none()) cg->set_cpus(format_cpu_list(cpus));
    cpu_set_t set = to_cpu_set(cpus.empty() ? cpu_spread_.usable() : cpus);
    int err = set_affinity_everywhere(
        [&] {
            std::vector<pid_t> pids;
            if (cg && !is_none()) return cg->pids();
            if (session > 0)
                for (const auto& p : session_tree(scan_processes(), session))
                    pids.push_back(p.pid);
            return pids;
        },
        set);
    if (err == EAGAIN)
        log::warn("a revision kept starting threads while they were moved to its CPUs; "
                  "the newest may still run on the old ones",
                  {{"id", name}, {"cpus", format_cpu_list(cpus)}});
    else if (err)
        log::warn("could not move a revision's threads to its CPUs",
                  {{"id", name}, {"cpus", format_cpu_list(cpus)}, {"error", std::strerror(err)}});
}

void Isolation::move_self() {
    std::vector<int> pool = cpu_spread_.shared();
    cpu_set_t set = to_cpu_set(pool.empty() ? cpu_spread_.usable() : pool);
    if (int err = set_affinity_everywhere([] { return std::vector<pid_t>{::getpid()}; }, set))
        log::warn("could not move hearth's threads to the shared CPUs",
                  {{"cpus", format_cpu_list(pool)}, {"error", std::strerror(err)}});
}

void Isolation::watch(const std::string& name, const cgroup::Cgroup* cg, pid_t session,
                      std::optional<std::uint64_t> watchdog_limit) {
    if (cg && oom_watch_ && oom_watch_->fd() >= 0) {
        if (auto err = oom_watch_->add(*cg); !err.empty())
            log::warn("no OOM notification for this revision", {{"id", name}, {"error", err}});
    }
    Watched& w = watched_[name];
    w.session = session;
    w.limit = watchdog_limit;
    w.peak = 0;
    // Without cgroups the watchdog also measures usage for status.
    if ((watchdog_limit || is_none()) && !watchdog_timer_.active())
        watchdog_timer_.start(
            watchdog_interval_ms, [this] { watchdog_tick(); }, watchdog_interval_ms);
}

void Isolation::unwatch(const std::string& name) {
    if (oom_watch_) oom_watch_->remove(name);
    watched_.erase(name);
    if (watched_.empty()) watchdog_timer_.stop();
}

cgroup::Usage Isolation::watchdog_usage(const std::string& name) const {
    auto it = watched_.find(name);
    if (it == watched_.end()) return {};
    cgroup::Usage u = it->second.last;
    if (it->second.peak) u.memory_peak = it->second.peak;
    return u;
}

void Isolation::signal_all(const cgroup::Cgroup* cg, pid_t session, int sig) {
    // Each process exactly once: a program may read a second SIGINT as
    // "stop now" and cut its graceful shutdown short.
    std::vector<pid_t> targets;
    if (cg && !is_none()) {
        targets = cg->pids();
    } else if (session > 0) {
        for (const auto& p : session_tree(scan_processes(), session))
            targets.push_back(p.pid);
    }
    if (targets.empty()) {
        if (session > 0) ::kill(-session, sig);
        return;
    }
    for (pid_t pid : targets)
        ::kill(pid, sig);
}

void Isolation::kill_all(std::shared_ptr<cgroup::Cgroup> cg, pid_t session,
                         std::chrono::milliseconds timeout,
                         std::function<void(cgroup::KillResult)> done) {
    if (!cg || is_none()) {
        // Without a cgroup the session and group are the only handles. (With
        // one, the group kill is left out: after the leader was reaped its
        // pid, and so the group id, may belong to someone else.)
        if (session > 0) ::kill(-session, SIGKILL);
        // KILL twice does no harm: the group first (nothing in it can fork
        // after that), then what left the group within the session tree.
        signal_all(nullptr, session, SIGKILL);
        cgroup::KillResult r;
        r.supported = false;
        r.method = "signal";
        done(r);
        return;
    }
    run_blocking<cgroup::KillResult>(
        loop_, [cg, timeout] { return cg->kill_all(timeout); },
        [done = std::move(done)](std::optional<cgroup::KillResult> r, std::string error) {
            if (!r) {
                cgroup::KillResult failed;
                failed.error = error;
                return done(failed);
            }
            done(*r);
        });
}

void Isolation::remove(std::shared_ptr<cgroup::Cgroup> cg,
                       std::function<void(cgroup::Removal)> done) {
    if (!cg) return done({});
    run_blocking<cgroup::Removal>(
        loop_,
        [cg] {
            // Anything still inside (a straggler forked during the last kill)
            // would keep rmdir failing with EBUSY.
            cg->kill_all(std::chrono::milliseconds(1000));
            return cg->remove();
        },
        [done = std::move(done), name = cg->name()](std::optional<cgroup::Removal> r,
                                                    std::string error) {
            if (!r) {
                cgroup::Removal failed;
                failed.error = error;
                r = failed;
            }
            if (!r->removed)
                log::warn("cannot remove a revision cgroup", {{"id", name}, {"error", r->error}});
            done(*r);
        });
}

void Isolation::on_oom_readable(uv_poll_t* handle, int status, int) {
    auto* self = static_cast<Isolation*>(handle->data);
    if (status < 0) {
        // An error on the fd would be reported again on every loop turn.
        uv_poll_stop(handle);
        log::error("OOM watch stopped; OOM kills are still found from the counters at exit",
                   {{"error", uv_strerror(status)}});
        return;
    }
    guard_callback("OOM watch", [self] { self->check_oom(); });
}

void Isolation::check_oom() {
    for (const auto& change : oom_watch_->check()) {
        if (!change.killed()) continue;
        if (on_oom) on_oom(change.name, change);
    }
}

void Isolation::watchdog_tick() {
    bool any_limit = false;
    for (const auto& [name, w] : watched_)
        any_limit |= w.session > 0;
    if (!any_limit) return;
    try {
        std::vector<ProcInfo> all = scan_processes();
        std::vector<std::pair<std::string, std::uint64_t>> over;
        for (auto& [name, w] : watched_) {
            if (w.session <= 0) continue;
            std::uint64_t rss = 0;
            std::uint64_t count = 0;
            for (const auto& p : session_tree(all, w.session)) {
                rss += p.rss_bytes;
                ++count;
            }
            w.last.memory_current = rss;
            w.last.pids_current = count;
            w.peak = std::max(w.peak, rss);
            if (w.limit && rss > *w.limit) over.emplace_back(name, rss);
        }
        for (const auto& [name, rss] : over) {
            auto it = watched_.find(name);
            if (it == watched_.end() || !it->second.limit) continue;
            std::uint64_t limit = *it->second.limit;
            it->second.limit.reset(); // report once
            if (on_watchdog) on_watchdog(name, rss, limit);
        }
    } catch (const std::exception& e) {
        log::error("memory watchdog failed", {{"error", e.what()}});
    }
}

} // namespace hearth

namespace hearth {

LimitsReport report_limits(const cgroup::Limits& l, const cgroup::Cgroup& cg, bool driver_none) {
    using cgroup::LimitKind;
    LimitsReport r;
    if (driver_none) {
        // What stands in for each limit without cgroups, in the words status
        // shows (hearth-protocol(7), cgroup.degraded).
        if (l.memory_max) r.degraded.push_back("memory: hearth's RSS watchdog (no cgroup)");
        if (l.memory_high) r.degraded.push_back("memory_high: not enforced (no cgroup)");
        if (l.cpu_quota || l.cpu_weight)
            r.degraded.push_back("cpus: lower priority (nice 10), no quota");
        if (l.cpu_idle) r.degraded.push_back("cpu_weight idle: SCHED_IDLE policy (no cgroup)");
        if (l.pids_max) r.degraded.push_back("pids: not enforced (no cgroup)");
        bool any_limit = l.memory_max || l.memory_high || l.cpu_quota || l.cpu_weight ||
                         l.cpu_idle || l.pids_max;
        if (!any_limit) r.degraded.push_back("no cgroup: stop reaches the session tree only");
        if (l.cpu_quota || l.cpu_weight) r.nice = 10;
    } else {
        r.degraded = cg.unenforced();
    }
    if (l.cpu_slice_us && !kernel_has_custom_slices())
        r.degraded.push_back("cpu_slice_us: ignored by this kernel (custom slices: Linux 6.12+)");
    r.enforced = r.degraded.empty();
    // No kernel memory limit (no cgroups, or no memory hierarchy): hearth's
    // watchdog holds the revision to it instead.
    bool kernel_memory = !driver_none && !cg.unenforced(LimitKind::memory_max);
    r.memory_by_watchdog = l.memory_max.has_value() && !kernel_memory;
    // No cpu.idle (driver none, no cpu hierarchy, kernel before 5.15): the
    // processes take the SCHED_IDLE policy themselves.
    r.sched_idle = l.cpu_idle && cg.unenforced(LimitKind::cpu_idle);
    return r;
}

} // namespace hearth

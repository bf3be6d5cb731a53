// cgroup v1 driver, and `hybrid`: the same v1 controllers for limits plus the
// unified (cgroup2) hierarchy, where mounted, for membership, cgroup.kill and
// cgroup.events. The two differ only in that extra directory, so one driver
// serves both (mode() says which).

#include "isolation/cgroup.hpp"
#include "isolation/cgroup_internal.hpp"
#include "util/fs.hpp"

#include <cerrno>
#include <fcntl.h>
#include <set>
#include <sys/eventfd.h>
#include <unistd.h>

namespace hearth::cgroup {

namespace {

using detail::cgroup_path;

// One mounted hierarchy and the roles hearth gives it (cpu and cpuacct are
// often co-mounted: one directory, two roles).
struct Hierarchy {
    std::set<std::string> roles; // memory, cpu, cpuacct, pids, freezer
    std::string envs;            // <parent>/envs
};

std::string parent_dir(const std::string& mount, const std::string& self, const Config& config) {
    if (config.parent_under_self) return cgroup_path(self, config.parent);
    if (!config.parent.empty()) return cgroup_path(mount, config.parent);
    return self;
}

class V1Cgroup final : public Cgroup {
public:
    // `dirs`: role -> directory; `unified`: cgroup2 directory or "".
    V1Cgroup(std::string name, bool plain, std::map<std::string, std::string> role_dirs,
             std::string unified)
        : Cgroup(std::move(name), plain), roles_(std::move(role_dirs)),
          unified_(std::move(unified)) {
        std::set<std::string> seen;
        for (const auto& [role, dir] : roles_)
            if (seen.insert(dir).second) dirs_.push_back(dir);
        for (const auto& dir : dirs_)
            self_tasks_.push_back(cgroup_path(dir, "tasks"));
        if (!unified_.empty()) {
            dirs_.push_back(unified_);
            unified_procs_ = cgroup_path(unified_, "cgroup.procs");
        }
        for (const auto& dir : dirs_)
            procs_.push_back(cgroup_path(dir, "cgroup.procs"));
    }

    // hybrid: clone3 can create the child in the cgroup2 directory (the v1
    // ones it joins itself, see place_self). Best effort: -1 falls back.
    void open_unified_fd() {
        if (unified_.empty() || plain_) return;
        unified_fd_.reset(::open(unified_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    }
    int placement_fd() const override { return unified_fd_.get(); }

    using Cgroup::add_unenforced;
    std::string dir(const std::string& role) const {
        auto it = roles_.find(role);
        return it == roles_.end() ? std::string() : it->second;
    }

    Usage usage() const override {
        Usage u;
        if (auto m = dir("memory"); !m.empty()) {
            u.memory_current = detail::read_u64(cgroup_path(m, "memory.usage_in_bytes"));
            u.memory_peak = detail::read_u64(cgroup_path(m, "memory.max_usage_in_bytes"));
        }
        if (auto a = dir("cpuacct"); !a.empty()) {
            if (auto ns = detail::read_u64(cgroup_path(a, "cpuacct.usage")))
                u.cpu_usage_usec = *ns / 1000;
        }
        // cgroup2 keeps CPU time in every cgroup, controller or not.
        if (!u.cpu_usage_usec && !unified_.empty())
            u.cpu_usage_usec = detail::read_keyed(cgroup_path(unified_, "cpu.stat"), "usage_usec");
        if (auto p = dir("pids"); !p.empty())
            u.pids_current = detail::read_u64(cgroup_path(p, "pids.current"));
        return u;
    }

    OomCounters oom_counters() const override {
        auto m = dir("memory");
        return m.empty() ? OomCounters{} : detail::read_oom_v1(m);
    }

    OomSource oom_source() const override {
        auto m = dir("memory");
        if (m.empty()) return {};
        return {OomSource::Kind::v1_memory, m};
    }

    std::optional<bool> populated() const override {
        if (!unified_.empty()) {
            if (auto p = detail::read_keyed(cgroup_path(unified_, "cgroup.events"), "populated"))
                return *p != 0;
        }
        for (const auto& procs : procs_)
            if (!detail::read_pids(procs).empty()) return true;
        if (procs_.empty()) return std::nullopt;
        return false;
    }

    std::vector<pid_t> pids() const override {
        std::set<pid_t> all;
        for (const auto& procs : procs_)
            for (pid_t p : detail::read_pids(procs))
                all.insert(p);
        return {all.begin(), all.end()};
    }

    KillResult kill_all(std::chrono::milliseconds timeout) override {
        return detail::kill_all(unified_, dir("freezer"), dirs_, plain_, timeout);
    }

    Removal remove() override {
        Removal r;
        r.oom = oom_counters();
        r.usage = usage();
        r.removed = true;
        for (const auto& d : dirs_) {
            if (int err = detail::remove_dir(d, plain_, true)) {
                r.removed = false;
                if (r.error.empty()) r.error = "rmdir " + d + ": " + errno_text(err);
            }
        }
        if (r.removed) procs_.clear();
        return r;
    }

private:
    std::map<std::string, std::string> roles_;
    std::string unified_;
    Fd unified_fd_;
};

class V1Driver final : public Driver {
public:
    V1Driver(const Layout& layout, const Config& config) : plain_(!config.mount_prefix.empty()) {
        created_plain_ = plain_;
        bool hybrid = layout.mode == Mode::hybrid && !layout.unified_mount.empty();
        std::map<std::string, Hierarchy> by_mount;
        for (const auto& [controller, h] : layout.v1) {
            // cgroup2 has cgroup.kill and cgroup.freeze: no v1 freezer needed.
            if (hybrid && controller == "freezer") continue;
            Hierarchy& entry = by_mount[h.mount];
            entry.roles.insert(controller);
            entry.envs = cgroup_path(parent_dir(h.mount, h.self, config), "envs");
        }
        for (auto& [mount, h] : by_mount)
            candidates_.push_back(std::move(h));
        if (hybrid)
            unified_envs_ =
                cgroup_path(parent_dir(layout.unified_mount, layout.unified_self, config), "envs");
    }

    std::string setup() {
        std::string first_error;
        for (auto& h : candidates_) {
            std::vector<std::string> created; // parents first
            if (Status made = make_dirs(h.envs, &created); !made) {
                std::string what = made.error().message;
                for (const auto& role : h.roles)
                    problems_[role] = what;
                if (first_error.empty()) first_error = what;
                for (auto d = created.rbegin(); d != created.rend(); ++d)
                    detail::remove_dir(*d, plain_, false);
                continue;
            }
            created_.insert(created_.end(), created.begin(), created.end());
            hierarchies_.push_back(std::move(h));
        }
        candidates_.clear();
        if (!unified_envs_.empty()) {
            if (Status made = make_dirs(unified_envs_, &created_); !made) {
                std::string what = made.error().message;
                unified_problem_ = what;
                if (first_error.empty()) first_error = what;
                unified_envs_.clear();
            }
        }
        if (hierarchies_.empty() && unified_envs_.empty())
            return first_error.empty() ? "no usable hierarchy" : first_error;
        return "";
    }

    Mode mode() const override { return unified_envs_.empty() ? Mode::v1 : Mode::hybrid; }

    bool has(const std::string& role) const {
        for (const auto& h : hierarchies_)
            if (h.roles.count(role)) return true;
        return false;
    }

    Enforcement enforcement() const override {
        Enforcement e;
        for (std::string c : {"memory", "cpu", "pids"}) {
            if (has(c)) continue;
            auto it = problems_.find(c);
            std::string why =
                it != problems_.end() ? it->second : "no cgroup v1 " + c + " hierarchy mounted";
            e.degraded.push_back(c + ": " + why + "; " + c + " limits not enforced");
        }
        if (!unified_problem_.empty())
            e.degraded.push_back("cgroup2 membership: " + unified_problem_);
        if (unified_envs_.empty() && !has("freezer"))
            e.degraded.push_back(
                "kill: no cgroup2 and no freezer hierarchy; processes are killed one by "
                "one, racing with fork");
        e.enforced = e.degraded.empty();
        return e;
    }

    std::vector<std::string> envs_directories() const override {
        std::vector<std::string> out;
        for (const auto& h : hierarchies_)
            out.push_back(h.envs);
        if (!unified_envs_.empty()) out.push_back(unified_envs_);
        return out;
    }

    std::unique_ptr<V1Cgroup> handle(const std::string& name) const {
        std::map<std::string, std::string> roles;
        for (const auto& h : hierarchies_)
            for (const auto& role : h.roles)
                roles[role] = cgroup_path(h.envs, name);
        return std::make_unique<V1Cgroup>(name, plain_, std::move(roles),
                                          unified_envs_.empty() ? std::string()
                                                                : cgroup_path(unified_envs_, name));
    }

    std::unique_ptr<Cgroup> create(const std::string& name, const Limits& limits,
                                   std::string& error) const override {
        error = detail::check_create(name, limits);
        if (!error.empty()) return nullptr;
        auto cg = handle(name);
        std::vector<std::string> made;
        auto undo = [&] {
            for (const auto& d : made)
                detail::remove_dir(d, plain_, true);
        };
        for (const auto& d : cg->directories()) {
            if (int err = detail::make_fresh_dir(d, plain_)) {
                error = "create " + d + ": " + errno_text(err);
                undo();
                return nullptr;
            }
            made.push_back(d);
        }

        auto write = [&](const std::string& role, const char* file, const std::string& value) {
            std::string path = cgroup_path(cg->dir(role), file);
            int err = detail::write_file(path, value, plain_);
            if (err) error = "write " + value + " to " + path + ": " + errno_text(err);
            return err == 0;
        };
        auto missing = [&](LimitKind kind, const char* limit, const std::string& role) {
            cg->add_unenforced(kind, std::string(limit) + ": no " + role + " hierarchy");
        };
        bool ok = true;
        if (limits.memory_max) {
            if (has("memory"))
                ok = ok &&
                     write("memory", "memory.limit_in_bytes", std::to_string(*limits.memory_max));
            else
                missing(LimitKind::memory_max, "memory_max", "memory");
        }
        if (limits.memory_high)
            cg->add_unenforced(
                LimitKind::memory_high,
                "memory_high: no cgroup v1 equivalent (soft_limit_in_bytes only acts under global "
                "pressure)");
        if (limits.cpu_quota) {
            // Period first: the quota is checked against the current period.
            if (has("cpu"))
                ok = ok && write("cpu", "cpu.cfs_period_us", std::to_string(cpu_period_us)) &&
                     write("cpu", "cpu.cfs_quota_us",
                           std::to_string(cpu_quota_us(*limits.cpu_quota)));
            else
                missing(LimitKind::cpu_quota, "cpu_quota", "cpu");
        }
        if (limits.cpu_weight) {
            if (has("cpu"))
                ok = ok && write("cpu", "cpu.shares",
                                 std::to_string(weight_to_shares(*limits.cpu_weight)));
            else
                missing(LimitKind::cpu_weight, "cpu_weight", "cpu");
        }
        if (limits.cpu_idle) {
            // Absent before 5.15: the child then takes SCHED_IDLE, which
            // ranks it only within its own group, so the group also gets
            // the smallest share against the other revisions.
            if (!has("cpu")) {
                missing(LimitKind::cpu_idle, "cpu_idle", "cpu");
            } else if (!plain_ && !detail::exists(cgroup_path(cg->dir("cpu"), "cpu.idle"))) {
                cg->add_unenforced(LimitKind::cpu_idle,
                                   "cpu_idle: no cpu.idle in this kernel (5.15+); SCHED_IDLE "
                                   "policy and cpu.shares 2 instead");
                ok = ok && write("cpu", "cpu.shares", "2");
            } else {
                ok = ok && write("cpu", "cpu.idle", "1");
            }
        }
        if (limits.pids_max) {
            if (has("pids"))
                ok = ok && write("pids", "pids.max", std::to_string(*limits.pids_max));
            else
                missing(LimitKind::pids_max, "pids_max", "pids");
        }
        if (!ok) {
            undo();
            return nullptr;
        }
        cg->open_unified_fd();
        return cg;
    }

    std::vector<std::string> cleanup_stale(std::vector<std::string>* failures) const override {
        std::set<std::string> names;
        for (const auto& envs : envs_directories())
            for (auto& n : detail::list_dirs(envs))
                names.insert(std::move(n));
        for (const auto& name : names) {
            auto cg = handle(name);
            KillResult k = cg->kill_all(std::chrono::seconds(2));
            Removal r = cg->remove();
            if (!r.removed && failures)
                failures->push_back(name + ": " + (r.error.empty() ? k.error : r.error));
        }
        return {names.begin(), names.end()};
    }

    std::unique_ptr<OomWatch> make_oom_watch() const override;

private:
    bool plain_;
    std::vector<Hierarchy> candidates_;
    std::vector<Hierarchy> hierarchies_;
    std::string unified_envs_;
    std::map<std::string, std::string> problems_;
    std::string unified_problem_;
};

// One eventfd for every revision: cgroup.event_control accepts the same
// eventfd for many cgroups, so the loop polls a single fd and check()
// re-reads each revision's counters to see whose changed.
class EventfdOomWatch final : public OomWatch {
public:
    explicit EventfdOomWatch(bool plain) : plain_(plain) {
        fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    }

protected:
    std::string arm(Entry& entry) override {
        std::string control = cgroup_path(entry.source.path, "memory.oom_control");
        Fd oom(::open(control.c_str(), O_RDONLY | O_CLOEXEC));
        if (!oom) return "open " + control + ": " + errno_text(errno);
        std::string line = std::to_string(fd_.get()) + " " + std::to_string(oom.get());
        std::string path = cgroup_path(entry.source.path, "cgroup.event_control");
        // The kernel keeps its own reference; `oom` may close afterwards.
        if (int err = detail::write_file(path, line, plain_))
            return "write " + path + ": " + errno_text(err);
        return "";
    }
    // The registration ends with the cgroup (or with the eventfd).
    void disarm(Entry&) override {}
    void drain() override {
        std::uint64_t count = 0;
        while (::read(fd_.get(), &count, sizeof count) > 0) {
        }
    }
    OomCounters read(const OomSource& source) const override {
        return detail::read_oom_v1(source.path);
    }

private:
    bool plain_;
};

std::unique_ptr<OomWatch> V1Driver::make_oom_watch() const {
    return std::make_unique<EventfdOomWatch>(plain_);
}

} // namespace

namespace detail {

std::unique_ptr<Driver> make_v1(const Layout& layout, const Config& config, std::string& error) {
    auto driver = std::make_unique<V1Driver>(layout, config);
    error = driver->setup();
    if (!error.empty()) return nullptr;
    return driver;
}

} // namespace detail

} // namespace hearth::cgroup

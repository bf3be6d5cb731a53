// Pure cgroup v2 (unified hierarchy) driver.

#include "isolation/cgroup.hpp"
#include "isolation/cgroup_internal.hpp"
#include "util/fs.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <set>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace hearth::cgroup {

namespace {

using detail::cgroup_path;

// Limits depend on these: a missing one degrades enforcement.
const std::vector<std::string> wanted_controllers = {"cpu", "memory", "pids"};
// Enabled too when available; without cpuset, CPU confinement falls back to
// the child's own affinity (cpu_spread.hpp), which is not a degradation.
const std::vector<std::string> enabled_controllers = {"cpu", "cpuset", "memory", "pids"};

std::set<std::string> tokens(const Result<std::string>& text) {
    std::set<std::string> out;
    if (!text) return out;
    std::string word;
    for (char c : *text + " ") {
        if (c == ' ' || c == '\n' || c == '\t') {
            // A fake tree's subtree_control holds the last "+x" written.
            if (!word.empty()) out.insert(word[0] == '+' ? word.substr(1) : word);
            word.clear();
        } else {
            word += c;
        }
    }
    return out;
}

// A controller that could not be enabled in a directory's subtree_control.
struct ControllerEnableError {
    std::string controller;
    std::string dir;
    int error;
};

class V2Cgroup final : public Cgroup {
public:
    V2Cgroup(std::string name, std::string dir, bool plain, bool has_memory)
        : Cgroup(std::move(name), plain), dir_(std::move(dir)), has_memory_(has_memory) {
        dirs_.push_back(dir_);
        procs_.push_back(cgroup_path(dir_, "cgroup.procs"));
        unified_procs_ = procs_.back();
    }

    std::string open_fd() {
        int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return "open " + dir_ + ": " + errno_text(errno);
        fd_.reset(fd);
        return "";
    }
    using Cgroup::add_unenforced;
    void set_confines_cpus() { confines_cpus_ = true; }
    void set_has_cpuset() { has_cpuset_ = true; }

    int placement_fd() const override { return fd_.get(); }

    bool set_cpus(const std::string& cpus) override {
        if (!has_cpuset_) return false;
        // A newline, not an empty write: cgroupfs handlers never see a
        // write of 0 bytes.
        int err = detail::write_file(cgroup_path(dir_, "cpuset.cpus"), cpus.empty() ? "\n" : cpus,
                                     plain_);
        // A refused write leaves the kernel's set as it was, and so the
        // record of whether it confines.
        if (err != 0) return false;
        confines_cpus_ = !cpus.empty();
        return confines_cpus_;
    }

    Usage usage() const override {
        Usage u;
        u.memory_current = detail::read_u64(cgroup_path(dir_, "memory.current"));
        u.memory_peak = detail::read_u64(cgroup_path(dir_, "memory.peak"));
        u.cpu_usage_usec = detail::read_keyed(cgroup_path(dir_, "cpu.stat"), "usage_usec");
        u.pids_current = detail::read_u64(cgroup_path(dir_, "pids.current"));
        return u;
    }

    OomCounters oom_counters() const override {
        return detail::read_oom_v2(cgroup_path(dir_, "memory.events"));
    }

    OomSource oom_source() const override {
        if (!has_memory_) return {};
        return {OomSource::Kind::v2_events, cgroup_path(dir_, "memory.events")};
    }

    std::optional<bool> populated() const override {
        auto p = detail::read_keyed(cgroup_path(dir_, "cgroup.events"), "populated");
        if (!p) return std::nullopt;
        return *p != 0;
    }

    std::vector<pid_t> pids() const override {
        return detail::read_pids(cgroup_path(dir_, "cgroup.procs"));
    }

    KillResult kill_all(std::chrono::milliseconds timeout) override {
        return detail::kill_all(dir_, "", {dir_}, plain_, timeout);
    }

    Removal remove() override {
        Removal r;
        r.oom = oom_counters();
        r.usage = usage();
        fd_.reset();
        if (int err = detail::remove_dir(dir_, plain_, true)) {
            r.error = "rmdir " + dir_ + ": " + errno_text(err);
            return r;
        }
        procs_.clear();
        r.removed = true;
        return r;
    }

private:
    std::string dir_;
    bool has_memory_;
    bool has_cpuset_ = false;
    Fd fd_;
};

class V2Driver final : public Driver {
public:
    V2Driver(const Layout& layout, const Config& config)
        : root_(layout.unified_mount), self_(layout.unified_self),
          plain_(!config.mount_prefix.empty()) {
        created_plain_ = plain_;
        if (config.parent_under_self)
            parent_ = cgroup_path(self_, config.parent);
        else if (!config.parent.empty())
            parent_ = cgroup_path(root_, config.parent);
        else
            parent_ = self_;
        envs_ = cgroup_path(parent_, "envs");
    }

    std::string setup(const std::vector<pid_t>& extra_pids) {
        // hearth configures controllers from its delegation point down:
        // its own cgroup, or for an explicit --cgroup-parent the deepest
        // directory of that path that already exists. Cgroups above belong
        // to whoever delegated; hearth does not change them.
        std::string top = self_;
        if (parent_.compare(0, self_.size() + 1, self_ + "/") != 0 && parent_ != self_) {
            top = parent_;
            while (top.size() > root_.size() && !detail::exists(top))
                top = top.substr(0, top.rfind('/'));
        }
        if (Status made = make_dirs(parent_, &created_); !made)
            return "create " + parent_ + ": " + errno_text(made.error().sys_errno);
        // The real root cgroup has no cgroup.events and is exempt from the
        // no-internal-processes rule: nothing to move there (and its
        // kernel threads could not move anyway).
        bool must_move = parent_ == self_ && detail::exists(cgroup_path(self_, "cgroup.events"));
        if (must_move) {
            leaf_ = cgroup_path(self_, "hearth");
            if (::mkdir(leaf_.c_str(), 0755) < 0 && errno != EEXIST)
                return "create " + leaf_ + ": " + errno_text(errno);
            move(::getpid(), true);
            for (pid_t p : extra_pids)
                move(p, false);
        }

        // Controllers must be enabled at every level from there down to
        // envs; levels that already have them are not written.
        std::vector<std::string> chain;
        for (std::string dir = parent_;; dir = dir.substr(0, dir.rfind('/'))) {
            chain.push_back(dir);
            if (dir.size() <= top.size() || dir.rfind('/') == std::string::npos) break;
        }
        std::reverse(chain.begin(), chain.end());
        for (const auto& dir : chain) {
            auto failures = enable(dir);
            // hearth's own cgroup after the move: processes that appeared
            // meanwhile (forks, a docker exec) keep it busy; move them too.
            for (int attempt = 0; must_move && dir == self_ && attempt < 50; ++attempt) {
                bool busy =
                    std::any_of(failures.begin(), failures.end(),
                                [](const ControllerEnableError& f) { return f.error == EBUSY; });
                if (!busy) break;
                for (pid_t p : detail::read_pids(cgroup_path(self_, "cgroup.procs")))
                    move(p, false);
                std::this_thread::sleep_for(std::chrono::milliseconds(1 + attempt / 5));
                failures = enable(dir);
            }
            for (auto& f : failures)
                failures_.push_back(std::move(f));
        }
        if (::mkdir(envs_.c_str(), 0755) == 0)
            created_.push_back(envs_);
        else if (errno != EEXIST)
            return "create " + envs_ + ": " + errno_text(errno);
        for (auto& f : enable(envs_))
            failures_.push_back(std::move(f));

        available_ = tokens(read_file(cgroup_path(envs_, "cgroup.subtree_control")));
        return "";
    }

    Mode mode() const override { return Mode::v2; }

    Enforcement enforcement() const override {
        Enforcement e;
        for (const auto& c : wanted_controllers) {
            if (available_.count(c)) continue;
            std::string why = "not available in " + parent_;
            for (const auto& f : failures_)
                if (f.controller == c)
                    why = "could not enable in " + f.dir + ": " + errno_text(f.error);
            e.degraded.push_back(c + " controller " + why + "; " + c + " limits not enforced");
        }
        for (const auto& m : move_problems_)
            e.degraded.push_back(m);
        e.enforced = e.degraded.empty();
        return e;
    }

    std::vector<std::string> envs_directories() const override { return {envs_}; }
    bool cpusets() const override { return available_.count("cpuset") > 0; }

    nlohmann::json describe() const override {
        nlohmann::json j = Driver::describe();
        j["controllers"] = std::vector<std::string>(available_.begin(), available_.end());
        if (!leaf_.empty()) {
            j["leaf"] = leaf_;
            j["moved_pids"] = moved_;
        }
        return j;
    }

    std::unique_ptr<Cgroup> create(const std::string& name, const Limits& limits,
                                   std::string& error) const override {
        error = detail::check_create(name, limits);
        if (!error.empty()) return nullptr;
        std::string dir = cgroup_path(envs_, name);
        if (int err = detail::make_fresh_dir(dir, plain_)) {
            error = "create " + dir + ": " + errno_text(err);
            return nullptr;
        }
        auto cg = std::make_unique<V2Cgroup>(name, dir, plain_, available_.count("memory") > 0);
        struct Write {
            std::optional<std::string> value;
            const char* controller;
            const char* file;
            const char* limit;
            LimitKind kind;
        };
        const Write writes[] = {
            {limits.memory_max ? std::optional(std::to_string(*limits.memory_max)) : std::nullopt,
             "memory", "memory.max", "memory_max", LimitKind::memory_max},
            {limits.memory_high ? std::optional(std::to_string(*limits.memory_high)) : std::nullopt,
             "memory", "memory.high", "memory_high", LimitKind::memory_high},
            {limits.cpu_quota ? std::optional(std::to_string(cpu_quota_us(*limits.cpu_quota)) +
                                              " " + std::to_string(cpu_period_us))
                              : std::nullopt,
             "cpu", "cpu.max", "cpu_quota", LimitKind::cpu_quota},
            {limits.cpu_weight ? std::optional(std::to_string(*limits.cpu_weight)) : std::nullopt,
             "cpu", "cpu.weight", "cpu_weight", LimitKind::cpu_weight},
            {limits.pids_max ? std::optional(std::to_string(*limits.pids_max)) : std::nullopt,
             "pids", "pids.max", "pids_max", LimitKind::pids_max},
            {limits.cpu_idle ? std::optional(std::string("1")) : std::nullopt, "cpu", "cpu.idle",
             "cpu_idle", LimitKind::cpu_idle},
        };
        for (const auto& w : writes) {
            if (!w.value) continue;
            if (!available_.count(w.controller)) {
                cg->add_unenforced(w.kind,
                                   std::string(w.limit) + ": no " + w.controller + " controller");
                continue;
            }
            std::string path = cgroup_path(dir, w.file);
            int err = detail::write_file(path, *w.value, plain_);
            if (err == ENOENT && std::string_view(w.file) == "cpu.idle") {
                // Before 5.15: the child then takes SCHED_IDLE, which ranks it
                // only within its own group; the group also gets the smallest
                // weight against the other revisions.
                cg->add_unenforced(LimitKind::cpu_idle,
                                   "cpu_idle: no cpu.idle in this kernel (5.15+); SCHED_IDLE "
                                   "policy and cpu.weight 1 instead");
                err = detail::write_file(cgroup_path(dir, "cpu.weight"), "1", plain_);
                if (err == 0) continue;
                path = cgroup_path(dir, "cpu.weight");
            }
            if (err) {
                error = "write " + *w.value + " to " + path + ": " + errno_text(err);
                detail::remove_dir(dir, plain_, true);
                return nullptr;
            }
        }
        // v2 cpusets start as "every CPU of the parent"; a set the kernel
        // refuses leaves the revision there rather than failing its start.
        if (available_.count("cpuset")) cg->set_has_cpuset();
        if (!limits.cpuset_cpus.empty() && available_.count("cpuset") &&
            detail::write_file(cgroup_path(dir, "cpuset.cpus"), limits.cpuset_cpus, plain_) == 0)
            cg->set_confines_cpus();
        if (std::string e = cg->open_fd(); !e.empty()) {
            error = e;
            detail::remove_dir(dir, plain_, true);
            return nullptr;
        }
        return cg;
    }

    std::vector<std::string> cleanup_stale(std::vector<std::string>* failures) const override {
        std::vector<std::string> names = detail::list_dirs(envs_);
        for (const auto& name : names) {
            V2Cgroup cg(name, cgroup_path(envs_, name), plain_, false);
            KillResult k = cg.kill_all(std::chrono::seconds(2));
            Removal r = cg.remove();
            if (!r.removed && failures)
                failures->push_back(name + ": " + (r.error.empty() ? k.error : r.error));
        }
        return names;
    }

    std::unique_ptr<OomWatch> make_oom_watch() const override;

private:
    // Moves `pid` into the leaf. ESRCH (gone) and EINVAL (a kernel thread,
    // or a zombie) are not problems; anything else about hearth itself is.
    void move(pid_t pid, bool is_self) {
        int err =
            detail::write_file(cgroup_path(leaf_, "cgroup.procs"), std::to_string(pid), plain_);
        if (!err) {
            moved_.push_back(pid);
        } else if (is_self || (err != ESRCH && err != EINVAL)) {
            move_problems_.push_back("could not move pid " + std::to_string(pid) + " into " +
                                     leaf_ + ": " + errno_text(err));
        }
    }

    // Enables the wanted controllers that `dir` has but does not yet pass
    // down. One write for all first (the common case), then one per
    // controller to learn which failed.
    std::vector<ControllerEnableError> enable(const std::string& dir) const {
        auto have = tokens(read_file(cgroup_path(dir, "cgroup.subtree_control")));
        auto controllers_text = read_file(cgroup_path(dir, "cgroup.controllers"));
        // A fake tree has no cgroup.controllers in directories hearth made;
        // the kernel would show the parent's subtree_control there.
        if (!controllers_text && plain_ && dir != root_)
            controllers_text =
                read_file(cgroup_path(dir.substr(0, dir.rfind('/')), "cgroup.subtree_control"));
        auto available = tokens(controllers_text);
        std::vector<std::string> missing;
        for (const auto& c : enabled_controllers)
            if (available.count(c) && !have.count(c)) missing.push_back(c);
        std::vector<ControllerEnableError> failures;
        if (missing.empty()) return failures;
        std::string all;
        for (const auto& c : missing)
            all += (all.empty() ? "+" : " +") + c;
        std::string path = cgroup_path(dir, "cgroup.subtree_control");
        if (detail::write_file(path, all, plain_) == 0) return failures;
        for (const auto& c : missing)
            if (int err = detail::write_file(path, "+" + c, plain_))
                failures.push_back({c, dir, err});
        return failures;
    }

    std::string root_;
    std::string self_;
    std::string parent_;
    std::string envs_;
    std::string leaf_;
    bool plain_;
    std::set<std::string> available_;
    std::vector<ControllerEnableError> failures_;
    std::vector<pid_t> moved_;
    std::vector<std::string> move_problems_;
};

// One inotify instance for every revision: the default max_user_instances
// is 128, and the kernel signals memory.events changes as IN_MODIFY.
class InotifyOomWatch final : public OomWatch {
public:
    InotifyOomWatch() { fd_.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)); }

protected:
    std::string arm(Entry& entry) override {
        entry.wd = ::inotify_add_watch(fd_.get(), entry.source.path.c_str(), IN_MODIFY);
        if (entry.wd < 0)
            return "inotify_add_watch " + entry.source.path + ": " + errno_text(errno);
        return "";
    }
    void disarm(Entry& entry) override {
        // Fails harmlessly when the cgroup is already gone (IN_IGNORED).
        if (entry.wd >= 0) ::inotify_rm_watch(fd_.get(), entry.wd);
    }
    void drain() override {
        alignas(inotify_event) char buf[4096];
        while (::read(fd_.get(), buf, sizeof buf) > 0) {
        }
    }
    OomCounters read(const OomSource& source) const override {
        return detail::read_oom_v2(source.path);
    }
};

std::unique_ptr<OomWatch> V2Driver::make_oom_watch() const {
    return std::make_unique<InotifyOomWatch>();
}

} // namespace

namespace detail {

std::unique_ptr<Driver> make_v2(const Layout& layout, const Config& config, std::string& error) {
    auto driver = std::make_unique<V2Driver>(layout, config);
    error = driver->setup(config.extra_pids);
    if (!error.empty()) return nullptr;
    return driver;
}

} // namespace detail

} // namespace hearth::cgroup

// The `none` driver: cgroupfs is read-only or absent, the usual case in an
// unprivileged container (Docker without --privileged, Kubernetes, Fargate).
// Nothing is written; every limit is reported unenforced so the caller's
// userspace watchdog takes it over, and enforcement says "degraded".

#include "isolation/cgroup.hpp"

namespace hearth::cgroup {

namespace {

class NoneCgroup final : public Cgroup {
public:
    NoneCgroup(std::string name, const Limits& limits) : Cgroup(std::move(name), false) {
        const char* why = ": no cgroups (driver none)";
        auto none = [&](LimitKind kind, const char* limit) {
            add_unenforced(kind, std::string(limit) + why);
        };
        if (limits.memory_max) none(LimitKind::memory_max, "memory_max");
        if (limits.memory_high) none(LimitKind::memory_high, "memory_high");
        if (limits.cpu_quota) none(LimitKind::cpu_quota, "cpu_quota");
        if (limits.cpu_weight) none(LimitKind::cpu_weight, "cpu_weight");
        if (limits.cpu_idle) none(LimitKind::cpu_idle, "cpu_idle");
        if (limits.pids_max) none(LimitKind::pids_max, "pids_max");
    }

    Usage usage() const override { return {}; }
    OomCounters oom_counters() const override { return {}; }
    std::optional<bool> populated() const override { return std::nullopt; }
    std::vector<pid_t> pids() const override { return {}; }
    KillResult kill_all(std::chrono::milliseconds) override {
        KillResult r;
        r.supported = false;
        r.method = "none";
        return r;
    }
    Removal remove() override {
        Removal r;
        r.removed = true;
        return r;
    }
};

class NoneOomWatch final : public OomWatch {
protected:
    std::string arm(Entry&) override { return "no cgroups (driver none)"; }
    void disarm(Entry&) override {}
    void drain() override {}
    OomCounters read(const OomSource&) const override { return {}; }
};

class NoneDriver final : public Driver {
public:
    explicit NoneDriver(std::string reason) : reason_(std::move(reason)) {}

    Mode mode() const override { return Mode::none; }

    Enforcement enforcement() const override {
        Enforcement e;
        e.degraded = {
            "no cgroups: " + reason_,
            "memory limits: userspace RSS watchdog instead of the kernel (not enforced between "
            "polls)",
            "cpu limits: nice/SCHED_IDLE at best, no quota",
            "pids limit: not enforced",
            "kill: by process group; a process that calls setsid() escapes",
            "OOM: no kernel OOM events per environment",
        };
        return e;
    }

    std::vector<std::string> envs_directories() const override { return {}; }

    nlohmann::json describe() const override {
        nlohmann::json j = Driver::describe();
        j["reason"] = reason_;
        return j;
    }

    std::unique_ptr<Cgroup> create(const std::string& name, const Limits& limits,
                                   std::string& error) const override {
        error.clear();
        return std::make_unique<NoneCgroup>(name, limits);
    }

    std::vector<std::string> cleanup_stale(std::vector<std::string>*) const override { return {}; }

    std::unique_ptr<OomWatch> make_oom_watch() const override {
        return std::make_unique<NoneOomWatch>();
    }

private:
    std::string reason_;
};

} // namespace

namespace detail {

std::unique_ptr<Driver> make_none(std::string reason) {
    return std::make_unique<NoneDriver>(std::move(reason));
}

} // namespace detail

} // namespace hearth::cgroup

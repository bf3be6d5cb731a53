#pragma once
// Isolation of revisions: the daemon's side of the cgroup drivers.
//
// Owns the driver chosen at start (cgroup.hpp), the one OOM watch fd for all
// revisions (polled on the loop), and the `none` driver's stand-ins: a
// userspace memory watchdog (RSS of the revision's session tree, every
// 100 ms) and signals to that tree instead of a cgroup kill.
//
// Loop thread only. Calls that touch cgroupfs in ways that can stall
// (creating, killing, removing) run on libuv's thread pool and call back on
// the loop; callbacks look the revision up again by name, since it may be
// gone. Cgroup objects are shared with those jobs (shared_ptr) so that a
// revision dropped meanwhile does not free one in use.

#include "daemon/options.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/cpu_spread.hpp"
#include "util/uv_util.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <uv.h>
#include <vector>

namespace hearth {

// How a revision's limits are held, decided once its cgroup exists: the
// policy for what stands in where the kernel does not enforce a limit (the
// `none` driver, a missing controller). Callers branch on the fields, never
// on the text of `degraded`, which is for status.
struct LimitsReport {
    bool enforced = false;             // every limit by the kernel
    std::vector<std::string> degraded; // one line per weakness and its stand-in
    bool memory_by_watchdog = false;   // limits.memory_max held by hearth's RSS watchdog
    bool sched_idle = false;           // cpu_weight idle by the SCHED_IDLE policy
    std::optional<int> nice;           // CPU limits without cgroups: a lower priority
};
// Pure apart from one cached uname() (kernel_has_custom_slices).
LimitsReport report_limits(const cgroup::Limits& limits, const cgroup::Cgroup& cg,
                           bool driver_none);

// What the revision state machine needs of isolation, so that its tests can
// run on fakes without root or cgroupfs. Isolation implements it; the
// contracts are Isolation's below. Loop thread only.
class IsolationApi {
public:
    virtual ~IsolationApi() = default;
    using Created = std::function<void(std::shared_ptr<cgroup::Cgroup>, std::string error)>;

    virtual const std::string& driver_name() const = 0;
    virtual bool is_none() const = 0;
    virtual void create(const std::string& name, const std::string& location,
                        const cgroup::Limits& limits, Created done) = 0;
    virtual std::vector<int> cpus_of(const std::string& name) const = 0;
    virtual bool cpus_exclusive(const std::string& name) const = 0;
    virtual void release_cpus(const std::string& name) = 0;
    virtual void move_cpus(const std::string& name, cgroup::Cgroup* cg, pid_t session) = 0;
    virtual void move_self() = 0;
    virtual void watch(const std::string& name, const cgroup::Cgroup* cg, pid_t session,
                       std::optional<std::uint64_t> watchdog_limit) = 0;
    virtual void unwatch(const std::string& name) = 0;
    virtual void signal_all(const cgroup::Cgroup* cg, pid_t session, int sig) = 0;
    virtual void kill_all(std::shared_ptr<cgroup::Cgroup> cg, pid_t session,
                          std::chrono::milliseconds timeout,
                          std::function<void(cgroup::KillResult)> done) = 0;
    virtual void remove(std::shared_ptr<cgroup::Cgroup> cg,
                        std::function<void(cgroup::Removal)> done) = 0;
    virtual cgroup::Usage watchdog_usage(const std::string& name) const = 0;

    // report_limits() for this driver.
    LimitsReport report(const cgroup::Limits& limits, const cgroup::Cgroup& cg) const {
        return report_limits(limits, cg, is_none());
    }
};

class Isolation final : public IsolationApi {
public:
    Isolation(uv_loop_t* loop, const Options& options);
    ~Isolation() override;
    Isolation(const Isolation&) = delete;
    Isolation& operator=(const Isolation&) = delete;

    // Detects and opens the driver, removes revision cgroups an earlier run
    // left behind, starts the OOM watch. Blocking (start-up only). Never
    // fails: without usable cgroups the `none` driver is used and logged.
    void start();
    // Closes the poll and timer handles (before the loop goes away).
    void close();
    // At exit, once every revision's cgroup is gone: removes the
    // directories start() created (envs, a --cgroup-parent that did not
    // exist), so a clean exit leaves nothing in cgroupfs. Blocking, brief.
    void remove_own_directories();

    const std::string& driver_name() const override { return driver_name_; }
    bool is_none() const override;
    // For status: {"driver","enforcement","degraded",...}.
    nlohmann::json describe() const;

    // Creates the revision's cgroup with `limits` on the thread pool. A
    // revision with a CPU quota first gets its CPUs (cpu_spread.hpp, unless
    // --cpu-placement shared), kept until release_cpus(): a restart's new
    // cgroup gets the same ones. limits.cpu_exclusive reserves CPUs for
    // `location`; when none are left, `done` gets the reason (on the loop,
    // never from inside create()). Taking CPUs out of the shared pool calls
    // on_cpus_changed first.
    void create(const std::string& name, const std::string& location, const cgroup::Limits& limits,
                Created done) override;
    // The CPUs `name` runs on: its own set, else the shared pool while some
    // CPUs are held exclusively; empty = every usable CPU.
    std::vector<int> cpus_of(const std::string& name) const override;
    bool cpus_exclusive(const std::string& name) const override;
    // When the revision ends for good (not between restarts). Calls
    // on_cpus_changed when exclusive CPUs went back to the shared pool.
    void release_cpus(const std::string& name) override;
    // Moves a running revision onto cpus_of(name): its v2 cpuset where there
    // is one, and in every case the affinity of every thread of every
    // process (of its cgroup, or without one of its session tree), repeated
    // until a pass finds no thread it had not seen (threads started
    // meanwhile inherit the old mask; after 8 passes it gives up and logs
    // it). Loop thread: a cpuset write and a few /proc reads and syscalls per
    // thread, only when exclusive CPUs are reserved or released; kept on the
    // loop so that two quick changes cannot land out of order.
    void move_cpus(const std::string& name, cgroup::Cgroup* cg, pid_t session) override;
    // Moves hearth's own threads onto the shared pool (children started
    // later inherit it).
    void move_self() override;
    // The shared pool changed: the daemon calls move_cpus() for every
    // running revision and move_self().
    std::function<void()> on_cpus_changed;

    // Starts OOM notification for a running revision and, when its memory
    // limit is not enforced by the kernel, the watchdog on its session.
    void watch(const std::string& name, const cgroup::Cgroup* cg, pid_t session,
               std::optional<std::uint64_t> watchdog_limit) override;
    void unwatch(const std::string& name) override;

    // Sends `sig` to every process of the revision now: its process group,
    // every pid in its cgroup, or (no cgroup) its session tree. Loop thread;
    // does not wait.
    void signal_all(const cgroup::Cgroup* cg, pid_t session, int sig) override;
    // SIGKILLs everything of the revision and waits (thread pool) until the
    // cgroup is empty or `timeout` passed; without a cgroup, kills the
    // session tree. `done` on the loop.
    void kill_all(std::shared_ptr<cgroup::Cgroup> cg, pid_t session,
                  std::chrono::milliseconds timeout,
                  std::function<void(cgroup::KillResult)> done) override;
    // Kills what is left, reads the final counters and removes the cgroup
    // (thread pool). `done` on the loop.
    void remove(std::shared_ptr<cgroup::Cgroup> cg,
                std::function<void(cgroup::Removal)> done) override;

    // Memory/pids of a revision without a cgroup, from the watchdog's last
    // scan (empty when not watched).
    cgroup::Usage watchdog_usage(const std::string& name) const override;

    // An OOM kill (kernel counters) in the named revision's cgroup.
    std::function<void(const std::string& name, const cgroup::OomChange& change)> on_oom;
    // The watchdog found the named revision above its memory limit.
    std::function<void(const std::string& name, std::uint64_t rss, std::uint64_t limit)>
        on_watchdog;

private:
    struct Watched {
        pid_t session = -1;
        std::optional<std::uint64_t> limit;
        cgroup::Usage last;
        std::uint64_t peak = 0;
    };
    static void on_oom_readable(uv_poll_t* handle, int status, int events);
    void check_oom();
    void watchdog_tick();

    uv_loop_t* loop_;
    const Options& options_;
    std::unique_ptr<cgroup::Driver> driver_;
    std::unique_ptr<cgroup::OomWatch> oom_watch_;
    std::string driver_name_ = "none";
    uv_poll_t* oom_poll_ = nullptr; // heap: freed in its close callback
    Timer watchdog_timer_;
    std::map<std::string, Watched> watched_;
    CpuSpread cpu_spread_;
};

} // namespace hearth

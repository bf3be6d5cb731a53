#pragma once
// cgroups: one interface, one driver per mode (crun style).
//
//   cgroup.cpp       detection, shared file helpers, the factory, OomWatch base
//   cgroup_internal.hpp  the helpers the drivers share (not a public API)
//   cgroup_v2.cpp    pure unified hierarchy (clone3 placement fd, inotify OOM watch)
//   cgroup_v1.cpp    v1 controllers; also `hybrid` (the same plus the unified
//                    hierarchy for membership, cgroup.kill and cgroup.events)
//   cgroup_none.cpp  no cgroupfs: null objects, enforcement "degraded"
//
// hearth writes cgroupfs directly, as runc, crun and systemd do. Revision
// cgroups live in `<parent>/envs/<name>` in every hierarchy used, where the
// parent is `--cgroup-parent` (relative to each hierarchy's root) or, by
// default, the cgroup hearth runs in (per hierarchy).
//
// Threads: a Driver is immutable after open(); its const methods may run
// concurrently from the thread pool (different revision names). A Cgroup
// object is used by one thread at a time. OomWatch is loop-thread only.
// Everything here that touches cgroupfs blocks (cgroupfs writes can stall for
// an RCU grace period); nothing throws except std::bad_alloc.
// Nothing here is async-signal-safe except Cgroup::place().

#include "util/fd.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace hearth::cgroup {

enum class Mode { none, v1, v2, hybrid };
std::string_view mode_name(Mode mode);

// ---------------------------------------------------------------------------
// Detection

struct V1Hierarchy {
    std::string controllers; // as mounted, e.g. "cpu,cpuacct"
    std::string mount;       // mount point (Config::mount_prefix applied)
    std::string self;        // directory of hearth's own cgroup in it
};

struct Layout {
    Mode mode = Mode::none;
    std::string reason;        // why `none`; otherwise notes (may be empty)
    std::string unified_mount; // cgroup2 mount point; empty when there is none
    std::string unified_self;  // directory of hearth's own cgroup in it
    // Only the controllers hearth uses: memory, cpu, cpuacct, pids, freezer.
    // Not the v1 cpuset: a v1 child cpuset must hold CPUs of its own, and the
    // kernel then refuses to shrink the parent (EBUSY), which would break
    // `docker update --cpuset-cpus` on hearth's container; v1 revisions are
    // confined by their affinity instead (cpu_spread.hpp).
    // Co-mounted controllers (cpu,cpuacct) share one V1Hierarchy value.
    std::map<std::string, V1Hierarchy> v1;
};

// One cgroup or cgroup2 mount of a mountinfo text (other mounts are left
// out). Paths are unescaped (mountinfo writes space, tab, newline and
// backslash as \ooo); `super_options` is the comma list after the source
// (v1: the controllers mounted there).
struct MountEntry {
    std::string root;   // the mount's root within the hierarchy
    std::string point;  // where it is mounted
    std::string fstype; // "cgroup" or "cgroup2"
    std::string super_options;
    bool read_only = false;
};
std::vector<MountEntry> parse_mountinfo(std::string_view mountinfo);

// One line of /proc/PID/cgroup: "hierarchy-id:controller-list:path".
// `controllers` is "" on the unified (cgroup2) line, whose id is "0".
struct ProcCgroupEntry {
    std::string hierarchy_id;
    std::string controllers; // comma list, as the kernel writes it
    std::string path;
};
std::vector<ProcCgroupEntry> parse_proc_cgroup(std::string_view text);

// Whether the comma list `list` holds `token` ("rw,nosuid" has "rw").
bool has_token(std::string_view list, std::string_view token);

// Parses /proc/self/mountinfo and /proc/self/cgroup text. Pure function.
// Mode: v1 controllers (memory/cpu/pids) plus a cgroup2 mount -> hybrid; v1
// only -> v1; cgroup2 only -> v2; neither -> none. Read-only mounts are left
// out (all of them read-only -> none, with the reason). `mount_prefix` is
// prepended to every mount point (fake cgroupfs trees in tests).
Layout detect(std::string_view mountinfo, std::string_view proc_self_cgroup,
              std::string_view mount_prefix = {});

// ---------------------------------------------------------------------------
// Values

struct Limits {
    std::optional<std::uint64_t> memory_max;  // bytes
    std::optional<std::uint64_t> memory_high; // bytes; v2 only (throttles, never kills)
    std::optional<double> cpu_quota;          // CPUs, e.g. 0.5; period 100000 us
    std::optional<std::uint64_t> cpu_weight;  // 1..10000 (v1: mapped to cpu.shares)
    // cpu_weight "idle" (systemd's CPUWeight=idle): cpu.idle = 1 (kernel
    // 5.15+, v1 and v2), the group runs only when no non-idle sibling wants
    // the CPU and any non-idle wakeup preempts it at once. Excludes cpu_weight.
    bool cpu_idle = false;
    std::optional<std::uint64_t> pids_max;
    // limits.cpu_exclusive: ceil(cpu_quota) CPUs nobody else runs on
    // (cpu_spread.hpp). A placement request for Isolation, not a cgroup file.
    bool cpu_exclusive = false;
    // limits.cpu_slice_us: the scheduler slice of every thread of the
    // revision (EEVDF custom slice, sched_attr.sched_runtime, Linux 6.12+;
    // 100..100000). Set by the spawned child itself, not a cgroup file.
    std::optional<std::uint32_t> cpu_slice_us;
    // CPUs the revision is confined to, cpulist format ("1", "0-2,5"); empty
    // = every CPU of the parent. Not a user request: hearth's placement
    // (cpu_spread.hpp). Written to cpuset.cpus where the v2 cpuset
    // controller is available (Cgroup::confines_cpus()); elsewhere the
    // spawned child sets its own affinity, which is not a degradation.
    std::string cpuset_cpus;
};

// A limit of Limits, as a code: which ones a cgroup does not enforce is what
// callers branch on (Cgroup::unenforced(LimitKind)); the text of
// unenforced() is for people.
enum class LimitKind : unsigned {
    memory_max,
    memory_high,
    cpu_quota,
    cpu_weight,
    cpu_idle,
    pids_max
};

struct Usage {
    std::optional<std::uint64_t> memory_current; // bytes
    std::optional<std::uint64_t>
        memory_peak; // bytes: v2 memory.peak (5.19+), v1 max_usage_in_bytes
    std::optional<std::uint64_t>
        cpu_usage_usec; // v2/hybrid cpu.stat usage_usec, else cpuacct.usage
    std::optional<std::uint64_t> pids_current;
};

struct OomCounters {
    std::optional<std::uint64_t> oom_kill; // processes the OOM killer killed (v1: kernels >= 4.13)
    std::optional<std::uint64_t> oom;      // v2 memory.events `oom` (limit hit, reclaim failed)
    std::optional<std::uint64_t> limit_hits; // v2 memory.events `max`, v1 memory.failcnt
    std::optional<bool> under_oom;           // v1 memory.oom_control
    bool operator==(const OomCounters&) const = default;
};

struct KillResult {
    bool supported = true; // false: driver `none` (use the process group instead)
    bool empty = false;    // the cgroup was seen empty before the timeout
    int rounds = 0;        // kill rounds made
    std::string method;    // "cgroup.kill", "freezer", "signal"
    std::string error;     // first error, if any
};

struct Removal {
    bool removed = false; // every directory is gone
    OomCounters oom;      // read before removal (report OOM before exit)
    Usage usage;          // likewise
    std::string error;    // first error (e.g. "rmdir X: Device or resource busy")
};

struct Enforcement {
    bool enforced = false;
    std::vector<std::string> degraded; // one human-readable line per weakness
    std::string_view name() const { return enforced ? "enforced" : "degraded"; }
};

// cpu.weight (1..10000) <-> cpu.shares (2..262144), systemd's linear mapping
// (weight 100 = shares 1024), clamped to the other side's range.
std::uint64_t weight_to_shares(std::uint64_t weight);
std::uint64_t shares_to_weight(std::uint64_t shares);
// CPUs -> quota in us for the 100000 us period; at least 1000 (kernel minimum).
inline constexpr std::uint64_t cpu_period_us = 100000;
std::uint64_t cpu_quota_us(double cpus);

// Revision names become directory names: 1..128 chars of [A-Za-z0-9._@:-],
// not "." or "..". Returns "" or the reason.
std::string check_name(std::string_view name);

// ---------------------------------------------------------------------------
// One revision's cgroup (one directory per hierarchy).

struct OomSource {
    enum class Kind { none, v2_events, v1_memory } kind = Kind::none;
    std::string path; // v2: memory.events file; v1: the memory cgroup directory
};

class Cgroup {
public:
    virtual ~Cgroup() = default;
    Cgroup(const Cgroup&) = delete;
    Cgroup& operator=(const Cgroup&) = delete;

    const std::string& name() const { return name_; }
    // Every directory of this revision (one per hierarchy), for logs/status.
    const std::vector<std::string>& directories() const { return dirs_; }
    // Limits that were requested but are not enforced by the kernel (e.g.
    // "memory_high: no cgroup v1 equivalent"); the caller's userspace
    // watchdog takes these over.
    const std::vector<std::string>& unenforced() const { return unenforced_; }
    // Whether `kind` is among them.
    bool unenforced(LimitKind kind) const noexcept {
        return (unenforced_kinds_ >> static_cast<unsigned>(kind)) & 1u;
    }
    // Limits::cpuset_cpus was written to a cpuset: the kernel holds every
    // process of the revision to those CPUs (sched_setaffinity cannot widen
    // it). False when no CPU set was asked for or no cpuset is available.
    bool confines_cpus() const { return confines_cpus_; }
    // Rewrites the CPU set of a running revision (exclusive CPUs came or
    // went; cpu_spread.hpp): cpuset.cpus where the cgroup has a v2 cpuset,
    // "" = every CPU of the parent. Returns true when the kernel now holds
    // the revision to it; false without a cpuset (the caller then sets each
    // thread's affinity) or when the write failed. Blocking but brief.
    virtual bool set_cpus(const std::string& cpus) {
        (void)cpus;
        return false;
    }

    // v2 and hybrid: an O_DIRECTORY fd of the cgroup2 directory for
    // clone3(CLONE_INTO_CGROUP); owned by this object, valid until it is
    // destroyed. -1 on v1/none.
    virtual int placement_fd() const { return -1; }
    // Every cgroup.procs file a new child must be written into (v1: one per
    // hierarchy; hybrid: plus the unified one; v2: the one, as the fallback
    // when clone3 fails). Empty for `none`.
    const std::vector<std::string>& procs_paths() const { return procs_; }
    // Writes `pid` into every procs_paths() file. Must run BEFORE the child
    // is released to run user code (the parent writes while the child waits
    // on a pipe), or limits and kill do not cover what it does first.
    // Returns 0 or the errno of the first failed write (`*failed` = its index
    // in procs_paths()). Async-signal-safe (open/write/close only, no
    // allocation), so a child may also call it with its own pid.
    int place(pid_t pid, std::size_t* failed = nullptr) const noexcept;
    // For the new child itself, before it runs user code: joins every
    // hierarchy. v1 hierarchies get "0" in `tasks`, which moves only the
    // calling thread (the whole child, single-threaded after fork) and so
    // skips the threadgroup lock whose write side waits for an RCU grace
    // period: ~0.6 ms instead of ~10 ms per spawn here. The cgroup2
    // directory gets the pid in cgroup.procs unless `in_unified` (clone3
    // with placement_fd() already put the child there). Returns 0 or errno.
    // Async-signal-safe.
    int place_self(bool in_unified) const noexcept;

    virtual Usage usage() const = 0;
    virtual OomCounters oom_counters() const = 0;
    virtual OomSource oom_source() const { return {}; }
    // v2/hybrid: cgroup.events `populated`; v1: any pid in a cgroup.procs.
    // nullopt when unknown (none, read error).
    virtual std::optional<bool> populated() const = 0;
    // Pids in the cgroup (union over hierarchies). Zombies are not listed.
    virtual std::vector<pid_t> pids() const = 0;
    // SIGKILLs everything inside, including processes that setsid()ed or are
    // forking: cgroup.kill where present, else freeze + kill each pid + thaw,
    // repeated until empty. Waits up to `timeout` for the cgroup to be empty
    // (zombies do not count). Blocking; timeout 0 = one round, no waiting.
    virtual KillResult kill_all(std::chrono::milliseconds timeout) = 0;
    // Reads the final counters, then removes every directory (briefly
    // retrying EBUSY). The cgroup must be empty: call kill_all() first.
    // After success the object only answers name()/directories().
    virtual Removal remove() = 0;

protected:
    Cgroup(std::string name, bool plain_files) : name_(std::move(name)), plain_(plain_files) {}
    std::string name_;
    bool plain_; // fake tree of plain files (tests): create files, truncate
    std::vector<std::string> dirs_;
    std::vector<std::string> procs_;
    std::vector<std::string> self_tasks_; // v1 `tasks` files, for place_self()
    std::string unified_procs_;           // cgroup2 cgroup.procs, "" if none
    // Records a limit as unenforced: its code and a line for people.
    void add_unenforced(LimitKind kind, std::string what) {
        unenforced_kinds_ |= 1u << static_cast<unsigned>(kind);
        unenforced_.push_back(std::move(what));
    }
    std::vector<std::string> unenforced_;
    unsigned unenforced_kinds_ = 0; // bit per LimitKind
    bool confines_cpus_ = false;
};

// ---------------------------------------------------------------------------
// OOM watch: ONE fd for all revisions, for the daemon's loop (uv_poll
// UV_READABLE). v2: one inotify instance (the default max_user_instances is
// 128) watching each memory.events; v1/hybrid: one eventfd registered through
// each memory cgroup's cgroup.event_control with memory.oom_control.
// Loop thread only. The fd is non-blocking and close-on-exec.

struct OomChange {
    std::string name;
    OomCounters before;
    OomCounters after;
    bool killed() const { return after.oom_kill.value_or(0) > before.oom_kill.value_or(0); }
};

class OomWatch {
public:
    virtual ~OomWatch() = default;
    OomWatch(const OomWatch&) = delete;
    OomWatch& operator=(const OomWatch&) = delete;

    // -1 when there is nothing to watch (driver none, or setup failed).
    int fd() const { return fd_.get(); }
    // Starts watching a revision; reads its counters as the baseline.
    // Returns "" or the error (the revision then has no OOM notification).
    std::string add(const Cgroup& cgroup);
    // Stops watching (before or after the cgroup is removed).
    void remove(const std::string& name);
    // Call when fd() is readable (or any time): drains the fd, re-reads the
    // counters of every watched revision and returns those that changed
    // since the last call. Non-blocking apart from reading small files.
    std::vector<OomChange> check();

protected:
    struct Entry {
        OomSource source;
        OomCounters last;
        int wd = -1; // inotify watch descriptor
    };
    OomWatch() = default;
    virtual std::string arm(Entry& entry) = 0;
    virtual void disarm(Entry& entry) = 0;
    virtual void drain() = 0;
    virtual OomCounters read(const OomSource& source) const = 0;

    Fd fd_;
    std::map<std::string, Entry> entries_;
};

// ---------------------------------------------------------------------------
// Driver

struct Config {
    bool force_none = false;
    // --cgroup-parent, relative to each hierarchy's root ("/" and "" alike
    // mean the root when set). Empty = the cgroup hearth runs in.
    std::string parent;
    // The parent is relative to hearth's own cgroup in each hierarchy instead
    // (tests; nesting under a delegated cgroup). A `..` component is refused.
    bool parent_under_self = false;
    // Fake cgroupfs: prepended to every mount point; selects plain-file
    // semantics (files are created and truncated, rmdir removes files first).
    std::string mount_prefix;
    std::string mountinfo_path = "/proc/self/mountinfo";
    std::string proc_cgroup_path = "/proc/self/cgroup";
    // Pure v2 with the parent = hearth's own cgroup: moved into the
    // `<parent>/hearth` leaf together with hearth (e.g. the main command).
    std::vector<pid_t> extra_pids;
};

class Driver {
public:
    virtual ~Driver() = default;
    Driver(const Driver&) = delete;
    Driver& operator=(const Driver&) = delete;

    virtual Mode mode() const = 0;
    virtual Enforcement enforcement() const = 0;
    // Directory `<parent>/envs` per hierarchy (empty for none).
    virtual std::vector<std::string> envs_directories() const = 0;
    // The v2 cpuset controller confines revisions to Limits::cpuset_cpus;
    // false: they confine themselves with affinity.
    virtual bool cpusets() const { return false; }
    // {"driver","enforcement","degraded",["reason"],"envs","cpu_sets",...}
    // for status/logs; cpu_sets is "cpuset" or "affinity".
    virtual nlohmann::json describe() const;

    // Creates `<parent>/envs/<name>` in every hierarchy and writes the limits.
    // A leftover empty directory of that name is replaced. A limit whose
    // controller is missing is listed in unenforced(); a limit the kernel
    // rejects fails the call (nothing is left behind). On failure returns
    // nullptr with `error` set. `none`: always succeeds with a null object.
    virtual std::unique_ptr<Cgroup> create(const std::string& name, const Limits& limits,
                                           std::string& error) const = 0;
    // Startup cleanup: every revision cgroup under `<parent>/envs/` (left by
    // an earlier run) is killed and removed. Returns the names found; names
    // that could not be removed are also appended to `failures` as
    // "name: reason". Call before creating any revision.
    virtual std::vector<std::string>
    cleanup_stale(std::vector<std::string>* failures = nullptr) const = 0;
    // The OOM watch matching this driver (never null; fd() -1 for none).
    virtual std::unique_ptr<OomWatch> make_oom_watch() const = 0;
    // Clean shutdown, after every revision cgroup is gone: removes what
    // open() created (the envs directories and any missing directories above
    // them), deepest first; a directory that is not empty stays. Returns
    // "directory: reason" for each that stayed. Blocking.
    std::vector<std::string> remove_own_directories() const;

protected:
    Driver() = default;
    // Directories open() created, in creation order (parents first).
    std::vector<std::string> created_;
    bool created_plain_ = false; // a fake tree: files go first
};

// Reads Config's /proc files, detects, sets up (v2: the leaf move when the
// resolved parent directory is hearth's own cgroup and that is not the real
// root cgroup, which is exempt from the no-internal-processes rule; then
// controllers in subtree_control from the delegation point (hearth's own
// cgroup, or the deepest existing directory of an explicit parent outside
// it) down to `<parent>/envs`; all modes: `<parent>/envs`). Never returns null: when cgroupfs
// cannot be used it returns the `none` driver with the reason in enforcement()/describe(). Call
// early, before the environments start (the v2 leaf move is racy with processes hearth itself is
// creating).
std::unique_ptr<Driver> open(const Config& config);
// Same from an already detected layout (tests; a forced mode).
std::unique_ptr<Driver> open(const Layout& layout, const Config& config);

} // namespace hearth::cgroup

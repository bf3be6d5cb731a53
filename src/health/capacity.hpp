#pragma once
// The container's capacity, for `status.capacity` and the deploy-time check
// that new limits fit (issue 13, "Capacity").
//
// Capacity is what hearth itself may use: the limits of hearth's own cgroup
// (the tightest along its path up to the mount root, since pure v2 moves
// hearth into a `hearth` leaf under the container's cgroup whose own
// memory.max is "max"), else the machine: /proc/meminfo MemTotal and the
// CPUs hearth may run on (sched_getaffinity). A cgroup limit above the
// machine's is no limit.
//
// Committed is the sum of limits.memory and limits.cpus of the live
// revisions. A revision without a memory (or CPU) limit commits nothing of
// it: it is counted in `unlimited_*` so a control plane can see the risk.

#include "isolation/cgroup.hpp"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace hearth::health {

struct Capacity {
    std::uint64_t memory_bytes = 0; // 0 only when nothing could be read
    double cpus = 0;                // may be fractional (cpu.max 150000 100000 = 1.5)
    std::string memory_source;      // "cgroup" or "machine"
    std::string cpus_source;        // "cgroup" or "machine"
};

struct CapacitySources {
    // Prepended to /proc/... and to the cgroup mount points from mountinfo
    // (fake trees in tests). "" = the real root.
    std::string root;
    // CPUs hearth may run on; nullopt = sched_getaffinity(0) (tests set it).
    std::optional<unsigned> affinity_cpus;
};

// Reads <root>/proc/self/mountinfo, <root>/proc/self/cgroup,
// <root>/proc/meminfo and the cgroup files: v2 memory.max and cpu.max; v1
// memory.limit_in_bytes, cpu.cfs_quota_us and cpu.cfs_period_us (hybrid:
// the v1 files, where the controllers are). Read-only cgroup mounts are
// read too (the usual unprivileged container). Unreadable files count as
// "no limit". Blocking (small files); thread-safe; never throws but bad_alloc.
Capacity read_capacity(const CapacitySources& sources = {});

struct Committed {
    std::uint64_t memory_bytes = 0;
    double cpus = 0;
    std::size_t revisions = 0;        // live revisions counted
    std::size_t unlimited_memory = 0; // of which without limits.memory
    std::size_t unlimited_cpus = 0;   // of which without limits.cpus
};

// Adds one live revision's limits (memory_max, cpu_quota) to `committed`.
void commit(Committed& committed, const cgroup::Limits& limits);

struct Fit {
    bool fits = true;
    std::string resource; // "memory" or "cpus" when it does not fit
    std::string message;  // e.g. "insufficient memory: asked 2 GiB, free 1.5 GiB of 4 GiB
                          // (2.5 GiB committed to 3 revisions)"
};

// Whether a deploy asking `new_limits` fits next to `committed`, when the
// revision it will replace (the location's serving one, already counted in
// `committed`) has `replaced_limits`: that one is subtracted, so a redeploy
// counts its location once, not twice. Only limits that are set are
// checked (no memory limit asks for no memory). Memory first, then CPUs.
// Pure.
Fit fits(const Capacity& capacity, const Committed& committed, const cgroup::Limits& new_limits,
         const std::optional<cgroup::Limits>& replaced_limits = std::nullopt);

// {"memory": {"total", "committed", "free", "source"}, "cpus": {"total",
// "committed", "free", "source"}, "revisions", "unlimited": {"memory",
// "cpus"}} (bytes; free is clamped at 0 when overcommitted). Pure.
nlohmann::json capacity_to_json(const Capacity& capacity, const Committed& committed);

} // namespace hearth::health

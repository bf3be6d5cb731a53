#include "health/capacity.hpp"

#include "isolation/cgroup.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"
#include "util/units.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sched.h>
#include <unistd.h>
#include <vector>

namespace hearth::health {

using nlohmann::json;

namespace {

// The cgroup mounts of `mountinfo`, with the sources' root prepended to each
// mount point (fake trees in tests).
std::vector<cgroup::MountEntry> cgroup_mounts(std::string_view mountinfo,
                                              const std::string& prefix) {
    auto mounts = cgroup::parse_mountinfo(mountinfo);
    for (auto& m : mounts)
        m.point = prefix + m.point;
    return mounts;
}

// hearth's cgroup directory in `mount` given its path in the hierarchy; the
// mount point when the path is not below the mount's root (a cgroup
// namespace shows "/" for the namespace root).
std::string own_directory(const cgroup::MountEntry& mount, const std::string& path) {
    std::string root = mount.root == "/" ? "" : mount.root;
    if (path.compare(0, root.size(), root) == 0 &&
        (path.size() == root.size() || path[root.size()] == '/')) {
        std::string rest = path.substr(root.size());
        std::string dir = rest.empty() || rest == "/" ? mount.point : path_join(mount.point, rest);
        // Not there (a stale path): the mount point is the best guess.
        return ::access(dir.c_str(), F_OK) == 0 ? dir : mount.point;
    }
    return mount.point;
}

// Directories from `dir` up to and including `stop`.
std::vector<std::string> up_to(std::string dir, const std::string& stop) {
    std::vector<std::string> out;
    while (true) {
        out.push_back(dir);
        if (dir.size() <= stop.size() || dir == stop) break;
        auto slash = dir.rfind('/');
        if (slash == std::string::npos || slash < stop.size()) break;
        dir.resize(slash);
    }
    return out;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
    s = trim(s);
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::optional<std::int64_t> parse_i64(std::string_view s) {
    s = trim(s);
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
    return v;
}

std::optional<std::string> small_file(const std::string& path) {
    auto r = read_file(path, 1 << 20);
    if (!r) return std::nullopt;
    return std::move(*r);
}

void tighten(std::optional<std::uint64_t>& best, std::optional<std::uint64_t> v) {
    if (v && (!best || *v < *best)) best = v;
}
void tighten(std::optional<double>& best, std::optional<double> v) {
    if (v && (!best || *v < *best)) best = v;
}

// "max" or bytes.
std::optional<std::uint64_t> v2_memory(const std::string& dir) {
    auto text = small_file(path_join(dir, "memory.max"));
    return text ? parse_u64(*text) : std::nullopt;
}

// "max 100000" or "150000 100000".
std::optional<double> v2_cpus(const std::string& dir) {
    auto text = small_file(path_join(dir, "cpu.max"));
    if (!text) return std::nullopt;
    auto parts = split(trim(*text), ' ');
    if (parts.size() != 2) return std::nullopt;
    auto quota = parse_u64(parts[0]);
    auto period = parse_u64(parts[1]);
    if (!quota || !period || *period == 0) return std::nullopt;
    return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<std::uint64_t> v1_memory(const std::string& dir) {
    auto text = small_file(path_join(dir, "memory.limit_in_bytes"));
    return text ? parse_u64(*text) : std::nullopt;
}

std::optional<double> v1_cpus(const std::string& dir) {
    auto quota_text = small_file(path_join(dir, "cpu.cfs_quota_us"));
    auto period_text = small_file(path_join(dir, "cpu.cfs_period_us"));
    if (!quota_text || !period_text) return std::nullopt;
    auto quota = parse_i64(*quota_text);
    auto period = parse_u64(*period_text);
    if (!quota || *quota <= 0 || !period || *period == 0) return std::nullopt; // -1: none
    return static_cast<double>(*quota) / static_cast<double>(*period);
}

std::optional<std::uint64_t> mem_total(const std::string& root) {
    auto text = small_file(root + "/proc/meminfo");
    if (!text) return std::nullopt;
    for (auto line : split(*text, '\n')) {
        if (line.rfind("MemTotal:", 0) != 0) continue;
        auto rest = trim(line.substr(9));
        auto space = rest.find(' ');
        auto kb = parse_u64(rest.substr(0, space));
        if (kb) return *kb * 1024;
    }
    return std::nullopt;
}

unsigned affinity_count() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return static_cast<unsigned>(CPU_COUNT(&set));
}

std::string cpus_text(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

} // namespace

Capacity read_capacity(const CapacitySources& sources) {
    const std::string& root = sources.root;
    std::optional<std::uint64_t> cg_memory;
    std::optional<double> cg_cpus;

    auto mountinfo = small_file(root + "/proc/self/mountinfo");
    auto proc_cgroup = small_file(root + "/proc/self/cgroup");
    if (mountinfo && proc_cgroup) {
        auto mounts = cgroup_mounts(*mountinfo, root);
        auto members = cgroup::parse_proc_cgroup(*proc_cgroup);
        // The v1 hierarchy of `controller`, as (mount, hearth's path in it).
        auto v1_dirs = [&](std::string_view controller) -> std::vector<std::string> {
            for (const auto& m : members) {
                if (!cgroup::has_token(m.controllers, controller)) continue;
                for (const auto& mount : mounts)
                    if (mount.fstype == "cgroup" &&
                        cgroup::has_token(mount.super_options, controller))
                        return up_to(own_directory(mount, m.path), mount.point);
            }
            return {};
        };
        auto v2_dirs = [&]() -> std::vector<std::string> {
            for (const auto& m : members) {
                if (!m.controllers.empty()) continue;
                for (const auto& mount : mounts)
                    if (mount.fstype == "cgroup2")
                        return up_to(own_directory(mount, m.path), mount.point);
            }
            return {};
        };
        // v1 where the controller is mounted there (v1, hybrid), else v2.
        auto memory_dirs = v1_dirs("memory");
        if (!memory_dirs.empty()) {
            for (const auto& d : memory_dirs)
                tighten(cg_memory, v1_memory(d));
        } else {
            for (const auto& d : v2_dirs())
                tighten(cg_memory, v2_memory(d));
        }
        auto cpu_dirs = v1_dirs("cpu");
        if (!cpu_dirs.empty()) {
            for (const auto& d : cpu_dirs)
                tighten(cg_cpus, v1_cpus(d));
        } else {
            for (const auto& d : v2_dirs())
                tighten(cg_cpus, v2_cpus(d));
        }
    }

    Capacity cap;
    auto machine_memory = mem_total(root);
    cap.memory_source = "machine";
    cap.memory_bytes = machine_memory.value_or(0);
    if (cg_memory && (!machine_memory || *cg_memory < *machine_memory)) {
        cap.memory_bytes = *cg_memory;
        cap.memory_source = "cgroup";
    }
    unsigned cpus = sources.affinity_cpus ? *sources.affinity_cpus : affinity_count();
    cap.cpus = static_cast<double>(cpus);
    cap.cpus_source = "machine";
    if (cg_cpus && (cpus == 0 || *cg_cpus < static_cast<double>(cpus))) {
        cap.cpus = *cg_cpus;
        cap.cpus_source = "cgroup";
    }
    return cap;
}

void commit(Committed& committed, const cgroup::Limits& limits) {
    ++committed.revisions;
    if (limits.memory_max)
        committed.memory_bytes += *limits.memory_max;
    else
        ++committed.unlimited_memory;
    if (limits.cpu_quota)
        committed.cpus += *limits.cpu_quota;
    else
        ++committed.unlimited_cpus;
}

Fit fits(const Capacity& capacity, const Committed& committed, const cgroup::Limits& new_limits,
         const std::optional<cgroup::Limits>& replaced_limits) {
    Fit fit;
    std::size_t others = committed.revisions - (replaced_limits && committed.revisions ? 1 : 0);
    auto revisions_text = [&] {
        return std::to_string(others) + (others == 1 ? " revision" : " revisions");
    };
    if (new_limits.memory_max) {
        std::uint64_t used = committed.memory_bytes;
        if (replaced_limits && replaced_limits->memory_max)
            used -= std::min(used, *replaced_limits->memory_max);
        std::uint64_t free = capacity.memory_bytes - std::min(used, capacity.memory_bytes);
        if (*new_limits.memory_max > free) {
            fit.fits = false;
            fit.resource = "memory";
            fit.message = "insufficient memory: asked " + format_bytes(*new_limits.memory_max) +
                          ", free " + format_bytes(free) + " of " +
                          format_bytes(capacity.memory_bytes) + " (" + format_bytes(used) +
                          " committed to " + revisions_text() + ")";
            return fit;
        }
    }
    if (new_limits.cpu_quota) {
        double used = committed.cpus;
        if (replaced_limits && replaced_limits->cpu_quota)
            used = std::max(0.0, used - *replaced_limits->cpu_quota);
        double free = std::max(0.0, capacity.cpus - used);
        // Sums of decimal CPU counts are not exact in binary.
        if (*new_limits.cpu_quota > free + 1e-9) {
            fit.fits = false;
            fit.resource = "cpus";
            fit.message = "insufficient cpus: asked " + cpus_text(*new_limits.cpu_quota) +
                          ", free " + cpus_text(free) + " of " + cpus_text(capacity.cpus) + " (" +
                          cpus_text(used) + " committed to " + revisions_text() + ")";
            return fit;
        }
    }
    return fit;
}

json capacity_to_json(const Capacity& capacity, const Committed& committed) {
    std::uint64_t free_memory =
        capacity.memory_bytes - std::min(committed.memory_bytes, capacity.memory_bytes);
    double free_cpus = std::max(0.0, capacity.cpus - committed.cpus);
    return json{
        {"memory",
         {{"total", capacity.memory_bytes},
          {"committed", committed.memory_bytes},
          {"free", free_memory},
          {"source", capacity.memory_source}}},
        {"cpus",
         {{"total", capacity.cpus},
          {"committed", committed.cpus},
          {"free", free_cpus},
          {"source", capacity.cpus_source}}},
        {"revisions", committed.revisions},
        {"unlimited", {{"memory", committed.unlimited_memory}, {"cpus", committed.unlimited_cpus}}},
    };
}

} // namespace hearth::health

#pragma once
// Which CPUs a CPU-limited revision may run on.
//
// A quota bounds a revision's CPU time per period, not how many CPUs it holds
// at once: two busy threads under `cpus: 0.5` run on both CPUs of a 2-CPU
// machine for the first 25 ms of every 100 ms period, and for those 25 ms a
// neighbour's wakeup finds no idle CPU and waits behind the hog's scheduler
// slice (measured: a request/response server's p99 went from ~0.3 ms to
// ~3.8 ms). Confining a revision limited to `cpus` to ceil(cpus) CPUs keeps
// the rest of the machine free of it at every instant, not only on average;
// its quota stays the same. Revisions without a CPU limit, and those whose
// limit needs every usable CPU, are not confined.
//
// Exclusive CPUs (limits.cpu_exclusive, the static policy of Kubernetes' CPU
// manager): a revision can also ask for ceil(cpus) CPUs of its own. They
// leave the shared pool: every other revision (confined ones are moved off
// them), and hearth itself, run on the rest. A quota confines in time and a
// placement in space, but neighbours still share a CPU; only a CPU nobody
// else runs on keeps a latency-sensitive revision's wakeups from waiting
// behind a neighbour's scheduler slice (bench/noisy_neighbour.sh, the
// server's own part of a request: p99 1.3 ms beside a CPU hog and memory
// hogs on a 2-CPU machine, 0.05 ms with its own CPU, no more than alone).
// The revisions of one location share its exclusive CPUs, so a new revision
// can start while the old one still runs. At least one CPU always stays
// shared.
//
// Pure bookkeeping, no system calls except usable_cpus(). Loop thread only.

#include <map>
#include <optional>
#include <sched.h>
#include <string>
#include <vector>

namespace hearth {

// The CPUs this process may run on (sched_getaffinity), ascending. Empty on
// error.
std::vector<int> usable_cpus();

// "0-2,5": the kernel's cpulist format (cpuset.cpus, /proc/*/status) for an
// ascending list without duplicates. "" for an empty list.
std::string format_cpu_list(const std::vector<int>& cpus);

// A cpu_set_t holding `cpus` (each below CPU_SETSIZE; others are ignored).
cpu_set_t to_cpu_set(const std::vector<int>& cpus);

class CpuSpread {
public:
    explicit CpuSpread(std::vector<int> usable);

    // The CPUs for revision `name` limited to `cpus` CPUs: the same as before
    // if `name` already holds some (restarts keep their CPUs), otherwise the
    // ceil(cpus) usable CPUs with the least CPU already promised to confined
    // revisions (each promises cpus / its CPU count to each of its CPUs);
    // ties go to the higher-numbered CPU, since CPU 0 usually takes more
    // interrupts and housekeeping. Ascending. Empty when nothing is confined
    // (ceil(cpus) >= the usable CPU count, cpus <= 0, or no usable CPUs).
    // Only CPUs of the shared pool are considered.
    std::vector<int> assign(const std::string& name, double cpus);
    // Reserves ceil(cpus) (at least 1) CPUs for `name` of location `owner`.
    // When other revisions of `owner` hold exclusive CPUs (a blue/green
    // redeploy), the new one shares them: it takes the highest-numbered
    // ceil(cpus) of them, or all of them plus the least loaded shared CPUs
    // when it needs more. Otherwise the least loaded shared CPUs (ties:
    // highest-numbered). Confined revisions on CPUs taken from the pool are
    // moved to other shared CPUs (their new sets: cpus_of()). Returns the
    // CPUs, ascending, or empty with `error` set when the pool cannot give
    // enough and still keep one CPU shared.
    std::vector<int> assign_exclusive(const std::string& name, const std::string& owner,
                                      double cpus, std::string& error);
    // Forgets `name`'s CPUs (unknown names are ignored). True when that
    // changed the shared pool (no other revision of its location holds some
    // of the exclusive CPUs it held).
    bool release(const std::string& name);
    // `name`'s CPUs, ascending; empty when it holds none (it then runs on
    // the shared pool).
    std::vector<int> cpus_of(const std::string& name) const;
    bool is_exclusive(const std::string& name) const;
    // Usable CPUs that no one holds exclusively, ascending.
    std::vector<int> shared() const;
    // CPU -> the location holding it exclusively.
    std::map<int, std::string> exclusive_owners() const;
    // Confined revisions per usable CPU (tests).
    std::map<int, int> holders() const;
    const std::vector<int>& usable() const { return usable_; }

private:
    struct Held {
        std::vector<int> cpus;
        double asked = 0; // limits.cpus
        double share = 0; // CPU promised to each of `cpus`
        bool exclusive = false;
        std::string owner; // location, for exclusive CPUs
    };
    // The `count` least loaded CPUs of `pool` (ties: highest), ascending.
    std::vector<int> least_loaded(const std::vector<int>& pool, std::size_t count) const;
    std::vector<int> usable_;
    std::map<std::string, Held> held_;
};

} // namespace hearth

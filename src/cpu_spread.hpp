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
    std::vector<int> assign(const std::string& name, double cpus);
    // Forgets `name`'s CPUs (unknown names are ignored).
    void release(const std::string& name);
    // `name`'s CPUs, ascending; empty when it holds none.
    std::vector<int> cpus_of(const std::string& name) const;
    // Confined revisions per usable CPU (tests).
    std::map<int, int> holders() const;
    const std::vector<int>& usable() const { return usable_; }

private:
    struct Held {
        std::vector<int> cpus;
        double share = 0; // CPU promised to each of `cpus`
    };
    std::vector<int> usable_;
    std::map<std::string, Held> held_;
};

} // namespace hearth

#include "cpu_spread.hpp"

#include <algorithm>
#include <cmath>

namespace hearth {

std::vector<int> usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return {};
    std::vector<int> cpus;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    return cpus;
}

std::string format_cpu_list(const std::vector<int>& cpus) {
    std::string out;
    for (std::size_t i = 0; i < cpus.size();) {
        std::size_t j = i;
        while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1)
            ++j;
        if (!out.empty()) out += ',';
        out += std::to_string(cpus[i]);
        if (j > i) out += '-' + std::to_string(cpus[j]);
        i = j + 1;
    }
    return out;
}

cpu_set_t to_cpu_set(const std::vector<int>& cpus) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : cpus)
        if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
    return set;
}

CpuSpread::CpuSpread(std::vector<int> usable) : usable_(std::move(usable)) {
    std::sort(usable_.begin(), usable_.end());
    usable_.erase(std::unique(usable_.begin(), usable_.end()), usable_.end());
}

std::vector<int> CpuSpread::assign(const std::string& name, double cpus) {
    if (auto it = held_.find(name); it != held_.end()) return it->second.cpus;
    if (!(cpus > 0) || usable_.empty()) return {};
    // A tiny tolerance so that 2.0000000001 (from a JSON double) is 2 CPUs.
    double wanted = std::ceil(cpus - 1e-9);
    if (wanted >= static_cast<double>(usable_.size())) return {};
    auto count = static_cast<std::size_t>(std::max(1.0, wanted));

    std::map<int, double> load;
    for (int cpu : usable_)
        load[cpu] = 0;
    for (const auto& [other, held] : held_)
        for (int cpu : held.cpus)
            if (auto l = load.find(cpu); l != load.end()) l->second += held.share;
    std::vector<int> order = usable_;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        if (load[a] != load[b]) return load[a] < load[b];
        return a > b;
    });
    order.resize(count);
    std::sort(order.begin(), order.end());
    held_[name] = Held{order, cpus / static_cast<double>(count)};
    return order;
}

void CpuSpread::release(const std::string& name) {
    held_.erase(name);
}

std::vector<int> CpuSpread::cpus_of(const std::string& name) const {
    auto it = held_.find(name);
    return it == held_.end() ? std::vector<int>{} : it->second.cpus;
}

std::map<int, int> CpuSpread::holders() const {
    std::map<int, int> out;
    for (int cpu : usable_)
        out[cpu] = 0;
    for (const auto& [name, held] : held_)
        for (int cpu : held.cpus)
            ++out[cpu];
    return out;
}

} // namespace hearth

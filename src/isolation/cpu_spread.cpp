#include "isolation/cpu_spread.hpp"

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

namespace {

// A tiny tolerance so that 2.0000000001 (from a JSON double) is 2 CPUs.
std::size_t whole_cpus(double cpus) {
    return static_cast<std::size_t>(std::max(1.0, std::ceil(cpus - 1e-9)));
}

} // namespace

std::vector<int> CpuSpread::least_loaded(const std::vector<int>& pool, std::size_t count) const {
    std::map<int, double> load;
    for (int cpu : pool)
        load[cpu] = 0;
    for (const auto& [other, held] : held_)
        for (int cpu : held.cpus)
            if (auto l = load.find(cpu); l != load.end()) l->second += held.share;
    std::vector<int> order = pool;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        if (load[a] != load[b]) return load[a] < load[b];
        return a > b;
    });
    order.resize(std::min(count, order.size()));
    std::sort(order.begin(), order.end());
    return order;
}

std::vector<int> CpuSpread::assign(const std::string& name, double cpus) {
    if (auto it = held_.find(name); it != held_.end()) return it->second.cpus;
    std::vector<int> pool = shared();
    if (!(cpus > 0) || pool.empty()) return {};
    std::size_t count = whole_cpus(cpus);
    if (count >= pool.size()) return {};
    std::vector<int> chosen = least_loaded(pool, count);
    held_[name] = Held{chosen, cpus, cpus / static_cast<double>(count), false, {}};
    return chosen;
}

std::vector<int> CpuSpread::assign_exclusive(const std::string& name, const std::string& owner,
                                             double cpus, std::string& error) {
    if (auto it = held_.find(name); it != held_.end() && it->second.exclusive)
        return it->second.cpus;
    release(name);
    std::size_t count = whole_cpus(cpus > 0 ? cpus : 1);
    // What the location holds already (its other revisions): a revision
    // that needs no more takes the highest-numbered of those; one that needs
    // more keeps them all and adds shared CPUs. What a smaller revision
    // leaves out returns to the pool when the older revisions end.
    std::vector<int> reserved;
    for (const auto& [other, held] : held_)
        if (held.exclusive && held.owner == owner)
            reserved.insert(reserved.end(), held.cpus.begin(), held.cpus.end());
    std::sort(reserved.begin(), reserved.end());
    reserved.erase(std::unique(reserved.begin(), reserved.end()), reserved.end());
    std::vector<int> chosen;
    if (count <= reserved.size()) {
        chosen.assign(reserved.end() - static_cast<std::ptrdiff_t>(count), reserved.end());
    } else {
        std::vector<int> pool = shared();
        std::size_t more = count - reserved.size();
        if (more + 1 > pool.size()) {
            error = "cpu_exclusive: " + std::to_string(count) + " CPU(s) wanted";
            if (!reserved.empty())
                error += " (" + format_cpu_list(reserved) + " already held by " + owner + ")";
            error += ", " + std::to_string(pool.size()) + " shared (" + format_cpu_list(pool) +
                     ") and one must stay shared";
            auto owners = exclusive_owners();
            if (!owners.empty()) {
                error += "; held exclusively:";
                for (const auto& [cpu, who] : owners)
                    error += " " + std::to_string(cpu) + " by " + who;
            }
            return {};
        }
        chosen = least_loaded(pool, more);
        chosen.insert(chosen.end(), reserved.begin(), reserved.end());
        std::sort(chosen.begin(), chosen.end());
    }
    held_[name] = Held{chosen, cpus, cpus / static_cast<double>(count), true, owner};
    // Move confined revisions off the reserved CPUs, most demanding first
    // so that they get the emptiest of what is left.
    std::vector<std::pair<std::string, double>> displaced;
    for (const auto& [other, held] : held_) {
        if (held.exclusive) continue;
        for (int cpu : held.cpus)
            if (std::binary_search(chosen.begin(), chosen.end(), cpu)) {
                displaced.emplace_back(other, held.asked);
                break;
            }
    }
    std::stable_sort(displaced.begin(), displaced.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& [other, asked] : displaced)
        held_.erase(other);
    for (const auto& [other, asked] : displaced)
        assign(other, asked);
    return chosen;
}

bool CpuSpread::release(const std::string& name) {
    auto it = held_.find(name);
    if (it == held_.end()) return false;
    if (!it->second.exclusive) {
        held_.erase(it);
        return false;
    }
    // Other revisions of the location may hold all, some or none of these.
    std::vector<int> before = shared();
    held_.erase(it);
    return shared() != before;
}

std::vector<int> CpuSpread::cpus_of(const std::string& name) const {
    auto it = held_.find(name);
    return it == held_.end() ? std::vector<int>{} : it->second.cpus;
}

bool CpuSpread::is_exclusive(const std::string& name) const {
    auto it = held_.find(name);
    return it != held_.end() && it->second.exclusive;
}

std::vector<int> CpuSpread::shared() const {
    std::vector<int> out;
    auto owners = exclusive_owners();
    for (int cpu : usable_)
        if (!owners.count(cpu)) out.push_back(cpu);
    return out;
}

std::map<int, std::string> CpuSpread::exclusive_owners() const {
    std::map<int, std::string> out;
    for (const auto& [name, held] : held_)
        if (held.exclusive)
            for (int cpu : held.cpus)
                out[cpu] = held.owner;
    return out;
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

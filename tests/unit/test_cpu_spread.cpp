#include "cpu_spread.hpp"

#include <catch2/catch.hpp>

using hearth::CpuSpread;
using hearth::format_cpu_list;
using V = std::vector<int>;

TEST_CASE("cpu list: the kernel's cpulist format", "[cpu_spread]") {
    CHECK(format_cpu_list({}) == "");
    CHECK(format_cpu_list({3}) == "3");
    CHECK(format_cpu_list({0, 1}) == "0-1");
    CHECK(format_cpu_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8");
    cpu_set_t set = hearth::to_cpu_set({1, 3, CPU_SETSIZE + 4});
    CHECK(CPU_COUNT(&set) == 2);
    CHECK(CPU_ISSET(1, &set));
    CHECK(CPU_ISSET(3, &set));
}

TEST_CASE("cpu spread: ceil(cpus) CPUs, least promised first, high CPUs on ties", "[cpu_spread]") {
    CpuSpread spread({0, 1, 2, 3});
    CHECK(spread.assign("a", 0.5) == V{3});
    CHECK(spread.assign("b", 0.5) == V{2});
    CHECK(spread.assign("c", 1.5) == V{0, 1});
    // CPUs 0 and 1 hold 0.75 each, 2 and 3 hold 0.5: the next goes to 3.
    CHECK(spread.assign("d", 0.2) == V{3});
    CHECK(spread.holders() == std::map<int, int>{{0, 1}, {1, 1}, {2, 1}, {3, 2}});
    // A restart keeps its CPUs, whatever it asks.
    CHECK(spread.assign("a", 2.5) == V{3});
    CHECK(spread.cpus_of("a") == V{3});
    spread.release("a");
    CHECK(spread.cpus_of("a").empty());
    spread.release("d");
    spread.release("never-assigned");
    CHECK(spread.holders() == std::map<int, int>{{0, 1}, {1, 1}, {2, 1}, {3, 0}});
    CHECK(spread.assign("e", 1) == V{3});
    // 2.0000000001 (a JSON double) is 2 CPUs, not 3.
    CHECK(spread.assign("f", 2.0000000001).size() == 2);
}

TEST_CASE("cpu spread: nothing to confine", "[cpu_spread]") {
    CpuSpread two({0, 1});
    CHECK(two.assign("whole", 2).empty());
    CHECK(two.assign("more", 1.01).empty()); // ceil = 2 = every CPU
    CHECK(two.assign("zero", 0).empty());
    CHECK(two.assign("negative", -1).empty());
    CHECK(two.holders() == std::map<int, int>{{0, 0}, {1, 0}});
    CpuSpread one({5});
    CHECK(one.assign("x", 0.5).empty());
    CpuSpread none({});
    CHECK(none.assign("x", 0.5).empty());
    // Unsorted, duplicated input (not from the kernel, but harmless).
    CpuSpread odd({6, 2, 6, 4});
    CHECK(odd.usable() == V{2, 4, 6});
    CHECK(odd.assign("x", 1) == V{6});
}

TEST_CASE("cpu spread: this process's CPUs", "[cpu_spread]") {
    V cpus = hearth::usable_cpus();
    REQUIRE_FALSE(cpus.empty());
    cpu_set_t set;
    REQUIRE(::sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(cpus.size() == static_cast<std::size_t>(CPU_COUNT(&set)));
    for (std::size_t i = 1; i < cpus.size(); ++i)
        CHECK(cpus[i - 1] < cpus[i]);
}

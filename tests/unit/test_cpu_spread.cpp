#include "isolation/cpu_spread.hpp"

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

TEST_CASE("cpu spread: exclusive CPUs leave the shared pool, confined revisions move off them",
          "[cpu_spread]") {
    CpuSpread spread({0, 1, 2, 3});
    CHECK(spread.assign("hog", 0.5) == V{3});
    std::string error;
    // The least loaded CPUs (2, 1: nothing on them; ties go high).
    CHECK(spread.assign_exclusive("srv", "latency", 2, error) == V{1, 2});
    CHECK(error.empty());
    CHECK(spread.is_exclusive("srv"));
    CHECK_FALSE(spread.is_exclusive("hog"));
    CHECK(spread.shared() == V{0, 3});
    CHECK(spread.exclusive_owners() == std::map<int, std::string>{{1, "latency"}, {2, "latency"}});
    // Confined revisions are placed in the shared pool only.
    CHECK(spread.assign("b", 0.5) == V{0});
    // A second exclusive CPU is taken from the shared pool (a tie between 0
    // and 3: the higher), and the revision confined to it moves to what is
    // left: one CPU, so it simply runs on the shared pool.
    CHECK(spread.assign_exclusive("other", "db", 0.3, error) == V{3});
    CHECK(spread.shared() == V{0});
    CHECK(spread.cpus_of("hog").empty());
    CHECK(spread.cpus_of("b") == V{0});
    // One CPU stays shared: nothing more can be reserved.
    CHECK(spread.assign_exclusive("third", "cache", 1, error).empty());
    CHECK(error.find("1 CPU(s) wanted, 1 shared (0) and one must stay shared") !=
          std::string::npos);
    CHECK(error.find("1 by latency") != std::string::npos);
    CHECK(spread.cpus_of("third").empty());
    // A confined revision that would need the whole shared pool follows it.
    CHECK(spread.assign("wide", 1).empty());
}

TEST_CASE("cpu spread: a location's revisions share its exclusive CPUs until the last ends",
          "[cpu_spread]") {
    CpuSpread spread({0, 1});
    std::string error;
    CHECK(spread.assign_exclusive("v1", "latency", 1, error) == V{1});
    // The next revision of the same location while v1 still runs.
    CHECK(spread.assign_exclusive("v2", "latency", 1, error) == V{1});
    CHECK(spread.assign_exclusive("x", "elsewhere", 1, error).empty());
    CHECK_FALSE(spread.release("v1")); // v2 still holds CPU 1
    CHECK(spread.shared() == V{0});
    // A restart of v2 keeps its CPU.
    CHECK(spread.assign_exclusive("v2", "latency", 1, error) == V{1});
    CHECK(spread.release("v2")); // the pool grew
    CHECK(spread.shared() == V{0, 1});
    CHECK_FALSE(spread.release("v2"));
    // One usable CPU: never exclusive.
    CpuSpread one({0});
    CHECK(one.assign_exclusive("a", "latency", 1, error).empty());
    CHECK(one.shared() == V{0});
}

TEST_CASE("cpu spread: a redeploy that asks for more or fewer exclusive CPUs", "[cpu_spread]") {
    CpuSpread spread({0, 1, 2, 3});
    std::string error;
    CHECK(spread.assign_exclusive("v1", "latency", 1, error) == V{3});
    // v2 wants two: it keeps v1's CPU and takes the least loaded shared one.
    CHECK(spread.assign_exclusive("v2", "latency", 2, error) == V{2, 3});
    CHECK(error.empty());
    CHECK(spread.shared() == V{0, 1});
    // v1 ends: v2 still holds both, the pool is unchanged.
    CHECK_FALSE(spread.release("v1"));
    CHECK(spread.cpus_of("v2") == V{2, 3});
    // v3 wants one: the highest of the location's; when v2 ends, CPU 2
    // goes back to the pool.
    CHECK(spread.assign_exclusive("v3", "latency", 1, error) == V{3});
    CHECK(spread.shared() == V{0, 1});
    CHECK(spread.release("v2"));
    CHECK(spread.shared() == V{0, 1, 2});
    // Growing past what the pool can give (one stays shared) is refused,
    // naming what the location already holds; v3 keeps its CPU.
    CHECK(spread.assign_exclusive("v4", "latency", 4, error).empty());
    CHECK(error.find("4 CPU(s) wanted (3 already held by latency), 3 shared (0-2)") !=
          std::string::npos);
    CHECK(spread.cpus_of("v3") == V{3});
    CHECK(spread.shared() == V{0, 1, 2});
}

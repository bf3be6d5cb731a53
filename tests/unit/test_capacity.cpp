#include "health/capacity.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace hearth;
using namespace hearth::health;
namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t GiB = 1ull << 30;
constexpr std::uint64_t MiB = 1ull << 20;

// A fake root: /proc/self/{mountinfo,cgroup}, /proc/meminfo and cgroupfs
// files as plain files.
struct FakeRoot {
    std::string root;
    FakeRoot() {
        char tmpl[] = "/tmp/hearth-cap-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        root = tmpl;
        put("/proc/meminfo", "MemTotal:        8388608 kB\nMemFree:         1000 kB\n");
    }
    ~FakeRoot() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    void put(const std::string& rel, const std::string& text) const {
        fs::create_directories(fs::path(root + rel).parent_path());
        std::ofstream(root + rel, std::ios::trunc) << text;
    }
    Capacity read(unsigned cpus = 4) const {
        CapacitySources s;
        s.root = root;
        s.affinity_cpus = cpus;
        return read_capacity(s);
    }
};

const char* v2_mountinfo = "24 1 0:22 / / rw,relatime - overlay overlay rw\n"
                           "30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - "
                           "cgroup2 cgroup2 rw,nsdelegate\n";

const char* v1_mountinfo =
    "24 1 0:22 / / rw,relatime - overlay overlay rw\n"
    "31 24 0:28 / /sys/fs/cgroup ro,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,relatime - cgroup cgroup rw,memory\n"
    "39 31 0:36 /docker/abc /sys/fs/cgroup/pids ro,relatime - cgroup cgroup rw,pids\n";
const char* v1_cgroup = "12:pids:/docker/abc\n4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n";

using Limits = cgroup::Limits;

Limits limits(std::optional<std::uint64_t> memory, std::optional<double> cpus) {
    Limits l;
    l.memory_max = memory;
    l.cpu_quota = cpus;
    return l;
}

} // namespace

TEST_CASE("capacity: v2, the tightest limit on hearth's path", "[capacity]") {
    FakeRoot r;
    r.put("/proc/self/mountinfo", v2_mountinfo);
    // Pure v2 moved hearth into the `hearth` leaf; the container's limits
    // are on its parent.
    r.put("/proc/self/cgroup", "0::/hearth\n");
    r.put("/sys/fs/cgroup/memory.max", "1073741824\n");
    r.put("/sys/fs/cgroup/cpu.max", "150000 100000\n");
    r.put("/sys/fs/cgroup/hearth/memory.max", "max\n");
    r.put("/sys/fs/cgroup/hearth/cpu.max", "max 100000\n");
    Capacity c = r.read();
    CHECK(c.memory_bytes == GiB);
    CHECK(c.memory_source == "cgroup");
    CHECK(c.cpus == Approx(1.5));
    CHECK(c.cpus_source == "cgroup");

    // A tighter limit deeper down wins.
    r.put("/sys/fs/cgroup/hearth/memory.max", "536870912\n");
    CHECK(r.read().memory_bytes == 512 * MiB);
}

TEST_CASE("capacity: v2 without limits is the machine", "[capacity]") {
    FakeRoot r;
    r.put("/proc/self/mountinfo", v2_mountinfo);
    r.put("/proc/self/cgroup", "0::/\n");
    r.put("/sys/fs/cgroup/memory.max", "max\n");
    r.put("/sys/fs/cgroup/cpu.max", "max 100000\n");
    Capacity c = r.read(4);
    CHECK(c.memory_bytes == 8 * GiB);
    CHECK(c.memory_source == "machine");
    CHECK(c.cpus == 4);
    CHECK(c.cpus_source == "machine");

    // Limits above the machine's are no limits.
    r.put("/sys/fs/cgroup/memory.max", std::to_string(64 * GiB) + "\n");
    r.put("/sys/fs/cgroup/cpu.max", "800000 100000\n");
    c = r.read(4);
    CHECK(c.memory_source == "machine");
    CHECK(c.memory_bytes == 8 * GiB);
    CHECK(c.cpus == 4);
    CHECK(c.cpus_source == "machine");

    // Fewer CPUs in the affinity mask than the quota: the mask.
    r.put("/sys/fs/cgroup/cpu.max", "300000 100000\n");
    c = r.read(2);
    CHECK(c.cpus == 2);
    CHECK(c.cpus_source == "machine");
}

TEST_CASE("capacity: v1 limit_in_bytes and cfs quota", "[capacity]") {
    FakeRoot r;
    r.put("/proc/self/mountinfo", v1_mountinfo);
    r.put("/proc/self/cgroup", v1_cgroup);
    // The container's own cgroup is the mount's root (no cgroup namespace).
    r.put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n");
    r.put("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n");
    r.put("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    Capacity c = r.read();
    CHECK(c.memory_bytes == 512 * MiB);
    CHECK(c.memory_source == "cgroup");
    CHECK(c.cpus == Approx(0.5));
    CHECK(c.cpus_source == "cgroup");

    // v1's "unlimited": a huge number and a quota of -1.
    r.put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    r.put("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    c = r.read(4);
    CHECK(c.memory_bytes == 8 * GiB);
    CHECK(c.memory_source == "machine");
    CHECK(c.cpus == 4);
    CHECK(c.cpus_source == "machine");
}

TEST_CASE("capacity: hybrid reads the v1 controllers", "[capacity]") {
    FakeRoot r;
    r.put("/proc/self/mountinfo",
          std::string(v1_mountinfo) +
              "41 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
    r.put("/proc/self/cgroup", std::string(v1_cgroup) + "0::/docker/abc\n");
    r.put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n");
    r.put("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "200000\n");
    r.put("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    // The controller-less unified hierarchy has no limit files to mislead.
    Capacity c = r.read();
    CHECK(c.memory_bytes == 2 * GiB);
    CHECK(c.cpus == Approx(2.0));
}

TEST_CASE("capacity: a v1 path below the mount root is walked up", "[capacity]") {
    FakeRoot r;
    // Host view: hierarchy mounted at its root, hearth deep inside.
    r.put("/proc/self/mountinfo",
          "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n");
    r.put("/proc/self/cgroup", "4:memory:/kubepods/pod1/c1\n");
    r.put("/sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
    r.put("/sys/fs/cgroup/memory/kubepods/memory.limit_in_bytes", "4294967296\n");
    r.put("/sys/fs/cgroup/memory/kubepods/pod1/memory.limit_in_bytes", "1073741824\n");
    r.put("/sys/fs/cgroup/memory/kubepods/pod1/c1/memory.limit_in_bytes", "9223372036854771712\n");
    Capacity c = r.read();
    CHECK(c.memory_bytes == GiB);
    CHECK(c.memory_source == "cgroup");
    CHECK(c.cpus_source == "machine");
}

TEST_CASE("capacity: no cgroupfs at all", "[capacity]") {
    FakeRoot r;
    r.put("/proc/self/mountinfo", "24 1 0:22 / / rw,relatime - overlay overlay rw\n");
    r.put("/proc/self/cgroup", "0::/\n");
    Capacity c = r.read(3);
    CHECK(c.memory_bytes == 8 * GiB);
    CHECK(c.cpus == 3);
}

TEST_CASE("capacity: this machine", "[capacity]") {
    Capacity c = read_capacity();
    CHECK(c.memory_bytes > 0);
    CHECK(c.cpus > 0);
    CHECK((c.memory_source == "cgroup" || c.memory_source == "machine"));
}

TEST_CASE("capacity: committed limits", "[capacity]") {
    Committed k;
    commit(k, limits(GiB, 1.0));
    commit(k, limits(512 * MiB, std::nullopt));
    commit(k, limits(std::nullopt, 0.25));
    CHECK(k.revisions == 3);
    CHECK(k.memory_bytes == GiB + 512 * MiB);
    CHECK(k.cpus == Approx(1.25));
    CHECK(k.unlimited_memory == 1);
    CHECK(k.unlimited_cpus == 1);

    Capacity cap{4 * GiB, 2.0, "cgroup", "machine"};
    auto j = capacity_to_json(cap, k);
    CHECK(j["memory"]["total"] == 4 * GiB);
    CHECK(j["memory"]["committed"] == GiB + 512 * MiB);
    CHECK(j["memory"]["free"] == 4 * GiB - GiB - 512 * MiB);
    CHECK(j["memory"]["source"] == "cgroup");
    CHECK(j["cpus"]["free"].get<double>() == Approx(0.75));
    CHECK(j["cpus"]["source"] == "machine");
    CHECK(j["revisions"] == 3);
    CHECK(j["unlimited"]["memory"] == 1);

    // Overcommitted (--overcommit): free is 0, not a wrapped-around number.
    Committed over;
    commit(over, limits(8 * GiB, 4.0));
    j = capacity_to_json(cap, over);
    CHECK(j["memory"]["free"] == 0);
    CHECK(j["cpus"]["free"] == 0.0);
}

TEST_CASE("capacity: fits names the resource, the ask and what is free", "[capacity]") {
    Capacity cap{4 * GiB, 2.0, "cgroup", "cgroup"};
    Committed k;
    commit(k, limits(2 * GiB, 1.0));
    commit(k, limits(GiB, 0.5));

    CHECK(fits(cap, k, limits(GiB, 0.5)).fits);
    CHECK(fits(cap, k, limits(std::nullopt, std::nullopt)).fits);

    Fit memory = fits(cap, k, limits(2 * GiB, 0.1));
    CHECK_FALSE(memory.fits);
    CHECK(memory.resource == "memory");
    CHECK(memory.message ==
          "insufficient memory: asked 2 GiB, free 1 GiB of 4 GiB (3 GiB committed to 2 revisions)");

    Fit cpus = fits(cap, k, limits(512 * MiB, 0.6));
    CHECK_FALSE(cpus.fits);
    CHECK(cpus.resource == "cpus");
    CHECK(cpus.message ==
          "insufficient cpus: asked 0.6, free 0.5 of 2 (1.5 committed to 2 revisions)");

    // Decimal sums that are not exact in binary still fit exactly.
    Committed tenths;
    for (int i = 0; i < 3; ++i)
        commit(tenths, limits(std::nullopt, 0.1));
    Capacity small{GiB, 0.4, "cgroup", "cgroup"};
    CHECK(fits(small, tenths, limits(std::nullopt, 0.1)).fits);
    CHECK_FALSE(fits(small, tenths, limits(std::nullopt, 0.2)).fits);
}

TEST_CASE("capacity: a redeploy counts its location once", "[capacity]") {
    Capacity cap{4 * GiB, 2.0, "cgroup", "cgroup"};
    Committed k;
    commit(k, limits(3 * GiB, 1.5)); // the serving revision of the location
    // A fresh deploy of 2 GiB does not fit next to it...
    CHECK_FALSE(fits(cap, k, limits(2 * GiB, 0.5)).fits);
    // ...but replacing it does: its 3 GiB are given back.
    CHECK(fits(cap, k, limits(2 * GiB, 0.5), limits(3 * GiB, 1.5)).fits);
    CHECK(fits(cap, k, limits(4 * GiB, 2.0), limits(3 * GiB, 1.5)).fits);
    Fit too_big = fits(cap, k, limits(5 * GiB, 1.0), limits(3 * GiB, 1.5));
    CHECK_FALSE(too_big.fits);
    CHECK(too_big.message ==
          "insufficient memory: asked 5 GiB, free 4 GiB of 4 GiB (0 B committed to 0 revisions)");
    // A replaced revision without limits gives nothing back.
    CHECK_FALSE(fits(cap, k, limits(2 * GiB, std::nullopt), limits(std::nullopt, 1.5)).fits);
}

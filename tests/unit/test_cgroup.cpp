#include "init/spawn.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/cgroup_internal.hpp"
#include "util/fs.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace hearth;
using namespace hearth::cgroup;
namespace fs = std::filesystem;

namespace {

// The content of `path`, or `fallback` when it cannot be read.
std::string text_or(const std::string& path, std::string fallback) {
    auto text = hearth::read_file(path);
    return text ? std::move(text).value() : std::move(fallback);
}

// ---------------------------------------------------------------------------
// Fake cgroupfs trees: plain files under a temporary directory.

struct TempTree {
    std::string root;
    TempTree() {
        char tmpl[] = "/tmp/hearth-cg-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        root = tmpl;
    }
    ~TempTree() {
        std::error_code ec;
        fs::remove_all(root, ec);
    }
    std::string path(const std::string& rel) const { return detail::cgroup_path(root, rel); }
    void put(const std::string& rel, const std::string& text) const {
        fs::create_directories(fs::path(path(rel)).parent_path());
        std::ofstream(path(rel), std::ios::trunc) << text;
    }
    std::string get(const std::string& rel) const { return text_or(path(rel), "<missing>"); }
};

const char* v2_mountinfo = "24 1 0:22 / / rw,relatime - overlay overlay rw\n"
                           "30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - "
                           "cgroup2 cgroup2 rw,nsdelegate\n";

// This machine's shape: v1 controllers, a controller-less cgroup2 at
// /sys/fs/cgroup/unified, and the memory cgroup one level down.
const char* hybrid_mountinfo =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
const char* hybrid_cgroup = "9:name=systemd:/\n8:pids:/\n6:freezer:/\n4:memory:/process_api/"
                            "abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

std::string v1_only(std::string mountinfo) {
    auto pos = mountinfo.find("41 31");
    return mountinfo.substr(0, pos);
}

Limits all_limits() {
    Limits l;
    l.memory_max = 64ull << 20;
    l.memory_high = 48ull << 20;
    l.cpu_quota = 0.5;
    l.cpu_weight = 200;
    l.pids_max = 64;
    return l;
}

bool contains(const std::vector<std::string>& lines, std::string_view needle) {
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.find(needle) != std::string::npos; });
}

} // namespace

// ---------------------------------------------------------------------------
// Detection

TEST_CASE("detect: this machine's hybrid layout", "[cgroup]") {
    Layout l = detect(hybrid_mountinfo, hybrid_cgroup);
    CHECK(l.mode == Mode::hybrid);
    CHECK(l.unified_mount == "/sys/fs/cgroup/unified");
    CHECK(l.unified_self == "/sys/fs/cgroup/unified");
    REQUIRE(l.v1.count("memory"));
    CHECK(l.v1.at("memory").mount == "/sys/fs/cgroup/memory");
    CHECK(l.v1.at("memory").self == "/sys/fs/cgroup/memory/process_api/abc");
    CHECK(l.v1.at("cpu").self == "/sys/fs/cgroup/cpu");
    CHECK(l.v1.at("cpuacct").self == "/sys/fs/cgroup/cpuacct");
    CHECK(l.v1.at("pids").controllers == "pids");
    CHECK(l.v1.count("freezer"));
    // Not the v1 cpuset (see Layout): revisions are confined by affinity.
    CHECK_FALSE(l.v1.count("cpuset"));
    CHECK(mode_name(l.mode) == "hybrid");
}

TEST_CASE("detect: pure v2, v1, co-mounted cpu,cpuacct", "[cgroup]") {
    Layout v2 = detect(v2_mountinfo, "0::/system.slice/hearth.service\n");
    CHECK(v2.mode == Mode::v2);
    CHECK(v2.unified_mount == "/sys/fs/cgroup");
    CHECK(v2.unified_self == "/sys/fs/cgroup/system.slice/hearth.service");
    CHECK(v2.v1.empty());

    Layout v1 = detect(v1_only(hybrid_mountinfo), hybrid_cgroup);
    CHECK(v1.mode == Mode::v1);
    CHECK(v1.unified_mount.empty());

    const char* comounted =
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n";
    Layout c = detect(comounted, "3:memory:/a\n2:cpu,cpuacct:/a\n");
    CHECK(c.mode == Mode::v1);
    REQUIRE(c.v1.count("cpu"));
    REQUIRE(c.v1.count("cpuacct"));
    CHECK(c.v1.at("cpu").mount == "/sys/fs/cgroup/cpu,cpuacct");
    CHECK(c.v1.at("cpu").mount == c.v1.at("cpuacct").mount);
    CHECK(c.v1.at("cpu").controllers == "cpu,cpuacct");
    CHECK(c.v1.at("cpuacct").self == "/sys/fs/cgroup/cpu,cpuacct/a");
}

TEST_CASE("detect: read-only and absent cgroupfs give none with a reason", "[cgroup]") {
    Layout ro =
        detect("30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n",
               "0::/\n");
    CHECK(ro.mode == Mode::none);
    CHECK(ro.reason.find("read-only") != std::string::npos);

    Layout absent = detect("24 1 0:22 / / rw,relatime - overlay overlay rw\n", "");
    CHECK(absent.mode == Mode::none);
    CHECK(absent.reason.find("no cgroup") != std::string::npos);

    // v1 read-only but the unified hierarchy writable: v2 for membership/kill.
    std::string mixed = hybrid_mountinfo;
    for (std::size_t p; (p = mixed.find(" rw,relatime - cgroup cgroup")) != std::string::npos;)
        mixed.replace(p, 12, " ro,relatime");
    Layout m = detect(mixed, hybrid_cgroup);
    CHECK(m.mode == Mode::v2);
    CHECK(m.v1.empty());
}

TEST_CASE("detect: bind-mounted subtree, escapes and the mount prefix", "[cgroup]") {
    // Docker on v1 without a cgroup namespace: the mount's root is the
    // container's own cgroup.
    Layout d =
        detect("35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
               "36 31 0:33 /docker/abc /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n",
               "4:memory:/docker/abc\n3:pids:/docker/abc/sub\n");
    CHECK(d.mode == Mode::v1);
    CHECK_FALSE(d.v1.count("memory")); // read-only: left out
    REQUIRE(d.v1.count("pids"));
    CHECK(d.v1.at("pids").self == "/sys/fs/cgroup/pids/sub");

    Layout e = detect("30 24 0:26 / /sys/fs/cgroup\\040x rw - cgroup2 cgroup2 rw\n", "0::/a b\n",
                      "/tmp/fake");
    CHECK(e.unified_mount == "/tmp/fake/sys/fs/cgroup x");
    CHECK(e.unified_self == "/tmp/fake/sys/fs/cgroup x/a b");

    // A cgroup outside the mount's root cannot be reached; use the root.
    Layout o = detect("36 31 0:33 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
                      "3:pids:/other\n");
    CHECK(o.v1.at("pids").self == "/sys/fs/cgroup/pids");
    CHECK(o.reason.find("not visible") != std::string::npos);
}

// ---------------------------------------------------------------------------
// Values

TEST_CASE("cpu weight <-> shares follows systemd's mapping", "[cgroup]") {
    CHECK(weight_to_shares(100) == 1024);
    CHECK(weight_to_shares(1) == 10);
    CHECK(weight_to_shares(200) == 2048);
    CHECK(weight_to_shares(10000) == 102400);
    CHECK(shares_to_weight(1024) == 100);
    CHECK(shares_to_weight(2) == 1);          // clamped up
    CHECK(shares_to_weight(262144) == 10000); // clamped down
    CHECK(shares_to_weight(2048) == 200);
    for (std::uint64_t w : {1ull, 50ull, 100ull, 250ull, 1000ull, 10000ull})
        CHECK(std::llabs(static_cast<long long>(shares_to_weight(weight_to_shares(w))) -
                         static_cast<long long>(w)) <= 1);
}

TEST_CASE("cpu quota and names", "[cgroup]") {
    CHECK(cpu_quota_us(0.5) == 50000);
    CHECK(cpu_quota_us(2) == 200000);
    CHECK(cpu_quota_us(0.001) == 1000); // kernel minimum
    CHECK(cpu_period_us == 100000);
    CHECK(check_name("analytics-3").empty());
    CHECK(check_name("a.b_c@d:e").empty());
    CHECK_FALSE(check_name("").empty());
    CHECK_FALSE(check_name("..").empty());
    CHECK_FALSE(check_name("a/b").empty());
    CHECK_FALSE(check_name("a b").empty());
    CHECK_FALSE(check_name(std::string(129, 'a')).empty());
}

TEST_CASE("keyed files and helpers", "[cgroup]") {
    CHECK(detail::keyed_value("low 0\nhigh 2\nmax 5\noom 1\noom_kill 1\n", "oom") == 1u);
    CHECK(detail::keyed_value("low 0\nhigh 2\nmax 5\noom 1\noom_kill 7\n", "oom_kill") == 7u);
    CHECK_FALSE(detail::keyed_value("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"));
    CHECK(detail::cgroup_path("/a/", "/b/") == "/a/b");
    CHECK(detail::cgroup_path("/a", "") == "/a");
    CHECK(detail::cgroup_path("", "/sys/fs/cgroup/") == "/sys/fs/cgroup");
    CHECK(detail::cgroup_path("", "") == "/");
    CHECK(detail::cgroup_path("/", "envs") == "/envs");
}

// ---------------------------------------------------------------------------
// Fake v2 tree

namespace {

void fake_v2_root(const TempTree& t, const std::string& controllers, bool namespace_root = true) {
    t.put("sys/fs/cgroup/cgroup.controllers", controllers + "\n");
    t.put("sys/fs/cgroup/cgroup.subtree_control", "\n");
    t.put("sys/fs/cgroup/cgroup.procs", "");
    // Only a non-root cgroup has cgroup.events; its presence says hearth is
    // in a namespace root that must obey the no-internal-processes rule.
    if (namespace_root) t.put("sys/fs/cgroup/cgroup.events", "populated 1\nfrozen 0\n");
    t.put("mountinfo", v2_mountinfo);
    t.put("cgroup", "0::/\n");
}

Config fake_config(const TempTree& t) {
    Config c;
    c.mount_prefix = t.root;
    c.mountinfo_path = t.path("mountinfo");
    c.proc_cgroup_path = t.path("cgroup");
    return c;
}

} // namespace

TEST_CASE("v2 fake: leaf move, controllers, limits, placement, stats, OOM watch, kill, remove",
          "[cgroup]") {
    TempTree t;
    fake_v2_root(t, "cpuset cpu io memory pids");
    Config config = fake_config(t);
    config.extra_pids = {4711};
    auto driver = open(config);
    REQUIRE(driver->mode() == Mode::v2);
    INFO(driver->describe().dump());
    CHECK(driver->enforcement().enforced);
    CHECK(driver->enforcement().name() == "enforced");

    // hearth (and the extra pid) moved into <own>/hearth, then controllers enabled.
    auto d = driver->describe();
    CHECK(d["leaf"] == t.path("sys/fs/cgroup/hearth"));
    CHECK(d["moved_pids"] == nlohmann::json::array({::getpid(), 4711}));
    CHECK(t.get("sys/fs/cgroup/hearth/cgroup.procs") == "4711"); // last write wins in a plain file
    // cpuset is enabled too when the kernel offers it (optional: CPU sets).
    CHECK(t.get("sys/fs/cgroup/cgroup.subtree_control") == "+cpu +cpuset +memory +pids");
    CHECK(t.get("sys/fs/cgroup/envs/cgroup.subtree_control") == "+cpu +cpuset +memory +pids");
    CHECK(d["cpu_sets"] == "cpuset");
    CHECK(driver->envs_directories() == std::vector<std::string>{t.path("sys/fs/cgroup/envs")});

    std::string error;
    Limits confined = all_limits();
    confined.cpuset_cpus = "1";
    auto cg = driver->create("analytics-3", confined, error);
    REQUIRE(cg);
    CHECK(error.empty());
    std::string dir = "sys/fs/cgroup/envs/analytics-3/";
    CHECK(t.get(dir + "cpuset.cpus") == "1");
    CHECK(cg->confines_cpus());
    // Exclusive CPUs came or went (cpu_spread.hpp): the running revision's
    // set is rewritten; "" (a newline on the wire) gives it every CPU of
    // the parent again.
    CHECK(cg->set_cpus("0,2"));
    CHECK(t.get(dir + "cpuset.cpus") == "0,2");
    CHECK(cg->confines_cpus());
    CHECK_FALSE(cg->set_cpus(""));
    CHECK(t.get(dir + "cpuset.cpus") == "\n");
    CHECK_FALSE(cg->confines_cpus());
    CHECK(cg->set_cpus("1"));
    {
        // A refused write (here: the file cannot be opened) leaves the
        // kernel's set, and so confines_cpus(), as they were.
        fs::remove(t.path(dir + "cpuset.cpus"));
        fs::create_directory(t.path(dir + "cpuset.cpus"));
        CHECK_FALSE(cg->set_cpus("0"));
        CHECK(cg->confines_cpus());
        fs::remove(t.path(dir + "cpuset.cpus"));
        CHECK(cg->set_cpus("1"));
        CHECK(t.get(dir + "cpuset.cpus") == "1");
    }
    {
        Limits idle;
        idle.cpu_idle = true;
        auto unconfined = driver->create("analytics-4", idle, error);
        REQUIRE(unconfined);
        CHECK(t.get("sys/fs/cgroup/envs/analytics-4/cpu.idle") == "1");
        CHECK(unconfined->unenforced().empty());
        CHECK_FALSE(unconfined->confines_cpus());
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/analytics-4/cpuset.cpus")));
        CHECK(unconfined->remove().removed);
    }
    CHECK(t.get(dir + "memory.max") == "67108864");
    CHECK(t.get(dir + "memory.high") == "50331648");
    CHECK(t.get(dir + "cpu.max") == "50000 100000");
    CHECK(t.get(dir + "cpu.weight") == "200");
    CHECK(t.get(dir + "pids.max") == "64");
    CHECK(cg->unenforced().empty());

    // Placement: a directory fd for clone3, and cgroup.procs as fallback.
    REQUIRE(cg->placement_fd() >= 0);
    struct stat a {
    }, b{};
    REQUIRE(::fstat(cg->placement_fd(), &a) == 0);
    REQUIRE(::stat(t.path(dir).c_str(), &b) == 0);
    CHECK(S_ISDIR(a.st_mode));
    CHECK(a.st_ino == b.st_ino);
    CHECK(cg->procs_paths() == std::vector<std::string>{t.path(dir + "cgroup.procs")});
    CHECK(cg->place(4242) == 0);
    CHECK(t.get(dir + "cgroup.procs") == "4242");

    t.put(dir + "memory.current", "1000\n");
    t.put(dir + "memory.peak", "2000\n");
    t.put(dir + "cpu.stat", "usage_usec 777\nuser_usec 700\nsystem_usec 77\n");
    t.put(dir + "pids.current", "3\n");
    Usage u = cg->usage();
    CHECK(u.memory_current == 1000u);
    CHECK(u.memory_peak == 2000u);
    CHECK(u.cpu_usage_usec == 777u);
    CHECK(u.pids_current == 3u);

    // OOM: inotify on memory.events works on plain files too.
    t.put(dir + "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n");
    auto watch = driver->make_oom_watch();
    REQUIRE(watch->fd() >= 0);
    REQUIRE(watch->add(*cg) == "");
    CHECK(watch->check().empty());
    t.put(dir + "memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n");
    pollfd p{watch->fd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 2000) == 1);
    auto changes = watch->check();
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].name == "analytics-3");
    CHECK(changes[0].killed());
    CHECK(changes[0].after.oom == 1u);
    CHECK(changes[0].after.limit_hits == 5u);
    CHECK(watch->check().empty());
    CHECK(cg->oom_counters().oom_kill == 1u);

    t.put(dir + "cgroup.events", "populated 1\nfrozen 0\n");
    CHECK(cg->populated() == true);
    t.put(dir + "cgroup.events", "populated 0\nfrozen 0\n");
    CHECK(cg->populated() == false);

    t.put(dir + "cgroup.kill", "");
    t.put(dir + "cgroup.procs", "");
    KillResult k = cg->kill_all(std::chrono::milliseconds(100));
    CHECK(k.method == "cgroup.kill");
    CHECK(k.empty);
    CHECK(t.get(dir + "cgroup.kill") == "1");

    watch->remove("analytics-3");
    Removal r = cg->remove();
    CHECK(r.removed);
    CHECK(r.error.empty());
    CHECK(r.oom.oom_kill == 1u);
    CHECK(r.usage.memory_peak == 2000u);
    CHECK_FALSE(fs::exists(t.path(dir)));
}

TEST_CASE("v2 fake: bad input, missing controllers, explicit parent, real root, stale cleanup",
          "[cgroup]") {
    TempTree t;
    SECTION("invalid names and limits are refused") {
        fake_v2_root(t, "cpu memory pids");
        auto driver = open(fake_config(t));
        std::string error;
        CHECK_FALSE(driver->create("../x", {}, error));
        CHECK_FALSE(error.empty());
        Limits l;
        l.cpu_weight = 0;
        CHECK_FALSE(driver->create("ok", l, error));
        CHECK(error.find("weight") != std::string::npos);
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/ok")));
        // No cpuset controller: CPU sets are left to affinity.
        auto plain = driver->create("plain-1", {}, error);
        REQUIRE(plain);
        CHECK_FALSE(plain->set_cpus("1"));
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/plain-1/cpuset.cpus")));
        CHECK(plain->remove().removed);
    }
    SECTION("a missing controller degrades and its limits are reported unenforced") {
        fake_v2_root(t, "cpu pids");
        auto driver = open(fake_config(t));
        auto e = driver->enforcement();
        CHECK_FALSE(e.enforced);
        CHECK(e.name() == "degraded");
        CHECK(contains(e.degraded, "memory controller"));
        std::string error;
        auto cg = driver->create("a-1", all_limits(), error);
        REQUIRE(cg);
        CHECK(contains(cg->unenforced(), "memory_max"));
        CHECK(contains(cg->unenforced(), "memory_high"));
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/a-1/memory.max")));
        CHECK(t.get("sys/fs/cgroup/envs/a-1/pids.max") == "64");
        CHECK(cg->oom_source().kind == OomSource::Kind::none);
    }
    SECTION("--cgroup-parent: no self move, controllers enabled down the path") {
        fake_v2_root(t, "cpu memory pids");
        Config c = fake_config(t);
        c.parent = "/custom/parent";
        auto driver = open(c);
        auto d = driver->describe();
        CHECK_FALSE(d.contains("leaf"));
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/hearth")));
        CHECK(t.get("sys/fs/cgroup/cgroup.subtree_control") == "+cpu +memory +pids");
        CHECK(t.get("sys/fs/cgroup/custom/cgroup.subtree_control") == "+cpu +memory +pids");
        CHECK(t.get("sys/fs/cgroup/custom/parent/envs/cgroup.subtree_control") ==
              "+cpu +memory +pids");
        std::string error;
        auto cg = driver->create("x-1", {}, error);
        REQUIRE(cg);
        CHECK(cg->directories() ==
              std::vector<std::string>{t.path("sys/fs/cgroup/custom/parent/envs/x-1")});
    }
    SECTION("an explicit parent elsewhere: cgroups above its deepest existing directory are left "
            "alone") {
        fake_v2_root(t, "cpu memory pids");
        t.put("cgroup", "0::/a/b\n");
        t.put("sys/fs/cgroup/a/b/cgroup.procs", "1\n");
        t.put("sys/fs/cgroup/x/cgroup.controllers", "cpu memory pids\n");
        Config c = fake_config(t);
        c.parent = "/x/y";
        auto driver = open(c);
        INFO(driver->describe().dump());
        CHECK(t.get("sys/fs/cgroup/cgroup.subtree_control") == "\n"); // not written
        CHECK(t.get("sys/fs/cgroup/x/cgroup.subtree_control") == "+cpu +memory +pids");
        CHECK(t.get("sys/fs/cgroup/x/y/envs/cgroup.subtree_control") == "+cpu +memory +pids");
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/a/b/hearth")));
        CHECK(driver->enforcement().enforced);
    }
    SECTION("the real root cgroup is exempt: no move") {
        fake_v2_root(t, "cpu memory pids", false);
        auto driver = open(fake_config(t));
        CHECK_FALSE(driver->describe().contains("leaf"));
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/hearth")));
        CHECK(driver->enforcement().enforced);
    }
    SECTION("stale revisions of an earlier run are removed") {
        fake_v2_root(t, "cpu memory pids");
        t.put("sys/fs/cgroup/envs/old-7/cgroup.events", "populated 0\n");
        t.put("sys/fs/cgroup/envs/old-7/cgroup.procs", "");
        t.put("sys/fs/cgroup/envs/old-8/cgroup.procs", "");
        auto driver = open(fake_config(t));
        std::vector<std::string> failures;
        auto names = driver->cleanup_stale(&failures);
        CHECK(names == std::vector<std::string>{"old-7", "old-8"});
        CHECK(failures.empty());
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/old-7")));
        CHECK(detail::list_dirs(t.path("sys/fs/cgroup/envs")).empty());
    }
    SECTION("a leftover directory of the same name is replaced") {
        fake_v2_root(t, "cpu memory pids");
        t.put("sys/fs/cgroup/envs/dup-1/memory.max", "1234");
        auto driver = open(fake_config(t));
        std::string error;
        Limits l;
        l.pids_max = 9;
        auto cg = driver->create("dup-1", l, error);
        REQUIRE(cg);
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/envs/dup-1/memory.max")));
        CHECK(t.get("sys/fs/cgroup/envs/dup-1/pids.max") == "9");
    }
}

// ---------------------------------------------------------------------------
// Fake v1 / hybrid trees

namespace {

void fake_v1_tree(const TempTree& t, bool with_unified, bool with_pids = true) {
    std::string mi = with_unified ? hybrid_mountinfo : v1_only(hybrid_mountinfo);
    if (!with_pids) {
        auto p = mi.find("39 31");
        mi.erase(p, mi.find('\n', p) + 1 - p);
    }
    t.put("mountinfo", mi);
    t.put("cgroup", hybrid_cgroup);
    for (const char* h :
         {"cpu", "cpuacct", "cpuset", "memory/process_api/abc", "freezer", "pids", "unified"})
        fs::create_directories(t.path(std::string("sys/fs/cgroup/") + h));
}

} // namespace

TEST_CASE("v1 fake: cpu.idle; the cpuset hierarchy is left alone; own directories removed",
          "[cgroup]") {
    TempTree t;
    fake_v1_tree(t, true);
    t.put("sys/fs/cgroup/cpuset/cpuset.cpus", "0-3\n");
    t.put("sys/fs/cgroup/cpuset/cpuset.mems", "0\n");
    Config c = fake_config(t);
    c.parent = "/hearth-test/deeper";
    auto driver = open(c);
    REQUIRE(driver->mode() == Mode::hybrid);
    INFO(driver->describe().dump());
    CHECK(driver->describe()["cpu_sets"] == "affinity");
    CHECK(driver->enforcement().enforced);

    std::string error;
    Limits confined;
    confined.cpu_quota = 1.5;
    confined.cpuset_cpus = "2-3";
    confined.cpu_idle = true;
    auto cg = driver->create("batch-1", confined, error);
    REQUIRE(cg);
    CHECK_FALSE(cg->confines_cpus()); // the child's affinity does it
    CHECK_FALSE(cg->set_cpus("1"));   // so does hearth's, later
    CHECK(t.get("sys/fs/cgroup/cpu/hearth-test/deeper/envs/batch-1/cpu.idle") == "1");
    CHECK(cg->unenforced().empty());
    // A v1 child cpuset would keep the parent from shrinking (EBUSY).
    CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/cpuset/hearth-test")));
    CHECK(cg->remove().removed);

    // Clean exit: what open() created goes, in every hierarchy; the mounts
    // (which existed) stay. A directory that is not empty stays too.
    fs::create_directories(t.path("sys/fs/cgroup/pids/hearth-test/deeper/envs/stray"));
    auto stayed = driver->remove_own_directories();
    CHECK(stayed.size() == 3); // envs, deeper, hearth-test in pids
    for (const char* h : {"cpu", "memory/process_api/abc", "unified"}) {
        CHECK_FALSE(fs::exists(t.path(std::string("sys/fs/cgroup/") + h + "/hearth-test")));
        CHECK(fs::exists(t.path(std::string("sys/fs/cgroup/") + h)));
    }
    CHECK(fs::exists(t.path("sys/fs/cgroup/pids/hearth-test/deeper/envs/stray")));
}

TEST_CASE("v1 fake: limit files, placement in every hierarchy, stats, OOM counters, remove",
          "[cgroup]") {
    TempTree t;
    fake_v1_tree(t, false);
    Config c = fake_config(t);
    c.parent_under_self = true;
    c.parent = "hearth-test";
    auto driver = open(c);
    REQUIRE(driver->mode() == Mode::v1);
    INFO(driver->describe().dump());
    CHECK(driver->enforcement().enforced);
    auto envs = driver->envs_directories();
    CHECK(envs.size() == 5);
    CHECK(std::count(envs.begin(), envs.end(),
                     t.path("sys/fs/cgroup/memory/process_api/abc/hearth-test/envs")) == 1);

    std::string error;
    auto cg = driver->create("analytics-3", all_limits(), error);
    REQUIRE(cg);
    std::string mem = "sys/fs/cgroup/memory/process_api/abc/hearth-test/envs/analytics-3/";
    std::string cpu = "sys/fs/cgroup/cpu/hearth-test/envs/analytics-3/";
    std::string acct = "sys/fs/cgroup/cpuacct/hearth-test/envs/analytics-3/";
    std::string pids = "sys/fs/cgroup/pids/hearth-test/envs/analytics-3/";
    CHECK(t.get(mem + "memory.limit_in_bytes") == "67108864");
    CHECK(t.get(cpu + "cpu.cfs_period_us") == "100000");
    CHECK(t.get(cpu + "cpu.cfs_quota_us") == "50000");
    CHECK(t.get(cpu + "cpu.shares") == "2048");
    CHECK(t.get(pids + "pids.max") == "64");
    CHECK_FALSE(fs::exists(t.path(cpu + "cpu.idle")));
    CHECK(contains(cg->unenforced(), "memory_high"));
    CHECK(cg->unenforced().size() == 1);
    CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/cpuset/hearth-test")));
    CHECK_FALSE(cg->confines_cpus());

    CHECK(cg->placement_fd() == -1);
    CHECK(cg->procs_paths().size() == 5); // memory, cpu, cpuacct, pids, freezer
    CHECK(cg->place(31337) == 0);
    for (const auto& p : cg->procs_paths())
        CHECK(text_or(p, "<missing>") == "31337");

    t.put(mem + "memory.usage_in_bytes", "4096\n");
    t.put(mem + "memory.max_usage_in_bytes", "8192\n");
    t.put(acct + "cpuacct.usage", "5000000\n");
    t.put(pids + "pids.current", "2\n");
    Usage u = cg->usage();
    CHECK(u.memory_current == 4096u);
    CHECK(u.memory_peak == 8192u);
    CHECK(u.cpu_usage_usec == 5000u);
    CHECK(u.pids_current == 2u);

    t.put(mem + "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n");
    t.put(mem + "memory.failcnt", "0\n");
    auto watch = driver->make_oom_watch();
    REQUIRE(watch->fd() >= 0);
    REQUIRE(watch->add(*cg) == "");
    // The registration line is "<eventfd> <fd of memory.oom_control>".
    auto reg = t.get(mem + "cgroup.event_control");
    CHECK(reg.rfind(std::to_string(watch->fd()) + " ", 0) == 0);
    t.put(mem + "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
    t.put(mem + "memory.failcnt", "17\n");
    auto changes = watch->check();
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].killed());
    CHECK(changes[0].after.oom_kill == 2u);
    CHECK(changes[0].after.limit_hits == 17u);
    CHECK(changes[0].after.under_oom == false);

    for (const auto& p : cg->procs_paths())
        std::ofstream(p, std::ios::trunc);
    CHECK(cg->populated() == false);
    auto dirs = cg->directories();
    Removal r = cg->remove();
    CHECK(r.removed);
    CHECK(r.oom.oom_kill == 2u);
    CHECK(r.usage.memory_peak == 8192u);
    for (const auto& dir : dirs)
        CHECK_FALSE(fs::exists(dir));
}

TEST_CASE("v1 fake: missing pids hierarchy; hybrid adds the unified directory", "[cgroup]") {
    TempTree t;
    SECTION("no pids hierarchy") {
        fake_v1_tree(t, false, false);
        auto driver = open(fake_config(t));
        REQUIRE(driver->mode() == Mode::v1);
        CHECK(contains(driver->enforcement().degraded, "pids"));
        std::string error;
        auto cg = driver->create("p-1", all_limits(), error);
        REQUIRE(cg);
        CHECK(contains(cg->unenforced(), "pids_max"));
    }
    SECTION("hybrid") {
        fake_v1_tree(t, true);
        auto driver = open(fake_config(t));
        REQUIRE(driver->mode() == Mode::hybrid);
        CHECK(driver->enforcement().enforced);
        std::string error;
        auto cg = driver->create("h-1", {}, error);
        REQUIRE(cg);
        // memory, cpu, cpuacct, pids and the unified one; no v1 freezer.
        CHECK(cg->procs_paths().size() == 5);
        CHECK(cg->procs_paths().back() == t.path("sys/fs/cgroup/unified/envs/h-1/cgroup.procs"));
        CHECK_FALSE(fs::exists(t.path("sys/fs/cgroup/freezer/envs")));
        t.put("sys/fs/cgroup/unified/envs/h-1/cgroup.events", "populated 1\nfrozen 0\n");
        CHECK(cg->populated() == true);
        // cpu time falls back to cgroup2's cpu.stat when cpuacct is silent.
        t.put("sys/fs/cgroup/unified/envs/h-1/cpu.stat", "usage_usec 99\n");
        CHECK(cg->usage().cpu_usage_usec == 99u);
    }
}

TEST_CASE("none driver: forced, unreadable /proc, read-only mount", "[cgroup]") {
    Config forced;
    forced.force_none = true;
    auto driver = open(forced);
    CHECK(driver->mode() == Mode::none);
    auto e = driver->enforcement();
    CHECK_FALSE(e.enforced);
    CHECK(e.name() == "degraded");
    CHECK(contains(e.degraded, "disabled by configuration"));
    CHECK(contains(e.degraded, "setsid"));
    CHECK(driver->describe()["enforcement"] == "degraded");
    CHECK(driver->describe()["driver"] == "none");
    std::string error;
    auto cg = driver->create("n-1", all_limits(), error);
    REQUIRE(cg);
    CHECK(cg->unenforced().size() == 5);
    CHECK(cg->procs_paths().empty());
    CHECK(cg->placement_fd() == -1);
    CHECK(cg->place(1) == 0);
    CHECK_FALSE(cg->kill_all(std::chrono::milliseconds(0)).supported);
    CHECK(cg->remove().removed);
    auto watch = driver->make_oom_watch();
    CHECK(watch->fd() == -1);
    CHECK_FALSE(watch->add(*cg).empty());

    Config missing;
    missing.mountinfo_path = "/nonexistent/mountinfo";
    auto d2 = open(missing);
    CHECK(d2->mode() == Mode::none);
    CHECK(d2->describe()["reason"].get<std::string>().find("cannot read") != std::string::npos);

    TempTree t;
    t.put("mountinfo", "30 24 0:26 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n");
    t.put("cgroup", "0::/\n");
    auto d3 = open(fake_config(t));
    CHECK(d3->mode() == Mode::none);
    CHECK(contains(d3->enforcement().degraded, "read-only"));

    // A parent that climbs out of the hierarchy is refused.
    fake_v2_root(t, "cpu memory pids");
    Config bad = fake_config(t);
    bad.parent = "/a/../../etc";
    CHECK(open(bad)->mode() == Mode::none);
}

// ---------------------------------------------------------------------------
// Real cgroups on this machine (root only).

namespace {

bool must_work() {
    const char* v = std::getenv("HEARTH_TESTS_MUST_WORK");
    return v && std::string_view(v) == "1";
}

// WARN and skip, or FAIL under HEARTH_TESTS_MUST_WORK=1.
#define REAL_PREREQ(cond, why)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (must_work()) FAIL("prerequisite missing (HEARTH_TESTS_MUST_WORK=1): " << why);     \
            WARN("skipped: " << why);                                                              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

Layout real_layout() {
    auto mi = hearth::read_file("/proc/self/mountinfo");
    auto cg = hearth::read_file("/proc/self/cgroup");
    if (!mi || !cg) return {};
    return detect(*mi, *cg);
}

// `hearth-test-<pid>-<n>` under the test's own cgroup in every hierarchy;
// everything inside is killed and removed at scope exit, even on failure.
struct TestParent {
    Layout layout;
    std::string name;
    std::vector<std::string> dirs;
    std::string unified;
    explicit TestParent(Layout l) : layout(std::move(l)) {
        static int counter = 0;
        name = "hearth-test-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
        for (const auto& [c, h] : layout.v1) {
            std::string d = detail::cgroup_path(h.self, name);
            if (std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
        }
        if (!layout.unified_mount.empty()) {
            unified = detail::cgroup_path(layout.unified_self, name);
            dirs.push_back(unified);
        }
    }
    Config config() const {
        Config c;
        c.parent_under_self = true;
        c.parent = name;
        return c;
    }
    ~TestParent() {
        detail::kill_all(detail::exists(unified) ? unified : "", "", dirs, false,
                         std::chrono::seconds(3));
        for (const auto& d : dirs)
            detail::remove_dir(d, false, true, 1000);
    }
};

// A forked child that waits for release() before running `body`, so the
// test can place it first. Killed and reaped at scope exit.
struct Child {
    pid_t pid = -1;
    Fd release_fd;
    Fd report_fd; // read end of the child's report pipe
    bool reaped = false;
    int status = 0;

    template <class Body> explicit Child(Body body) {
        int gate[2], report[2];
        REQUIRE(::pipe2(gate, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
        pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            ::close(gate[1]);
            ::close(report[0]);
            char c;
            // EOF: the test failed before releasing; do nothing.
            if (::read(gate[0], &c, 1) != 1) ::_exit(99);
            body(report[1]);
            ::_exit(0);
        }
        ::close(gate[0]);
        ::close(report[1]);
        release_fd.reset(gate[1]);
        report_fd.reset(report[0]);
    }
    void release() {
        REQUIRE(::write(release_fd.get(), "x", 1) == 1);
        release_fd.reset();
    }
    template <class T> bool read_report(T& out, int timeout_ms = 10000) {
        pollfd p{report_fd.get(), POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) != 1) return false;
        return ::read(report_fd.get(), &out, sizeof out) == static_cast<ssize_t>(sizeof out);
    }
    bool wait(int timeout_ms) {
        for (int waited = 0; waited <= timeout_ms; waited += 10) {
            pid_t r = ::waitpid(pid, &status, WNOHANG);
            if (r == pid) return reaped = true;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        return false;
    }
    ~Child() {
        if (pid > 0 && !reaped) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
    }
};

bool gone_or_zombie(pid_t pid) {
    for (int i = 0; i < 200; ++i) {
        if (::kill(pid, 0) < 0 && errno == ESRCH) return true;
        auto stat = hearth::read_file("/proc/" + std::to_string(pid) + "/stat");
        if (stat) {
            auto close = stat->rfind(')');
            if (close != std::string::npos && stat->size() > close + 2 && (*stat)[close + 2] == 'Z')
                return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

bool contains_pid(const std::vector<pid_t>& pids, pid_t p) {
    return std::find(pids.begin(), pids.end(), p) != pids.end();
}

// Places a child that starts a setsid()ed, double-forked escapee, then checks
// that kill_all() reaches it and the cgroup can be removed.
void escapee_scenario(const Driver& driver, const std::string& expected_method) {
    std::string error;
    Limits limits;
    limits.pids_max = 64;
    limits.memory_max = 256ull << 20;
    auto cg = driver.create("escape-1", limits, error);
    INFO(error);
    REQUIRE(cg);
    Child child([](int report) {
        pid_t a = ::fork();
        if (a == 0) {
            ::setsid();
            if (::fork() == 0) {
                pid_t self = ::getpid();
                ssize_t ignored = ::write(report, &self, sizeof self);
                (void)ignored;
                for (;;)
                    ::pause();
            }
            ::_exit(0);
        }
        ::waitpid(a, nullptr, 0);
        for (;;)
            ::pause();
    });
    std::size_t failed = 0;
    REQUIRE(cg->place(child.pid, &failed) == 0);
    child.release();
    pid_t escapee = -1;
    REQUIRE(child.read_report(escapee));
    // Its own session (the setsid()ed middle process's), not the child's.
    CHECK(::getsid(escapee) != ::getsid(child.pid));
    CHECK(::getsid(escapee) != ::getsid(0));
    for (const auto& procs : cg->procs_paths()) {
        INFO(procs);
        auto pids = detail::read_pids(procs);
        CHECK(contains_pid(pids, child.pid));
        CHECK(contains_pid(pids, escapee));
    }
    CHECK(cg->populated() == true);

    KillResult k = cg->kill_all(std::chrono::seconds(5));
    INFO(k.error);
    CHECK(k.empty);
    CHECK(k.method == expected_method);
    REQUIRE(child.wait(5000));
    CHECK(WIFSIGNALED(child.status));
    CHECK(WTERMSIG(child.status) == SIGKILL);
    CHECK(gone_or_zombie(escapee));
    CHECK(cg->populated() == false);
    CHECK(cg->pids().empty());

    auto dirs = cg->directories();
    Removal r = cg->remove();
    INFO(r.error);
    CHECK(r.removed);
    for (const auto& d : dirs)
        CHECK_FALSE(detail::exists(d));
}

} // namespace

TEST_CASE("real: placement in every hierarchy, kill_all reaches a setsid escapee, removal",
          "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.mode != Mode::none, "no writable cgroupfs: " + layout.reason);
    TestParent parent(layout);
    auto driver = open(layout, parent.config());
    INFO(driver->describe().dump());
    REAL_PREREQ(driver->mode() != Mode::none, "cgroups unusable here");
    // envs is a non-root cgroup2 directory: it has cgroup.kill where the kernel does (5.14+).
    bool has_kill = !parent.unified.empty() &&
                    detail::exists(detail::cgroup_path(parent.unified, "envs/cgroup.kill"));
    escapee_scenario(*driver, has_kill ? "cgroup.kill" : "freezer");
}

TEST_CASE("real: v1 without cgroup2 kills through the freezer", "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.v1.count("freezer") && layout.v1.count("memory"),
                "no v1 freezer and memory hierarchies");
    layout.mode = Mode::v1;
    layout.unified_mount.clear();
    layout.unified_self.clear();
    TestParent parent(layout);
    auto driver = open(layout, parent.config());
    INFO(driver->describe().dump());
    REQUIRE(driver->mode() == Mode::v1);
    CHECK(driver->enforcement().enforced);
    escapee_scenario(*driver, "freezer");
}

TEST_CASE("real: pids.max stops a fork bomb", "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.mode != Mode::none, "no writable cgroupfs: " + layout.reason);
    TestParent parent(layout);
    auto driver = open(layout, parent.config());
    INFO(driver->describe().dump());
    std::string error;
    Limits limits;
    limits.pids_max = 5;
    auto cg = driver->create("forks-1", limits, error);
    INFO(error);
    REQUIRE(cg);
    REAL_PREREQ(cg->unenforced().empty(), "no pids controller: " + cg->unenforced().front());

    struct Report {
        int started;
        int eagain;
    };
    Child child([](int report) {
        Report r{0, 0};
        for (int i = 0; i < 20; ++i) {
            pid_t p = ::fork();
            if (p == 0) {
                for (;;)
                    ::pause();
            }
            if (p > 0)
                ++r.started;
            else if (errno == EAGAIN)
                ++r.eagain;
        }
        ssize_t ignored = ::write(report, &r, sizeof r);
        (void)ignored;
        for (;;)
            ::pause();
    });
    REQUIRE(cg->place(child.pid) == 0);
    child.release();
    Report r{};
    REQUIRE(child.read_report(r));
    CHECK(r.started == 4); // the child itself is the fifth
    CHECK(r.eagain == 16);
    CHECK(cg->usage().pids_current == 5u);
    CHECK(cg->pids().size() == 5);

    CHECK(cg->kill_all(std::chrono::seconds(5)).empty);
    REQUIRE(child.wait(5000));
    CHECK(cg->remove().removed);
}

TEST_CASE("real: a memory hog is OOM-killed at 32 MiB and the OOM watch fires", "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.mode != Mode::none, "no writable cgroupfs: " + layout.reason);
    TestParent parent(layout);
    auto driver = open(layout, parent.config());
    INFO(driver->describe().dump());
    std::string error;
    Limits limits;
    limits.memory_max = 32ull << 20;
    auto cg = driver->create("oom-1", limits, error);
    INFO(error);
    REQUIRE(cg);
    REAL_PREREQ(cg->unenforced().empty(), "no memory controller: " + cg->unenforced().front());

    auto watch = driver->make_oom_watch();
    REQUIRE(watch->fd() >= 0);
    REQUIRE(watch->add(*cg) == "");
    CHECK(watch->check().empty());

    Child child([](int) {
        // Touch 512 MiB page by page; the OOM killer must stop it long before.
        const std::size_t size = 512u << 20;
        void* mem =
            ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED) ::_exit(4);
        volatile char* bytes = static_cast<char*>(mem);
        for (std::size_t i = 0; i < size; i += 4096)
            bytes[i] = 1;
        ::_exit(3);
    });
    REQUIRE(cg->place(child.pid) == 0);
    child.release();
    REQUIRE(child.wait(30000));
    CHECK(WIFSIGNALED(child.status));
    CHECK(WTERMSIG(child.status) == SIGKILL);

    OomCounters c = cg->oom_counters();
    REQUIRE(c.oom_kill.has_value());
    CHECK(*c.oom_kill >= 1);
    CHECK(c.limit_hits.value_or(0) >= 1);
    CHECK(cg->usage().memory_peak.value_or(0) >= (30ull << 20));

    pollfd p{watch->fd(), POLLIN, 0};
    REQUIRE(::poll(&p, 1, 5000) == 1);
    auto changes = watch->check();
    REQUIRE(changes.size() == 1);
    CHECK(changes[0].name == "oom-1");
    CHECK(changes[0].killed());

    watch->remove("oom-1");
    Removal r = cg->remove();
    CHECK(r.removed);
    CHECK(r.oom.oom_kill.value_or(0) >= 1);
}

TEST_CASE("real: startup cleanup kills and removes an earlier run's revisions", "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.mode != Mode::none, "no writable cgroupfs: " + layout.reason);
    TestParent parent(layout);
    auto first = open(layout, parent.config());
    REAL_PREREQ(first->mode() != Mode::none, "cgroups unusable here");
    std::string error;
    auto cg = first->create("stale-1", {}, error);
    REQUIRE(cg);
    auto dirs = cg->directories();
    Child child([](int) {
        for (;;)
            ::pause();
    });
    REQUIRE(cg->place(child.pid) == 0);
    child.release();
    cg.reset(); // an earlier hearth that died without cleaning up

    auto second = open(layout, parent.config());
    std::vector<std::string> failures;
    auto names = second->cleanup_stale(&failures);
    CHECK(names == std::vector<std::string>{"stale-1"});
    CHECK(failures.empty());
    REQUIRE(child.wait(5000));
    CHECK(WIFSIGNALED(child.status));
    for (const auto& d : dirs)
        CHECK_FALSE(detail::exists(d));
}

TEST_CASE("real: v2 leaf move of hearth and an extra pid out of its own cgroup", "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(!layout.unified_mount.empty(), "no writable cgroup2 mount");
    TestParent parent(layout);
    std::string own = parent.unified; // plays hearth's own cgroup
    REQUIRE(make_dirs(own).ok());
    std::string rel = own.substr(layout.unified_mount.size());

    // A process that plays hearth, so the test binary itself never moves.
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        int code = 0;
        pid_t sleeper = ::fork();
        if (sleeper == 0) {
            for (;;)
                ::pause();
        }
        if (detail::write_file(detail::cgroup_path(own, "cgroup.procs"), std::to_string(::getpid()),
                               false) ||
            detail::write_file(detail::cgroup_path(own, "cgroup.procs"), std::to_string(sleeper),
                               false))
            code = 10;
        Layout l = layout;
        l.mode = Mode::v2;
        l.v1.clear();
        l.unified_self = own;
        Config c;
        c.extra_pids = {sleeper};
        auto driver = code ? nullptr : open(l, c);
        auto self_cg = text_or("/proc/self/cgroup", "");
        auto sleeper_cg = text_or("/proc/" + std::to_string(sleeper) + "/cgroup", "");
        if (!code && driver->mode() != Mode::v2) code = 11;
        if (!code && self_cg.find("0::" + rel + "/hearth\n") == std::string::npos) code = 12;
        if (!code && sleeper_cg.find("0::" + rel + "/hearth\n") == std::string::npos) code = 13;
        if (!code && !detail::exists(detail::cgroup_path(own, "envs"))) code = 14;
        if (!code && driver->describe().value("leaf", "") != detail::cgroup_path(own, "hearth"))
            code = 15;
        ::kill(sleeper, SIGKILL);
        ::waitpid(sleeper, nullptr, 0);
        ::_exit(code);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

namespace {
// Runs `req` through spawn() with stdout on a pipe; returns what the child
// printed once it exited (`result`: what spawn() said).
std::string spawn_and_read(hearth::SpawnRequest req, hearth::SpawnResult& result) {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    Fd out_read(fds[0]), out_write(fds[1]);
    req.stdout_fd = out_write.get();
    result = hearth::spawn(req);
    out_write.reset();
    INFO(result.message);
    REQUIRE(result.pid > 0);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(out_read.get(), buf, sizeof buf)) > 0)
        text.append(buf, static_cast<size_t>(n));
    int status = 0;
    REQUIRE(::waitpid(result.pid, &status, 0) == result.pid);
    CHECK(WIFEXITED(status));
    return text;
}

// Spawns `sh -c 'cat /proc/self/cgroup'` into `cg`; returns what it printed.
std::string spawn_and_read_cgroup(const Cgroup& cg, bool& clone3_used) {
    hearth::SpawnRequest req;
    req.path = "/bin/sh";
    req.argv = {"sh", "-c", "cat /proc/self/cgroup"};
    req.cgroup = &cg;
    hearth::SpawnResult r;
    std::string text = spawn_and_read(req, r);
    clone3_used = r.clone3_used;
    return text;
}
} // namespace

TEST_CASE("real: spawn puts the child in its cgroup before exec (self-placement, clone3 on v2)",
          "[cgroup][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to write cgroupfs");
    Layout layout = real_layout();
    REAL_PREREQ(layout.mode != Mode::none, "no writable cgroupfs: " + layout.reason);
    {
        TestParent parent(layout);
        auto driver = open(layout, parent.config());
        std::string error;
        auto cg = driver->create("spawned-1", Limits{}, error);
        INFO(error);
        REQUIRE(cg);
        bool clone3_used = false;
        std::string seen = spawn_and_read_cgroup(*cg, clone3_used);
        INFO(seen);
        // Every hierarchy lists the revision's directory, relative to its root.
        CHECK(seen.find("/" + parent.name + "/envs/spawned-1\n") != std::string::npos);
        CHECK(clone3_used == (cg->placement_fd() >= 0));
        CHECK(cg->kill_all(std::chrono::seconds(2)).empty);
        CHECK(cg->remove().removed);
    }
    // Pure v2 (here: the unified hierarchy alone) is where clone3 applies.
    REAL_PREREQ(!layout.unified_mount.empty(), "no cgroup2 mount");
    Layout v2 = layout;
    v2.mode = Mode::v2;
    v2.v1.clear();
    TestParent parent(v2);
    auto driver = open(v2, parent.config());
    REQUIRE(driver->mode() == Mode::v2);
    std::string error;
    auto cg = driver->create("spawned-2", Limits{}, error);
    INFO(error);
    REQUIRE(cg);
    REQUIRE(cg->placement_fd() >= 0);
    bool clone3_used = false;
    std::string seen = spawn_and_read_cgroup(*cg, clone3_used);
    INFO(seen);
    CHECK(clone3_used);
    CHECK(seen.find("0::/" + parent.name + "/envs/spawned-2\n") != std::string::npos);
    CHECK(cg->remove().removed);

    // The pure-v2 kill: cgroup.kill reaches a child that left the session
    // (setsid) and one in the background; the cgroup is then empty.
    auto busy = driver->create("killed-2", Limits{}, error);
    INFO(error);
    REQUIRE(busy);
    hearth::SpawnRequest req;
    req.path = "/bin/sh";
    req.argv = {"sh", "-c", "sleep 300 & setsid sleep 301 & wait"};
    req.cgroup = busy.get();
    req.new_session = true;
    hearth::SpawnResult r = hearth::spawn(req);
    INFO(r.message);
    REQUIRE(r.pid > 0);
    for (int i = 0; i < 200 && busy->pids().size() < 3; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK(busy->pids().size() == 3);
    KillResult killed = busy->kill_all(std::chrono::seconds(2));
    CHECK(killed.method == "cgroup.kill");
    CHECK(killed.empty);
    CHECK(killed.error.empty());
    int status = 0;
    REQUIRE(::waitpid(r.pid, &status, 0) == r.pid);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    CHECK(busy->pids().empty());
    CHECK(text_or(layout.unified_mount + "/" + parent.name + "/envs/killed-2/cgroup.events", "")
              .find("populated 0") != std::string::npos);
    CHECK(busy->remove().removed);
}

TEST_CASE("real: a group without a user drops hearth's supplementary groups", "[spawn][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to change groups");
    int n = ::getgroups(0, nullptr);
    REQUIRE(n >= 0);
    std::vector<gid_t> saved(static_cast<size_t>(n));
    REQUIRE(::getgroups(n, saved.data()) == n);
    // Give this process supplementary groups to lose (restored on return).
    std::vector<gid_t> extra = {4, 27};
    REQUIRE(::setgroups(extra.size(), extra.data()) == 0);
    struct Restore {
        std::vector<gid_t>& groups;
        ~Restore() { ::setgroups(groups.size(), groups.data()); }
    } restore{saved};
    hearth::SpawnRequest req;
    req.path = "/bin/sh";
    req.argv = {"sh", "-c", "grep -E '^(Uid|Gid|Groups):' /proc/self/status"};
    req.gid = 65534;
    hearth::SpawnResult r;
    std::string text = spawn_and_read(req, r);
    INFO(text);
    CHECK(text.find("Uid:\t0\t0\t0\t0\n") != std::string::npos);
    CHECK(text.find("Gid:\t65534\t65534\t65534\t65534\n") != std::string::npos);
    auto groups_at = text.find("Groups:");
    REQUIRE(groups_at != std::string::npos);
    std::string groups = text.substr(groups_at + 7, text.find('\n', groups_at) - groups_at - 7);
    CHECK(groups.find_first_of("0123456789") == std::string::npos);
}

TEST_CASE("real: a scheduler slice keeps the niceness the child inherits", "[spawn][real]") {
    REAL_PREREQ(::geteuid() == 0, "needs root to restore this process's niceness");
    REAL_PREREQ(hearth::kernel_has_custom_slices(), "kernel before 6.12: no custom slices");
    REQUIRE(::setpriority(PRIO_PROCESS, 0, 3) == 0);
    struct Restore {
        ~Restore() { ::setpriority(PRIO_PROCESS, 0, 0); }
    } restore;
    hearth::SpawnRequest req;
    req.path = "/bin/sh";
    // Field 19 of stat is the niceness; se.slice is in ns.
    req.argv = {"sh", "-c",
                "cut -d' ' -f19 /proc/self/stat; sed -n 's/^se.slice *: *//p' /proc/self/sched"};
    req.sched_slice_ns = 100000;
    hearth::SpawnResult r;
    std::string text = spawn_and_read(req, r);
    CHECK(text == "3\n100000\n");
}

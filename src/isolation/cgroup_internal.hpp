#pragma once
// Helpers shared by the cgroup driver files (cgroup.cpp, cgroup_v1.cpp,
// cgroup_v2.cpp, cgroup_none.cpp) and their unit tests; not a public API
// (crun keeps the same split in cgroup-internal.h). Generic file helpers
// (read_file, make_dirs, errno_text) come from util/fs.hpp.
//
// Every function blocks on cgroupfs (or the fake tree a test builds), may be
// called from any thread for distinct directories, and throws nothing except
// std::bad_alloc. Errors are returned as errno values (0 = success) unless
// stated otherwise.

#include "isolation/cgroup.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace hearth::cgroup {

namespace detail {

// Writes `data` with one write(2). `plain`: create and truncate (fake
// trees). Returns 0 or errno.
int write_file(const std::string& path, std::string_view data, bool plain);
// First token as an unsigned number ("max" -> nullopt).
std::optional<std::uint64_t> read_u64(const std::string& path);
// `key value` lines (memory.events, cpu.stat, cgroup.events, oom_control).
std::optional<std::uint64_t> read_keyed(const std::string& path, std::string_view key);
std::optional<std::uint64_t> keyed_value(std::string_view text, std::string_view key);
std::vector<pid_t> read_pids(const std::string& procs_path);
bool exists(const std::string& path);
// rmdir, retrying EBUSY for about `busy_ms`; `plain` unlinks files first;
// `recursive` removes sub-cgroups depth first. 0 or errno (ENOENT -> 0).
int remove_dir(const std::string& path, bool plain, bool recursive, int busy_ms = 200);
// mkdir; a leftover directory of that name is removed first (it must be
// empty of processes), so no stale limit survives. 0 or errno.
int make_fresh_dir(const std::string& path, bool plain);
// Subdirectory names.
std::vector<std::string> list_dirs(const std::string& path);
// `parent` joined to `child` as an absolute cgroupfs path: trailing slashes
// of both and leading slashes of `child` dropped, an empty `parent` is the
// root ("/a/" + "/b/" -> "/a/b", "" + "/b" -> "/b", "/a" + "" -> "/a").
// Unlike path_join (util/text.hpp), mount points and configured parents may
// arrive with any slashes, and the result is always absolute.
std::string cgroup_path(std::string_view parent, std::string_view child);

// Why Driver::create() refuses `name` and `limits` before touching cgroupfs
// (check_name(), a cpu weight outside 1..10000, a quota that is not
// positive), or "" when they are fine.
std::string check_create(const std::string& name, const Limits& limits);

// cgroup.kill, or freeze/kill/thaw rounds over `membership` procs files.
// `unified`: v2 directory (cgroup.kill, cgroup.freeze, cgroup.events), may be
// empty; `freezer`: v1 freezer directory, may be empty.
KillResult kill_all(const std::string& unified, const std::string& freezer,
                    const std::vector<std::string>& membership, bool plain,
                    std::chrono::milliseconds timeout);

OomCounters read_oom_v2(const std::string& memory_events);
OomCounters read_oom_v1(const std::string& memory_dir);

std::unique_ptr<Driver> make_v2(const Layout& layout, const Config& config, std::string& error);
std::unique_ptr<Driver> make_v1(const Layout& layout, const Config& config, std::string& error);
std::unique_ptr<Driver> make_none(std::string reason);

} // namespace detail

} // namespace hearth::cgroup

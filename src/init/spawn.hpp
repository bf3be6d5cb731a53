#pragma once
// Starting child processes with a clean slate.
//
// hearth cannot use uv_spawn: children must start with default signal
// dispositions and an empty mask (hearth blocks signals for its signalfd), in
// their own session or process group, and (later) inside their cgroup before
// they run any user code. Every step between fork and exec is
// async-signal-safe: all memory the child needs is prepared before fork.

#include "isolation/cgroup.hpp"
#include "util/error.hpp"

#include <optional>
#include <sched.h>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace hearth {

// Special values for SpawnRequest's stdio fds.
inline constexpr int spawn_inherit = -2;  // keep hearth's own descriptor
inline constexpr int spawn_dev_null = -1; // open /dev/null

struct SpawnRequest {
    std::string path;                            // file to execute; see resolve_executable
    std::vector<std::string> argv;               // argv[0] included
    std::optional<std::vector<std::string>> env; // "K=V" entries; nullopt = hearth's environ
    std::string cwd;                             // empty = hearth's working directory
    bool new_session = false;                    // setsid() (environments) instead of setpgid(0, 0)
    bool take_terminal = false;                  // become the tty's foreground group if hearth is
    int stdin_fd = spawn_dev_null;
    int stdout_fd = spawn_inherit;
    int stderr_fd = spawn_inherit;

    // The child's cgroup, joined before anything else runs in it (so limits
    // and kill cover it from its first instruction of user code). With a v2
    // placement fd (v2, hybrid) the child is created inside the cgroup2
    // directory by clone3(CLONE_INTO_CGROUP); the child then joins the v1
    // hierarchies itself (Cgroup::place_self), before it does anything else,
    // as it does for all of them when clone3 is refused. Not owned.
    const cgroup::Cgroup* cgroup = nullptr;
    // Identity: set in the child with setgroups/setresgid/setresuid after the
    // cgroup is joined (joining needs hearth's privileges).
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::vector<gid_t> groups; // supplementary groups, used when uid or gid is set
    int nice = 0;              // added to the child's niceness when > 0
    bool sched_idle = false;   // SCHED_IDLE policy (failure ignored)
    // The child's scheduler slice in ns (sched_attr.sched_runtime of a fair
    // policy; Linux 6.12+, older kernels ignore it), inherited by its
    // threads and children; 0 = the kernel's default. Failure is ignored.
    std::uint64_t sched_slice_ns = 0;
    // CPUs the child may run on (sched_setaffinity after joining its cgroup;
    // a cpuset there has already done the same and keeps it so). Failure is
    // ignored: the child then runs wherever its cgroup allows.
    std::optional<cpu_set_t> affinity;
};

struct SpawnResult {
    pid_t pid = -1;           // >0 on success; the caller owns reaping it
    bool clone3_used = false; // the child was created inside its cgroup
    int error = 0;            // errno of the failed step (0 on success)
    int exit_code = 0;        // on failure: 127 (not found) or 126 (could not execute)
    std::string message;      // on failure: one line naming the step and the file
};

// Forks and execs. Blocks until the child has called execve (success) or
// reported a failure through a close-on-exec pipe; a failed child is reaped
// here, so the caller never sees it. Loop thread only: the reaper must not
// run concurrently (it would steal the failed child's status).
// The child's pid is also its process group id (and session id if requested).
SpawnResult spawn(const SpawnRequest& request);

// Whether the running kernel honours SpawnRequest::sched_slice_ns (custom
// slices arrived in Linux 6.12; older kernels accept and ignore them, so the
// system call cannot tell). From uname(2), read once. Thread-safe.
bool kernel_has_custom_slices();

struct Identity {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::vector<gid_t> groups;
    std::string home; // the user's home directory, if known
};

// Resolves a user and group (names or numbers; either may be empty) the way
// the child will take them: a user without a group gets the user's primary
// group and its supplementary groups. Errors: Errc::unknown_user or
// Errc::unknown_group (sys_errno: the lookup's own error, 0 for "no such
// entry"). Blocking (NSS): thread pool or start-up only, never the loop in a
// request path, never the child.
Result<Identity> resolve_identity(const std::string& user, const std::string& group);

struct ResolvedExecutable {
    std::string path; // set on success
    int error = 0;    // ENOENT, EACCES, ... on failure
};

// Looks `name` up like execvp: a name with a '/' is used as is; otherwise each
// directory of `path_env` is tried (default search path when empty). Doing it
// before fork keeps the child free of non-async-signal-safe lookups.
ResolvedExecutable resolve_executable(std::string_view name, std::string_view path_env);

// The environment as "K=V" entries.
std::vector<std::string> current_environment();

} // namespace hearth

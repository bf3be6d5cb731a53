#include "init/spawn.hpp"

#include "init/exit_status.hpp"
#include "util/fd.hpp"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <linux/sched.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

extern char** environ;

namespace hearth {

namespace {

constexpr std::string_view default_search_path =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER1): glibc 2.36 has no
// declaration of it, and <linux/sched/types.h> is not on every system.
struct SchedAttr {
    std::uint32_t size;
    std::uint32_t sched_policy;
    std::uint64_t sched_flags;
    std::int32_t sched_nice;
    std::uint32_t sched_priority;
    std::uint64_t sched_runtime;
    std::uint64_t sched_deadline;
    std::uint64_t sched_period;
    std::uint32_t sched_util_min;
    std::uint32_t sched_util_max;
};
static_assert(sizeof(SchedAttr) == 56, "sched_attr layout (SCHED_ATTR_SIZE_VER1)");

// What a failed child reports through the pipe before it exits.
struct ChildFailure {
    int step;
    int error;
};

enum Step : int {
    step_session,
    step_terminal,
    step_stdio,
    step_chdir,
    step_exec,
    step_cgroup,
    step_identity,
};

const char* step_name(int step) {
    switch (step) {
    case step_cgroup:
        return "join the cgroup of";
    case step_identity:
        return "switch user/group for";
    case step_session:
        return "create session";
    case step_terminal:
        return "take terminal";
    case step_stdio:
        return "set up stdio";
    case step_chdir:
        return "change directory";
    default:
        return "execute";
    }
}

[[noreturn]] void child_fail(int report_fd, int step) {
    ChildFailure failure{step, errno};
    // Best effort: if the pipe is gone, the parent learns only the exit code.
    ssize_t ignored = ::write(report_fd, &failure, sizeof failure);
    (void)ignored;
    _exit(step == step_exec ? exit_code_from_exec_errno(failure.error) : exit_cannot_execute);
}

// Places `fd` at `target` (0..2). Async-signal-safe.
bool install_stdio(int fd, int target, int dev_null) {
    if (fd == spawn_inherit) return true;
    int source = fd == spawn_dev_null ? dev_null : fd;
    if (source == target) {
        // dup2 is a no-op here, so clear close-on-exec explicitly.
        return ::fcntl(target, F_SETFD, 0) == 0;
    }
    return ::dup2(source, target) >= 0;
}

// Runs in the child. Only async-signal-safe calls from here on.
[[noreturn]] void child_main(const SpawnRequest& req, char* const* argv, char* const* envp,
                             int report_fd, int dev_null, bool in_cgroup) {
    // First of all, so that everything the child does, failures included,
    // is inside the revision's limits and reached by its kill.
    if (req.cgroup) {
        int err = req.cgroup->place_self(in_cgroup);
        if (err != 0) {
            errno = err;
            child_fail(report_fd, step_cgroup);
        }
    }

    if (req.new_session) {
        if (::setsid() < 0) child_fail(report_fd, step_session);
    } else if (::setpgid(0, 0) < 0) {
        child_fail(report_fd, step_session);
    }

    if (req.take_terminal && ::isatty(STDIN_FILENO) && ::tcgetpgrp(STDIN_FILENO) == ::getppid()) {
        // tcsetpgrp from a background group raises SIGTTOU; ignore it for the
        // call (dispositions are reset to default right after).
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        ::sigaction(SIGTTOU, &ignore, nullptr);
        if (::tcsetpgrp(STDIN_FILENO, ::getpid()) < 0) child_fail(report_fd, step_terminal);
    }

    // Environments start like systemd services, not like tini's child: default
    // dispositions and an empty mask, whatever hearth inherited or blocked for
    // its own signalfd.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
        if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);

    // hearth protects itself with -1000; its children are ordinary OOM victims.
    int oom = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
        ssize_t ignored = ::write(oom, "0", 1);
        (void)ignored;
        ::close(oom);
    }

    if (!install_stdio(req.stdin_fd, STDIN_FILENO, dev_null) ||
        !install_stdio(req.stdout_fd, STDOUT_FILENO, dev_null) ||
        !install_stdio(req.stderr_fd, STDERR_FILENO, dev_null))
        child_fail(report_fd, step_stdio);

    if (req.affinity) (void)::sched_setaffinity(0, sizeof *req.affinity, &*req.affinity);
    if (req.sched_slice_ns) {
        // sched_setattr sets policy, niceness and slice together, so
        // SCHED_IDLE goes with it; req.nice is added afterwards.
        SchedAttr attr{};
        attr.size = sizeof attr;
        attr.sched_policy = req.sched_idle ? SCHED_IDLE : SCHED_OTHER;
        attr.sched_runtime = req.sched_slice_ns;
        // Keep the niceness inherited from hearth (the raw system call
        // returns 20 - nice, never an ambiguous -1).
        long raw_priority = ::syscall(SYS_getpriority, PRIO_PROCESS, 0);
        if (raw_priority > 0) attr.sched_nice = static_cast<std::int32_t>(20 - raw_priority);
        (void)::syscall(SYS_sched_setattr, 0, &attr, 0);
    } else if (req.sched_idle) {
        sched_param idle{};
        (void)::sched_setscheduler(0, SCHED_IDLE, &idle);
    }

    if (req.nice > 0) {
        errno = 0;
        // Failure only means the environment keeps hearth's priority.
        (void)::setpriority(PRIO_PROCESS, 0, req.nice);
    }

    // Raw system calls, not glibc's setuid() family: after _Fork/clone3 in a
    // multithreaded parent, glibc's wrappers would try to broadcast the
    // change to threads that exist only in the parent. Groups first: after
    // setresuid the child may no longer change them. A group without a user
    // still drops root's supplementary groups (req.groups is empty then):
    // keeping them would leave the environment every group of hearth's.
    if (req.uid || req.gid) {
        if (::syscall(SYS_setgroups, req.groups.size(), req.groups.data()) != 0)
            child_fail(report_fd, step_identity);
        if (req.gid && ::syscall(SYS_setresgid, *req.gid, *req.gid, *req.gid) != 0)
            child_fail(report_fd, step_identity);
        if (req.uid && ::syscall(SYS_setresuid, *req.uid, *req.uid, *req.uid) != 0)
            child_fail(report_fd, step_identity);
    }

    if (!req.cwd.empty() && ::chdir(req.cwd.c_str()) < 0) child_fail(report_fd, step_chdir);

    // Nothing of hearth's (sockets, pipes of other environments, the store)
    // may leak into user code, even an fd some library opened without CLOEXEC.
    ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

    ::execve(req.path.c_str(), argv, envp);
    child_fail(report_fd, step_exec);
}

std::vector<char*> pointers(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (const auto& s : strings)
        out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

// clone3(CLONE_INTO_CGROUP): the child starts life inside the cgroup, which
// also avoids the RCU stall a write to cgroup.procs can take. Returns the
// pid (0 in the child), or -1 with errno (E2BIG/ENOSYS: kernel too old,
// EOPNOTSUPP: threaded cgroup, ...); the caller then falls back to _Fork.
pid_t clone_into_cgroup(int cgroup_fd) {
#if defined(SYS_clone3) && defined(CLONE_INTO_CGROUP)
    struct clone_args args {};
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = static_cast<std::uint64_t>(cgroup_fd);
    return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
#else
    (void)cgroup_fd;
    errno = ENOSYS;
    return -1;
#endif
}

bool parse_id(const std::string& text, unsigned& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc{} && end == text.data() + text.size();
}

} // namespace

Result<Identity> resolve_identity(const std::string& user, const std::string& group) {
    Identity id;
    std::vector<char> buf(16384);
    if (!user.empty()) {
        passwd pw{};
        passwd* found = nullptr;
        unsigned numeric = 0;
        int rc = parse_id(user, numeric)
                     ? ::getpwuid_r(numeric, &pw, buf.data(), buf.size(), &found)
                     : ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
        if (found) {
            id.uid = pw.pw_uid;
            id.gid = pw.pw_gid;
            id.home = pw.pw_dir ? pw.pw_dir : "";
            int n = 64;
            std::vector<gid_t> groups(static_cast<size_t>(n));
            if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n) < 0) {
                groups.resize(static_cast<size_t>(n));
                ::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &n);
            }
            groups.resize(static_cast<size_t>(std::max(n, 0)));
            id.groups = std::move(groups);
        } else if (parse_id(user, numeric)) {
            // A bare number without a passwd entry is fine (containers).
            id.uid = numeric;
            id.gid = numeric;
        } else {
            return Error{Errc::unknown_user, rc,
                         "unknown user '" + user + "'" +
                             (rc ? std::string(": ") + std::strerror(rc) : "")};
        }
    }
    if (!group.empty()) {
        ::group gr{};
        ::group* found = nullptr;
        unsigned numeric = 0;
        int rc = parse_id(group, numeric)
                     ? ::getgrgid_r(numeric, &gr, buf.data(), buf.size(), &found)
                     : ::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &found);
        if (found) {
            id.gid = gr.gr_gid;
        } else if (parse_id(group, numeric)) {
            id.gid = numeric;
        } else {
            return Error{Errc::unknown_group, rc,
                         "unknown group '" + group + "'" +
                             (rc ? std::string(": ") + std::strerror(rc) : "")};
        }
        // An explicit group replaces the user's primary group; keep the
        // supplementary ones only when they were looked up for the user.
        if (id.uid && id.groups.empty()) id.groups = {*id.gid};
    }
    return id;
}

std::vector<std::string> current_environment() {
    std::vector<std::string> env;
    for (char** e = environ; e && *e; ++e)
        env.emplace_back(*e);
    return env;
}

ResolvedExecutable resolve_executable(std::string_view name, std::string_view path_env) {
    ResolvedExecutable out;
    if (name.empty()) {
        out.error = ENOENT;
        return out;
    }
    auto usable = [](const std::string& candidate) -> int {
        struct stat st {};
        if (::stat(candidate.c_str(), &st) < 0) return errno;
        if (S_ISDIR(st.st_mode)) return EACCES;
        if (::access(candidate.c_str(), X_OK) < 0) return errno;
        return 0;
    };
    if (name.find('/') != std::string_view::npos) {
        out.path = std::string(name);
        out.error = usable(out.path);
        if (out.error) out.path.clear();
        return out;
    }
    if (path_env.empty()) path_env = default_search_path;
    // Like execvp: ENOENT unless some candidate existed but was not executable.
    int error = ENOENT;
    size_t start = 0;
    while (start <= path_env.size()) {
        size_t end = path_env.find(':', start);
        if (end == std::string_view::npos) end = path_env.size();
        std::string dir(path_env.substr(start, end - start));
        if (dir.empty()) dir = ".";
        std::string candidate = dir + "/" + std::string(name);
        int e = usable(candidate);
        if (e == 0) {
            out.path = std::move(candidate);
            return out;
        }
        if (e == EACCES) error = EACCES;
        start = end + 1;
    }
    out.error = error;
    return out;
}

SpawnResult spawn(const SpawnRequest& req) {
    SpawnResult result;
    auto fail = [&](int err, std::string what) {
        result.error = err;
        result.exit_code = exit_cannot_execute;
        result.message = std::move(what) + ": " + std::strerror(err);
        return result;
    };

    std::vector<char*> argv = pointers(req.argv);
    std::vector<std::string> env_storage = req.env ? *req.env : std::vector<std::string>{};
    std::vector<char*> envp = req.env ? pointers(env_storage) : std::vector<char*>{};
    char* const* envp_ptr = req.env ? envp.data() : environ;

    int pipe_fds[2];
    if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return fail(errno, "pipe");
    Fd report_read(pipe_fds[0]);
    Fd report_write(pipe_fds[1]);

    Fd dev_null;
    if (req.stdin_fd == spawn_dev_null || req.stdout_fd == spawn_dev_null ||
        req.stderr_fd == spawn_dev_null) {
        dev_null.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
        if (!dev_null) return fail(errno, "open /dev/null");
    }

    // _Fork skips pthread_atfork handlers (libuv registers some): they are not
    // async-signal-safe and would run in the child of a multithreaded process.
    pid_t pid = -1;
    bool in_cgroup = false;
    if (req.cgroup && req.cgroup->placement_fd() >= 0) {
        pid = clone_into_cgroup(req.cgroup->placement_fd());
        in_cgroup = pid >= 0;
        // Anything else than "this kernel or cgroup cannot" is a real error.
        if (pid < 0 && errno != E2BIG && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)
            return fail(errno, "clone3 into " + req.cgroup->directories().front());
    }
    if (!in_cgroup) pid = ::_Fork();
    if (pid < 0) return fail(errno, "fork");
    if (pid == 0)
        child_main(req, argv.data(), envp_ptr, report_write.get(), dev_null.get(), in_cgroup);
    result.clone3_used = in_cgroup;

    // Also set the group from the parent, so that a signal to -pid right after
    // spawn() returns can never miss a child that has not run setpgid yet.
    if (!req.new_session) ::setpgid(pid, pid);
    report_write.reset();

    ChildFailure failure{};
    ssize_t n;
    do {
        n = ::read(report_read.get(), &failure, sizeof failure);
    } while (n < 0 && errno == EINTR);

    if (n == static_cast<ssize_t>(sizeof failure)) {
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        result.error = failure.error;
        result.exit_code = failure.step == step_exec ? exit_code_from_exec_errno(failure.error)
                                                     : exit_cannot_execute;
        std::string subject = failure.step == step_chdir ? req.cwd : req.path;
        if (failure.step == step_cgroup && req.cgroup && !req.cgroup->directories().empty())
            subject = req.cgroup->directories().front();
        result.message = std::string("cannot ") + step_name(failure.step) + " '" + subject +
                         "': " + std::strerror(failure.error);
        return result;
    }
    result.pid = pid;
    return result;
}

bool kernel_has_custom_slices() {
    static const bool has = [] {
        utsname u{};
        if (::uname(&u) != 0) return false;
        int major = 0, minor = 0;
        if (std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
        return major > 6 || (major == 6 && minor >= 12);
    }();
    return has;
}

} // namespace hearth

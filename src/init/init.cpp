#include "init/init.hpp"

#include "init/exit_status.hpp"
#include "init/sdnotify.hpp"
#include "init/spawn.hpp"
#include "util/fd.hpp"
#include "util/log.hpp"
#include "util/uv_util.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unordered_set>

namespace hearth {

namespace {

// The signals hearth reads from its signalfd. They are forwarded to the main
// command (the set tini and dumb-init forward), and TERM/INT also start a
// shutdown. Fatal synchronous signals (SEGV, BUS, ...) are never blocked.
sigset_t handled_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGTERM, SIGWINCH, SIGCONT})
        sigaddset(&set, sig);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig)
        sigaddset(&set, sig);
    return set;
}

bool is_forwarded(int sig) {
    return sig != SIGCHLD;
}

struct ProcInfo {
    pid_t pid;
    pid_t pgrp;
};

// Reads a whole small /proc file; "" when it cannot.
std::string read_proc_file(const char* path) {
    Fd fd(::open(path, O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fd.get(), buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

// The process group of `pid`, or -1 if it is gone or already a zombie. The
// comm field may hold spaces and parentheses, so parse from the last ')'.
pid_t process_group(pid_t pid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
    std::string stat = read_proc_file(path);
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos) return -1;
    char state = 0;
    int ppid = 0, pgrp = 0;
    if (std::sscanf(stat.c_str() + paren + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) return -1;
    return state == 'Z' ? -1 : pgrp;
}

// Every live descendant, by a scan of all of /proc (kernels without
// CONFIG_PROC_CHILDREN).
std::vector<ProcInfo> scan_descendants() {
    std::unordered_map<pid_t, std::vector<pid_t>> children;
    DIR* dir = ::opendir("/proc");
    if (!dir) return {};
    while (dirent* entry = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(entry->d_name, &end, 10);
        if (*end != '\0' || pid <= 0) continue;
        char path[64];
        std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        std::string stat = read_proc_file(path);
        size_t paren = stat.rfind(')');
        int ppid = 0;
        if (paren == std::string::npos ||
            std::sscanf(stat.c_str() + paren + 1, " %*c %d", &ppid) != 1)
            continue;
        children[ppid].push_back(static_cast<pid_t>(pid));
    }
    ::closedir(dir);
    std::vector<ProcInfo> out;
    std::vector<pid_t> stack{::getpid()};
    while (!stack.empty()) {
        pid_t parent = stack.back();
        stack.pop_back();
        for (pid_t child : children[parent]) {
            stack.push_back(child);
            pid_t pgrp = process_group(child);
            if (pgrp > 0) out.push_back({child, pgrp});
        }
    }
    return out;
}

// Every live descendant of this process, found through the kernel's
// per-thread children lists where it has them: that reads only hearth's own
// tree, not every process on a busy host.
std::vector<ProcInfo> list_descendants() {
    static const bool have_children_files = [] {
        char path[64];
        std::snprintf(path, sizeof path, "/proc/self/task/%d/children", ::getpid());
        return ::access(path, R_OK) == 0;
    }();
    if (!have_children_files) return scan_descendants();
    std::vector<ProcInfo> out;
    std::vector<pid_t> stack{::getpid()};
    while (!stack.empty()) {
        pid_t parent = stack.back();
        stack.pop_back();
        char task_dir[64];
        std::snprintf(task_dir, sizeof task_dir, "/proc/%d/task", parent);
        DIR* dir = ::opendir(task_dir);
        if (!dir) continue;
        while (dirent* entry = ::readdir(dir)) {
            if (entry->d_name[0] == '.') continue;
            char path[384];
            std::snprintf(path, sizeof path, "%s/%s/children", task_dir, entry->d_name);
            std::string children = read_proc_file(path);
            char* cursor = children.data();
            while (*cursor) {
                char* end = nullptr;
                long pid = std::strtol(cursor, &end, 10);
                if (end == cursor) break;
                cursor = end;
                stack.push_back(static_cast<pid_t>(pid));
                pid_t pgrp = process_group(static_cast<pid_t>(pid));
                if (pgrp > 0) out.push_back({static_cast<pid_t>(pid), pgrp});
            }
        }
        ::closedir(dir);
    }
    return out;
}

// True while hearth has any child, running or not yet reaped. Every orphan
// of hearth's tree is reparented to hearth, so no child means no descendant.
bool has_children() {
    siginfo_t info{};
    return !(::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD);
}

} // namespace

void Init::prepare_process() {
    sigset_t set = handled_signals();
    ::sigprocmask(SIG_BLOCK, &set, nullptr);
    // Writes to a closed socket or pipe must fail with EPIPE, not kill PID 1.
    ::signal(SIGPIPE, SIG_IGN);

    sdnotify::take_socket_from_environment();

    // The supervisor must be the last thing the OOM killer picks: if it dies,
    // every environment loses its reaper and its supervision.
    Fd oom(::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC));
    if (!oom || ::write(oom.get(), "-1000", 5) != 5)
        log::debug("cannot set oom_score_adj to -1000", {{"error", std::strerror(errno)}});

    if (::getpid() != 1) {
        // Not init of a PID namespace: orphans would go to the real init and
        // escape supervision. As a subreaper they come back to hearth instead.
        if (::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0)
            log::info("not PID 1: running as child subreaper", {{"pid", ::getpid()}});
        else
            log::warn("not PID 1 and cannot become a child subreaper",
                      {{"error", std::strerror(errno)}});
    }
}

Init::Init(uv_loop_t* loop, double grace_s) : loop_(loop), grace_s_(grace_s) {}

Init::~Init() {
    if (signal_fd_ >= 0) ::close(signal_fd_);
}

std::string Init::start() {
    sigset_t set = handled_signals();
    signal_fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) return std::string("signalfd: ") + std::strerror(errno);
    uv_poll_init(loop_, &signal_poll_, signal_fd_);
    signal_poll_.data = this;
    uv_poll_start(&signal_poll_, UV_READABLE, on_signal_readable);
    uv_timer_init(loop_, &grace_timer_);
    grace_timer_.data = this;
    uv_timer_init(loop_, &kill_timer_);
    kill_timer_.data = this;
    handles_open_ = true;
    // Children may have exited before the signalfd existed (e.g. inherited
    // ones); their SIGCHLD is pending and will be read, but reap anyway.
    reap();
    return {};
}

bool Init::start_main(const std::vector<std::string>& command, std::vector<std::string> env) {
    const char* path_env = std::getenv("PATH");
    ResolvedExecutable resolved = resolve_executable(command[0], path_env ? path_env : "");
    SpawnResult spawned;
    if (resolved.error) {
        spawned.error = resolved.error;
        spawned.exit_code = exit_code_from_exec_errno(resolved.error);
        spawned.message = "cannot execute '" + command[0] + "': " + std::strerror(resolved.error);
    } else {
        SpawnRequest req;
        req.path = resolved.path;
        req.argv = command;
        req.env = std::move(env);
        req.stdin_fd = spawn_inherit; // like tini: the main command owns hearth's stdio
        req.take_terminal = true;
        spawned = spawn(req);
    }
    if (spawned.pid <= 0) {
        log::error(spawned.message, {{"exit_code", spawned.exit_code}});
        exit_code_ = spawned.exit_code;
        request_shutdown("main command could not be started");
        return false;
    }
    main_pid_ = spawned.pid;
    main_running_ = true;
    log::debug("main command started", {{"pid", main_pid_}, {"command", command[0]}});
    watch(main_pid_, [this](int status) {
        main_running_ = false;
        exit_code_ = exit_code_from_wait_status(status);
        log::info("main command " + describe_wait_status(status),
                  {{"pid", main_pid_}, {"exit_code", exit_code_}});
        request_shutdown("main command ended");
    });
    return true;
}

void Init::watch(pid_t pid, ExitCallback cb) {
    watchers_[pid] = std::move(cb);
}
void Init::unwatch(pid_t pid) {
    watchers_.erase(pid);
}

void Init::on_signal_readable(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<Init*>(handle->data);
    if (status < 0) {
        log::error("signalfd poll failed", {{"error", uv_strerror(status)}});
        return;
    }
    // The whole shutdown path runs from here: nothing may escape into libuv
    // and end PID 1 (and with it the container).
    guard_callback("signal handling", [self] {
        signalfd_siginfo info;
        bool saw_child = false;
        while (true) {
            ssize_t n = ::read(self->signal_fd_, &info, sizeof info);
            if (n != static_cast<ssize_t>(sizeof info)) break;
            if (static_cast<int>(info.ssi_signo) == SIGCHLD)
                saw_child = true;
            else
                self->handle_signal(static_cast<int>(info.ssi_signo));
        }
        // One SIGCHLD may stand for many exits, so reap until nothing is left.
        if (saw_child) self->reap();
    });
}

void Init::handle_signal(int sig) {
    if (is_forwarded(sig) && main_running_) {
        // To the whole group: the main command may be a shell with children.
        if (::kill(-main_pid_, sig) < 0 && errno == ESRCH) ::kill(main_pid_, sig);
        log::debug("forwarded signal", {{"signal", signal_name(sig)}, {"pid", main_pid_}});
        if (sig == SIGTERM || sig == SIGINT) main_signalled_ = true;
    }
    if (sig == SIGTERM || sig == SIGINT) {
        request_shutdown("received " + signal_name(sig));
    } else if (!main_running_) {
        log::debug("ignored signal", {{"signal", signal_name(sig)}});
    }
}

void Init::reap() {
    while (true) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid == 0) break;
        if (pid < 0) {
            if (errno == EINTR) continue;
            break; // ECHILD: no children at all
        }
        auto it = watchers_.find(pid);
        if (it == watchers_.end()) {
            log::debug("reaped orphan", {{"pid", pid}, {"status", describe_wait_status(status)}});
            continue;
        }
        ExitCallback cb = std::move(it->second);
        watchers_.erase(it);
        guard_callback("exit handler", [&] { cb(status); });
    }
    maybe_finish();
}

void Init::request_shutdown(std::string_view reason) {
    if (shutting_down_) return;
    shutting_down_ = true;
    sdnotify::send("STOPPING=1");
    log::info("shutting down", {{"reason", reason}, {"grace_s", grace_s_}});

    std::vector<pid_t> skip;
    if (main_running_) {
        skip.push_back(main_pid_);
        if (!main_signalled_) ::kill(-main_pid_, SIGTERM);
    }
    if (stop_hook_) {
        stop_hook_done_ = false;
        if (managed_groups_)
            for (pid_t g : managed_groups_())
                skip.push_back(g);
        stop_hook_([this] {
            stop_hook_done_ = true;
            maybe_finish();
        });
    }
    // Everything else in the tree: orphans, and processes that called setsid()
    // and so escaped every process group hearth knows.
    int signalled = signal_descendants(SIGTERM, skip);
    if (signalled > 0) log::debug("sent TERM to other descendants", {{"count", signalled}});

    if (handles_open_) uv_timer_start(&grace_timer_, on_grace_expired, timer_ms(grace_s_), 0);
    reap();
}

void Init::on_grace_expired(uv_timer_t* timer) {
    auto* self = static_cast<Init*>(timer->data);
    guard_callback("grace period expiry", [self] {
        int killed = self->signal_descendants(SIGKILL, {});
        log::warn("grace period expired, killed remaining processes", {{"count", killed}});
        // KILL cannot be refused, but a process in uninterruptible sleep may
        // take a while to die; do not wait forever for it.
        uv_timer_start(&self->kill_timer_, on_kill_deadline, 5000, 0);
        // The stop hook still finishes its work (revisions report `stopped`
        // once their cgroups are gone, which subscribers wait for); the kill
        // deadline bounds it.
        self->reap();
    });
}

void Init::on_kill_deadline(uv_timer_t* timer) {
    auto* self = static_cast<Init*>(timer->data);
    guard_callback("kill deadline", [self] {
        log::error("processes survived KILL for 5 s; exiting anyway");
        self->finish();
    });
}

void Init::maybe_finish() {
    if (!shutting_down_ || finished_ || !stop_hook_done_) return;
    if (has_children()) return;
    finish();
}

void Init::finish() {
    if (finished_) return;
    finished_ = true;
    if (before_exit_) {
        guard_callback("cleanup before exit", before_exit_);
    }
    log::info("exiting", {{"exit_code", exit_code_}});
    close();
    uv_stop(loop_);
}

void Init::close() {
    if (!handles_open_) return;
    handles_open_ = false;
    uv_poll_stop(&signal_poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&signal_poll_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&kill_timer_), nullptr);
}

int Init::signal_descendants(int sig, const std::vector<pid_t>& skip_groups) {
    // No child (not even a zombie) means no descendant: every orphan of
    // hearth's tree is reparented to hearth itself.
    if (!has_children()) return 0;
    // As init of a PID namespace every process is ours, and kill(-1) reaches
    // all of them atomically, including ones forking right now.
    if (::getpid() == 1 && skip_groups.empty()) return ::kill(-1, sig) == 0 ? 1 : 0;

    std::unordered_set<pid_t> skip(skip_groups.begin(), skip_groups.end());
    int count = 0;
    for (const ProcInfo& p : list_descendants()) {
        if (skip.count(p.pgrp)) continue;
        if (::kill(p.pid, sig) == 0) ++count;
    }
    return count;
}

} // namespace hearth

#pragma once
// PID-1 duties: signals, reaping, the main command and shutdown.
//
// hearth may run as PID 1 of a container (signals without handlers are
// ignored for it, and every orphan of the namespace becomes its child) or as an
// ordinary process (then it becomes a child subreaper so orphans of its own
// tree still come back to it). Either way this object is the only place that
// calls waitpid(-1): every other part registers the pids it cares about.

#include <functional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <unordered_map>
#include <uv.h>
#include <vector>

namespace hearth {

class Init {
public:
    using ExitCallback = std::function<void(int wait_status)>;
    // Called once when shutdown starts; must stop what it supervises and call
    // `done` (possibly later, on the loop) when it has.
    using StopHook = std::function<void(std::function<void()> done)>;

    // Process-wide set-up that must happen before any thread exists (libuv's
    // pool, spdlog, the output forwarder): blocks the handled signals so that
    // every thread inherits the mask and signals are only read from the
    // signalfd; ignores SIGPIPE; sets oom_score_adj -1000; becomes a child
    // subreaper when not PID 1; takes NOTIFY_SOCKET out of the environment.
    static void prepare_process();

    Init(uv_loop_t* loop, double grace_s);
    ~Init();
    Init(const Init&) = delete;
    Init& operator=(const Init&) = delete;

    // Starts reading signals. Returns "" or an error message.
    std::string start();

    // Starts the main command with hearth's stdio and `env`. On failure
    // logs one line, records 127/126 as hearth's exit code, starts shutdown
    // and returns false.
    bool start_main(const std::vector<std::string>& command, std::vector<std::string> env);

    // `cb` runs on the loop when `pid` has been reaped. One callback per pid.
    void watch(pid_t pid, ExitCallback cb);
    void unwatch(pid_t pid);

    void set_stop_hook(StopHook hook) { stop_hook_ = std::move(hook); }
    // Process groups stopped by the stop hook; the shutdown sweep leaves them
    // to it (so each process gets one TERM, with its own grace period).
    void set_managed_groups(std::function<std::vector<pid_t>()> provider) {
        managed_groups_ = std::move(provider);
    }
    // Runs right before the loop is stopped (flush logs, close the socket).
    void set_before_exit(std::function<void()> cb) { before_exit_ = std::move(cb); }

    // Starts the shutdown sequence (idempotent): TERM to everything hearth
    // supervises, up to the grace period, then KILL, then the loop stops.
    void request_shutdown(std::string_view reason);

    // Closes the libuv handles (idempotent). The loop must run once more
    // (UV_RUN_NOWAIT is enough) before this object is destroyed.
    void close();

    bool shutting_down() const noexcept { return shutting_down_; }
    bool has_main() const noexcept { return main_pid_ > 0; }
    // hearth's exit code: the main command's (128+N if killed by signal N),
    // 127/126 if it could not be started, 0 otherwise.
    int exit_code() const noexcept { return exit_code_; }

private:
    static void on_signal_readable(uv_poll_t* handle, int status, int events);
    static void on_grace_expired(uv_timer_t* timer);
    static void on_kill_deadline(uv_timer_t* timer);

    void handle_signal(int sig);
    void reap();
    void maybe_finish();
    void finish();
    // Sends `sig` to every descendant of hearth whose process group is not in
    // `skip_groups`. Returns how many processes were signalled.
    int signal_descendants(int sig, const std::vector<pid_t>& skip_groups);

    uv_loop_t* loop_;
    double grace_s_;
    int signal_fd_ = -1;
    uv_poll_t signal_poll_{};
    uv_timer_t grace_timer_{};
    uv_timer_t kill_timer_{};
    bool handles_open_ = false;

    std::unordered_map<pid_t, ExitCallback> watchers_;
    StopHook stop_hook_;
    std::function<std::vector<pid_t>()> managed_groups_;
    std::function<void()> before_exit_;

    pid_t main_pid_ = -1;
    bool main_running_ = false;
    bool main_signalled_ = false;
    bool shutting_down_ = false;
    bool stop_hook_done_ = true;
    bool finished_ = false;
    int exit_code_ = 0;
};

} // namespace hearth

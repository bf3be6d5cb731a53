#include "init/oneshot.hpp"

#include "init/procscan.hpp"
#include "util/fd.hpp"
#include "util/log.hpp"
#include "util/uv_util.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <set>
#include <signal.h>
#include <unistd.h>

namespace hearth {

namespace {

// Owns itself from spawn until `done` has run.
struct Oneshot {
    uv_loop_t* loop;
    Init* init;
    OneshotOptions options;
    std::function<void(OneshotResult)> done;
    OneshotResult result;
    pid_t pid = -1;
    bool reaped = false;
    int open_pipes = 0;
    Timer timeout;
    Timer linger;
    uv_pipe_t* pipes[2] = {nullptr, nullptr};

    Oneshot(uv_loop_t* l) : loop(l), timeout(l), linger(l) {}

    void take(int index, const char* data, std::size_t size) {
        if (index == 0) {
            std::size_t room = options.max_stdout - std::min(result.out.size(), options.max_stdout);
            std::size_t n = std::min(room, size);
            result.out.append(data, n);
            if (n < size && !result.out_overflow) {
                result.out_overflow = result.truncated = true;
                if (options.kill_on_stdout_overflow) kill();
            }
            return;
        }
        std::string& err = result.err;
        if (!options.stderr_tail) {
            std::size_t room = options.max_stderr - std::min(err.size(), options.max_stderr);
            std::size_t n = std::min(room, size);
            err.append(data, n);
            if (n < size) result.err_overflow = result.truncated = true;
            return;
        }
        err.append(data, size);
        if (err.size() > options.max_stderr) result.err_overflow = result.truncated = true;
        // Trim in batches so a chatty command costs linear time.
        if (err.size() > 2 * options.max_stderr + 4096)
            err.erase(0, err.size() - options.max_stderr);
    }

    void kill() {
        if (result.killed || reaped) return;
        result.killed = true;
        if (options.kill_tree) {
            kill_process_tree(pid);
        } else {
            ::kill(-pid, SIGKILL);
        }
        if (!options.on_kill) return;
        try {
            options.on_kill(pid);
        } catch (const std::exception& e) {
            log::error("oneshot kill hook failed", {{"pid", pid}, {"error", e.what()}});
        }
    }

    void close_pipe(int index) {
        if (!pipes[index]) return;
        uv_close(reinterpret_cast<uv_handle_t*>(pipes[index]),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
        pipes[index] = nullptr;
        --open_pipes;
    }

    void maybe_finish() {
        if (!reaped) return;
        if (open_pipes > 0) {
            // A grandchild may keep the pipes open forever; the command itself
            // is done, so give its output a moment to drain, then stop reading.
            if (!linger.active())
                linger.start(100, [this] {
                    close_pipe(0);
                    close_pipe(1);
                    maybe_finish();
                });
            return;
        }
        if (result.err.size() > options.max_stderr)
            result.err.erase(0, result.err.size() - options.max_stderr);
        std::unique_ptr<Oneshot> self(this);
        auto cb = std::move(done);
        // Runs inside a libuv callback: nothing may escape.
        try {
            cb(std::move(result));
        } catch (const std::exception& e) {
            log::error("oneshot completion failed", {{"pid", pid}, {"error", e.what()}});
        }
    }
};

void on_alloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = new char[suggested];
    buf->len = suggested;
}

} // namespace

int kill_process_tree(pid_t pid) {
    // Stopped processes neither fork nor exit, so parent links stay valid
    // while the tree is walked; rescans pick up children forked between a
    // scan and their parent's SIGSTOP.
    std::set<pid_t> found;
    for (int round = 0; round < 16; ++round) {
        auto all = scan_processes();
        bool added = false;
        for (bool grew = true; grew;) {
            grew = false;
            for (const ProcInfo& p : all) {
                if (p.zombie || found.count(p.pid)) continue;
                if (p.pid == pid || p.pgrp == pid || p.ppid == pid || found.count(p.ppid)) {
                    found.insert(p.pid);
                    ::kill(p.pid, SIGSTOP);
                    grew = added = true;
                }
            }
        }
        if (!added) break;
    }
    for (pid_t p : found)
        ::kill(p, SIGKILL);
    ::kill(-pid, SIGKILL);
    return static_cast<int>(found.size());
}

pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, uint64_t timeout_ms,
                  std::size_t max_output, std::function<void(OneshotResult)> done) {
    OneshotOptions options;
    options.timeout_ms = timeout_ms;
    options.max_stdout = max_output;
    options.max_stderr = max_output;
    return run_oneshot(loop, init, std::move(request), std::move(options), std::move(done));
}

pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, OneshotOptions options,
                  std::function<void(OneshotResult)> done) {
    auto* job = new Oneshot(loop);
    job->init = &init;
    job->options = std::move(options);
    job->done = std::move(done);

    Fd read_ends[2], write_ends[2];
    for (int i = 0; i < 2; ++i) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) < 0) {
            job->result.error = std::string("pipe: ") + std::strerror(errno);
            job->reaped = true;
            job->maybe_finish();
            return -1;
        }
        read_ends[i].reset(fds[0]);
        write_ends[i].reset(fds[1]);
    }
    request.stdout_fd = write_ends[0].get();
    request.stderr_fd = write_ends[1].get();
    request.new_session = false;
    SpawnResult spawned = spawn(request);
    write_ends[0].reset();
    write_ends[1].reset();
    if (spawned.pid <= 0) {
        job->result.error = spawned.message;
        job->result.spawn_exit_code = spawned.exit_code;
        job->reaped = true;
        job->maybe_finish();
        return -1;
    }
    job->result.started = true;
    job->result.pid = spawned.pid;
    job->pid = spawned.pid;

    for (int i = 0; i < 2; ++i) {
        auto* pipe = new uv_pipe_t;
        uv_pipe_init(loop, pipe, 0);
        pipe->data = job;
        if (uv_pipe_open(pipe, read_ends[i].get()) < 0) {
            // Should not happen for a fresh pipe; treat as closed output.
            uv_close(reinterpret_cast<uv_handle_t*>(pipe),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_pipe_t*>(h); });
            continue;
        }
        read_ends[i].release(); // the uv_pipe_t owns it now
        job->pipes[i] = pipe;
        ++job->open_pipes;
        uv_read_start(reinterpret_cast<uv_stream_t*>(pipe), on_alloc,
                      [](uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
                          std::unique_ptr<char[]> data(buf->base);
                          auto* j = static_cast<Oneshot*>(stream->data);
                          int index = j->pipes[0] == reinterpret_cast<uv_pipe_t*>(stream) ? 0 : 1;
                          if (nread > 0) {
                              j->take(index, buf->base, static_cast<std::size_t>(nread));
                          } else if (nread < 0) {
                              j->close_pipe(index);
                              j->maybe_finish();
                          }
                      });
    }

    job->timeout.start(job->options.timeout_ms, [job] {
        if (job->result.killed) return; // already killed for an overflow
        job->result.timed_out = true;
        job->kill();
    });
    init.watch(job->pid, [job](int status) {
        job->reaped = true;
        job->timeout.stop();
        job->result.wait_status = status;
        job->maybe_finish();
    });
    return spawned.pid;
}

} // namespace hearth

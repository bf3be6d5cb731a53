#include "init/oneshot.hpp"

#include "util/fd.hpp"
#include "util/uv_util.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <memory>
#include <signal.h>
#include <unistd.h>

namespace hearth {

namespace {

// Owns itself from spawn until `done` has run.
struct Oneshot {
    uv_loop_t* loop;
    Init* init;
    std::size_t max_output;
    std::function<void(OneshotResult)> done;
    OneshotResult result;
    pid_t pid = -1;
    bool reaped = false;
    int open_pipes = 0;
    Timer timeout;
    Timer linger;
    uv_pipe_t* pipes[2] = {nullptr, nullptr};

    Oneshot(uv_loop_t* l) : loop(l), timeout(l), linger(l) {}

    std::string& sink(int index) { return index == 0 ? result.out : result.err; }

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
        std::unique_ptr<Oneshot> self(this);
        auto cb = std::move(done);
        cb(std::move(result));
    }
};

void on_alloc(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
    buf->base = new char[suggested];
    buf->len = suggested;
}

} // namespace

pid_t run_oneshot(uv_loop_t* loop, Init& init, SpawnRequest request, uint64_t timeout_ms,
                  std::size_t max_output, std::function<void(OneshotResult)> done) {
    auto* job = new Oneshot(loop);
    job->init = &init;
    job->max_output = max_output;
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
                              std::string& out = j->sink(index);
                              std::size_t room =
                                  j->max_output - std::min(out.size(), j->max_output);
                              std::size_t take = std::min<std::size_t>(room, nread);
                              out.append(buf->base, take);
                              if (take < static_cast<std::size_t>(nread))
                                  j->result.truncated = true;
                          } else if (nread < 0) {
                              j->close_pipe(index);
                              j->maybe_finish();
                          }
                      });
    }

    job->timeout.start(timeout_ms, [job] {
        job->result.timed_out = true;
        ::kill(-job->pid, SIGKILL);
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

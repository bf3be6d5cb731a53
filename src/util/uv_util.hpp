#pragma once
// Small RAII helpers over libuv for the loop thread.
//
// libuv handles must stay allocated until their close callback runs, which is
// after the owning object may already be gone. These wrappers give each
// handle its own heap block that outlives the owner until uv_close completes,
// so owners can be destroyed at any time.

#include "util/log.hpp"

#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <uv.h>

namespace hearth {

// Seconds (a duration from options or a deploy) as whole milliseconds for a
// libuv timer, rounded to nearest; negative or NaN becomes 0.
inline uint64_t timer_ms(double seconds) noexcept {
    return seconds > 0 ? static_cast<uint64_t>(std::llround(seconds * 1000.0)) : 0;
}

// Runs `f` and logs, instead of propagating, whatever it throws: for the
// body of every libuv callback (an exception escaping into libuv's C frames
// would end the process, and hearth may be PID 1). `what` names the
// callback in the log line.
template <class F> void guard_callback(const char* what, F&& f) noexcept {
    try {
        std::forward<F>(f)();
    } catch (const std::exception& e) {
        log::error(std::string(what) + " failed", {{"error", e.what()}});
    } catch (...) {
        log::error(std::string(what) + " failed", {{"error", "unknown exception"}});
    }
}

// A one-shot or repeating timer whose callback never runs after destruction.
class Timer {
public:
    explicit Timer(uv_loop_t* loop) : block_(new Block) {
        uv_timer_init(loop, &block_->handle);
        block_->handle.data = block_;
    }
    ~Timer() {
        uv_timer_stop(&block_->handle);
        block_->callback = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&block_->handle),
                 [](uv_handle_t* h) { delete static_cast<Block*>(h->data); });
    }
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    // Replaces any pending start. `repeat_ms` 0 = one-shot.
    void start(uint64_t timeout_ms, std::function<void()> cb, uint64_t repeat_ms = 0) {
        block_->callback = std::move(cb);
        uv_timer_start(&block_->handle, on_timer, timeout_ms, repeat_ms);
    }
    void stop() {
        uv_timer_stop(&block_->handle);
        block_->callback = nullptr;
    }
    bool active() const { return uv_is_active(reinterpret_cast<uv_handle_t*>(&block_->handle)); }

private:
    struct Block {
        uv_timer_t handle{};
        std::function<void()> callback;
    };
    static void on_timer(uv_timer_t* handle) {
        auto* block = static_cast<Block*>(handle->data);
        if (!block->callback) return;
        // Copy: the callback may restart or destroy this timer.
        auto cb = block->callback;
        if (!uv_is_active(reinterpret_cast<uv_handle_t*>(handle))) block->callback = nullptr;
        try {
            cb();
        } catch (const std::exception& e) {
            log::error("timer callback failed", {{"error", e.what()}});
        } catch (...) {
            log::error("timer callback failed", {{"error", "unknown exception"}});
        }
    }
    Block* block_;
};

// Jobs queued by run_blocking whose completion has not run yet. Loop thread
// only. At exit the loop must keep running until this is zero: a pool thread
// still working on a job must not outlive the objects the job uses.
inline std::size_t& blocking_jobs_in_flight() {
    static std::size_t count = 0;
    return count;
}

// Runs `work()` on libuv's thread pool and then `done(result)` on the loop
// thread. An exception from `work` becomes an error string passed to `done`
// as std::nullopt + message; nothing escapes into libuv.
template <class Result>
void run_blocking(uv_loop_t* loop, std::function<Result()> work,
                  std::function<void(std::optional<Result>, std::string)> done) {
    struct Job {
        uv_work_t req{};
        std::function<Result()> work;
        std::function<void(std::optional<Result>, std::string)> done;
        std::optional<Result> result;
        std::string error;
    };
    auto* job = new Job;
    job->req.data = job;
    ++blocking_jobs_in_flight();
    job->work = std::move(work);
    job->done = std::move(done);
    int rc = uv_queue_work(
        loop, &job->req,
        [](uv_work_t* req) {
            auto* j = static_cast<Job*>(req->data);
            try {
                j->result.emplace(j->work());
            } catch (const std::exception& e) {
                j->error = e.what();
            } catch (...) {
                j->error = "unknown exception";
            }
        },
        [](uv_work_t* req, int status) {
            std::unique_ptr<Job> j(static_cast<Job*>(req->data));
            --blocking_jobs_in_flight();
            if (status < 0 && j->error.empty()) j->error = uv_strerror(status);
            try {
                j->done(std::move(j->result), std::move(j->error));
            } catch (const std::exception& e) {
                log::error("completion of background job failed", {{"error", e.what()}});
            } catch (...) {
                log::error("completion of background job failed", {{"error", "unknown exception"}});
            }
        });
    if (rc < 0) {
        std::unique_ptr<Job> j(job);
        --blocking_jobs_in_flight();
        j->done(std::nullopt, uv_strerror(rc));
    }
}

} // namespace hearth

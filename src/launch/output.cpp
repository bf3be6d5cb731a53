#include "launch/output.hpp"

#include "util/fs.hpp"
#include "util/log.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace hearth {

const char* stream_name(Stream s) noexcept {
    return s == Stream::err ? "stderr" : "stdout";
}

namespace {

// 2026-11-22T10:00:00.123Z
void append_timestamp(std::string& out, std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    int millis = static_cast<int>(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        --secs;
    }
    struct tm tm {};
    ::gmtime_r(&secs, &tm);
    char buf[40];
    int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    if (n > 0) out.append(buf, static_cast<std::size_t>(n));
}

} // namespace

// ---- LineRing ----------------------------------------------------------------

LineRing::LineRing(std::size_t max_lines, std::size_t max_bytes)
    : max_lines_(max_lines ? max_lines : 1), max_bytes_(max_bytes) {}

void LineRing::push(LogLine line) {
    bytes_ += line.text.size();
    lines_.push_back(std::move(line));
    ++pushed_;
    while (lines_.size() > 1 && (lines_.size() > max_lines_ || bytes_ > max_bytes_)) {
        bytes_ -= lines_.front().text.size();
        lines_.pop_front();
        ++dropped_;
    }
}

std::vector<LogLine> LineRing::tail(std::size_t n) const {
    n = std::min(n, lines_.size());
    return std::vector<LogLine>(lines_.end() - static_cast<std::ptrdiff_t>(n), lines_.end());
}

// ---- LineSplitter ------------------------------------------------------------

bool LineSplitter::feed(std::string_view data, const Emit& emit) {
    while (!data.empty()) {
        auto nl = data.find('\n');
        if (nl == std::string_view::npos) {
            partial_.append(data);
            // Cut only past the limit: a line of exactly max_line bytes whose
            // newline comes in the next read stays whole.
            std::size_t off = 0;
            while (partial_.size() - off > max_line_) {
                if (!emit(std::string_view(partial_).substr(off, max_line_))) {
                    partial_.clear();
                    return false;
                }
                off += max_line_;
            }
            partial_.erase(0, off);
            return true;
        }
        std::string_view piece = data.substr(0, nl);
        data.remove_prefix(nl + 1);
        std::string_view line = piece;
        if (!partial_.empty()) {
            partial_.append(piece);
            line = partial_;
        }
        // Same cut as above, so the result does not depend on read sizes.
        while (line.size() > max_line_) {
            if (!emit(line.substr(0, max_line_))) {
                partial_.clear();
                return false;
            }
            line.remove_prefix(max_line_);
        }
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        bool go_on = emit(line);
        partial_.clear();
        if (!go_on) return false;
    }
    return true;
}

bool LineSplitter::finish(const Emit& emit) {
    if (partial_.empty()) return true;
    std::string last = std::move(partial_);
    partial_.clear();
    return emit(last);
}

// ---- RotatingFile ------------------------------------------------------------

RotatingFile::RotatingFile(std::string dir, std::string name, std::uint64_t max_bytes)
    : path_(std::move(dir) + "/" + std::move(name) + ".log"), max_bytes_(max_bytes) {}

RotatingFile::~RotatingFile() {
    close();
}

void RotatingFile::report(const char* what, int err) {
    if (failing_) return;
    failing_ = true;
    log::error("cannot write output log; lines are dropped until it works again",
               {{"path", path_}, {"op", what}, {"error", std::strerror(err)}});
}

bool RotatingFile::ensure_open() {
    if (fd_) return true;
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        report("open", errno);
        return false;
    }
    fd_.reset(fd);
    struct stat st {};
    size_ = ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    return true;
}

void RotatingFile::write(const LogLine& line) {
    if (!fd_ && !failing_) ensure_open();
    std::size_t len = 24 + 1 + 6 + 1 + line.text.size() + 1; // TS stream text\n
    std::uint64_t current = size_ + buffer_.size();
    if (current > 0 && current + len > max_bytes_) rotate();
    append_timestamp(buffer_, line.time);
    buffer_ += ' ';
    buffer_ += stream_name(line.stream);
    buffer_ += ' ';
    buffer_ += line.text;
    buffer_ += '\n';
    if (buffer_.size() >= buffer_limit) flush();
}

void RotatingFile::flush() {
    if (buffer_.empty()) return;
    if (!ensure_open()) {
        lost_bytes_ += buffer_.size();
        buffer_.clear();
        return;
    }
    int err = write_all(fd_.get(), buffer_);
    if (err != 0) {
        report("write", err);
        lost_bytes_ += buffer_.size();
        buffer_.clear();
        fd_.reset(); // reopen (and re-measure) on a later flush
        return;
    }
    size_ += buffer_.size();
    buffer_.clear();
    if (failing_) {
        failing_ = false;
        log::info("output log is writable again",
                  {{"path", path_}, {"lost_bytes", static_cast<unsigned long long>(lost_bytes_)}});
    }
}

void RotatingFile::rotate() {
    flush();
    fd_.reset();
    std::string old = path_ + ".1";
    if (::rename(path_.c_str(), old.c_str()) != 0 && errno != ENOENT) {
        // Keep the size bound even when the rename is refused.
        report("rename", errno);
        if (::truncate(path_.c_str(), 0) != 0) report("truncate", errno);
    }
    size_ = 0;
    ensure_open();
}

void RotatingFile::close() {
    flush();
    fd_.reset();
}

// ---- StdoutForwarder ---------------------------------------------------------

struct StdoutForwarder::State {
    int fd;
    std::size_t max_bytes;
    std::mutex mu;
    std::condition_variable wake; // writer: work or stop
    std::condition_variable idle; // flush_and_stop: writer exited
    std::string pending;
    std::size_t pending_lines = 0;
    std::size_t in_flight_bytes = 0;
    std::uint64_t dropped = 0;
    std::uint64_t gap = 0; // drops not yet reported by a notice line
    std::uint64_t forwarded = 0;
    bool stopping = false;
    bool exited = false;
    bool broken = false;

    void append_notice() {
        pending += "[hearth] " + std::to_string(gap) + " lines dropped\n";
        gap = 0;
    }
};

StdoutForwarder::StdoutForwarder(int fd, std::size_t max_queue_bytes)
    : state_(std::make_shared<State>()) {
    state_->fd = fd;
    state_->max_bytes = max_queue_bytes;
    // The writer thread inherits this mask: with every signal blocked there,
    // process-directed signals go to the threads that wait for them.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
        thread_ = std::thread(run, state_);
    } catch (const std::system_error& e) {
        state_->broken = true;
        log::error("cannot start the stdout forwarder; environment output will not reach stdout",
                   {{"error", e.what()}});
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

StdoutForwarder::~StdoutForwarder() {
    if (!stopped_) flush_and_stop(std::chrono::milliseconds(1000));
}

void StdoutForwarder::forward(std::string_view location, std::string_view text) {
    std::lock_guard<std::mutex> lk(state_->mu);
    State& st = *state_;
    if (st.stopping || st.broken) {
        ++st.dropped;
        return;
    }
    std::size_t need = location.size() + text.size() + 4;
    if (st.pending.size() + st.in_flight_bytes + need > st.max_bytes) {
        ++st.dropped;
        ++st.gap;
        return;
    }
    bool was_empty = st.pending.empty();
    if (st.gap) st.append_notice();
    st.pending += '[';
    st.pending += location;
    st.pending += "] ";
    st.pending += text;
    st.pending += '\n';
    ++st.pending_lines;
    if (was_empty) st.wake.notify_one();
}

void StdoutForwarder::run(const std::shared_ptr<State>& sp) {
    State& st = *sp;
    std::unique_lock<std::mutex> lk(st.mu);
    try {
        for (;;) {
            st.wake.wait(lk, [&] { return !st.pending.empty() || st.gap || st.stopping; });
            if (st.pending.empty()) {
                if (st.gap && !st.broken) {
                    st.append_notice();
                    continue;
                }
                if (st.stopping) break;
                continue;
            }
            std::string batch;
            batch.swap(st.pending);
            std::size_t lines = std::exchange(st.pending_lines, 0);
            st.in_flight_bytes = batch.size();
            lk.unlock();
            int err = write_all(st.fd, batch);
            lk.lock();
            st.in_flight_bytes = 0;
            if (err == 0) {
                st.forwarded += lines;
                continue;
            }
            st.broken = true;
            st.dropped += lines + st.pending_lines;
            st.pending.clear();
            st.pending_lines = 0;
            st.gap = 0;
            lk.unlock();
            log::error("cannot write to stdout; environment output is no longer forwarded",
                       {{"error", std::strerror(err)}});
            lk.lock();
            // Keep draining stop requests; forward() now drops everything.
            st.wake.wait(lk, [&] { return st.stopping; });
            break;
        }
    } catch (...) {
        if (!lk.owns_lock()) lk.lock();
        st.broken = true;
    }
    st.exited = true;
    st.idle.notify_all();
}

bool StdoutForwarder::flush_and_stop(std::chrono::milliseconds timeout) {
    State& st = *state_;
    std::unique_lock<std::mutex> lk(st.mu);
    if (stopped_) return st.exited && !st.broken && st.pending.empty();
    stopped_ = true;
    st.stopping = true;
    st.wake.notify_all();
    if (!thread_.joinable()) return false;
    bool done = st.idle.wait_for(lk, timeout, [&] { return st.exited; });
    bool clean = done && !st.broken;
    lk.unlock();
    if (done) {
        thread_.join();
    } else {
        // Stuck in write(): it owns a reference to the state and exits once
        // the write returns; nothing else can end a blocking write on a
        // shared descriptor we must not close.
        thread_.detach();
    }
    return clean;
}

std::uint64_t StdoutForwarder::dropped() const {
    std::lock_guard<std::mutex> lk(state_->mu);
    return state_->dropped;
}

std::uint64_t StdoutForwarder::forwarded() const {
    std::lock_guard<std::mutex> lk(state_->mu);
    return state_->forwarded;
}

// ---- OutputCapture -----------------------------------------------------------

struct OutputCapture::Core {
    struct Pipe {
        uv_pipe_t handle{};
        Stream stream = Stream::out;
        Fd fd;             // until uv_pipe_open takes it over
        bool open = false; // handle initialized and not closing
        bool eof = false;
        LineSplitter splitter;
    };

    uv_loop_t* loop;
    Pipe pipes[2];
    uv_timer_t timer{};
    bool timer_open = false;
    LineRing* ring;
    std::unique_ptr<RotatingFile> file;
    StdoutForwarder* forwarder;
    std::string location;
    std::function<void(const LogLine&)> on_line;
    std::function<void()> on_closed;
    bool started = false;
    bool closed = false;
    bool orphaned = false; // the OutputCapture is gone
    bool notified = false; // on_closed was called
    int handles = 0;       // initialized handles whose close callback has not run
    char buf[64 * 1024];

    Pipe& pipe_of(const void* handle) { return handle == &pipes[0].handle ? pipes[0] : pipes[1]; }

    static void on_handle_closed(uv_handle_t* h) {
        auto* core = static_cast<Core*>(h->data);
        if (--core->handles == 0 && core->orphaned) delete core;
    }

    void close_handle(Pipe& p) {
        if (!p.open) return;
        p.open = false;
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&p.handle));
        uv_close(reinterpret_cast<uv_handle_t*>(&p.handle), on_handle_closed);
    }

    // One line to every sink. Returns false once the capture was closed (by
    // on_line itself, possibly by destroying the owner).
    bool emit(Stream stream, std::string_view text, std::chrono::system_clock::time_point t,
              bool callbacks) {
        if (closed && callbacks) return false;
        LogLine line{t, stream, std::string(text)};
        if (file) file->write(line);
        if (forwarder) forwarder->forward(location, line.text);
        if (!callbacks || !on_line) {
            if (ring) ring->push(std::move(line));
            return true;
        }
        ring->push(line);
        try {
            on_line(line);
        } catch (const std::exception& e) {
            log::error("output line handler failed", {{"error", e.what()}});
        }
        return !closed;
    }

    void arm_flush() {
        if (!file || !file->has_pending() || !timer_open) return;
        if (uv_is_active(reinterpret_cast<uv_handle_t*>(&timer))) return;
        uv_timer_start(
            &timer,
            [](uv_timer_t* t) {
                auto* core = static_cast<Core*>(t->data);
                if (core->file) core->file->flush();
            },
            flush_interval_ms, 0);
    }

    void deliver(Pipe& p, std::string_view data) {
        if (closed) return;
        auto now = std::chrono::system_clock::now();
        Stream s = p.stream;
        p.splitter.feed(data, [&](std::string_view line) { return emit(s, line, now, true); });
        if (!closed) arm_flush();
    }

    // EOF (or a read error) on one pipe. May call on_closed, after which the
    // owner may be gone: callers must return without touching it.
    void end_stream(Pipe& p) {
        if (p.eof) return;
        p.eof = true;
        Stream s = p.stream;
        auto now = std::chrono::system_clock::now();
        p.splitter.finish([&](std::string_view line) { return emit(s, line, now, true); });
        close_handle(p);
        if (closed || !pipes[0].eof || !pipes[1].eof) return;
        if (file) file->flush();
        if (timer_open) uv_timer_stop(&timer);
        if (notified) return;
        notified = true;
        if (!on_closed) return;
        try {
            on_closed();
        } catch (const std::exception& e) {
            log::error("output close handler failed", {{"error", e.what()}});
        }
    }

    static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* out) {
        auto* core = static_cast<Core*>(h->data);
        *out = uv_buf_init(core->buf, sizeof core->buf);
    }

    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* b) {
        auto* core = static_cast<Core*>(s->data);
        Pipe& p = core->pipe_of(s);
        try {
            if (nread > 0) {
                core->deliver(p, std::string_view(b->base, static_cast<std::size_t>(nread)));
            } else if (nread < 0) {
                if (nread != UV_EOF)
                    log::warn("reading environment output failed",
                              {{"location", core->location},
                               {"stream", stream_name(p.stream)},
                               {"error", uv_strerror(static_cast<int>(nread))}});
                core->end_stream(p);
            }
        } catch (const std::exception& e) {
            log::error("output capture failed", {{"error", e.what()}});
        }
    }

    bool start_pipe(Pipe& p) {
        if (!p.fd) {
            p.eof = true;
            return true;
        }
        int rc = uv_pipe_init(loop, &p.handle, 0);
        if (rc == 0) {
            p.handle.data = this;
            ++handles;
            p.open = true;
            rc = uv_pipe_open(&p.handle, p.fd.get());
            if (rc == 0) {
                p.fd.release(); // libuv closes it with the handle
                rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&p.handle), on_alloc, on_read);
            }
        }
        if (rc == 0) return true;
        log::error("cannot watch environment output", {{"location", location},
                                                       {"stream", stream_name(p.stream)},
                                                       {"error", uv_strerror(rc)}});
        close_handle(p);
        p.eof = true;
        return false;
    }

    void drain() {
        if (!started || closed) return;
        constexpr std::size_t budget = 4u << 20;
        for (Pipe& p : pipes) {
            if (!p.open || p.eof) continue;
            uv_os_fd_t fd = -1;
            if (uv_fileno(reinterpret_cast<uv_handle_t*>(&p.handle), &fd) != 0) continue;
            std::size_t total = 0;
            while (total < budget) {
                ssize_t n = ::read(fd, buf, sizeof buf);
                if (n > 0) {
                    total += static_cast<std::size_t>(n);
                    deliver(p, std::string_view(buf, static_cast<std::size_t>(n)));
                    if (closed) return;
                    continue;
                }
                if (n < 0 && errno == EINTR) continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                if (n < 0)
                    log::warn("reading environment output failed",
                              {{"location", location},
                               {"stream", stream_name(p.stream)},
                               {"error", std::strerror(errno)}});
                end_stream(p); // may call on_closed: touch nothing of the owner after
                break;
            }
            if (closed) return;
        }
    }

    void close() {
        if (closed) return;
        closed = true;
        // Partial lines still go to the ring, file and stdout, but no
        // callback runs any more: the owner may be in its destructor.
        auto now = std::chrono::system_clock::now();
        for (Pipe& p : pipes) {
            Stream s = p.stream;
            p.splitter.finish([&](std::string_view line) { return emit(s, line, now, false); });
            close_handle(p);
        }
        if (timer_open) {
            timer_open = false;
            uv_timer_stop(&timer);
            uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_handle_closed);
        }
        file.reset(); // flushes and closes
        ring = nullptr;
        forwarder = nullptr;
    }
};

OutputCapture::OutputCapture(uv_loop_t* loop, Fd out, Fd err, LineRing& ring,
                             std::unique_ptr<RotatingFile> file, StdoutForwarder* forwarder,
                             std::string location)
    : core_(new Core) {
    core_->loop = loop;
    core_->pipes[0].stream = Stream::out;
    core_->pipes[0].fd = std::move(out);
    core_->pipes[1].stream = Stream::err;
    core_->pipes[1].fd = std::move(err);
    core_->ring = &ring;
    core_->file = std::move(file);
    core_->forwarder = forwarder;
    core_->location = std::move(location);
}

OutputCapture::~OutputCapture() {
    core_->close();
    core_->orphaned = true;
    if (core_->handles == 0) delete core_;
}

bool OutputCapture::start() {
    Core& c = *core_;
    if (c.started || c.closed) return false;
    c.started = true;
    // Moved into the core so that they stay alive while running even if
    // the owner is destroyed from inside them.
    c.on_line = std::move(on_line);
    c.on_closed = std::move(on_closed);
    on_line = nullptr;
    on_closed = nullptr;
    uv_timer_init(c.loop, &c.timer);
    c.timer.data = &c;
    uv_unref(reinterpret_cast<uv_handle_t*>(&c.timer)); // a pending flush keeps no loop alive
    c.timer_open = true;
    ++c.handles;
    bool ok = c.start_pipe(c.pipes[0]);
    ok = c.start_pipe(c.pipes[1]) && ok;
    if (c.pipes[0].eof && c.pipes[1].eof && !c.notified) {
        // Nothing to read at all: report closure from the loop, not from
        // inside start(), so the caller finishes its setup first.
        auto* idle = new uv_idle_t;
        uv_idle_init(c.loop, idle);
        idle->data = &c;
        ++c.handles;
        uv_idle_start(idle, [](uv_idle_t* h) {
            auto* core = static_cast<Core*>(h->data);
            uv_idle_stop(h);
            uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* hh) {
                auto* cc = static_cast<Core*>(hh->data);
                delete reinterpret_cast<uv_idle_t*>(hh);
                if (--cc->handles == 0 && cc->orphaned) delete cc;
            });
            if (core->closed || core->notified) return;
            core->notified = true;
            if (core->file) core->file->flush();
            if (!core->on_closed) return;
            try {
                core->on_closed();
            } catch (const std::exception& e) {
                log::error("output close handler failed", {{"error", e.what()}});
            }
        });
    }
    return ok;
}

void OutputCapture::drain_now() {
    core_->drain();
}

void OutputCapture::close() {
    core_->close();
}

bool OutputCapture::at_eof() const noexcept {
    return core_->pipes[0].eof && core_->pipes[1].eof;
}

bool OutputCapture::closed() const noexcept {
    return core_->closed;
}

} // namespace hearth

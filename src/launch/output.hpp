#pragma once
// Capture of a revision's stdout and stderr.
//
//   child --pipe--> OutputCapture --LineSplitter--> each line goes to
//       LineRing        (memory: `logs`, failure reports' stderr tail)
//       RotatingFile    (<state>/logs/<location>/<revision>.log)
//       StdoutForwarder (hearth's own stdout as "[location] text": docker logs)
//       on_line         (`logs -f` followers)
//
// Everything except StdoutForwarder belongs to the loop thread. Lines are
// bytes: invalid UTF-8 and NULs pass through untouched (JSON dumping replaces
// them later). None of these functions throws except std::bad_alloc.

#include "util/fd.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <uv.h>
#include <vector>

namespace hearth {

enum class Stream : std::uint8_t { out, err };
// "stdout" / "stderr".
const char* stream_name(Stream s) noexcept;

struct LogLine {
    std::chrono::system_clock::time_point time;
    Stream stream = Stream::out;
    std::string text; // without its newline
};

// ---- LineRing ----------------------------------------------------------------

// The newest lines of one revision, bounded by a line count and by the bytes
// of their text. The oldest lines make room; dropped() counts them. The
// newest line is always kept, so one line longer than max_bytes (at most
// OutputCapture's 64 KiB cut) may exceed the byte bound on its own.
// Not thread-safe (loop thread).
class LineRing {
public:
    static constexpr std::size_t default_max_lines = 2000;
    static constexpr std::size_t default_max_bytes = 1 << 20;

    explicit LineRing(std::size_t max_lines = default_max_lines,
                      std::size_t max_bytes = default_max_bytes);

    void push(LogLine line);
    // The last min(n, size()) lines, oldest first (copies).
    std::vector<LogLine> tail(std::size_t n) const;

    std::size_t size() const noexcept { return lines_.size(); }
    std::size_t bytes() const noexcept { return bytes_; }
    std::uint64_t dropped() const noexcept { return dropped_; }
    std::uint64_t pushed() const noexcept { return pushed_; }

private:
    std::deque<LogLine> lines_;
    std::size_t max_lines_;
    std::size_t max_bytes_;
    std::size_t bytes_ = 0;
    std::uint64_t dropped_ = 0;
    std::uint64_t pushed_ = 0;
};

// ---- LineSplitter ------------------------------------------------------------

// Cuts a byte stream into lines at '\n', removing one '\r' before it. A line
// longer than `max_line` bytes is emitted in pieces of exactly `max_line`
// bytes followed by the remainder, the same way however the bytes were split
// across reads (a runaway line without newlines cannot grow memory).
// finish() emits a final unterminated line as is. Loop thread.
class LineSplitter {
public:
    static constexpr std::size_t default_max_line = std::size_t{64} * 1024;
    using Emit = std::function<bool(std::string_view line)>; // false: stop now

    explicit LineSplitter(std::size_t max_line = default_max_line) : max_line_(max_line) {}

    // Emits every line `data` completes. Returns false as soon as `emit`
    // returns false (the rest of `data` is then discarded).
    bool feed(std::string_view data, const Emit& emit);
    // Emits the pending partial line, if any. Returns `emit`'s result (true if
    // nothing was pending).
    bool finish(const Emit& emit);
    std::size_t pending() const noexcept { return partial_.size(); }

private:
    std::size_t max_line_;
    std::string partial_;
};

// ---- RotatingFile ------------------------------------------------------------

// Append-only log file `<dir>/<name>.log`, one `TS stream text\n` line per
// LogLine (TS = UTC, RFC 3339 with milliseconds). When the next line would
// take the file past `max_bytes` it is renamed to `<name>.log.1` (replacing
// the previous one) and a new file is started.
//
// Synchronous, buffered writes on the loop thread, not the thread pool: the
// file lives on the local state disk, where a write lands in the page cache
// in microseconds; batching up to 64 KiB per write() (flushed by the owner's
// timer, when the buffer fills, and on close) keeps the syscall count below
// the child's own. A thread-pool writer would need ordering between jobs and
// ownership across the handoff for no gain on such a disk; a disk that truly
// stalls would stall the artifact store too.
//
// The file is opened lazily, on the first flush (the directory must exist by
// then). I/O errors never reach the caller: the first one of an episode is
// logged, data written while it lasts is dropped and counted, and the file is
// reopened on a later flush; recovery is logged once.
class RotatingFile {
public:
    static constexpr std::uint64_t default_max_bytes = 10ull << 20;
    static constexpr std::size_t buffer_limit = std::size_t{64} * 1024;

    RotatingFile(std::string dir, std::string name, std::uint64_t max_bytes = default_max_bytes);
    ~RotatingFile(); // flushes, then closes
    RotatingFile(const RotatingFile&) = delete;
    RotatingFile& operator=(const RotatingFile&) = delete;

    void write(const LogLine& line);
    void flush();
    void close(); // flushes; a later write() reopens

    bool has_pending() const noexcept { return !buffer_.empty(); }
    const std::string& path() const noexcept { return path_; }
    std::uint64_t lost_bytes() const noexcept { return lost_bytes_; }

private:
    bool ensure_open();
    void rotate();
    void report(const char* what, int err);

    std::string path_;
    std::uint64_t max_bytes_;
    Fd fd_;
    std::uint64_t size_ = 0; // bytes in the current file (written, not buffered)
    std::string buffer_;
    bool failing_ = false;
    std::uint64_t lost_bytes_ = 0;
};

// ---- StdoutForwarder ---------------------------------------------------------

// Copies lines to hearth's stdout as `[location] text\n` so `docker logs`
// shows them. One per daemon, shared by all captures.
//
// hearth's stdout may be a slow or stuck pipe or tty, and its file
// description is shared with other processes (a main command inherits it), so
// O_NONBLOCK must not be set on it. Instead a dedicated thread does blocking
// writes from a bounded queue. When the queue is full, lines are dropped and
// counted; once writing resumes a `[hearth] N lines dropped` line marks the
// gap. The writer thread starts with every signal blocked, so signals reach
// only the threads that handle them (signalfd/libuv).
class StdoutForwarder {
public:
    static constexpr std::size_t default_max_queue_bytes = 1 << 20;

    // `fd` is not owned; it must stay open until flush_and_stop() returned
    // true, or for the rest of the process if it returned false.
    explicit StdoutForwarder(int fd, std::size_t max_queue_bytes = default_max_queue_bytes);
    // Calls flush_and_stop(1 s) if not stopped yet.
    ~StdoutForwarder();
    StdoutForwarder(const StdoutForwarder&) = delete;
    StdoutForwarder& operator=(const StdoutForwarder&) = delete;

    // Thread-safe and never blocks on I/O (only on a mutex held for queue
    // operations). After flush_and_stop, lines are counted as dropped.
    void forward(std::string_view location, std::string_view text);

    // Stops accepting lines and waits up to `timeout` for the queue to be
    // written. Returns true when everything queued was written and the
    // thread was joined; false when the target is stuck (the thread is then
    // detached and exits whenever its write returns). Call from one thread.
    bool flush_and_stop(std::chrono::milliseconds timeout);

    std::uint64_t dropped() const;   // lines dropped so far (queue full, stopped, broken fd)
    std::uint64_t forwarded() const; // lines fully written

private:
    struct State;
    static void run(const std::shared_ptr<State>& st);
    std::shared_ptr<State> state_;
    std::thread thread_;
    bool stopped_ = false;
};

// ---- OutputCapture -----------------------------------------------------------

// Reads a revision's stdout and stderr pipes on the loop and sends each line
// to the ring, the file, the forwarder and on_line (in that order).
//
// Lifetime: the libuv handles live in a heap block that outlives this object
// until their close callbacks ran, so an OutputCapture may be destroyed at any
// time, including from inside on_line or on_closed; after close() or
// destruction nothing is called and `ring` is not touched again. The loop has
// to keep running for that block to be freed. `ring` and `forwarder` must
// outlive this object (or its close()).
class OutputCapture {
public:
    static constexpr std::uint64_t flush_interval_ms = 500;

    // `out`/`err` are the read ends of the child's pipes; either may be
    // invalid (treated as already at EOF). `file` and `forwarder` may be null.
    OutputCapture(uv_loop_t* loop, Fd out, Fd err, LineRing& ring,
                  std::unique_ptr<RotatingFile> file, StdoutForwarder* forwarder,
                  std::string location);
    ~OutputCapture(); // close()
    OutputCapture(const OutputCapture&) = delete;
    OutputCapture& operator=(const OutputCapture&) = delete;

    // Set both before start(), which takes them over (they then live with the
    // handles, so either may destroy this object while it runs; assigning
    // them after start() has no effect).
    std::function<void(const LogLine&)> on_line;
    // Called once, when both pipes reached EOF (all lines delivered, file
    // flushed). Not called by close().
    std::function<void()> on_closed;

    // Starts reading. Returns false (after logging why) if a pipe could not be
    // watched; that stream is then treated as closed. Call once.
    bool start();

    // Reads whatever is readable right now without blocking (at most 4 MiB
    // per stream, so a child writing without pause cannot hold the loop) and
    // delivers it; used when the process exited and before shutdown. May call
    // on_line and on_closed.
    void drain_now();

    // Flushes the file, stops reading and releases the handles
    // (asynchronously). A partial line still buffered is delivered first.
    // Idempotent.
    void close();

    bool at_eof() const noexcept; // both streams reached EOF
    bool closed() const noexcept;

private:
    struct Core;
    Core* core_; // freed by the last uv_close callback, or here if none is pending
};

} // namespace hearth

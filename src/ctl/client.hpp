#pragma once
// Blocking JSON-RPC 2.0 client for the hearth control socket (see
// hearth-protocol(7)). Used by hearthctl, which must start fast and link
// little, so this is plain poll(2) on one fd: no libuv, no threads, no
// logging, no exceptions. Every failure comes back as a `CallError` in a Result (util/error.hpp).
//
// One Client owns one connection and is not thread-safe; use it from one
// thread. Only one request is outstanding at a time (call() waits for its
// reply), which is what lets an error reply with `"id": null` (line too
// long, too many connections) be attributed to the pending call.

#include "util/error.hpp"
#include "util/fd.hpp"

#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace hearth {

// Why a call or a wait failed. hearthctl needs more than util/error.hpp's
// Error here: the kind decides its exit status, and an rpc error carries the
// JSON-RPC error object (code and data) that some callers branch on.
// NOLINTNEXTLINE(bugprone-exception-escape): the implicit special members
// copy strings and a json object, which may only throw std::bad_alloc.
struct CallError {
    enum class Kind {
        connect,     // socket could not be opened or connected
        timeout,     // the deadline passed before the reply/notification arrived
        closed,      // the peer closed the connection (EOF)
        io,          // read/write failed (ECONNRESET, EPIPE, ...)
        protocol,    // the peer sent something that is not JSON-RPC 2.0, or a line too long
        rpc,         // the daemon answered with a JSON-RPC error object
        interrupted, // the caller's interrupt flag was set while waiting
    };
    Kind kind = Kind::io;
    std::string message; // human readable, never empty
    int code = 0;        // JSON-RPC error code (kind == rpc only)
    nlohmann::json data; // JSON-RPC error data (kind == rpc only; null when absent)
};

// A wait bound: negative means "no limit".
using Timeout = std::chrono::milliseconds;
inline constexpr Timeout kNoTimeout{-1};

class Client {
public:
    // Longest line accepted from the daemon. A `logs` reply can carry 10000
    // lines, so this is far above the daemon's own 1 MiB request limit; it
    // only exists so a broken peer cannot make the client eat all memory.
    static constexpr std::size_t kDefaultMaxLine = std::size_t{128} * 1024 * 1024;

    // Connects to the Unix socket at `path`, waiting at most `timeout` (the
    // listen backlog may be full while the daemon is busy). Blocking.
    // CallError kinds: connect (with errno text and the path), timeout.
    static Result<Client, CallError> connect(const std::string& path, Timeout timeout);

    // Adopts an already-connected stream socket (tests use a socketpair).
    // Sets it non-blocking; takes ownership.
    explicit Client(Fd fd);

    Client(Client&&) noexcept = default;
    Client& operator=(Client&&) noexcept = default;
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    // Sends `{"jsonrpc":"2.0","id":N,"method":...,"params":...}` with a fresh
    // numeric id and blocks until the reply with that id arrives, at most
    // `timeout` in total. Notifications read meanwhile are queued for
    // next_notification(); replies to other (earlier, timed-out) ids are
    // dropped. An error reply with `"id": null` is taken as this call's
    // answer. Returns the `result` member, or a CallError: rpc (code, message,
    // data from the error object), timeout, closed, io, protocol, interrupted.
    // `params` must be an object or null (null sends no params member).
    Result<nlohmann::json, CallError> call(std::string_view method, const nlohmann::json& params,
                                           Timeout timeout);

    // Returns the next notification (the whole message object, with "method"
    // and "params"), from the queue or by reading, waiting at most `timeout`.
    // CallError kinds: timeout, closed, io, protocol, interrupted.
    Result<nlohmann::json, CallError> next_notification(Timeout timeout);

    // Number of queued notifications (read but not yet returned).
    std::size_t pending_notifications() const noexcept { return queue_.size(); }

    // While waiting, a signal that interrupts poll(2) ends the wait with
    // CallError::Kind::interrupted if `*flag` is non-zero; otherwise the wait
    // goes on. The flag is typically set by a SIGINT handler. Pass nullptr to
    // always retry. The pointee must outlive the Client's use.
    void set_interrupt_flag(const volatile std::sig_atomic_t* flag) noexcept { interrupt_ = flag; }

    void set_max_line(std::size_t bytes) noexcept { max_line_ = bytes; }

    // False after EOF, an I/O error or a protocol error: the connection is
    // no longer usable and every further call fails at once.
    bool usable() const noexcept { return fd_ && !broken_; }

private:
    struct Deadline;

    // Next complete JSON object line from the socket (not the queue).
    Result<nlohmann::json, CallError> read_message(const Deadline& deadline);
    // Both return nullopt on success.
    std::optional<CallError> write_all(std::string_view data, const Deadline& deadline);
    std::optional<CallError> wait_fd(short events, const Deadline& deadline);
    // Marks the connection unusable and returns `failure` for convenience.
    CallError mark_broken(CallError failure);

    Fd fd_;
    bool broken_ = false;
    CallError broken_reason_;
    std::int64_t next_id_ = 1;
    std::string buf_;         // bytes read but not yet split into lines
    std::size_t scanned_ = 0; // prefix of buf_ known to hold no '\n'
    std::size_t max_line_ = kDefaultMaxLine;
    std::deque<nlohmann::json> queue_;
    const volatile std::sig_atomic_t* interrupt_ = nullptr;
};

} // namespace hearth

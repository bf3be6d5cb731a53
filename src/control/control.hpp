#pragma once
// The control server's transport: a Unix stream socket speaking JSON-RPC 2.0,
// one message per '\n'-terminated line (hearth-protocol(7),
// man/hearth-protocol.7.scd). It frames lines, validates request shapes,
// dispatches to registered method handlers, and enforces the limits (line
// size, connection count, idle time, unsent output).
// The methods themselves live in the daemon.
//
// Threading: everything here runs on the thread that runs `loop`, and every
// function (Reply and Connection members included) must be called from it.
// Nothing blocks: writes are queued and flushed as the peer reads.
// The process must ignore SIGPIPE (hearth's init does): libuv writes with
// plain write(2), and a peer that went away would otherwise kill hearth.

#include "control/rpc.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <uv.h>
#include <vector>

namespace hearth::control {

struct Limits {
    std::size_t max_line = 1048576;           // bytes per request line, without '\n'
    std::size_t max_connections = 64;         // further connections get -32004 and are closed
    std::uint64_t idle_timeout_ms = 60000;    // 0 disables the idle timeout
    std::size_t max_pending_output = 8388608; // unsent bytes before a connection is dropped
};

// Requests nested deeper than this are refused (-32600) before parsing, so no
// later recursive walk (copy, dump, compare) can exhaust the stack.
inline constexpr int max_request_depth = 64;

namespace detail {
struct ServerCore;
struct ReplyState;
struct ConnectionOps;
} // namespace detail

class Connection;

// The answer to one request. Move-only; it may be kept and answered later
// (e.g. `stop` answers once the revision has stopped). Only the first answer
// counts; later ones, answers to notifications, and answers after the
// connection closed are silently dropped. A Reply destroyed without an answer
// sends -32603 (unless the request was a notification). A default-constructed
// Reply answers nothing.
class Reply {
public:
    Reply() noexcept = default;
    Reply(Reply&&) noexcept = default;
    // An unanswered reply that is overwritten counts as destroyed unanswered.
    Reply& operator=(Reply&& other) noexcept;
    Reply(const Reply&) = delete;
    Reply& operator=(const Reply&) = delete;
    ~Reply();

    void result(nlohmann::json value);
    void error(const rpc::Error& error);
    void error(int code, std::string message, nlohmann::json data = nullptr);

    // True until answered (false for an empty Reply or a notification).
    bool pending() const noexcept;
    bool is_notification() const noexcept;

private:
    friend struct detail::ConnectionOps;
    explicit Reply(std::shared_ptr<detail::ReplyState> state) noexcept : state_(std::move(state)) {}
    void abandon() noexcept;

    std::shared_ptr<detail::ReplyState> state_;
};

// One accepted client. The server owns it until its handles are closed;
// others (the daemon's subscriber lists) should hold weak_ptr. Every member
// is safe to call after the connection closed (then a no-op).
class Connection : public std::enable_shared_from_this<Connection> {
public:
    struct Key; // only the server can construct connections
    Connection(const Key&, detail::ServerCore* core, std::uint64_t id);
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    std::uint64_t id() const noexcept { return id_; }
    // True until the connection starts closing (peer EOF, error, limit,
    // timeout, close()). Once false, nothing more is sent on it.
    bool open() const noexcept { return state_ == State::open; }

    // Queues {"jsonrpc":"2.0","method":method,"params":params}. Returns false
    // if the connection is not open, or if this line pushed its unsent output
    // over Limits::max_pending_output, which closes it (logged as a warning).
    bool notify(std::string_view method, const nlohmann::json& params);

    // Subscribers (events.subscribe, logs follow) are exempt from the idle
    // timeout. Clearing it restarts the idle clock.
    void set_subscriber(bool on);
    bool subscriber() const noexcept { return subscriber_; }

    // Bytes queued but not yet accepted by the kernel.
    std::size_t pending_output() const noexcept;

    // Closes at once; queued output is discarded.
    void close();

private:
    friend struct detail::ConnectionOps;
    friend struct detail::ServerCore;
    friend class Reply;

    enum class State { idle, open, draining, closing, closed };

    detail::ServerCore* core_; // valid until both handles are closed
    std::uint64_t id_;
    State state_ = State::idle;
    bool subscriber_ = false;
    bool discarding_ = false; // dropping the rest of an over-long line
    bool writing_ = false;    // write_req_ in flight
    bool pipe_init_ = false;
    bool timer_init_ = false;
    int open_handles_ = 0;
    std::uint32_t outstanding_ = 0; // requests with an id still awaiting a reply
    std::size_t queued_bytes_ = 0;  // bytes in queue_
    std::string inbuf_;             // partial line
    std::deque<std::string> queue_; // lines not yet handed to libuv
    std::vector<std::string> inflight_;
    uv_pipe_t pipe_{};
    uv_timer_t idle_{};
    uv_write_t write_req_{};
};

using Handler = std::function<void(const nlohmann::json& params, Reply reply,
                                   const std::shared_ptr<Connection>& conn)>;

// Owned by the daemon. A handler gets `params` (always an object: an absent or
// null `params` becomes {}), its Reply, and the connection. A handler may
// throw rpc::RpcError (-> that error) or any std::exception (-> -32603 with
// its what()); if it already answered, the answer stands. Handlers run inside
// libuv callbacks; nothing thrown escapes into libuv.
class ControlServer {
public:
    explicit ControlServer(uv_loop_t* loop, Limits limits = {});
    // Closes the server if close() was not called (no callback). The
    // internals stay alive until libuv has closed every handle, so the loop
    // must run a little longer before uv_loop_close().
    ~ControlServer();
    ControlServer(const ControlServer&) = delete;
    ControlServer& operator=(const ControlServer&) = delete;

    // Registers (or replaces) a method. May be called at any time.
    void add_method(std::string name, Handler handler);

    // Creates the parent directory (0755) if missing, replaces `path` only if
    // it is a socket nobody answers on, binds it with mode 0600 (the node is
    // never wider, even for an instant), and starts accepting. Returns "" on
    // success, else a message naming the path. Blocking: a few local
    // syscalls. Only one successful listen per server.
    std::string listen_unix(const std::string& path);

    // Stops accepting, closes every connection (pending replies become
    // no-ops), unlinks the socket path if it is still the socket we bound, and
    // calls `on_closed` once every libuv handle is closed (before returning if
    // none was open). Idempotent; later callbacks are chained.
    void close(std::function<void()> on_closed);

    // Accepted connections that are open or flushing output before closing.
    std::size_t connections() const;
    const Limits& limits() const;

private:
    std::shared_ptr<detail::ServerCore> core_;
};

} // namespace hearth::control

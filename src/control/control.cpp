#include "control/control.hpp"

#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unordered_map>

namespace hearth::control {

using nlohmann::json;

struct Connection::Key {
    explicit Key() = default;
};

namespace {

constexpr std::size_t max_iov_per_write = 1024;
constexpr std::size_t max_error_text = 300;

std::string truncate_text(std::string s) {
    if (s.size() > max_error_text) {
        s.resize(max_error_text);
        s += "...";
    }
    return s;
}

// Max nesting of [ and { outside strings; stops counting once over `limit`.
bool nesting_exceeds(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false, escaped = false;
    for (char ch : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (ch == '\\')
                escaped = true;
            else if (ch == '"')
                in_string = false;
            continue;
        }
        switch (ch) {
        case '"':
            in_string = true;
            break;
        case '[':
        case '{':
            if (++depth > limit) return true;
            break;
        case ']':
        case '}':
            if (depth > 0) --depth;
            break;
        default:
            break;
        }
    }
    return false;
}

// mkdir -p; directories it creates get exactly 0755 (whatever the umask).
std::string make_parent_dirs(const std::string& dir) {
    if (dir.empty()) return "";
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return dir + " is not a directory";
        return "";
    }
    if (errno != ENOENT) return "cannot stat " + dir + ": " + errno_text(errno);
    auto slash = dir.find_last_of('/');
    if (slash != std::string::npos && slash > 0) {
        std::string err = make_parent_dirs(dir.substr(0, slash));
        if (!err.empty()) return err;
    }
    if (::mkdir(dir.c_str(), 0755) != 0) {
        if (errno == EEXIST) return "";
        return "cannot create directory " + dir + ": " + errno_text(errno);
    }
    if (::chmod(dir.c_str(), 0755) != 0)
        return "cannot chmod directory " + dir + ": " + errno_text(errno);
    return "";
}

} // namespace

namespace detail {

// NOLINTNEXTLINE(bugprone-exception-escape): the implicit special members
// copy a json id, which may only throw std::bad_alloc.
struct ReplyState {
    std::weak_ptr<Connection> conn;
    json id;
    std::string method;
    bool notification = false;
    bool answered = false;
    // While the handler runs, the dispatcher answers for an abandoned or
    // throwing handler, so a throw that destroys the Reply does not send a
    // second, less precise error first.
    bool in_dispatch = true;
    bool abandoned = false;
};

struct ServerCore : std::enable_shared_from_this<ServerCore> {
    ServerCore(uv_loop_t* l, Limits lim) : loop(l), limits(lim) {}

    uv_loop_t* loop;
    Limits limits;
    std::map<std::string, Handler, std::less<>>
        methods; // node-stable: add_method during dispatch is safe
    uv_pipe_t* listener = nullptr;
    std::string path;
    dev_t sock_dev = 0;
    ino_t sock_ino = 0;
    bool bound = false;
    bool closing = false;
    std::uint64_t next_id = 1;
    std::unordered_map<std::uint64_t, std::shared_ptr<Connection>> conns;
    std::size_t open_handles = 0;
    std::vector<std::function<void()>> on_closed;
    // Keeps the core alive while libuv still holds pointers into it, even if
    // the ControlServer is gone.
    std::shared_ptr<ServerCore> self;
    // One read buffer for all connections: libuv hands it to exactly one
    // read callback, which consumes it before the next allocation.
    std::array<char, 65536> read_buf{};

    void handle_opened() {
        if (open_handles++ == 0) self = shared_from_this();
    }
    void handle_closed() {
        if (--open_handles != 0) return;
        auto keep = std::move(self); // may be the last reference: released on return
        if (closing) {
            auto callbacks = std::move(on_closed);
            on_closed.clear();
            for (auto& cb : callbacks) {
                try {
                    if (cb) cb();
                } catch (const std::exception& e) {
                    log::error("control server close callback threw", {{"error", e.what()}});
                } catch (...) {
                    log::error("control server close callback threw");
                }
            }
        }
    }

    std::size_t live_connections() const {
        return static_cast<std::size_t>(std::count_if(conns.begin(), conns.end(), [](auto& kv) {
            auto s = kv.second->state_;
            return s == Connection::State::open || s == Connection::State::draining;
        }));
    }

    void close(std::function<void()> cb);
    void unlink_socket();
    void on_connection(int status);
};

// libuv callbacks and the connection's internals, in one place with access
// to Connection's private members.
struct ConnectionOps {
    static void start(Connection& c);
    static void reject(Connection& c, std::size_t limit);
    static void close_now(Connection& c, std::string_view reason, spdlog::level::level_enum level);
    static bool send(Connection& c, std::string line);
    static void start_write(Connection& c);
    static void update_idle(Connection& c, bool restart);
    static void on_data(Connection& c, const char* data, std::size_t n);
    static void on_eof(Connection& c);
    static void line_complete(Connection& c, std::string_view line);
    static void too_long(Connection& c);
    static void handle_line(Connection& c, std::string_view line);
    static void dispatch(Connection& c, const Handler& handler, const json& params, json id,
                         bool has_id, const std::string& method);
    static void reply_finished(Connection& c);
    static void answer(ReplyState& st, const json& message);
    static void answer_error(ReplyState& st, const rpc::Error& error);

    static void alloc_cb(uv_handle_t* h, std::size_t, uv_buf_t* buf);
    static void read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
    static void write_cb(uv_write_t* req, int status);
    static void idle_cb(uv_timer_t* t);
    static void handle_close_cb(uv_handle_t* h);
};

// ---- Connection internals --------------------------------------------------

void ConnectionOps::start(Connection& c) {
    c.state_ = Connection::State::open;
    int r = uv_timer_init(c.core_->loop, &c.idle_);
    if (r == 0) {
        c.idle_.data = &c;
        c.timer_init_ = true;
        ++c.open_handles_;
        c.core_->handle_opened();
    }
    if (r == 0) r = uv_read_start(reinterpret_cast<uv_stream_t*>(&c.pipe_), alloc_cb, read_cb);
    if (r != 0) {
        close_now(c, std::string("cannot start: ") + uv_strerror(r), spdlog::level::warn);
        return;
    }
    update_idle(c, true);
}

void ConnectionOps::reject(Connection& c, std::size_t limit) {
    log::warn("control connection rejected: too many connections",
              {{"conn", c.id_}, {"limit", limit}});
    // A fresh socket's send buffer is empty, so this short line fits at once;
    // if it somehow does not, the peer just sees the connection close.
    std::string line = rpc::to_line(rpc::make_error(
        nullptr, {rpc::too_many_connections,
                  "too many connections (limit " + std::to_string(limit) + ")", nullptr}));
    uv_buf_t buf = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
    uv_try_write(reinterpret_cast<uv_stream_t*>(&c.pipe_), &buf, 1);
    c.state_ = Connection::State::open; // so close_now logs and closes normally
    close_now(c, "too many connections", spdlog::level::debug);
}

void ConnectionOps::close_now(Connection& c, std::string_view reason,
                              spdlog::level::level_enum level) {
    if (c.state_ == Connection::State::closing || c.state_ == Connection::State::closed) return;
    c.state_ = Connection::State::closing;
    log::write(level, "control connection closed", {{"conn", c.id_}, {"reason", reason}});
    c.queue_.clear();
    c.queued_bytes_ = 0;
    c.inbuf_ = std::string();
    if (c.pipe_init_) {
        uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.pipe_));
        uv_close(reinterpret_cast<uv_handle_t*>(&c.pipe_), handle_close_cb);
    }
    if (c.timer_init_) uv_close(reinterpret_cast<uv_handle_t*>(&c.idle_), handle_close_cb);
    if (c.open_handles_ == 0) c.state_ = Connection::State::closed;
}

void ConnectionOps::handle_close_cb(uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (--c->open_handles_ != 0) {
        c->core_->handle_closed();
        return;
    }
    c->state_ = Connection::State::closed;
    ServerCore* core = c->core_;
    c->core_ = nullptr;
    std::shared_ptr<Connection> keep; // destroyed after the core is done with it
    if (auto it = core->conns.find(c->id_); it != core->conns.end()) {
        keep = std::move(it->second);
        core->conns.erase(it);
    }
    core->handle_closed(); // may destroy the core
}

bool ConnectionOps::send(Connection& c, std::string line) {
    if (c.state_ != Connection::State::open) return false;
    c.queued_bytes_ += line.size();
    c.queue_.push_back(std::move(line));
    start_write(c);
    if (c.state_ != Connection::State::open) return false; // write failed
    std::size_t pending = c.pending_output();
    if (pending > c.core_->limits.max_pending_output) {
        log::warn("control connection dropped: peer does not read its output",
                  {{"conn", c.id_},
                   {"pending_bytes", pending},
                   {"limit", c.core_->limits.max_pending_output}});
        close_now(c, "output queue over limit", spdlog::level::debug);
        return false;
    }
    return true;
}

void ConnectionOps::start_write(Connection& c) {
    if (c.writing_ || c.queue_.empty()) return;
    if (c.state_ != Connection::State::open && c.state_ != Connection::State::draining) return;
    std::size_t n = std::min(c.queue_.size(), max_iov_per_write);
    c.inflight_.clear();
    c.inflight_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        c.queued_bytes_ -= c.queue_.front().size();
        c.inflight_.push_back(std::move(c.queue_.front()));
        c.queue_.pop_front();
    }
    std::vector<uv_buf_t> bufs; // libuv copies the array, not the bytes
    bufs.reserve(n);
    for (auto& s : c.inflight_)
        bufs.push_back(uv_buf_init(s.data(), static_cast<unsigned>(s.size())));
    c.write_req_.data = &c;
    int r = uv_write(&c.write_req_, reinterpret_cast<uv_stream_t*>(&c.pipe_), bufs.data(),
                     static_cast<unsigned>(bufs.size()), write_cb);
    if (r != 0) {
        c.inflight_.clear();
        close_now(c, std::string("write error: ") + uv_strerror(r), spdlog::level::debug);
        return;
    }
    c.writing_ = true;
}

void ConnectionOps::write_cb(uv_write_t* req, int status) {
    auto* c = static_cast<Connection*>(req->data);
    try {
        c->writing_ = false;
        c->inflight_.clear();
        if (c->inflight_.capacity() > 64) std::vector<std::string>().swap(c->inflight_);
        if (c->state_ == Connection::State::closing || c->state_ == Connection::State::closed)
            return;
        if (status < 0) {
            close_now(*c, std::string("write error: ") + uv_strerror(status), spdlog::level::debug);
            return;
        }
        start_write(*c);
        if (c->state_ == Connection::State::draining && !c->writing_ && c->queue_.empty())
            close_now(*c, "peer closed", spdlog::level::debug);
    } catch (...) {
        close_now(*c, "out of memory", spdlog::level::warn);
    }
}

void ConnectionOps::update_idle(Connection& c, bool restart) {
    if (!c.timer_init_ || c.core_->limits.idle_timeout_ms == 0) return;
    bool eligible = false;
    if (c.state_ == Connection::State::draining)
        eligible = true; // bound the flush
    else if (c.state_ == Connection::State::open)
        eligible = !c.subscriber_ && c.outstanding_ == 0;
    if (!eligible) {
        uv_timer_stop(&c.idle_);
        return;
    }
    if (restart || !uv_is_active(reinterpret_cast<uv_handle_t*>(&c.idle_)))
        uv_timer_start(&c.idle_, idle_cb, c.core_->limits.idle_timeout_ms, 0);
}

void ConnectionOps::idle_cb(uv_timer_t* t) {
    auto* c = static_cast<Connection*>(t->data);
    close_now(*c, "idle timeout", spdlog::level::debug);
}

void ConnectionOps::alloc_cb(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
    auto* c = static_cast<Connection*>(h->data);
    auto& rb = c->core_->read_buf;
    *buf = uv_buf_init(rb.data(), static_cast<unsigned>(rb.size()));
}

void ConnectionOps::read_cb(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
    auto* c = static_cast<Connection*>(s->data);
    if (n == 0 || c->state_ != Connection::State::open) return;
    auto self = c->shared_from_this(); // handlers may drop every other reference
    try {
        if (n == UV_EOF) {
            on_eof(*c);
        } else if (n < 0) {
            close_now(*c, std::string("read error: ") + uv_strerror(static_cast<int>(n)),
                      spdlog::level::debug);
        } else {
            on_data(*c, buf->base, static_cast<std::size_t>(n));
        }
    } catch (const std::exception& e) {
        close_now(*c, std::string("internal error: ") + e.what(), spdlog::level::warn);
    } catch (...) {
        close_now(*c, "internal error", spdlog::level::warn);
    }
}

void ConnectionOps::on_data(Connection& c, const char* data, std::size_t n) {
    const std::size_t max_line = c.core_->limits.max_line;
    std::string_view rest(data, n);
    while (c.state_ == Connection::State::open) {
        auto nl = rest.find('\n');
        if (nl == std::string_view::npos) break;
        std::string_view piece = rest.substr(0, nl);
        rest.remove_prefix(nl + 1);
        if (c.discarding_) {
            c.discarding_ = false;
        } else if (c.inbuf_.empty()) {
            line_complete(c, piece);
        } else {
            c.inbuf_.append(piece);
            std::string line = std::move(c.inbuf_);
            c.inbuf_.clear();
            line_complete(c, line);
        }
    }
    if (c.state_ != Connection::State::open) return;
    if (!c.discarding_ && !rest.empty()) {
        // +1: the line may still end in "\r\n", whose '\r' does not count.
        if (c.inbuf_.size() + rest.size() > max_line + 1) {
            too_long(c);
        } else {
            c.inbuf_.append(rest);
        }
    }
    // A burst of long lines should not pin memory for the connection's life.
    if (c.inbuf_.empty() && c.inbuf_.capacity() > 4096) c.inbuf_ = std::string();
    update_idle(c, true);
}

void ConnectionOps::too_long(Connection& c) {
    c.inbuf_ = std::string();
    c.discarding_ = true;
    send(c, rpc::to_line(rpc::make_error(
                nullptr,
                {rpc::invalid_request,
                 "request line exceeds " + std::to_string(c.core_->limits.max_line) + " bytes",
                 nullptr})));
}

void ConnectionOps::on_eof(Connection& c) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&c.pipe_));
    // A last request without its '\n' (e.g. `printf ... | socat`) still counts.
    if (!c.discarding_ && !c.inbuf_.empty()) {
        std::string line = std::move(c.inbuf_);
        c.inbuf_ = std::string();
        line_complete(c, line);
    }
    if (c.state_ != Connection::State::open) return;
    // Flush what is already queued (a half-closed peer may still read), but
    // answer nothing more: pending replies become no-ops.
    c.state_ = Connection::State::draining;
    if (!c.writing_ && c.queue_.empty()) {
        close_now(c, "peer closed", spdlog::level::debug);
        return;
    }
    update_idle(c, true);
}

void ConnectionOps::line_complete(Connection& c, std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > c.core_->limits.max_line) {
        too_long(c);
        c.discarding_ = false; // the line has already ended
        return;
    }
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) return; // blank line
    handle_line(c, line);
}

void ConnectionOps::handle_line(Connection& c, std::string_view line) {
    auto reply_error = [&](const json& id, int code, std::string message) {
        send(c, rpc::to_line(rpc::make_error(id, {code, std::move(message), nullptr})));
    };
    if (nesting_exceeds(line, max_request_depth)) {
        reply_error(nullptr, rpc::invalid_request,
                    "request nesting exceeds " + std::to_string(max_request_depth) + " levels");
        return;
    }
    json req;
    try {
        req = json::parse(line);
    } catch (const json::exception& e) {
        reply_error(nullptr, rpc::parse_error, truncate_text(e.what()));
        return;
    }
    if (req.is_array()) {
        reply_error(nullptr, rpc::invalid_request, "batch requests are not supported");
        return;
    }
    if (!req.is_object()) {
        reply_error(nullptr, rpc::invalid_request, "request must be a JSON object");
        return;
    }
    auto id_it = req.find("id");
    bool has_id = id_it != req.end();
    if (has_id && !id_it->is_number() && !id_it->is_string()) {
        reply_error(nullptr, rpc::invalid_request, "id must be a number or a string");
        return;
    }
    json id = has_id ? *id_it : json(nullptr);
    auto ver = req.find("jsonrpc");
    if (ver == req.end() || !ver->is_string() || ver->get_ref<const std::string&>() != "2.0") {
        reply_error(id, rpc::invalid_request, "jsonrpc must be \"2.0\"");
        return;
    }
    auto m = req.find("method");
    if (m == req.end() || !m->is_string()) {
        reply_error(id, rpc::invalid_request, "method must be a string");
        return;
    }
    const std::string& method = m->get_ref<const std::string&>();
    static const json empty_params = json::object();
    const json* params = &empty_params;
    if (auto p = req.find("params"); p != req.end() && !p->is_null()) {
        if (!p->is_object()) {
            if (has_id)
                reply_error(id, rpc::invalid_params,
                            "params: expected an object, got " + std::string(p->type_name()));
            return;
        }
        params = &*p;
    }
    auto h = c.core_->methods.find(method);
    if (h == c.core_->methods.end()) {
        if (has_id)
            reply_error(id, rpc::method_not_found, "method not found: " + method);
        else
            log::debug("control notification for unknown method",
                       {{"conn", c.id_}, {"method", method}});
        return;
    }
    dispatch(c, h->second, *params, std::move(id), has_id, method);
}

void ConnectionOps::dispatch(Connection& c, const Handler& handler, const json& params, json id,
                             bool has_id, const std::string& method) {
    auto st = std::make_shared<ReplyState>();
    st->conn = c.weak_from_this();
    st->id = std::move(id);
    st->method = method;
    st->notification = !has_id;
    if (has_id) {
        ++c.outstanding_;
        update_idle(c, false);
    }
    std::optional<rpc::Error> failure;
    try {
        handler(params, Reply(st), c.shared_from_this());
    } catch (const rpc::RpcError& f) {
        failure = f.error();
    } catch (const std::exception& e) {
        log::warn("control method failed", {{"method", method}, {"error", e.what()}});
        failure = rpc::Error{rpc::internal_error, e.what(), nullptr};
    } catch (...) {
        log::warn("control method failed", {{"method", method}});
        failure = rpc::Error{rpc::internal_error, "internal error in method " + method, nullptr};
    }
    st->in_dispatch = false;
    if (st->answered) return;
    if (failure) {
        answer_error(*st, *failure);
    } else if (st->abandoned) {
        answer_error(*st,
                     {rpc::internal_error,
                      "internal error: method " + method + " returned without a reply", nullptr});
    }
}

void ConnectionOps::answer(ReplyState& st, const json& message) {
    if (st.answered) return;
    st.answered = true;
    if (st.notification) return;
    auto c = st.conn.lock();
    if (!c) return;
    if (c->state_ == Connection::State::open) send(*c, rpc::to_line(message));
    reply_finished(*c);
}

void ConnectionOps::answer_error(ReplyState& st, const rpc::Error& error) {
    if (st.answered) return;
    answer(st, rpc::make_error(st.id, error));
}

void ConnectionOps::reply_finished(Connection& c) {
    if (c.outstanding_ > 0 && --c.outstanding_ == 0 && c.state_ == Connection::State::open)
        update_idle(c, true);
}

// ---- ServerCore -----------------------------------------------------------

void ServerCore::on_connection(int status) {
    if (status < 0) {
        log::warn("control server accept failed", {{"error", uv_strerror(status)}});
        return;
    }
    auto conn = std::make_shared<Connection>(Connection::Key{}, this, next_id++);
    int r = uv_pipe_init(loop, &conn->pipe_, 0);
    if (r != 0) {
        log::warn("control server cannot accept", {{"error", uv_strerror(r)}});
        return;
    }
    conn->pipe_.data = conn.get();
    conn->pipe_init_ = true;
    ++conn->open_handles_;
    handle_opened();
    conns.emplace(conn->id_, conn);
    r = uv_accept(reinterpret_cast<uv_stream_t*>(listener),
                  reinterpret_cast<uv_stream_t*>(&conn->pipe_));
    if (r != 0) {
        log::warn("control server accept failed", {{"error", uv_strerror(r)}});
        ConnectionOps::close_now(*conn, "accept failed", spdlog::level::debug);
        return;
    }
    if (live_connections() >= limits.max_connections) {
        ConnectionOps::reject(*conn, limits.max_connections);
        return;
    }
    log::debug("control connection accepted", {{"conn", conn->id_}});
    ConnectionOps::start(*conn);
}

void ServerCore::unlink_socket() {
    if (!bound) return;
    bound = false;
    // Only our own socket: a newer hearth may already have replaced it.
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == sock_dev &&
        st.st_ino == sock_ino)
        ::unlink(path.c_str());
}

void ServerCore::close(std::function<void()> cb) {
    if (cb) on_closed.push_back(std::move(cb));
    if (!closing) {
        closing = true;
        if (listener) {
            uv_close(reinterpret_cast<uv_handle_t*>(listener), [](uv_handle_t* h) {
                auto* core = static_cast<ServerCore*>(h->data);
                delete reinterpret_cast<uv_pipe_t*>(h);
                core->handle_closed();
            });
            listener = nullptr;
        }
        unlink_socket();
        std::vector<std::shared_ptr<Connection>> all;
        all.reserve(conns.size());
        for (auto& kv : conns)
            all.push_back(kv.second);
        for (auto& c : all)
            ConnectionOps::close_now(*c, "server closing", spdlog::level::debug);
    }
    if (open_handles == 0) {
        auto callbacks = std::move(on_closed);
        on_closed.clear();
        for (auto& f : callbacks)
            if (f) f();
    }
}

} // namespace detail

// ---- Reply ----------------------------------------------------------------

Reply& Reply::operator=(Reply&& other) noexcept {
    if (this != &other) {
        abandon();
        state_ = std::move(other.state_);
    }
    return *this;
}

Reply::~Reply() {
    abandon();
}

void Reply::abandon() noexcept {
    if (!state_) return;
    auto st = std::move(state_);
    if (st->answered || st->notification) return;
    if (st->in_dispatch) {
        st->abandoned = true;
        return;
    }
    try {
        detail::ConnectionOps::answer_error(
            *st, {rpc::internal_error,
                  "internal error: method " + st->method + " dropped its reply", nullptr});
    } catch (...) {
        st->answered = true;
    }
}

void Reply::result(json value) {
    if (!state_ || state_->answered) return;
    detail::ConnectionOps::answer(*state_, rpc::make_result(state_->id, std::move(value)));
}

void Reply::error(const rpc::Error& error) {
    if (!state_ || state_->answered) return;
    detail::ConnectionOps::answer_error(*state_, error);
}

void Reply::error(int code, std::string message, json data) {
    error(rpc::Error{code, std::move(message), std::move(data)});
}

bool Reply::pending() const noexcept {
    return state_ && !state_->answered && !state_->notification;
}

bool Reply::is_notification() const noexcept {
    return state_ && state_->notification;
}

// ---- Connection -------------------------------------------------------------

Connection::Connection(const Key&, detail::ServerCore* core, std::uint64_t id)
    : core_(core), id_(id) {}

Connection::~Connection() = default;

bool Connection::notify(std::string_view method, const json& params) {
    if (state_ != State::open) return false;
    return detail::ConnectionOps::send(*this, rpc::to_line(rpc::make_notification(method, params)));
}

void Connection::set_subscriber(bool on) {
    if (subscriber_ == on) return;
    subscriber_ = on;
    if (state_ == State::open) detail::ConnectionOps::update_idle(*this, true);
}

std::size_t Connection::pending_output() const noexcept {
    std::size_t n = queued_bytes_;
    if (pipe_init_ && (state_ == State::open || state_ == State::draining))
        n += uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&pipe_));
    return n;
}

void Connection::close() {
    detail::ConnectionOps::close_now(*this, "closed by hearth", spdlog::level::debug);
}

// ---- ControlServer ------------------------------------------------------------

ControlServer::ControlServer(uv_loop_t* loop, Limits limits)
    : core_(std::make_shared<detail::ServerCore>(loop, limits)) {}

ControlServer::~ControlServer() {
    try {
        core_->close(nullptr);
    } catch (...) {
        // Only allocation can fail here; the handles are closing regardless.
    }
}

void ControlServer::add_method(std::string name, Handler handler) {
    core_->methods.insert_or_assign(std::move(name), std::move(handler));
}

std::size_t ControlServer::connections() const {
    return core_->live_connections();
}

const Limits& ControlServer::limits() const {
    return core_->limits;
}

void ControlServer::close(std::function<void()> on_closed) {
    core_->close(std::move(on_closed));
}

std::string ControlServer::listen_unix(const std::string& path) {
    auto& core = *core_;
    if (core.closing) return "control server is closed; cannot listen on " + path;
    if (core.listener) return "control server already listening on " + core.path;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty()) return "control socket path is empty";
    if (path.size() >= sizeof(addr.sun_path))
        return "control socket path " + path + " is too long (" + std::to_string(path.size()) +
               " bytes, at most " + std::to_string(sizeof(addr.sun_path) - 1) + ")";
    std::memcpy(addr.sun_path, path.data(), path.size());

    auto slash = path.find_last_of('/');
    if (slash != std::string::npos && slash > 0) {
        std::string err = make_parent_dirs(path.substr(0, slash));
        if (!err.empty()) return "control socket " + path + ": " + err;
    }

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket; not replacing it";
        Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe) return "cannot create socket to probe " + path + ": " + errno_text(errno);
        int r = ::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        int err = r == 0 ? 0 : errno;
        if (r == 0 || err == EAGAIN || err == EINPROGRESS)
            return "another process is listening on " + path;
        if (err == ECONNREFUSED) {
            if (::unlink(path.c_str()) != 0 && errno != ENOENT)
                return "cannot remove stale socket " + path + ": " + errno_text(errno);
            log::info("removed stale control socket", {{"path", path}});
        } else if (err != ENOENT) {
            return "cannot probe existing socket " + path + ": " + errno_text(err);
        }
    } else if (errno != ENOENT) {
        return "cannot stat " + path + ": " + errno_text(errno);
    }

    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return "cannot create socket for " + path + ": " + errno_text(errno);
    // Linux creates the socket node with the socket inode's mode (less the
    // umask), so after this fchmod the node is never wider than 0600. This
    // avoids umask(), which is process-wide and would race with thread-pool
    // jobs creating files at the same moment.
    bool narrowed = ::fchmod(fd.get(), 0600) == 0;
    int bind_rc;
    if (narrowed) {
        bind_rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    } else {
        mode_t old = ::umask(0177);
        bind_rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        ::umask(old);
    }
    if (bind_rc != 0) return "cannot bind " + path + ": " + errno_text(errno);
    auto fail = [&](std::string msg) {
        ::unlink(path.c_str());
        return msg;
    };
    if (::chmod(path.c_str(), 0600) != 0)
        return fail("cannot chmod " + path + ": " + errno_text(errno));
    if (::lstat(path.c_str(), &st) != 0)
        return fail("cannot stat " + path + ": " + errno_text(errno));

    auto* pipe = new uv_pipe_t{};
    int r = uv_pipe_init(core.loop, pipe, 0);
    if (r != 0) {
        delete pipe;
        return fail("cannot listen on " + path + ": " + uv_strerror(r));
    }
    pipe->data = &core;
    core.handle_opened();
    auto close_pipe = [&] {
        uv_close(reinterpret_cast<uv_handle_t*>(pipe), [](uv_handle_t* h) {
            auto* c = static_cast<detail::ServerCore*>(h->data);
            delete reinterpret_cast<uv_pipe_t*>(h);
            c->handle_closed();
        });
    };
    r = uv_pipe_open(pipe, fd.get());
    if (r != 0) {
        close_pipe();
        return fail("cannot listen on " + path + ": " + uv_strerror(r));
    }
    fd.release(); // the pipe owns it now
    r = uv_listen(reinterpret_cast<uv_stream_t*>(pipe), 128, [](uv_stream_t* s, int status) {
        auto* c = static_cast<detail::ServerCore*>(s->data);
        try {
            c->on_connection(status);
        } catch (const std::exception& e) {
            log::error("control server accept failed", {{"error", e.what()}});
        } catch (...) {
            log::error("control server accept failed");
        }
    });
    if (r != 0) {
        close_pipe();
        return fail("cannot listen on " + path + ": " + uv_strerror(r));
    }
    core.listener = pipe;
    core.path = path;
    core.sock_dev = st.st_dev;
    core.sock_ino = st.st_ino;
    core.bound = true;
    log::debug("control server listening", {{"path", path}});
    return "";
}

} // namespace hearth::control

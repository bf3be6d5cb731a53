#include "ctl/client.hpp"

#include "util/fs.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

namespace hearth {

namespace {

using Clock = std::chrono::steady_clock;

CallError make_error(CallError::Kind kind, std::string message) {
    CallError f;
    f.kind = kind;
    f.message = std::move(message);
    return f;
}

// Errors whose cause the operator most likely wants spelled out.
std::string connect_hint(int err) {
    if (err == ENOENT || err == ECONNREFUSED) return " (is hearth running?)";
    if (err == EACCES || err == EPERM) return " (the socket is mode 0600: run as its owner)";
    return {};
}

} // namespace

struct Client::Deadline {
    bool bounded = false;
    Clock::time_point at{};

    explicit Deadline(Timeout t) {
        if (t.count() >= 0) {
            bounded = true;
            at = Clock::now() + t;
        }
    }
    // poll(2) timeout: -1 for no limit, else the remaining milliseconds
    // rounded up so a wait never ends just before the deadline.
    int poll_ms() const {
        if (!bounded) return -1;
        auto left = at - Clock::now();
        if (left <= Clock::duration::zero()) return 0;
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
        return ms > 1000000000 ? 1000000000 : static_cast<int>(ms);
    }
    bool passed() const { return bounded && Clock::now() >= at; }
};

Result<Client, CallError> Client::connect(const std::string& path, Timeout timeout) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty()) return make_error(CallError::Kind::connect, "empty socket path");
    if (path.size() >= sizeof(addr.sun_path))
        return make_error(CallError::Kind::connect, "socket path too long (max " +
                                                        std::to_string(sizeof(addr.sun_path) - 1) +
                                                        " bytes): " + path);
    std::memcpy(addr.sun_path, path.data(), path.size());

    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd)
        return make_error(CallError::Kind::connect, "cannot create socket: " + errno_text(errno));

    Deadline deadline(timeout);
    for (;;) {
        if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) break;
        int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN) {
            // Unix sockets report a full listen backlog as EAGAIN instead of
            // queueing us: the daemon is busy, so retry until the deadline.
            if (deadline.passed())
                return make_error(CallError::Kind::timeout,
                                  "timed out connecting to " + path + " (backlog full)");
            timespec ts{0, 10L * 1000 * 1000};
            ::nanosleep(&ts, nullptr);
            continue;
        }
        if (err == EINPROGRESS) {
            pollfd p{fd.get(), POLLOUT, 0};
            int n;
            do {
                n = ::poll(&p, 1, deadline.poll_ms());
            } while (n < 0 && errno == EINTR);
            if (n == 0)
                return make_error(CallError::Kind::timeout, "timed out connecting to " + path);
            int soerr = 0;
            socklen_t len = sizeof(soerr);
            if (n < 0 || ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                soerr = errno;
            if (soerr == 0) break;
            err = soerr;
        }
        return make_error(CallError::Kind::connect,
                          "cannot connect to " + path + ": " + errno_text(err) + connect_hint(err));
    }
    return Client(std::move(fd));
}

Client::Client(Fd fd) : fd_(std::move(fd)) {
    if (fd_) {
        int flags = ::fcntl(fd_.get(), F_GETFL);
        if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
    }
}

CallError Client::mark_broken(CallError failure) {
    broken_ = true;
    broken_reason_ = failure;
    fd_.reset();
    return failure;
}

std::optional<CallError> Client::wait_fd(short events, const Deadline& deadline) {
    for (;;) {
        if (interrupt_ && *interrupt_)
            return make_error(CallError::Kind::interrupted, "interrupted");
        pollfd p{fd_.get(), events, 0};
        int n = ::poll(&p, 1, deadline.poll_ms());
        if (n > 0) return std::nullopt; // readiness or POLLHUP/POLLERR: the I/O call reports it
        if (n == 0) return make_error(CallError::Kind::timeout, "timed out");
        if (errno == EINTR) continue; // the flag is checked at the loop top
        return mark_broken(make_error(CallError::Kind::io, "poll: " + errno_text(errno)));
    }
}

std::optional<CallError> Client::write_all(std::string_view data, const Deadline& deadline) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (auto f = wait_fd(POLLOUT, deadline)) {
                // Half a request on the wire would desynchronise the stream.
                if (sent > 0 && !broken_) return mark_broken(*f);
                return f;
            }
            continue;
        }
        int err = n < 0 ? errno : EPIPE;
        if (err == EPIPE || err == ECONNRESET)
            return mark_broken(make_error(CallError::Kind::closed, "connection closed by hearth"));
        return mark_broken(make_error(CallError::Kind::io, "write: " + errno_text(err)));
    }
    return std::nullopt;
}

Result<nlohmann::json, CallError> Client::read_message(const Deadline& deadline) {
    for (;;) {
        auto nl = buf_.find('\n', scanned_);
        if (nl != std::string::npos) {
            std::string_view line(buf_.data(), nl);
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            bool blank = line.find_first_not_of(" \t") == std::string_view::npos;
            nlohmann::json msg;
            if (!blank) msg = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
            buf_.erase(0, nl + 1);
            scanned_ = 0;
            if (blank) continue;
            if (msg.is_discarded())
                return mark_broken(
                    make_error(CallError::Kind::protocol, "hearth sent a line that is not JSON"));
            if (!msg.is_object())
                return mark_broken(make_error(CallError::Kind::protocol,
                                              "hearth sent a JSON value that is not an object"));
            return msg;
        }
        scanned_ = buf_.size();
        if (buf_.size() > max_line_)
            return mark_broken(
                make_error(CallError::Kind::protocol, "hearth sent a line longer than " +
                                                          std::to_string(max_line_) + " bytes"));

        char chunk[65536];
        ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
        if (n > 0) {
            buf_.append(chunk, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0)
            return mark_broken(make_error(
                CallError::Kind::closed, buf_.empty() ? "connection closed by hearth"
                                                      : "connection closed by hearth mid-message"));
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (auto f = wait_fd(POLLIN, deadline)) return *f;
            continue;
        }
        if (errno == ECONNRESET)
            return mark_broken(make_error(CallError::Kind::closed, "connection reset by hearth"));
        return mark_broken(make_error(CallError::Kind::io, "read: " + errno_text(errno)));
    }
}

namespace {

bool is_notification(const nlohmann::json& msg) {
    auto m = msg.find("method");
    return m != msg.end() && m->is_string() && !msg.contains("id");
}

CallError rpc_error(const nlohmann::json& err) {
    CallError f;
    f.kind = CallError::Kind::rpc;
    if (!err.is_object()) {
        f.kind = CallError::Kind::protocol;
        f.message = "hearth sent an error that is not an object";
        return f;
    }
    auto code = err.find("code");
    if (code != err.end() && code->is_number_integer()) {
        auto c = code->get<std::int64_t>();
        f.code = (c >= INT32_MIN && c <= INT32_MAX) ? static_cast<int>(c) : 0;
    }
    auto message = err.find("message");
    if (message != err.end() && message->is_string()) f.message = message->get<std::string>();
    if (f.message.empty()) f.message = "error without a message";
    auto data = err.find("data");
    if (data != err.end()) f.data = *data;
    return f;
}

} // namespace

Result<nlohmann::json, CallError> Client::call(std::string_view method,
                                               const nlohmann::json& params, Timeout timeout) {
    if (!usable())
        return broken_ ? broken_reason_ : make_error(CallError::Kind::io, "not connected");
    Deadline deadline(timeout);
    const std::int64_t id = next_id_++;
    nlohmann::json request = {{"jsonrpc", "2.0"}, {"id", id}, {"method", std::string(method)}};
    if (!params.is_null()) request["params"] = params;
    std::string line =
        request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    if (auto f = write_all(line, deadline)) return *f;

    for (;;) {
        auto got = read_message(deadline);
        if (!got) return got.error();
        nlohmann::json& msg = got.value();
        if (is_notification(msg)) {
            queue_.push_back(std::move(msg));
            continue;
        }
        auto rid = msg.find("id");
        if (rid == msg.end()) continue; // neither a reply nor a notification: ignore
        bool ours = rid->is_number_integer() && rid->get<std::int64_t>() == id;
        // Errors the daemon cannot attribute (line too long, too many
        // connections) carry id null; with one request in flight they are ours.
        bool unattributed = rid->is_null() && msg.contains("error");
        if (!ours && !unattributed) continue; // late reply to a call that timed out
        auto err = msg.find("error");
        if (err != msg.end()) return rpc_error(*err);
        auto result = msg.find("result");
        if (result == msg.end())
            return make_error(CallError::Kind::protocol,
                              "hearth sent a reply with neither result nor error");
        return std::move(*result);
    }
}

Result<nlohmann::json, CallError> Client::next_notification(Timeout timeout) {
    if (!queue_.empty()) {
        nlohmann::json msg = std::move(queue_.front());
        queue_.pop_front();
        return msg;
    }
    if (!usable())
        return broken_ ? broken_reason_ : make_error(CallError::Kind::io, "not connected");
    Deadline deadline(timeout);
    for (;;) {
        auto got = read_message(deadline);
        if (!got) return got.error();
        if (is_notification(got.value())) return std::move(got).value();
        // A reply nobody waits for (its call timed out): drop it.
    }
}

} // namespace hearth

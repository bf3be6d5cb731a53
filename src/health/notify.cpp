#include "health/notify.hpp"

#include "isolation/cgroup.hpp"
#include "util/fd.hpp"
#include "util/fs.hpp"
#include "util/log.hpp"
#include "util/text.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace hearth::health {

// ---------------------------------------------------------------------------
// Parsing

namespace {

template <typename T> std::optional<T> parse_decimal(std::string_view s) {
    T value{};
    if (s.empty() || s.front() == '-' || s.front() == '+') return std::nullopt;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
    return value;
}

} // namespace

NotifyMessage parse_notify_message(std::string_view payload) {
    NotifyMessage m;
    for (std::string_view line : split(payload, '\n')) {
        if (line.empty()) continue;
        std::size_t eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) continue; // not an assignment: ignored
        std::string_view key = line.substr(0, eq);
        std::string_view value = line.substr(eq + 1);
        auto flag = [&](bool& target) {
            if (value == "1")
                target = true;
            else
                m.invalid.push_back(std::string(key) + ": must be 1");
        };
        if (key == "READY") {
            flag(m.ready);
        } else if (key == "STOPPING") {
            flag(m.stopping);
        } else if (key == "WATCHDOG") {
            flag(m.watchdog);
        } else if (key == "STATUS") {
            m.status = std::string(value);
        } else if (key == "EXTEND_TIMEOUT_USEC") {
            if (auto v = parse_decimal<std::uint64_t>(value))
                m.extend_timeout_usec = *v;
            else
                m.invalid.push_back("EXTEND_TIMEOUT_USEC: not a number of microseconds");
        } else if (key == "ERRNO") {
            if (auto v = parse_decimal<int>(value))
                m.errno_value = *v;
            else
                m.invalid.push_back("ERRNO: not an errno number");
        } else if (key == "HEARTH_LOAD_ERROR") {
            auto parsed = parse_load_error(value);
            if (parsed)
                m.load_error = std::move(parsed).value();
            else
                m.invalid.push_back("HEARTH_LOAD_ERROR: " + parsed.error().message);
        }
    }
    return m;
}

// ---------------------------------------------------------------------------
// Membership checks

bool cgroup_file_has(std::string_view text, std::string_view relpath, std::string_view controller) {
    if (relpath.empty() || relpath.front() != '/') return false;
    while (relpath.size() > 1 && relpath.back() == '/')
        relpath.remove_suffix(1);
    for (const auto& entry : cgroup::parse_proc_cgroup(text)) {
        bool chosen = controller.empty() ? entry.hierarchy_id == "0" && entry.controllers.empty()
                                         : cgroup::has_token(entry.controllers, controller);
        if (!chosen) continue;
        if (relpath == "/") return true;
        std::string_view path = entry.path;
        return path == relpath ||
               (path.size() > relpath.size() && path.substr(0, relpath.size()) == relpath &&
                path[relpath.size()] == '/');
    }
    return false;
}

Result<bool> pid_in_cgroup(pid_t pid, std::string_view relpath, std::string_view controller) {
    if (pid <= 0) return false;
    auto text = read_file("/proc/" + std::to_string(pid) + "/cgroup", 1 << 20);
    if (!text) {
        int err = text.error().sys_errno;
        if (err == ENOENT || err == ESRCH) return false;
        return std::move(text).error();
    }
    return cgroup_file_has(*text, relpath, controller);
}

Result<bool> pid_in_session(pid_t pid, pid_t sid) {
    if (pid <= 0 || sid <= 0) return false;
    pid_t s = ::getsid(pid);
    if (s < 0) {
        if (errno == ESRCH) return false;
        int err = errno;
        return os_error(err, "getsid " + std::to_string(pid) + ": " + errno_text(err));
    }
    return s == sid;
}

// ---------------------------------------------------------------------------
// The listener

struct NotifyListener::Block {
    uv_poll_t poll{};
    Fd fd;
    bool open = true; // false once the owner is gone: no callback may run
    std::size_t max_datagram = default_max_notify_datagram;
    std::vector<char> buffer;
    struct Hooks {
        Predicate accept;
        Callback on_message;
    };
    std::shared_ptr<const Hooks> hooks;
    Stats stats;
    dev_t dev = 0; // the socket file we created, so we never unlink a newer one
    ino_t ino = 0;

    static void on_poll(uv_poll_t* handle, int status, int events) noexcept;
    // Reads one datagram; false when there is nothing (more) to read.
    bool read_one() noexcept;
};

namespace {

// Room for the credentials and a few passed fds (which are closed at once);
// fds beyond that make the kernel drop the rest of them (MSG_CTRUNC).
constexpr std::size_t control_size = CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16);

} // namespace

bool NotifyListener::Block::read_one() noexcept {
    alignas(cmsghdr) char control[control_size];
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) {
        if (errno == EINTR) return true;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            log::warn("notify socket: recvmsg failed", {{"error", errno_text(errno)}});
        return false;
    }
    std::optional<Sender> sender;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int passed = -1;
                std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (passed >= 0) ::close(passed);
            }
        } else if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(ucred))) {
            ucred cred{};
            std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
            sender = Sender{cred.pid, cred.uid, cred.gid};
        }
    }
    auto keep = hooks; // the callbacks may destroy the listener (and reset `hooks`)
    bool accepted = false;
    if (sender && sender->pid > 0) {
        try {
            accepted = keep->accept && keep->accept(*sender);
        } catch (const std::exception& e) {
            log::error("notify socket: sender check failed",
                       {{"pid", sender->pid}, {"error", e.what()}});
        } catch (...) {
            log::error("notify socket: sender check failed", {{"pid", sender->pid}});
        }
    }
    if (!open) return false;
    if (!accepted) {
        ++stats.refused;
        stats.last_refused_pid = sender ? sender->pid : 0;
        return true;
    }
    if (static_cast<std::size_t>(n) > buffer.size() || (msg.msg_flags & MSG_TRUNC)) {
        ++stats.oversize;
        return true;
    }
    try {
        NotifyMessage message = parse_notify_message(std::string_view(buffer.data(), n));
        message.pid = sender->pid;
        ++stats.accepted;
        if (!message.invalid.empty()) ++stats.malformed;
        if (keep->on_message) keep->on_message(message);
    } catch (const std::exception& e) {
        log::error("notify socket: message handler failed",
                   {{"pid", sender->pid}, {"error", e.what()}});
    } catch (...) {
        log::error("notify socket: message handler failed", {{"pid", sender->pid}});
    }
    return open;
}

void NotifyListener::Block::on_poll(uv_poll_t* handle, int status, int) noexcept {
    auto* self = static_cast<Block*>(handle->data);
    if (!self->open) return;
    if (status < 0) {
        log::warn("notify socket: poll failed", {{"error", uv_strerror(status)}});
        return;
    }
    // Bounded, so a flooding sender cannot keep the loop here.
    for (int i = 0; i < 64 && self->open; ++i)
        if (!self->read_one()) break;
}

Result<std::unique_ptr<NotifyListener>> NotifyListener::open(uv_loop_t* loop, std::string path,
                                                             Predicate accept, Callback on_message,
                                                             std::size_t max_datagram) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return Error{Errc::invalid_argument, 0,
                     "notify socket path '" + path + "' is empty or longer than " +
                         std::to_string(sizeof addr.sun_path - 1) + " bytes"};
    std::memcpy(addr.sun_path, path.data(), path.size());

    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return os_error(EEXIST, "notify socket " + path + ": exists and is not a socket");
        if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
            int err = errno;
            return os_error(err, "remove stale notify socket " + path + ": " + errno_text(err));
        }
    }

    Fd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        int err = errno;
        return os_error(err, "notify socket: socket: " + errno_text(err));
    }
    int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
        int err = errno;
        return os_error(err, "notify socket: SO_PASSCRED: " + errno_text(err));
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
        int err = errno;
        return os_error(err, "bind notify socket " + path + ": " + errno_text(err));
    }
    // Not fchmod: on a socket it changes nothing the connect/send path checks.
    if (::chmod(path.c_str(), 0666) < 0 || ::lstat(path.c_str(), &st) < 0) {
        int err = errno;
        ::unlink(path.c_str());
        return os_error(err, "notify socket " + path + ": " + errno_text(err));
    }

    auto* block = new Block;
    block->fd = std::move(fd);
    block->max_datagram = max_datagram == 0 ? 1 : max_datagram;
    block->buffer.resize(block->max_datagram);
    block->hooks = std::make_shared<const Block::Hooks>(
        Block::Hooks{std::move(accept), std::move(on_message)});
    block->dev = st.st_dev;
    block->ino = st.st_ino;
    block->poll.data = block;
    int rc = uv_poll_init(loop, &block->poll, block->fd.get());
    if (rc < 0) {
        ::unlink(path.c_str());
        delete block; // the handle was never initialised
        return Error{Errc::io, -rc, std::string("notify socket: uv_poll_init: ") + uv_strerror(rc)};
    }
    rc = uv_poll_start(&block->poll, UV_READABLE, &Block::on_poll);
    if (rc < 0) {
        ::unlink(path.c_str());
        block->open = false;
        uv_close(reinterpret_cast<uv_handle_t*>(&block->poll),
                 [](uv_handle_t* h) { delete static_cast<Block*>(h->data); });
        return Error{Errc::io, -rc,
                     std::string("notify socket: uv_poll_start: ") + uv_strerror(rc)};
    }
    return std::unique_ptr<NotifyListener>(new NotifyListener(std::move(path), block));
}

NotifyListener::~NotifyListener() {
    block_->open = false;
    block_->hooks.reset();
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == block_->dev && st.st_ino == block_->ino)
        ::unlink(path_.c_str());
    uv_poll_stop(&block_->poll);
    // The fd is closed with the block, after libuv has let go of it.
    uv_close(reinterpret_cast<uv_handle_t*>(&block_->poll),
             [](uv_handle_t* h) { delete static_cast<Block*>(h->data); });
}

const NotifyListener::Stats& NotifyListener::stats() const noexcept {
    return block_->stats;
}

} // namespace hearth::health

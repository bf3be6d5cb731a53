#include "init/sdnotify.hpp"

#include "util/fd.hpp"
#include "util/log.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>

namespace hearth::sdnotify {

namespace {
std::string g_socket_path;
}

void take_socket_from_environment() {
    if (const char* path = std::getenv("NOTIFY_SOCKET")) g_socket_path = path;
    ::unsetenv("NOTIFY_SOCKET");
}

bool enabled() noexcept {
    return !g_socket_path.empty();
}

void send(std::string_view state) {
    if (g_socket_path.empty()) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (g_socket_path.size() >= sizeof(addr.sun_path)) {
        log::warn("NOTIFY_SOCKET path too long", {{"path", g_socket_path}});
        return;
    }
    std::memcpy(addr.sun_path, g_socket_path.data(), g_socket_path.size());
    socklen_t len = offsetof(sockaddr_un, sun_path) + g_socket_path.size();
    // A leading '@' names an abstract socket (first byte NUL, no terminator).
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = '\0';
    else
        len += 1;
    Fd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!sock) return;
    if (::sendto(sock.get(), state.data(), state.size(), MSG_NOSIGNAL,
                 reinterpret_cast<sockaddr*>(&addr), len) < 0)
        log::debug("sd_notify failed", {{"state", state}, {"error", std::strerror(errno)}});
}

} // namespace hearth::sdnotify

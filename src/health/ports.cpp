#include "health/ports.hpp"

#include "util/fd.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <netinet/in.h>
#include <sys/socket.h>
#include <utility>

namespace hearth::health {

namespace {

std::string range_text(const PortRange& r) {
    return std::to_string(r.first) + "-" + std::to_string(r.last);
}

bool parse_port(std::string_view s, std::uint16_t& out) {
    unsigned v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size() || v < 1 || v > 65535)
        return false;
    out = static_cast<std::uint16_t>(v);
    return true;
}

} // namespace

Result<PortRange> parse_port_range(std::string_view text) {
    auto bad = [&](std::string_view why) {
        return Error{Errc::invalid_argument, 0,
                     "port range '" + std::string(text) + "': " + std::string(why)};
    };
    PortRange r;
    std::size_t dash = text.find('-');
    std::string_view a = text.substr(0, dash);
    std::string_view b = dash == std::string_view::npos ? a : text.substr(dash + 1);
    if (!parse_port(a, r.first) || !parse_port(b, r.last))
        return bad("expected FIRST-LAST with ports 1-65535");
    if (r.first > r.last) return bad("the first port is above the last");
    return r;
}

bool port_bindable(std::uint16_t port) noexcept {
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

PortAllocator::PortAllocator(PortRange range, std::function<bool(std::uint16_t)> bindable)
    : range_(range), bindable_(std::move(bindable)), next_(range.first) {
    if (range_.first == 0) range_.first = 1;
    if (range_.last < range_.first) range_.last = range_.first;
    next_ = range_.first;
    if (!bindable_) bindable_ = port_bindable;
}

Result<std::uint16_t> PortAllocator::allocate() {
    const std::uint32_t size = std::uint32_t{range_.last} - range_.first + 1;
    std::uint16_t port = next_;
    for (std::uint32_t i = 0; i < size; ++i) {
        std::uint16_t candidate = port;
        port = port == range_.last ? range_.first : static_cast<std::uint16_t>(port + 1);
        if (held_.count(candidate) != 0) continue;
        if (!bindable_(candidate)) continue;
        held_.insert(candidate);
        next_ = port;
        return candidate;
    }
    return Error{Errc::io, EADDRINUSE,
                 "no free port in " + range_text(range_) + " (" + std::to_string(held_.size()) +
                     " held by revisions, the rest in use); widen --port-range"};
}

Status PortAllocator::reserve(std::uint16_t port) {
    if (port < range_.first || port > range_.last)
        return Error{Errc::invalid_argument, 0,
                     "port " + std::to_string(port) + " is outside " + range_text(range_)};
    if (!held_.insert(port).second)
        return Error{Errc::io, EADDRINUSE,
                     "port " + std::to_string(port) + " is already held by a revision"};
    return {};
}

void PortAllocator::release(std::uint16_t port) noexcept {
    held_.erase(port);
}

} // namespace hearth::health

// The per-revision port allocator: range parsing, real bind checks against
// listeners on loopback, release and round-robin reuse.

#include "health/ports.hpp"
#include "util/fd.hpp"

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <set>
#include <sys/socket.h>
#include <vector>

using namespace hearth;
using namespace hearth::health;

namespace {

// A TCP listener on 127.0.0.1 at a port the kernel picks (or `port`).
struct Listener {
    Fd fd;
    std::uint16_t port = 0;
    explicit Listener(std::uint16_t want = 0, std::uint32_t address = INADDR_LOOPBACK) {
        fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(want);
        addr.sin_addr.s_addr = htonl(address);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(fd.get(), 4) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port = ntohs(addr.sin_port);
    }
};

} // namespace

TEST_CASE("ports: range parsing", "[health][ports]") {
    auto r = parse_port_range("20000-29999");
    REQUIRE(r.ok());
    CHECK(*r == PortRange{20000, 29999});
    CHECK(*parse_port_range("8080") == PortRange{8080, 8080});
    CHECK(*parse_port_range("1-65535") == PortRange{1, 65535});
    for (const char* bad :
         {"", "0-10", "10-65536", "30000-20000", "a-b", "100-", "-100", "100 - 200", "1-2-3"}) {
        INFO(bad);
        auto e = parse_port_range(bad);
        REQUIRE_FALSE(e.ok());
        CHECK(e.error().code == Errc::invalid_argument);
        CHECK(e.error().message.find(std::string("'") + bad + "'") != std::string::npos);
    }
    CHECK(PortRange{} == PortRange{20000, 29999}); // the documented default
}

TEST_CASE("ports: a port in use by a listener is never handed out", "[health][ports]") {
    Listener taken;
    CHECK_FALSE(port_bindable(taken.port));
    PortAllocator alloc({taken.port, taken.port});
    auto r = alloc.allocate();
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().sys_errno == EADDRINUSE);
    CHECK(r.error().message.find("--port-range") != std::string::npos);

    // A listener on every address blocks the loopback bind as well.
    Listener any(0, INADDR_ANY);
    CHECK_FALSE(port_bindable(any.port));
}

TEST_CASE("ports: allocate, hold, release", "[health][ports]") {
    std::uint16_t port;
    {
        Listener probe; // find a port that is free right now, then free it
        port = probe.port;
    }
    REQUIRE(port_bindable(port)); // SO_REUSEADDR: the closed listener does not block it
    PortAllocator alloc({port, port});
    auto first = alloc.allocate();
    REQUIRE(first.ok());
    CHECK(*first == port);
    CHECK(alloc.held(port));
    // Held by a live revision: not handed out twice, even though it is bindable.
    auto second = alloc.allocate();
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().message.find("1 held by revisions") != std::string::npos);
    alloc.release(port);
    CHECK_FALSE(alloc.held(port));
    alloc.release(port); // twice is harmless
    auto again = alloc.allocate();
    REQUIRE(again.ok());
    CHECK(*again == port);
}

TEST_CASE("ports: round robin skips held and busy ports", "[health][ports]") {
    std::set<std::uint16_t> busy = {20002};
    PortAllocator alloc({20000, 20005}, [&](std::uint16_t p) { return busy.count(p) == 0; });
    auto next = [&] {
        auto r = alloc.allocate();
        REQUIRE(r.ok());
        return *r;
    };
    CHECK(next() == 20000);
    CHECK(next() == 20001);
    CHECK(next() == 20003); // 20002 is in use by someone else
    // A released port is not reused at once: the search goes on from after
    // the last port handed out, and wraps around.
    alloc.release(20001);
    busy.clear();
    CHECK(next() == 20004);
    CHECK(next() == 20005);
    CHECK(next() == 20001);
    CHECK(next() == 20002);
    CHECK(alloc.held_count() == 6);
    CHECK_FALSE(alloc.allocate().ok());
}

TEST_CASE("ports: reserve restores a revision's port", "[health][ports]") {
    PortAllocator alloc({20000, 20002}, [](std::uint16_t) { return true; });
    REQUIRE(alloc.reserve(20001).ok());
    auto dup = alloc.reserve(20001);
    REQUIRE_FALSE(dup.ok());
    CHECK(dup.error().sys_errno == EADDRINUSE);
    auto outside = alloc.reserve(30000);
    REQUIRE_FALSE(outside.ok());
    CHECK(outside.error().code == Errc::invalid_argument);
    auto a = alloc.allocate();
    auto b = alloc.allocate();
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(std::set<std::uint16_t>{*a, *b} == std::set<std::uint16_t>{20000, 20002});
}

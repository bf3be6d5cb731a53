#pragma once
// Per-revision TCP ports (`--port-range`, default 20000-29999).
//
// Two revisions of a location run side by side during a blue/green switch,
// so each revision gets its own port, passed as PORT and probed by
// `"port": "auto"`. The allocator hands out a port only if no live revision
// holds it and the kernel lets hearth bind 127.0.0.1 on it right now (with
// SO_REUSEADDR, as servers bind: a port in TIME_WAIT is free, one with a
// listener on 127.0.0.1 or 0.0.0.0 is not). Allocation goes round the range
// from after the last port handed out, so a port just released is not
// reused at once (a client of the old revision may still be connecting).
//
// The bind check is a snapshot: another process may take the port between
// the check and the application's own bind; the application then fails to
// start and reports it.
//
// Not thread-safe: one allocator, owned and used by the loop thread. Each
// allocate() makes one socket and bind per port it tries (no blocking I/O
// beyond that); nothing throws except std::bad_alloc.

#include "util/error.hpp"

#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>

namespace hearth::health {

struct PortRange {
    std::uint16_t first = 20000;
    std::uint16_t last = 29999;
    bool operator==(const PortRange&) const = default;
};

// "20000-29999" or a single "20000". 1..65535, first <= last. Fails with
// invalid_argument naming the text.
Result<PortRange> parse_port_range(std::string_view text);

// Whether 127.0.0.1:`port` can be bound now (SO_REUSEADDR).
bool port_bindable(std::uint16_t port) noexcept;

class PortAllocator {
public:
    // `bindable` decides whether the kernel would give a port out; tests may
    // substitute it. Default: port_bindable.
    explicit PortAllocator(PortRange range = {},
                           std::function<bool(std::uint16_t)> bindable = port_bindable);

    // A port of the range that no live revision holds and that can be bound,
    // now held until release(). Fails with io (sys_errno EADDRINUSE) when
    // every port of the range is held or in use; the message names the range
    // and the option that widens it.
    Result<std::uint16_t> allocate();

    // Holds a given port again (a restored revision keeps its PORT). Fails
    // with invalid_argument outside the range and io (EADDRINUSE) when it
    // is already held. Does not check the kernel: the restored revision may
    // be the one listening on it.
    Status reserve(std::uint16_t port);

    // Gives `port` back; a port not held is ignored.
    void release(std::uint16_t port) noexcept;

    bool held(std::uint16_t port) const noexcept { return held_.count(port) != 0; }
    std::size_t held_count() const noexcept { return held_.size(); }
    const PortRange& range() const noexcept { return range_; }

private:
    PortRange range_;
    std::function<bool(std::uint16_t)> bindable_;
    std::set<std::uint16_t> held_;
    std::uint16_t next_; // where the next search starts
};

} // namespace hearth::health

#pragma once
// The sd_notify protocol towards a service manager (systemd Type=notify).

#include <string_view>

namespace hearth::sdnotify {

// Reads NOTIFY_SOCKET and removes it from the environment, so that processes
// hearth starts do not talk to hearth's service manager by mistake.
// Call once at start-up, before any thread exists (it mutates environ).
void take_socket_from_environment();

// True when a service manager asked for notifications.
bool enabled() noexcept;

// Sends one datagram such as "READY=1" or "STOPPING=1". Non-blocking; failures
// are logged at debug level and otherwise ignored (the manager may be gone).
void send(std::string_view state);

} // namespace hearth::sdnotify

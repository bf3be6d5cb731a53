#pragma once
// Rules that hearth and hearthctl must agree on, written once: the name of
// a location and the signals a deploy may choose to be stopped with
// (hearth-protocol(7), "deploy"). hearthctl checks them before it sends a
// request so a typo is a usage error at once; hearth checks them again
// because any client may call it.
//
// Pure; nothing here throws or allocates.

#include <string_view>

namespace hearth {

// The location-name rule, as messages quote it.
inline constexpr std::string_view kLocationNamePattern = "^[a-z0-9][a-z0-9_.-]{0,62}$";

// True iff `name` matches kLocationNamePattern: 1 to 63 characters, a
// lowercase letter or digit first, then lowercase letters, digits, '_', '.'
// and '-'. Names become cgroup, log-file and directory names, so nothing
// else (no '/', no upper case, no leading '.' or '-') is allowed.
bool valid_location_name(std::string_view name) noexcept;

// A signal a revision may be stopped with, by its name without "SIG".
struct StopSignal {
    std::string_view name; // "TERM"
    int number;            // SIGTERM
};

// Every stop signal, in the order messages list them.
extern const StopSignal kStopSignals[8];

// "TERM" or "SIGTERM" (upper case, as the protocol spells them) -> its
// entry; nullptr for anything else, including other signals and numbers.
const StopSignal* find_stop_signal(std::string_view name) noexcept;

} // namespace hearth

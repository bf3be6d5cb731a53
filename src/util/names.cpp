#include "util/names.hpp"

#include <csignal>

namespace hearth {

bool valid_location_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 63) return false;
    auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!lower_or_digit(name[0])) return false;
    for (char c : name.substr(1))
        if (!lower_or_digit(c) && c != '_' && c != '.' && c != '-') return false;
    return true;
}

// The signals a Python service commonly handles as "stop" (TERM, INT, QUIT,
// HUP, USR1/USR2, WINCH for gunicorn-style graceful stops) and KILL for
// those that cannot stop cleanly.
const StopSignal kStopSignals[8] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"TERM", SIGTERM},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"KILL", SIGKILL}, {"WINCH", SIGWINCH},
};

const StopSignal* find_stop_signal(std::string_view name) noexcept {
    if (name.substr(0, 3) == "SIG") name.remove_prefix(3);
    for (const StopSignal& s : kStopSignals)
        if (s.name == name) return &s;
    return nullptr;
}

} // namespace hearth

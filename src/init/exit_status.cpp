#include "init/exit_status.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <sys/wait.h>

namespace hearth {

int exit_code_from_wait_status(int wait_status) noexcept {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 255; // stopped/continued statuses are never passed here
}

int exit_code_from_exec_errno(int err) noexcept {
    return (err == ENOENT || err == ENOTDIR) ? exit_not_found : exit_cannot_execute;
}

std::string signal_name(int sig) {
    if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
        if (sig == SIGRTMIN) return "SIGRTMIN";
        if (sig == SIGRTMAX) return "SIGRTMAX";
        return "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
    }
    if (const char* abbrev = sigabbrev_np(sig)) return std::string("SIG") + abbrev;
    return "signal " + std::to_string(sig);
}

std::string describe_wait_status(int wait_status) {
    if (WIFEXITED(wait_status))
        return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
    if (WIFSIGNALED(wait_status)) {
        std::string s = "killed by " + signal_name(WTERMSIG(wait_status));
        if (WCOREDUMP(wait_status)) s += " (core dumped)";
        return s;
    }
    return "unknown wait status " + std::to_string(wait_status);
}

} // namespace hearth

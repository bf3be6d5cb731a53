#pragma once
// Mapping of wait(2) statuses and exec failures to shell-convention exit codes.

#include <string>

namespace hearth {

// 127: command not found, 126: found but could not be executed (sh, tini, dumb-init).
inline constexpr int exit_not_found = 127;
inline constexpr int exit_cannot_execute = 126;

// The exit code a shell would report for `wait_status`: the exit status itself,
// or 128+N when the process was killed by signal N (so a supervisor above hearth
// can still tell "killed by SIGTERM" (143) from "exited 15").
int exit_code_from_wait_status(int wait_status) noexcept;

// The exit code for an exec(2) failure with `err`: 127 for ENOENT/ENOTDIR
// (nothing to run), 126 for everything else (EACCES, ENOEXEC, ...).
int exit_code_from_exec_errno(int err) noexcept;

// "SIGTERM", "SIGRTMIN+3", or "signal 99" for unknown numbers.
std::string signal_name(int sig);

// Human description: "exited with code 3" or "killed by SIGKILL (core dumped)".
std::string describe_wait_status(int wait_status);

} // namespace hearth

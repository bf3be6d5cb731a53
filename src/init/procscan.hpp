#pragma once
// A snapshot of /proc for the places cgroups cannot serve: the `none`
// driver's memory watchdog and its kill of a revision's processes.
//
// A revision's processes are those of its session (each revision's main
// process is a session leader) and their descendants. A process that calls
// setsid() and is reparented to hearth escapes this view; that is the
// weakness the cgroup drivers exist to remove, and status says `degraded`.
//
// Blocking (reads /proc/*/stat); thread-safe; never throws but bad_alloc.

#include <cstdint>
#include <sys/types.h>
#include <vector>

namespace hearth {

struct ProcInfo {
    pid_t pid = 0;
    pid_t ppid = 0;
    pid_t pgrp = 0;
    pid_t session = 0;
    std::uint64_t rss_bytes = 0;
    std::uint64_t cpu_ticks = 0; // utime + stime
    bool zombie = false;
};

// Every process visible in /proc (processes that vanish mid-scan are skipped).
std::vector<ProcInfo> scan_processes();

// Members of session `session` and all their descendants, zombies excluded.
std::vector<ProcInfo> session_tree(const std::vector<ProcInfo>& all, pid_t session);

} // namespace hearth

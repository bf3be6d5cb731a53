#pragma once
// Command-line options of the hearth daemon.

#include "util/log.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace hearth {

struct Options {
    std::string state_dir = "/var/lib/hearth";
    std::string run_dir = "/run/hearth";
    double grace_s = 10.0;
    log::Format log_format = log::Format::text;
    spdlog::level::level_enum log_level = spdlog::level::info;
    std::vector<std::string> python;   // --python, may repeat; empty = search PATH
    std::vector<std::string> command;  // the main command after `--`, if any
    std::vector<std::string> main_env; // the main command's environment (set by main)

    // Isolation (see cgroup.hpp).
    bool cgroup_none = false;  // --cgroup-driver none
    std::string cgroup_parent; // --cgroup-parent; "" = hearth's own cgroup
    bool cpu_spread = true;    // --cpu-placement spread|shared (cpu_spread.hpp)
    std::optional<std::uint64_t> default_memory, max_memory;
    std::optional<double> default_cpus, max_cpus;
    std::optional<std::uint64_t> default_pids, max_pids;
    std::string user, group; // default identity of environments

    // Store and fetch.
    std::optional<std::uint64_t> store_max_bytes; // unset = half the filesystem
    std::uint64_t fetch_max_bytes = std::uint64_t{4} << 30;
    double fetch_stall_timeout_s = 30;
    double fetch_connect_timeout_s = 10;
    unsigned fetch_attempts = 4;
    std::uint64_t extract_max_entries = 1'000'000;
    std::optional<std::uint64_t> extract_max_bytes; // unset = min(16 GiB, store budget)
    double extract_max_ratio = 200;

    bool help = false;
    bool version = false;
};

// Parses argv (argv[0] is skipped). Accepts `--opt value` and `--opt=value`.
// Options end at `--` or at the first non-option word; the rest is the main
// command. Returns the options, or a one-line message naming the problem.
// Pure: no I/O, no globals, so it is safe to call from tests.
std::variant<Options, std::string> parse_options(int argc, const char* const argv[]);

// The --help text.
std::string usage();

} // namespace hearth

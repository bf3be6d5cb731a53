#pragma once
// Command-line options of the hearth daemon, and the same settings from the
// environment (hearth(8), OPTIONS and ENVIRONMENT).

#include "health/ports.hpp"
#include "util/cli.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth {

struct Options {
    std::string state_dir = "/var/lib/hearth";
    std::string run_dir = "/run/hearth";
    health::PortRange port_range; // --port-range: PORT of each revision
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
    // --overcommit: accept deploys whose limits exceed the free capacity
    // (health/capacity.hpp) instead of refusing them insufficient_capacity.
    bool overcommit = false;

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

// Every option but --help and --version may also be set by the variable
// kEnvPrefix + its name in upper case with '-' as '_' (--log-format:
// HEARTH_LOG_FORMAT). Those two are left out on purpose: an image that pins
// its hearth release with `ENV HEARTH_VERSION=...` must still start hearth.
inline constexpr std::string_view kEnvPrefix = "HEARTH_";

// Variables hearth sets for the revisions it starts (src/launch/launch.cpp),
// plus HEARTH_RUNTIME_DIR, set aside for a per-revision runtime directory.
// No option may be named so that its variable is one of these (a unit test
// checks), and hearth reads none of them.
inline constexpr std::string_view kReservedEnv[] = {
    "HEARTH_LOCATION",     "HEARTH_REVISION",    "HEARTH_SYS_PATH",
    "HEARTH_INHERIT_PATH", "HEARTH_RUNTIME_DIR",
};

// Parses argv (argv[0] is skipped). Accepts `--opt value` and `--opt=value`.
// Options end at `--` or at the first non-option word; the rest is the main
// command. Then, unless --help or --version was given, every option the
// command line left out is taken from its variable in `env` when that is set
// and not empty (see cli::add_environment; HEARTH_PYTHON holds one or more
// paths separated by ':'). Other variables, reserved ones included, are
// ignored. Returns the options, or an Error (invalid_argument) whose message
// is one line naming the option or variable and the problem.
// Pure: no I/O, no globals, so it is safe to call from tests.
Result<Options> parse_options(int argc, const char* const argv[], const cli::Env& env = {});

// The --help text: every option with its variable beside it.
std::string usage();

// The option table's specs, for tests and documentation checks.
std::vector<cli::OptSpec> option_specs();

} // namespace hearth

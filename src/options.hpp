#pragma once
// Command-line options of the hearth daemon.

#include "log.hpp"

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
    std::vector<std::string> python; // --python, may repeat; empty = search PATH
    std::vector<std::string> command; // the main command after `--`, if any
    std::vector<std::string> main_env; // the main command's environment (set by main)
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

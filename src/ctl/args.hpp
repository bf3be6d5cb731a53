#pragma once
// hearthctl's command line: the parsed arguments, their parser (the shared
// table-driven one of util/cli.hpp), the --help text and the process exit
// statuses. Documented in hearthctl(1). Pure: no I/O, nothing throws except
// std::bad_alloc.

#include "util/cli.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hearth::ctl {

// Process exit statuses (the hearthctl(1) contract).
enum Exit : int {
    exit_ok = 0,          // success
    exit_failed = 1,      // hearth answered with an error, or the deploy failed
    exit_usage = 2,       // bad command line
    exit_unavailable = 3, // cannot connect, connection lost, or timeout
};

inline constexpr const char* kDefaultSocket = "/run/hearth/control.sock";
inline constexpr double kDefaultTimeoutS = 60.0;
// --socket may also come from HEARTH_SOCKET (the prefix + the option's name).
inline constexpr std::string_view kEnvPrefix = "HEARTH_";

// The parsed command line. Only the fields of `command` are meaningful.
struct Args {
    bool help = false;    // --help: print usage, exit 0 (wins over everything)
    bool version = false; // --version: print the client version, exit 0
    std::string socket;   // resolved: --socket, else $HEARTH_SOCKET, else kDefaultSocket
    bool json = false;
    double timeout_s = kDefaultTimeoutS; // 0 = no limit
    std::string command;    // ping version deploy status logs stop remove events cache shutdown
    std::string subcommand; // cache: "ls" or "gc"
    std::string location;   // may be empty for status/events, and for deploy with --params
    std::string id;         // --id (logs, stop)

    // deploy
    std::string deps, source;               // FILE or URL as given
    std::string deps_sha256, source_sha256; // lowercased 64 hex, or empty
    std::string runtime;                    // "", "native" or "pex"
    std::string module;
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env; // in command-line order
    std::string cwd;
    std::optional<double> min_uptime_s;
    bool wait = false;
    std::string params_file; // --params FILE, "-" = stdin, "" = none

    // deploy: limits, restart, stop, user. Every value has been validated;
    // an unset one leaves the field to --params or to hearth's default.
    std::optional<std::string> memory, memory_high; // as written ("512Mi", "1000000")
    std::optional<double> cpus;                     // parse_cpus value ("500m" -> 0.5)
    std::optional<std::int64_t> cpu_weight;         // 1..10000
    bool cpu_idle = false;                          // --cpu-weight idle
    bool cpu_exclusive = false;                     // --cpu-exclusive
    std::optional<std::int64_t> cpu_slice_us;       // 100..100000
    std::optional<std::int64_t> pids;               // >= 1
    std::string restart;                            // "", never, on-failure, always
    std::optional<std::int64_t> max_restarts;       // >= 0
    std::optional<double> restart_window_s;         // > 0
    std::string stop_signal;                        // canonical: "TERM" (no SIG, upper case)
    std::optional<double> stop_grace_s;             // 0..3600
    std::string user, group;                        // names or numbers, as written

    // cache gc
    std::optional<std::uint64_t> target_bytes; // --target SIZE

    // logs
    std::optional<int> tail;
    bool follow = false;
};

struct ParseResult {
    Args args;
    std::string error; // one line naming the problem (no "hearthctl: " prefix); empty = ok
    bool ok() const noexcept { return error.empty(); }
};

// Parses argv[1..] (without the program name). `env` holds the HEARTH_*
// variables (cli::environment); only HEARTH_SOCKET is read, when --socket is
// not given and it is not empty. Global options may appear before or after
// the command; `--` ends option parsing. --help and --version win over any
// error (but not as the value of another option).
ParseResult parse_args(const std::vector<std::string>& argv, const cli::Env& env = {});

// The --help text (several lines, newline-terminated).
std::string usage();

// "K=V" -> {K, V}. K must be non-empty and V may hold '='; nullopt otherwise.
std::optional<std::pair<std::string, std::string>> parse_env_assignment(std::string_view kv);

// Plain non-negative decimal ("5", "0.25", ".5"); rejects signs, exponents,
// inf/nan and trailing junk.
std::optional<double> parse_seconds(std::string_view text);

// True for "scheme://..." (RFC 3986 scheme), i.e. not a local file name.
bool looks_like_url(std::string_view s);

} // namespace hearth::ctl

#pragma once
// hearthctl: the command-line client of the control socket. The behaviour
// and output formats are documented in hearthctl(1); the wire protocol in
// hearth-protocol(7).
//
// Split so the pure parts (argument parsing, formatting) can be unit-tested
// without a daemon; run() does the I/O and can be pointed at any FILE*.
// Nothing here throws to the caller, logs, or uses libuv.

#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hearth {

// Entry point of the hearthctl binary: parses argv, runs the command with
// stdout/stderr, returns the process exit status (see ctl::Exit).
int ctl_main(int argc, char** argv);

namespace ctl {

// Process exit statuses (the hearthctl(1) contract).
enum Exit : int {
    exit_ok = 0,          // success
    exit_failed = 1,      // hearth answered with an error, or the deploy failed
    exit_usage = 2,       // bad command line
    exit_unavailable = 3, // cannot connect, connection lost, or timeout
};

inline constexpr const char* kDefaultSocket = "/run/hearth/control.sock";
inline constexpr double kDefaultTimeoutS = 60.0;

// The parsed command line. Only the fields of `command` are meaningful.
struct Args {
    bool help = false;    // --help: print usage, exit 0 (wins over everything)
    bool version = false; // --version: print the client version, exit 0
    std::string socket;   // resolved: --socket, else $HEARTH_SOCKET, else kDefaultSocket
    bool json = false;
    double timeout_s = kDefaultTimeoutS; // 0 = no limit
    std::string command;  // ping version deploy status logs stop remove events shutdown
    std::string location; // may be empty for status/events
    std::string id;       // --id (logs, stop)

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

    // logs
    std::optional<int> tail;
    bool follow = false;
};

struct ParseResult {
    Args args;
    std::string error; // one line naming the problem (no "hearthctl: " prefix); empty = ok
    bool ok() const noexcept { return error.empty(); }
};

// Parses argv[1..] (without the program name). `env_socket` is the value
// of $HEARTH_SOCKET or nullptr. Global options may appear before or after
// the command; `--` ends option parsing. Does no I/O.
ParseResult parse_args(const std::vector<std::string>& argv, const char* env_socket);

// The --help text (several lines, newline-terminated).
std::string usage();

// ^[a-z0-9][a-z0-9_.-]{0,62}$, the daemon's location rule.
bool valid_location(std::string_view name);

// "K=V" -> {K, V}. K must be non-empty and V may hold '='; nullopt otherwise.
std::optional<std::pair<std::string, std::string>> parse_env_assignment(std::string_view kv);

// Plain non-negative decimal ("5", "0.25", ".5"); rejects signs, exponents,
// inf/nan and trailing junk.
std::optional<double> parse_seconds(std::string_view text);

// True for "scheme://..." (RFC 3986 scheme), i.e. not a local file name.
bool looks_like_url(std::string_view s);

// Compact human duration, truncated: 0s, 59s, 1m05s, 2h03m, 3d04h.
// Negative or NaN input prints as 0s.
std::string format_duration(double seconds);

// "2026-11-22T10:00:00.123Z" -> seconds since the epoch; nullopt if malformed.
std::optional<double> parse_timestamp(std::string_view ts);

// Left-aligned columns separated by two spaces, one '\n'-terminated line per
// row, no trailing spaces. Widths count UTF-8 code points. Rows may have
// different lengths.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// Rows (header first) of the `status` table built from a `status` result:
// LOCATION ID STATE PID UPTIME RUNTIME CACHE REASON. The active revision's
// ID carries a trailing '*'. `now` is seconds since the epoch (UPTIME is
// now - state_since for revisions not failed/stopped).
std::vector<std::vector<std::string>> status_rows(const nlohmann::json& status, double now);

// "TS LOCATION ID PREVIOUS -> STATE[ REASON][: MESSAGE]" for an `event`
// notification's params (no newline). Missing fields print as "-".
std::string format_event(const nlohmann::json& event);

// "TS STREAM TEXT" for one log line object (no newline).
std::string format_log_line(const nlohmann::json& line);

// Computes a file's sha256 (lowercase hex) or returns nullopt and sets `error`.
using Hasher =
    std::function<std::optional<std::string>(const std::string& path, std::string& error)>;

// Builds `deploy` params from parsed args: local files become absolute paths
// and are hashed with `hash` unless their --*-sha256 was given; URLs are
// passed as {"url": ...}. `cwd` makes relative paths absolute. Returns
// nullopt and sets `error` (one line) when a file cannot be hashed.
std::optional<nlohmann::json> deploy_params(const Args& args, const std::string& cwd,
                                            const Hasher& hash, std::string& error);

// Runs the parsed command (args must come from a successful parse_args).
// Writes results to `out`, diagnostics to `err`, returns an Exit status.
// Blocking. For `events` and `logs -f` it installs a SIGINT/SIGTERM handler
// that ends the follow cleanly (exit 0) and restores the old one on return.
int run(const Args& args, std::FILE* out, std::FILE* err);

} // namespace ctl
} // namespace hearth

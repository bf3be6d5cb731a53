#pragma once
// hearthctl: the command-line client of the control socket. The behaviour
// and output formats are documented in hearthctl(1); the wire protocol in
// hearth-protocol(7).
//
// Split so the pure parts (argument parsing, formatting) can be unit-tested
// without a daemon; run() does the I/O and can be pointed at any FILE*.
// Nothing here throws to the caller, logs, or uses libuv.

#include <cstdint>
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
// LOCATION ID STATE PID UPTIME RUNTIME CACHE MEM RESTARTS REASON (MEM: see
// mem_cell; RESTARTS: "restarts", "-" when absent). The active revision's
// ID carries a trailing '*'. `now` is seconds since the epoch (UPTIME is
// now - state_since for revisions not failed/stopped).
std::vector<std::vector<std::string>> status_rows(const nlohmann::json& status, double now);

// "TS LOCATION ID PREVIOUS -> STATE[ REASON][: MESSAGE]" for an `event`
// notification's params (no newline). Missing fields print as "-".
// A progress event ("type":"progress") prints as
// "TS LOCATION ID progress " + format_progress(event); an event of another
// unknown type as "TS LOCATION ID TYPE[ STATE]".
std::string format_event(const nlohmann::json& event);

// "TS STREAM TEXT" for one log line object (no newline).
std::string format_log_line(const nlohmann::json& line);

// Computes a file's sha256 (lowercase hex) or returns nullopt and sets `error`.
using Hasher =
    std::function<std::optional<std::string>(const std::string& path, std::string& error)>;

// Parses the text of a --params file; `name` is how messages refer to it
// (the path, or "standard input"). Returns the object, or nullopt and sets
// `error` (one line, naming `name`) for invalid JSON or a non-object.
std::optional<nlohmann::json> parse_params_text(std::string_view text, const std::string& name,
                                                std::string& error);

// Reads --params `path` ("-" = all of `in`) and parses it as above.
// Blocking. Errors name the file and say why (errno text).
std::optional<nlohmann::json> read_params_file(const std::string& path, std::FILE* in,
                                               std::string& error);

// The outcome of building deploy params: the params, or a one-line error
// (no "hearthctl: deploy: " prefix) with the exit status it deserves
// (exit_usage for a missing or inconsistent field, exit_failed when a local
// file cannot be hashed).
struct DeployBuild {
    std::optional<nlohmann::json> params;
    std::string error;
    int status = exit_ok;
    bool ok() const noexcept { return params.has_value(); }
};

// Builds `deploy` params: starts from `base` (the --params object, or null
// for none) and lets every flag given on the command line override its
// field (hearthctl(1), "--params" lists the merge rules). Local files,
// from flags or from `base` ({"path": ...} without "sha256"), become
// absolute paths against `cwd` and are hashed with `hash` unless a digest
// is known; URLs are passed as {"url": ...} and need a digest. Sizes are
// sent as written (strings), CPUs as numbers. Pure apart from `hash`.
DeployBuild deploy_params(const Args& args, const nlohmann::json& base, const std::string& cwd,
                          const Hasher& hash);

// What one event notification means for `deploy --wait`.
enum class WaitVerdict {
    waiting, // not decisive: another revision, progress, unknown type, or a step on the way
    ready,   // exit 0
    failed,  // exit 1: the revision failed
    backoff, // exit 1: it entered backoff before it was ever ready (hearth will retry)
    stopped, // exit 1: stopped before it became ready
};

// Follows the events of one revision for `deploy --wait`. Events of other
// revisions, progress events and events of an unknown "type" are waiting.
// A backoff after the revision was ready (seen here, or "previous":"ready")
// is waiting too: the deploy succeeded and hearth is restarting it.
class DeployWaiter {
public:
    explicit DeployWaiter(std::string id) : id_(std::move(id)) {}
    // `event` is the params of an `event` notification (any JSON; never throws
    // on odd shapes).
    WaitVerdict feed(const nlohmann::json& event);
    bool ever_ready() const noexcept { return ever_ready_; }

private:
    std::string id_;
    bool ever_ready_ = false;
};

// exit_ok for ready, exit_failed for failed/backoff/stopped; -1 for waiting.
int wait_exit_status(WaitVerdict v) noexcept;

// Feeds `events` in order and returns the exit status at the first decisive
// one, or nullopt when none is.
std::optional<int> wait_outcome(const std::string& id, const std::vector<nlohmann::json>& events);

// What `deploy --wait` writes to stderr for a failed, backoff or stopped
// verdict: a first line "hearthctl: deploy: ID ..." with the reason and
// message, then indented lines for the next attempt (backoff), exit code,
// signal and stderr tail. Fields are taken from the event, else from its
// "revision" object. `now` (epoch seconds) is for "in 4s". Each line ends
// with '\n'.
std::string wait_failure_report(const std::string& id, const nlohmann::json& event, WaitVerdict v,
                                double now);

// "deps 1.5 MiB/40 MiB (3%)" for a progress event ("?" for an unknown total,
// no percentage then).
std::string format_progress(const nlohmann::json& event);

// "512MiB" (format_bytes without its space, for table cells).
std::string compact_bytes(std::uint64_t bytes);

// The MEM cell of a revision: "CURRENT/LIMIT" from cgroup.memory_current and
// limits.memory, "-" for an unknown part, "-" when both are unknown.
std::string mem_cell(const nlohmann::json& revision);

// Detail lines (no newlines) for `status LOCATION`: the active revision,
// else the newest, of the first location in a `status` result: state,
// cgroup driver/enforcement/degraded, limits, usage, restarts (and the
// policy when hearth reports it), backoff,
// last failure, oom, fetch progress, user, stop. Empty when there is no
// revision.
std::vector<std::string> status_detail(const nlohmann::json& status, double now);

// Rows (header first) of `cache ls`: KIND SHA256 (first 12 hex) SIZE
// LAST-USED ("5m03s ago") PINNED-BY (comma-separated ids, "-" for none).
std::vector<std::vector<std::string>> cache_rows(const nlohmann::json& list, double now);

// "used 1.5 GiB of budget 10 GiB (3 entries, 1 GiB pinned)"; pinned is the
// result's "pinned_bytes", else the sum of the pinned entries.
std::string cache_total_line(const nlohmann::json& list);

// Lines of `cache gc`: "evicted KIND SHA12 SIZE" per entry, then
// "freed X; used now Y" (or "nothing to evict; used Y"), then hearth's
// "message" when it sent one.
std::vector<std::string> cache_gc_lines(const nlohmann::json& result);

// Runs the parsed command (args must come from a successful parse_args).
// Writes results to `out`, diagnostics to `err`, returns an Exit status;
// `--params -` reads `in`. Blocking. For `events` and `logs -f` it installs
// a SIGINT/SIGTERM handler that ends the follow cleanly (exit 0) and
// restores the old one on return. The `deploy --wait` progress line is
// drawn only when `err` is a terminal.
int run(const Args& args, std::FILE* out, std::FILE* err, std::FILE* in = stdin);

} // namespace ctl
} // namespace hearth

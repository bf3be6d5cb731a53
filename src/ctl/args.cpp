#include "ctl/args.hpp"

#include "store/sha256.hpp"
#include "util/names.hpp"
#include "util/units.hpp"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>

namespace hearth::ctl {

namespace {

using Apply = std::function<std::string(Args&, const std::string&)>;

std::string got(const std::string& v) {
    return ", got '" + v + "'";
}

// A plain decimal integer in [lo, hi] (no sign, no spaces).
std::optional<std::int64_t> parse_int(std::string_view s, std::int64_t lo, std::int64_t hi) {
    if (s.empty() || s.size() > 18) return std::nullopt;
    std::int64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    if (v < lo || v > hi) return std::nullopt;
    return v;
}

// "term", "SIGTERM", "sigterm" -> "TERM"; "" when not a stop signal. People
// type signals in any case; the protocol wants the table's spelling.
std::string stop_signal_name(std::string_view s) {
    std::string up;
    for (char c : s)
        up += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    const StopSignal* sig = find_stop_signal(up);
    return sig ? std::string(sig->name) : std::string();
}

std::string stop_signal_list() {
    std::string names;
    for (const StopSignal& s : kStopSignals)
        names += (names.empty() ? "" : " ") + std::string(s.name);
    return names;
}

// ---- value checks, one per kind of option (each returns "" or the problem)

Apply nonempty(std::string Args::*field) {
    return [field](Args& a, const std::string& v) -> std::string {
        if (v.empty()) return "empty value";
        a.*field = v;
        return {};
    };
}

Apply flag_on(bool Args::*field) {
    return [field](Args& a, const std::string&) -> std::string {
        a.*field = true;
        return {};
    };
}

Apply digest(std::string Args::*field) {
    return [field](Args& a, const std::string& v) -> std::string {
        auto hex = canonical_sha256_hex(v);
        if (!hex) return "expected 64 hex characters" + got(v);
        a.*field = std::move(*hex);
        return {};
    };
}

Apply int_into(std::optional<std::int64_t> Args::*field, std::int64_t lo, std::int64_t hi,
               const char* expected) {
    return [=](Args& a, const std::string& v) -> std::string {
        a.*field = parse_int(v, lo, hi);
        if (!(a.*field)) return expected + got(v);
        return {};
    };
}

std::string set_timeout(Args& a, const std::string& v) {
    auto s = parse_seconds(v);
    if (!s) return "expected a non-negative number of seconds" + got(v);
    a.timeout_s = *s;
    return {};
}

std::string set_runtime(Args& a, const std::string& v) {
    if (v != "native" && v != "pex") return "expected 'native' or 'pex'" + got(v);
    a.runtime = v;
    return {};
}

std::string add_arg(Args& a, const std::string& v) {
    a.args.push_back(v);
    return {};
}

std::string add_env(Args& a, const std::string& v) {
    auto kv = parse_env_assignment(v);
    if (!kv) return "expected K=V with a non-empty K" + got(v);
    a.env.push_back(std::move(*kv));
    return {};
}

std::string set_min_uptime(Args& a, const std::string& v) {
    auto s = parse_seconds(v);
    if (!s) return "expected a non-negative number of seconds" + got(v);
    a.min_uptime_s = *s;
    return {};
}

// Sizes are sent as written (hearth parses them again), after the same check.
Apply size_text(std::optional<std::string> Args::*field, std::uint64_t min_bytes) {
    return [=](Args& a, const std::string& v) -> std::string {
        std::uint64_t bytes = 0;
        std::string why;
        if (!parse_bytes(nlohmann::json(v), bytes, why)) return why;
        if (bytes < min_bytes) return "must be at least 1Mi (1048576 bytes)" + got(v);
        a.*field = v;
        return {};
    };
}

std::string set_cpus(Args& a, const std::string& v) {
    double cpus = 0;
    std::string why;
    if (!parse_cpus(nlohmann::json(v), cpus, why)) return why;
    a.cpus = cpus;
    return {};
}

std::string set_cpu_weight(Args& a, const std::string& v) {
    a.cpu_idle = v == "idle";
    a.cpu_weight = a.cpu_idle ? std::nullopt : parse_int(v, 1, 10000);
    if (!a.cpu_weight && !a.cpu_idle)
        return "expected an integer from 1 to 10000 or 'idle'" + got(v);
    return {};
}

std::string set_restart(Args& a, const std::string& v) {
    if (v != "never" && v != "on-failure" && v != "always")
        return "expected 'never', 'on-failure' or 'always'" + got(v);
    a.restart = v;
    return {};
}

std::string set_restart_window(Args& a, const std::string& v) {
    auto s = parse_seconds(v);
    if (!s || !(*s > 0)) return "expected a positive number of seconds" + got(v);
    a.restart_window_s = *s;
    return {};
}

std::string set_stop_signal(Args& a, const std::string& v) {
    a.stop_signal = stop_signal_name(v);
    if (a.stop_signal.empty())
        return "expected one of " + stop_signal_list() + " (SIG prefix optional)" + got(v);
    return {};
}

std::string set_stop_grace(Args& a, const std::string& v) {
    auto s = parse_seconds(v);
    if (!s || *s > 3600) return "expected seconds from 0 to 3600" + got(v);
    a.stop_grace_s = *s;
    return {};
}

std::string set_target(Args& a, const std::string& v) {
    if (a.subcommand != "gc") return "only valid for 'cache gc'";
    std::uint64_t bytes = 0;
    std::string why;
    if (!parse_bytes(nlohmann::json(v), bytes, why)) return why;
    a.target_bytes = bytes;
    return {};
}

std::string set_tail(Args& a, const std::string& v) {
    auto t = parse_int(v, 0, 10000);
    if (!t) return "expected an integer from 0 to 10000" + got(v);
    a.tail = static_cast<int>(*t);
    return {};
}

// Every option, with the commands it applies to ("*": all of them).
const std::vector<cli::Option<Args>>& rows() {
    static const std::vector<cli::Option<Args>> table = {
        {{"socket", 0, true, "*", true}, nonempty(&Args::socket)},
        {{"json", 0, false}, flag_on(&Args::json)},
        {{"timeout"}, set_timeout},
        {{"help", 'h', false}, flag_on(&Args::help)},
        {{"version", 'V', false}, flag_on(&Args::version)},
        {{"deps", 0, true, "deploy"}, nonempty(&Args::deps)},
        {{"source", 0, true, "deploy"}, nonempty(&Args::source)},
        {{"deps-sha256", 0, true, "deploy"}, digest(&Args::deps_sha256)},
        {{"source-sha256", 0, true, "deploy"}, digest(&Args::source_sha256)},
        {{"runtime", 0, true, "deploy"}, set_runtime},
        {{"module", 0, true, "deploy"}, nonempty(&Args::module)},
        {{"arg", 0, true, "deploy"}, add_arg},
        {{"env", 0, true, "deploy"}, add_env},
        {{"cwd", 0, true, "deploy"}, nonempty(&Args::cwd)},
        {{"min-uptime", 0, true, "deploy"}, set_min_uptime},
        {{"wait", 0, false, "deploy"}, flag_on(&Args::wait)},
        {{"params", 0, true, "deploy"}, nonempty(&Args::params_file)},
        {{"memory", 0, true, "deploy"}, size_text(&Args::memory, 1u << 20)},
        {{"memory-high", 0, true, "deploy"}, size_text(&Args::memory_high, 0)},
        {{"cpus", 0, true, "deploy"}, set_cpus},
        {{"cpu-weight", 0, true, "deploy"}, set_cpu_weight},
        {{"cpu-exclusive", 0, false, "deploy"}, flag_on(&Args::cpu_exclusive)},
        {{"cpu-slice-us", 0, true, "deploy"},
         int_into(&Args::cpu_slice_us, 100, 100000, "expected microseconds from 100 to 100000")},
        {{"pids", 0, true, "deploy"},
         int_into(&Args::pids, 1, std::numeric_limits<std::int64_t>::max(),
                  "expected an integer of at least 1")},
        {{"restart", 0, true, "deploy"}, set_restart},
        {{"max-restarts", 0, true, "deploy"},
         int_into(&Args::max_restarts, 0, INT32_MAX, "expected a non-negative integer")},
        {{"restart-window", 0, true, "deploy"}, set_restart_window},
        {{"stop-signal", 0, true, "deploy"}, set_stop_signal},
        {{"stop-grace", 0, true, "deploy"}, set_stop_grace},
        {{"user", 0, true, "deploy"}, nonempty(&Args::user)},
        {{"group", 0, true, "deploy"}, nonempty(&Args::group)},
        {{"target", 0, true, "cache"}, set_target},
        {{"id", 0, true, "logs stop"}, nonempty(&Args::id)},
        {{"tail", 0, true, "logs"}, set_tail},
        {{"follow", 'f', false, "logs"}, flag_on(&Args::follow)},
    };
    return table;
}

struct CommandSpec {
    std::string_view name;
    int min_args; // positional arguments after the command
    int max_args;
};

// deploy's LOCATION may come from --params, and cache's one positional is
// its subcommand; both are checked after the options.
constexpr CommandSpec kCommands[] = {
    {"ping", 0, 0}, {"version", 0, 0}, {"deploy", 0, 1}, {"status", 0, 1}, {"logs", 1, 1},
    {"stop", 1, 1}, {"remove", 1, 1},  {"events", 0, 1}, {"cache", 0, 1},  {"shutdown", 0, 0},
};

// The command and its positional arguments into `a`; "" or the problem.
std::string parse_command(const std::vector<std::string>& positional, Args& a) {
    if (positional.empty()) return "missing command (see 'hearthctl --help')";
    a.command = positional[0];
    const CommandSpec* cmd = nullptr;
    for (const auto& c : kCommands)
        if (c.name == a.command) cmd = &c;
    if (!cmd) return "unknown command '" + a.command + "' (see 'hearthctl --help')";
    const std::string pfx = a.command + ": ";
    const int nargs = static_cast<int>(positional.size()) - 1;
    if (nargs < cmd->min_args) return pfx + "missing LOCATION";
    if (nargs > cmd->max_args)
        return pfx + "unexpected argument '" +
               positional[static_cast<std::size_t>(cmd->max_args) + 1] + "'";
    if (a.command == "cache") {
        if (nargs == 0) return pfx + "missing subcommand (ls or gc)";
        a.subcommand = positional[1];
        if (a.subcommand != "ls" && a.subcommand != "gc")
            return pfx + "unknown subcommand '" + a.subcommand + "' (expected ls or gc)";
    } else if (nargs == 1) {
        a.location = positional[1];
        if (!valid_location_name(a.location))
            return pfx + "invalid LOCATION '" + a.location + "': expected " +
                   std::string(kLocationNamePattern);
    }
    return {};
}

// What `deploy` needs beyond single option values; "" or the problem.
std::string check_deploy(const Args& a) {
    // With --params these may come from the file: deploy_params checks.
    const bool from_file = !a.params_file.empty();
    if (a.location.empty() && !from_file) return "missing LOCATION";
    if (a.deps.empty() && !from_file) return "missing --deps FILE|URL";
    if (a.source.empty() && !from_file) return "missing --source FILE|URL";
    if (looks_like_url(a.deps) && a.deps_sha256.empty())
        return "--deps is a URL, so --deps-sha256 is required";
    if (looks_like_url(a.source) && a.source_sha256.empty())
        return "--source is a URL, so --source-sha256 is required";
    if (!a.args.empty() && a.module.empty()) return "--arg requires --module";
    return {};
}

} // namespace

std::optional<std::pair<std::string, std::string>> parse_env_assignment(std::string_view kv) {
    auto eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0) return std::nullopt;
    return std::make_pair(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
}

std::optional<double> parse_seconds(std::string_view text) {
    bool digits = false, dot = false;
    for (char c : text) {
        if (c >= '0' && c <= '9')
            digits = true;
        else if (c == '.' && !dot)
            dot = true;
        else
            return std::nullopt;
    }
    if (!digits) return std::nullopt;
    std::string copy(text);
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

bool looks_like_url(std::string_view s) {
    auto sep = s.find("://");
    if (sep == std::string_view::npos || sep == 0) return false;
    auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!alpha(s[0])) return false;
    for (std::size_t i = 1; i < sep; ++i) {
        char c = s[i];
        if (!alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return false;
    }
    return true;
}

ParseResult parse_args(const std::vector<std::string>& argv, const cli::Env& env) {
    ParseResult r;
    Args& a = r.args;
    const std::span<const cli::Option<Args>> options(rows());
    const cli::Table table = cli::table_of<Args>(options);

    cli::Scan scan = cli::scan(table, argv, cli::Mode::interleaved);
    a.help = scan.has("help");
    a.version = scan.has("version");
    if (a.help || a.version) return r;
    if (!scan.ok()) {
        r.error = scan.error;
        return r;
    }
    if (r.error = parse_command(scan.positionals, a); !r.error.empty()) return r;
    cli::add_environment(table, kEnvPrefix, env, scan);
    if (!scan.ok()) {
        r.error = scan.error;
        return r;
    }
    // Options of one command name it in their messages ("deploy: --memory: ...").
    const std::string pfx = a.command + ": ";
    auto prefix_for = [&](const cli::OptSpec& spec) { return spec.scope == "*" ? "" : pfx; };
    r.error = cli::apply(options, scan.given, a, a.command, prefix_for);
    if (!r.error.empty()) return r;
    if (a.command == "deploy") {
        if (std::string problem = check_deploy(a); !problem.empty()) {
            r.error = pfx + problem;
            return r;
        }
    }
    if (a.socket.empty()) a.socket = kDefaultSocket;
    return r;
}

std::string usage() {
    return R"(Usage: hearthctl [OPTIONS] COMMAND [ARGS...]

Control a running hearth daemon through its control socket.

Commands:
  ping                        check that hearth answers
  version                     print the hearthctl version and, if reachable, hearth's
  deploy LOCATION --deps FILE|URL --source FILE|URL [DEPLOY OPTIONS]
                              deploy a new revision of LOCATION; prints its id
  status [LOCATION]           table of locations and their revisions
                              (with LOCATION: details of its active/newest revision)
  logs LOCATION [--id ID] [--tail N] [-f]
                              print a revision's output lines
  stop LOCATION [--id ID]     stop the location's revisions (or only ID)
  remove LOCATION             stop everything of LOCATION and forget it
  events [LOCATION]           print state changes and fetch progress as they happen
  cache ls                    list hearth's artifact store
  cache gc [--target SIZE]    evict unpinned entries until the store uses at most SIZE
  shutdown                    make hearth stop every revision and exit

Options (any position):
  --socket PATH       control socket (default: $HEARTH_SOCKET, else /run/hearth/control.sock)
  --json              print raw JSON (following: one object per line)
  --timeout SECONDS   bound on connecting and on each reply (default 60; 0 = none)
  -h, --help          print this help and exit
  -V, --version       print the hearthctl version and exit

Deploy options:
  --deps FILE|URL     dependencies pex (local files are hashed by hearthctl)
  --source FILE|URL   source pex
  --deps-sha256 HEX   expected digest of --deps (required for a URL)
  --source-sha256 HEX expected digest of --source (required for a URL)
  --runtime native|pex  how hearth starts the revision (default native)
  --module M          run module M instead of the source's entry point
  --arg A             argument for --module (repeatable)
  --env K=V           environment variable (repeatable)
  --cwd DIR           working directory (default: the revision's scratch dir)
  --min-uptime S      seconds the process must stay up to be ready (default 1)
  --memory SIZE       memory limit, e.g. 512Mi, 2Gi (at least 1Mi)
  --memory-high SIZE  memory throttling threshold (cgroup v2)
  --cpus N            CPU limit, e.g. 0.5, 2, 500m
  --cpu-weight N      relative CPU share, 1 to 10000, or idle (runs only
                      when nothing else wants the CPU)
  --cpu-exclusive     ceil(--cpus) CPUs of its own: nothing else of hearth's
                      runs on them (for latency-sensitive code)
  --cpu-slice-us N    scheduler slice of its threads, 100 to 100000 us (a
                      short one wakes sooner beside busy neighbours)
  --pids N            maximum number of processes and threads
  --restart POLICY    never, on-failure (hearth's default) or always
  --max-restarts N    fail after N restarts within --restart-window
  --restart-window S  the window of --max-restarts (hearth's default 600)
  --stop-signal SIG   HUP INT QUIT TERM USR1 USR2 KILL WINCH (default TERM)
  --stop-grace S      seconds between the stop signal and SIGKILL (0 to 3600)
  --user U, --group G run the revision as this user/group (name or number)
  --params FILE       JSON object of deploy params ('-': standard input);
                      flags override its fields
  --wait              follow the revision until ready (exit 0), failed or in
                      backoff before ever being ready (exit 1)

Logs and stop options:
  --id ID             revision (logs default: the active one, else the newest)
  --tail N            lines of history, 0 to 10000 (default 100)
  -f, --follow        keep printing new lines until interrupted

Cache options:
  --target SIZE       cache gc: evict until used <= SIZE (default: the budget)

Exit status: 0 success; 1 hearth answered with an error or the deploy failed;
2 usage error; 3 cannot connect, connection lost or timeout.
)";
}

} // namespace hearth::ctl

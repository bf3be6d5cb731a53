#include "ctl/ctl.hpp"

#include "ctl/client.hpp"
#include "store/sha256.hpp"
#include "util/units.hpp"
#include "version.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
#include <limits>
#include <map>
#include <signal.h>
#include <unistd.h>

namespace hearth {

namespace ctl {

namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------
// Command line

struct OptSpec {
    std::string_view name; // long name without "--"
    char short_name;       // 0 = none
    bool has_value;
    std::string_view commands; // "*" = global, else space-separated commands
};

constexpr OptSpec kOptions[] = {
    {"socket", 0, true, "*"},
    {"json", 0, false, "*"},
    {"timeout", 0, true, "*"},
    {"help", 'h', false, "*"},
    {"version", 'V', false, "*"},
    {"deps", 0, true, "deploy"},
    {"source", 0, true, "deploy"},
    {"deps-sha256", 0, true, "deploy"},
    {"source-sha256", 0, true, "deploy"},
    {"runtime", 0, true, "deploy"},
    {"module", 0, true, "deploy"},
    {"arg", 0, true, "deploy"},
    {"env", 0, true, "deploy"},
    {"cwd", 0, true, "deploy"},
    {"min-uptime", 0, true, "deploy"},
    {"wait", 0, false, "deploy"},
    {"params", 0, true, "deploy"},
    {"memory", 0, true, "deploy"},
    {"memory-high", 0, true, "deploy"},
    {"cpus", 0, true, "deploy"},
    {"cpu-weight", 0, true, "deploy"},
    {"cpu-exclusive", 0, false, "deploy"},
    {"cpu-slice-us", 0, true, "deploy"},
    {"pids", 0, true, "deploy"},
    {"restart", 0, true, "deploy"},
    {"max-restarts", 0, true, "deploy"},
    {"restart-window", 0, true, "deploy"},
    {"stop-signal", 0, true, "deploy"},
    {"stop-grace", 0, true, "deploy"},
    {"user", 0, true, "deploy"},
    {"group", 0, true, "deploy"},
    {"target", 0, true, "cache"},
    {"id", 0, true, "logs stop"},
    {"tail", 0, true, "logs"},
    {"follow", 'f', false, "logs"},
};

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

// Signals a deploy may name for stopping (hearth-protocol(7)).
constexpr std::string_view kStopSignals[] = {"HUP",  "INT",  "QUIT", "TERM",
                                             "USR1", "USR2", "KILL", "WINCH"};

const OptSpec* find_long(std::string_view name) {
    for (const auto& o : kOptions)
        if (o.name == name) return &o;
    return nullptr;
}

const OptSpec* find_short(char c) {
    for (const auto& o : kOptions)
        if (o.short_name != 0 && o.short_name == c) return &o;
    return nullptr;
}

bool applies_to(const OptSpec& o, std::string_view command) {
    if (o.commands == "*") return true;
    std::string_view rest = o.commands;
    while (!rest.empty()) {
        auto sp = rest.find(' ');
        if (rest.substr(0, sp) == command) return true;
        if (sp == std::string_view::npos) break;
        rest.remove_prefix(sp + 1);
    }
    return false;
}

struct Given {
    const OptSpec* spec;
    std::string spelled; // as typed, for messages ("-f" or "--follow")
    std::string value;
};

bool is_hex64(std::string_view s) {
    if (s.size() != 64) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    });
}

std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::optional<int> parse_tail(std::string_view s) {
    if (s.empty() || s.size() > 5) return std::nullopt;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    if (v > 10000) return std::nullopt;
    return v;
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

// "term", "SIGTERM", "sigterm" -> "TERM"; "" when not a stop signal.
std::string stop_signal_name(std::string_view s) {
    std::string up;
    for (char c : s)
        up += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    if (up.rfind("SIG", 0) == 0) up.erase(0, 3);
    for (auto name : kStopSignals)
        if (up == name) return up;
    return {};
}

} // namespace

bool valid_location(std::string_view name) {
    if (name.empty() || name.size() > 63) return false;
    auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!alnum(name[0])) return false;
    return std::all_of(name.begin() + 1, name.end(),
                       [&](char c) { return alnum(c) || c == '_' || c == '.' || c == '-'; });
}

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

ParseResult parse_args(const std::vector<std::string>& argv, const char* env_socket) {
    ParseResult r;
    Args& a = r.args;
    std::vector<Given> given;
    std::vector<std::string> positional;
    std::string first_error;
    auto note = [&](std::string msg) {
        if (first_error.empty()) first_error = std::move(msg);
    };

    // Pass 1: split into options and positionals. Errors are remembered, not
    // returned, so that --help/--version anywhere still win.
    bool only_positional = false;
    for (std::size_t i = 0; i < argv.size(); ++i) {
        const std::string& tok = argv[i];
        if (only_positional || tok.size() < 2 || tok[0] != '-') {
            positional.push_back(tok);
            continue;
        }
        if (tok == "--") {
            only_positional = true;
            continue;
        }
        const OptSpec* spec = nullptr;
        std::string spelled = tok;
        std::optional<std::string> inline_value;
        if (tok[1] == '-') {
            std::string_view body(tok);
            body.remove_prefix(2);
            auto eq = body.find('=');
            if (eq != std::string_view::npos) {
                inline_value = std::string(body.substr(eq + 1));
                body = body.substr(0, eq);
                spelled = "--" + std::string(body);
            }
            spec = find_long(body);
        } else if (tok.size() == 2) {
            spec = find_short(tok[1]);
        }
        if (!spec) {
            note("unknown option '" + spelled + "'");
            continue;
        }
        Given g{spec, spelled, {}};
        if (spec->has_value) {
            if (inline_value)
                g.value = *inline_value;
            else if (i + 1 < argv.size())
                g.value = argv[++i];
            else {
                note("option '" + spelled + "' requires a value");
                continue;
            }
        } else if (inline_value) {
            note("option '" + spelled + "' does not take a value");
            continue;
        }
        if (spec->name == "help") a.help = true;
        if (spec->name == "version") a.version = true;
        given.push_back(std::move(g));
    }
    if (a.help || a.version) return r;
    if (!first_error.empty()) {
        r.error = first_error;
        return r;
    }

    // Pass 2: the command and its positionals.
    if (positional.empty()) {
        r.error = "missing command (see 'hearthctl --help')";
        return r;
    }
    a.command = positional[0];
    const CommandSpec* cmd = nullptr;
    for (const auto& c : kCommands)
        if (c.name == a.command) cmd = &c;
    if (!cmd) {
        r.error = "unknown command '" + a.command + "' (see 'hearthctl --help')";
        return r;
    }
    const std::string pfx = a.command + ": ";
    int nargs = static_cast<int>(positional.size()) - 1;
    if (nargs < cmd->min_args) {
        r.error = pfx + "missing LOCATION";
        return r;
    }
    if (nargs > cmd->max_args) {
        r.error = pfx + "unexpected argument '" +
                  positional[static_cast<std::size_t>(cmd->max_args) + 1] + "'";
        return r;
    }
    if (a.command == "cache") {
        if (nargs == 0) {
            r.error = pfx + "missing subcommand (ls or gc)";
            return r;
        }
        a.subcommand = positional[1];
        if (a.subcommand != "ls" && a.subcommand != "gc") {
            r.error = pfx + "unknown subcommand '" + a.subcommand + "' (expected ls or gc)";
            return r;
        }
    } else if (nargs == 1) {
        a.location = positional[1];
        if (!valid_location(a.location)) {
            r.error =
                pfx + "invalid LOCATION '" + a.location + "': expected ^[a-z0-9][a-z0-9_.-]{0,62}$";
            return r;
        }
    }

    // Pass 3: option values, in command-line order (a repeated single-value
    // option: the last one wins).
    bool socket_given = false;
    for (const Given& g : given) {
        const std::string_view n = g.spec->name;
        const std::string& v = g.value;
        if (!applies_to(*g.spec, a.command)) {
            r.error = "option '" + g.spelled + "' is not valid for '" + a.command + "'";
            return r;
        }
        auto bad = [&](const std::string& what) {
            r.error = (g.spec->commands == "*" ? std::string() : pfx) + g.spelled + ": " + what;
        };
        auto nonempty = [&]() {
            if (v.empty()) bad("empty value");
            return !v.empty();
        };
        if (n == "socket") {
            if (!nonempty()) return r;
            a.socket = v;
            socket_given = true;
        } else if (n == "json") {
            a.json = true;
        } else if (n == "timeout") {
            auto s = parse_seconds(v);
            if (!s) {
                bad("expected a non-negative number of seconds, got '" + v + "'");
                return r;
            }
            a.timeout_s = *s;
        } else if (n == "deps" || n == "source") {
            if (!nonempty()) return r;
            (n == "deps" ? a.deps : a.source) = v;
        } else if (n == "deps-sha256" || n == "source-sha256") {
            if (!is_hex64(v)) {
                bad("expected 64 hex characters, got '" + v + "'");
                return r;
            }
            (n == "deps-sha256" ? a.deps_sha256 : a.source_sha256) = lower(v);
        } else if (n == "runtime") {
            if (v != "native" && v != "pex") {
                bad("expected 'native' or 'pex', got '" + v + "'");
                return r;
            }
            a.runtime = v;
        } else if (n == "module") {
            if (!nonempty()) return r;
            a.module = v;
        } else if (n == "arg") {
            a.args.push_back(v);
        } else if (n == "env") {
            auto kv = parse_env_assignment(v);
            if (!kv) {
                bad("expected K=V with a non-empty K, got '" + v + "'");
                return r;
            }
            a.env.push_back(std::move(*kv));
        } else if (n == "cwd") {
            if (!nonempty()) return r;
            a.cwd = v;
        } else if (n == "min-uptime") {
            auto s = parse_seconds(v);
            if (!s) {
                bad("expected a non-negative number of seconds, got '" + v + "'");
                return r;
            }
            a.min_uptime_s = *s;
        } else if (n == "wait") {
            a.wait = true;
        } else if (n == "params") {
            if (!nonempty()) return r;
            a.params_file = v;
        } else if (n == "memory" || n == "memory-high") {
            std::uint64_t bytes = 0;
            std::string why;
            if (!parse_bytes(json(v), bytes, why)) {
                bad(why);
                return r;
            }
            if (n == "memory" && bytes < (1u << 20)) {
                bad("must be at least 1Mi (1048576 bytes), got '" + v + "'");
                return r;
            }
            (n == "memory" ? a.memory : a.memory_high) = v;
        } else if (n == "cpus") {
            double cpus = 0;
            std::string why;
            if (!parse_cpus(json(v), cpus, why)) {
                bad(why);
                return r;
            }
            a.cpus = cpus;
        } else if (n == "cpu-exclusive") {
            a.cpu_exclusive = true;
        } else if (n == "cpu-slice-us") {
            a.cpu_slice_us = parse_int(v, 100, 100000);
            if (!a.cpu_slice_us) {
                bad("expected microseconds from 100 to 100000, got '" + v + "'");
                return r;
            }
        } else if (n == "cpu-weight") {
            a.cpu_idle = v == "idle";
            a.cpu_weight = a.cpu_idle ? std::nullopt : parse_int(v, 1, 10000);
            if (!a.cpu_weight && !a.cpu_idle) {
                bad("expected an integer from 1 to 10000 or 'idle', got '" + v + "'");
                return r;
            }
        } else if (n == "pids") {
            a.pids = parse_int(v, 1, std::numeric_limits<std::int64_t>::max());
            if (!a.pids) {
                bad("expected an integer of at least 1, got '" + v + "'");
                return r;
            }
        } else if (n == "restart") {
            if (v != "never" && v != "on-failure" && v != "always") {
                bad("expected 'never', 'on-failure' or 'always', got '" + v + "'");
                return r;
            }
            a.restart = v;
        } else if (n == "max-restarts") {
            a.max_restarts = parse_int(v, 0, INT32_MAX);
            if (!a.max_restarts) {
                bad("expected a non-negative integer, got '" + v + "'");
                return r;
            }
        } else if (n == "restart-window") {
            auto s = parse_seconds(v);
            if (!s || !(*s > 0)) {
                bad("expected a positive number of seconds, got '" + v + "'");
                return r;
            }
            a.restart_window_s = *s;
        } else if (n == "stop-signal") {
            a.stop_signal = stop_signal_name(v);
            if (a.stop_signal.empty()) {
                bad("expected one of HUP INT QUIT TERM USR1 USR2 KILL WINCH (SIG prefix "
                    "optional), got '" +
                    v + "'");
                return r;
            }
        } else if (n == "stop-grace") {
            auto s = parse_seconds(v);
            if (!s || *s > 3600) {
                bad("expected seconds from 0 to 3600, got '" + v + "'");
                return r;
            }
            a.stop_grace_s = *s;
        } else if (n == "user" || n == "group") {
            if (!nonempty()) return r;
            (n == "user" ? a.user : a.group) = v;
        } else if (n == "target") {
            if (a.subcommand != "gc") {
                r.error = pfx + g.spelled + ": only valid for 'cache gc'";
                return r;
            }
            std::uint64_t bytes = 0;
            std::string why;
            if (!parse_bytes(json(v), bytes, why)) {
                bad(why);
                return r;
            }
            a.target_bytes = bytes;
        } else if (n == "id") {
            if (!nonempty()) return r;
            a.id = v;
        } else if (n == "tail") {
            auto t = parse_tail(v);
            if (!t) {
                bad("expected an integer from 0 to 10000, got '" + v + "'");
                return r;
            }
            a.tail = *t;
        } else if (n == "follow") {
            a.follow = true;
        }
    }

    if (a.command == "deploy") {
        // With --params these may come from the file: deploy_params checks.
        const bool from_file = !a.params_file.empty();
        if (a.location.empty() && !from_file) {
            r.error = pfx + "missing LOCATION";
            return r;
        }
        if (a.deps.empty() && !from_file) {
            r.error = pfx + "missing --deps FILE|URL";
            return r;
        }
        if (a.source.empty() && !from_file) {
            r.error = pfx + "missing --source FILE|URL";
            return r;
        }
        if (looks_like_url(a.deps) && a.deps_sha256.empty()) {
            r.error = pfx + "--deps is a URL, so --deps-sha256 is required";
            return r;
        }
        if (looks_like_url(a.source) && a.source_sha256.empty()) {
            r.error = pfx + "--source is a URL, so --source-sha256 is required";
            return r;
        }
        if (!a.args.empty() && a.module.empty()) {
            r.error = pfx + "--arg requires --module";
            return r;
        }
    }

    if (!socket_given) a.socket = (env_socket && *env_socket) ? env_socket : kDefaultSocket;
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

// ---------------------------------------------------------------------------
// Formatting

namespace {

// A string field, or `dflt` when absent/null; numbers are printed as JSON.
std::string field(const json& j, const char* key, const std::string& dflt = "-") {
    if (!j.is_object()) return dflt;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (it->is_string()) return it->get<std::string>();
    return it->dump(-1, ' ', false, json::error_handler_t::replace);
}

// One line of JSON whatever it holds (invalid UTF-8 is replaced).
std::string dump_compact(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Typed reads that tolerate a daemon sending another type (json::value()
// would throw on a type mismatch).
bool flag(const json& j, const char* key) {
    if (!j.is_object()) return false;
    auto it = j.find(key);
    return it != j.end() && it->is_boolean() && it->get<bool>();
}

std::optional<double> number(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
}

// Keeps one record on one line whatever the daemon put in a message.
std::string one_line(std::string s) {
    for (auto& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

std::size_t display_width(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++n;
    return n;
}

std::string cache_cell(const json& rev) {
    auto one = [&](const char* key) -> std::string {
        if (!rev.is_object()) return "-";
        auto it = rev.find(key);
        if (it == rev.end() || !it->is_object()) return "-";
        auto hit = it->find("cache_hit");
        if (hit == it->end() || !hit->is_boolean()) return "-";
        return hit->get<bool>() ? "hit" : "miss";
    };
    std::string d = one("deps"), s = one("source");
    if (d == "-" && s == "-") return "-";
    return d + "/" + s;
}

// The object member `key`, or an empty object (so lookups can chain).
const json& object_member(const json& j, const char* key) {
    static const json empty = json::object();
    if (!j.is_object()) return empty;
    auto it = j.find(key);
    return it != j.end() && it->is_object() ? *it : empty;
}

// A byte count the daemon sent as an integer (or, tolerated, a size string).
std::optional<std::uint64_t> bytes_member(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    std::uint64_t v = 0;
    std::string why;
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (!(d >= 0) || d >= 1.8e19) return std::nullopt;
        return static_cast<std::uint64_t>(d);
    }
    if (!parse_bytes(*it, v, why)) return std::nullopt;
    return v;
}

// A member of the event, else of its "revision" object, else `dflt`.
std::string event_or_revision(const json& ev, const char* key, const std::string& dflt) {
    std::string v = field(ev, key, "");
    if (!v.empty()) return v;
    return field(object_member(ev, "revision"), key, dflt);
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
    std::string out;
    for (const auto& x : parts) {
        if (!out.empty()) out += sep;
        out += x;
    }
    return out;
}

// Seconds for people: "0.25s", "4s" under a minute (two decimals at most),
// else format_duration's form.
std::string seconds_text(double seconds) {
    if (!(seconds >= 0)) seconds = 0;
    if (seconds >= 60) return format_duration(seconds);
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f", seconds);
    std::string s = buf;
    while (s.back() == '0')
        s.pop_back();
    if (s.back() == '.') s.pop_back();
    return s + "s";
}

} // namespace

std::string compact_bytes(std::uint64_t bytes) {
    std::string s = format_bytes(bytes);
    auto sp = s.find(' ');
    if (sp != std::string::npos) s.erase(sp, 1);
    return s;
}

std::string mem_cell(const json& rev) {
    auto cur = bytes_member(object_member(rev, "cgroup"), "memory_current");
    auto lim = bytes_member(object_member(rev, "limits"), "memory");
    if (!cur && !lim) return "-";
    return (cur ? compact_bytes(*cur) : "-") + "/" + (lim ? compact_bytes(*lim) : "-");
}

std::string format_progress(const json& ev) {
    auto fetched = bytes_member(ev, "fetched_bytes");
    auto total = bytes_member(ev, "total_bytes");
    std::string s = field(ev, "artifact", "?") + " " + (fetched ? format_bytes(*fetched) : "?") +
                    "/" + (total ? format_bytes(*total) : "?");
    if (fetched && total && *total > 0) {
        auto pct = static_cast<unsigned>(
            std::min<long double>(100.0L, static_cast<long double>(*fetched) * 100.0L /
                                              static_cast<long double>(*total)));
        s += " (" + std::to_string(pct) + "%)";
    }
    return s;
}

std::string format_duration(double seconds) {
    if (!(seconds > 0)) return "0s";
    if (seconds > 1e12) seconds = 1e12;
    auto total = static_cast<long long>(seconds);
    long long d = total / 86400, h = (total / 3600) % 24, m = (total / 60) % 60, s = total % 60;
    char buf[64];
    if (total < 60)
        std::snprintf(buf, sizeof(buf), "%llds", s);
    else if (total < 3600)
        std::snprintf(buf, sizeof(buf), "%lldm%02llds", m, s);
    else if (total < 86400)
        std::snprintf(buf, sizeof(buf), "%lldh%02lldm", total / 3600, m);
    else
        std::snprintf(buf, sizeof(buf), "%lldd%02lldh", d, h);
    return buf;
}

std::optional<double> parse_timestamp(std::string_view ts) {
    // YYYY-MM-DDTHH:MM:SS[.fff...]Z
    auto digits = [&](std::size_t pos, std::size_t n) -> std::optional<int> {
        if (pos + n > ts.size()) return std::nullopt;
        int v = 0;
        for (std::size_t i = pos; i < pos + n; ++i) {
            if (ts[i] < '0' || ts[i] > '9') return std::nullopt;
            v = v * 10 + (ts[i] - '0');
        }
        return v;
    };
    if (ts.size() < 20 || ts[4] != '-' || ts[7] != '-' || (ts[10] != 'T' && ts[10] != 't') ||
        ts[13] != ':' || ts[16] != ':')
        return std::nullopt;
    auto Y = digits(0, 4), Mo = digits(5, 2), D = digits(8, 2), h = digits(11, 2),
         mi = digits(14, 2), s = digits(17, 2);
    if (!Y || !Mo || !D || !h || !mi || !s) return std::nullopt;
    if (*Mo < 1 || *Mo > 12 || *D < 1 || *D > 31 || *h > 23 || *mi > 59 || *s > 60)
        return std::nullopt;
    std::size_t pos = 19;
    double frac = 0;
    if (ts[pos] == '.') {
        ++pos;
        double scale = 0.1;
        std::size_t start = pos;
        while (pos < ts.size() && ts[pos] >= '0' && ts[pos] <= '9') {
            frac += (ts[pos] - '0') * scale;
            scale /= 10;
            ++pos;
        }
        if (pos == start) return std::nullopt;
    }
    if (pos + 1 != ts.size() || (ts[pos] != 'Z' && ts[pos] != 'z')) return std::nullopt;
    std::tm tm{};
    tm.tm_year = *Y - 1900;
    tm.tm_mon = *Mo - 1;
    tm.tm_mday = *D;
    tm.tm_hour = *h;
    tm.tm_min = *mi;
    tm.tm_sec = *s;
    time_t t = ::timegm(&tm);
    return static_cast<double>(t) + frac;
}

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> width;
    for (const auto& row : rows) {
        if (row.size() > width.size()) width.resize(row.size(), 0);
        for (std::size_t i = 0; i < row.size(); ++i)
            width[i] = std::max(width[i], display_width(row[i]));
    }
    std::string out;
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) line.append(width[i] - display_width(row[i]) + 2, ' ');
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line;
        out += '\n';
    }
    return out;
}

std::vector<std::vector<std::string>> status_rows(const json& status, double now) {
    std::vector<std::vector<std::string>> rows{{"LOCATION", "ID", "STATE", "PID", "UPTIME",
                                                "RUNTIME", "CACHE", "MEM", "RESTARTS", "REASON"}};
    if (!status.is_object()) return rows;
    auto locs = status.find("locations");
    if (locs == status.end() || !locs->is_array()) return rows;
    for (const json& loc : *locs) {
        std::string name = field(loc, "location");
        std::string active = field(loc, "active", "");
        const json* revs = nullptr;
        if (loc.is_object()) {
            auto it = loc.find("revisions");
            if (it != loc.end() && it->is_array()) revs = &*it;
        }
        if (!revs || revs->empty()) {
            rows.push_back({name, "-", "-", "-", "-", "-", "-", "-", "-", "-"});
            continue;
        }
        for (const json& rev : *revs) {
            std::string id = field(rev, "id");
            if (!active.empty() && id == active) id += "*";
            std::string state = field(rev, "state");
            std::string uptime = "-";
            if (state != "failed" && state != "stopped") {
                if (auto since = parse_timestamp(field(rev, "state_since", "")))
                    uptime = format_duration(now - *since);
            }
            rows.push_back({name, id, state, field(rev, "pid"), uptime, field(rev, "runtime"),
                            cache_cell(rev), mem_cell(rev), field(rev, "restarts"),
                            field(rev, "reason")});
        }
    }
    return rows;
}

std::vector<std::string> status_detail(const json& status, double now) {
    const json* locs = nullptr;
    if (status.is_object()) {
        auto it = status.find("locations");
        if (it != status.end() && it->is_array() && !it->empty()) locs = &*it;
    }
    if (!locs) return {};
    const json& loc = (*locs)[0];
    if (!loc.is_object() || !loc.contains("revisions") || !loc["revisions"].is_array() ||
        loc["revisions"].empty())
        return {};
    const json& revs = loc["revisions"];
    const std::string active = field(loc, "active", "");
    const json* rev = &revs[0];
    for (const json& r : revs)
        if (!active.empty() && field(r, "id", "") == active) rev = &r;
    const bool is_active = !active.empty() && field(*rev, "id", "") == active;

    std::vector<std::vector<std::string>> rows;
    auto add = [&](const char* label, std::string value) {
        rows.push_back({label, one_line(std::move(value))});
    };

    const std::string state = field(*rev, "state");
    std::string st = state;
    if (auto since = parse_timestamp(field(*rev, "state_since", "")))
        st += " for " + format_duration(now - *since);
    add("state", st);
    if (rev->contains("pid") && !(*rev)["pid"].is_null()) add("pid", field(*rev, "pid"));

    const json& cg = object_member(*rev, "cgroup");
    if (!cg.empty()) {
        std::vector<std::string> parts{field(cg, "driver", "?"), field(cg, "enforcement", "?")};
        std::string path = field(cg, "path", "");
        if (!path.empty()) parts.push_back(path);
        add("cgroup", join(parts, ", "));
        std::string cpu_set = field(cg, "cpu_set", "");
        if (!cpu_set.empty())
            add("cpu set", cpu_set + " (" + (flag(cg, "cpu_exclusive") ? "exclusive, " : "") +
                               field(cg, "cpu_set_by", "?") + ")");
        auto deg = cg.find("degraded");
        if (deg != cg.end() && deg->is_array())
            for (const json& d : *deg)
                add("degraded", d.is_string() ? d.get<std::string>() : dump_compact(d));
    }

    const json& lim = object_member(*rev, "limits");
    {
        std::vector<std::string> parts;
        for (const char* k : {"memory", "memory_high"})
            if (auto b = bytes_member(lim, k))
                parts.push_back(std::string(k) + " " + format_bytes(*b));
        for (const char* k : {"cpus", "cpu_weight", "cpu_slice_us", "pids"})
            if (lim.contains(k) && !lim[k].is_null())
                parts.push_back(std::string(k) + " " + field(lim, k));
        add("limits", parts.empty() ? "none" : join(parts, ", "));
    }

    {
        std::vector<std::string> parts;
        if (auto cur = bytes_member(cg, "memory_current")) {
            std::string m = "memory " + format_bytes(*cur);
            if (auto peak = bytes_member(cg, "memory_peak"))
                m += " (peak " + format_bytes(*peak) + ")";
            parts.push_back(m);
        }
        if (auto cpu = number(cg, "cpu_usage_usec"))
            parts.push_back("cpu " + seconds_text(*cpu / 1e6));
        if (cg.contains("pids_current") && !cg["pids_current"].is_null())
            parts.push_back("pids " + field(cg, "pids_current"));
        if (!parts.empty()) add("usage", join(parts, ", "));
    }

    if (rev->contains("restarts") && !(*rev)["restarts"].is_null()) {
        std::string policy = field(*rev, "restart", "");
        add("restarts",
            field(*rev, "restarts") + (policy.empty() ? "" : " (policy " + policy + ")"));
    }

    if (state == "backoff") {
        std::string next = field(*rev, "next_attempt_at", "");
        std::string b = next.empty() ? "waiting to restart" : "next attempt at " + next;
        if (auto at = parse_timestamp(next)) b += " (in " + format_duration(*at - now) + ")";
        if (auto secs = number(*rev, "backoff_s")) b += ", backoff " + seconds_text(*secs);
        add("backoff", b);
    }

    const std::string reason = field(*rev, "reason", "");
    if (!reason.empty()) {
        std::string f = reason;
        std::string msg = field(*rev, "message", "");
        if (!msg.empty()) f += ": " + msg;
        if (rev->contains("exit_code") && !(*rev)["exit_code"].is_null())
            f += " (exit code " + field(*rev, "exit_code") + ")";
        else if (rev->contains("signal") && !(*rev)["signal"].is_null())
            f += " (signal " + field(*rev, "signal") + ")";
        add(state == "failed" ? "failure" : "last failure", f);
    }

    const json& oom = object_member(*rev, "oom");
    if (!oom.empty()) {
        std::string o = "killed by the " + field(oom, "source", "?");
        auto peak = bytes_member(oom, "peak");
        auto limit = bytes_member(oom, "limit");
        if (peak || limit)
            o += ": peak " + (peak ? format_bytes(*peak) : std::string("?")) + " of limit " +
                 (limit ? format_bytes(*limit) : std::string("?"));
        if (oom.contains("oom_kills") && !oom["oom_kills"].is_null())
            o += ", oom kills " + field(oom, "oom_kills");
        add("oom", o);
    }

    {
        std::vector<std::string> parts;
        for (const char* k : {"deps", "source"}) {
            const json& art = object_member(*rev, k);
            if (!art.contains("fetched_bytes")) continue;
            json ev = {{"artifact", k},
                       {"fetched_bytes", art["fetched_bytes"]},
                       {"total_bytes", art.contains("total_bytes") ? art["total_bytes"] : json()}};
            parts.push_back(format_progress(ev));
        }
        if (!parts.empty()) add("fetch", join(parts, ", "));
    }

    std::string user = field(*rev, "user", ""), group = field(*rev, "group", "");
    if (!user.empty() || !group.empty())
        add("user", (user.empty() ? "-" : user) + (group.empty() ? "" : ":" + group));
    const json& stop = object_member(*rev, "stop");
    if (!stop.empty()) {
        std::string sv = field(stop, "signal", "?");
        if (auto g = number(stop, "grace_s")) sv += ", grace " + seconds_text(*g);
        add("stop", sv);
    }

    std::vector<std::string> lines{field(*rev, "id") + (is_active ? " (active):" : " (newest):")};
    std::string table = format_table(rows);
    std::size_t start = 0;
    while (start < table.size()) {
        auto nl = table.find('\n', start);
        lines.push_back("  " + table.substr(start, nl - start));
        start = nl + 1;
    }
    return lines;
}

std::vector<std::vector<std::string>> cache_rows(const json& list, double now) {
    std::vector<std::vector<std::string>> rows{
        {"KIND", "SHA256", "SIZE", "LAST-USED", "PINNED-BY"}};
    if (!list.is_object() || !list.contains("entries") || !list["entries"].is_array()) return rows;
    for (const json& e : list["entries"]) {
        std::string sha = field(e, "sha256");
        if (sha.size() > 12) sha.resize(12);
        auto size = bytes_member(e, "bytes");
        std::string used = "-";
        if (auto ts = parse_timestamp(field(e, "last_used", "")))
            used = format_duration(now - *ts) + " ago";
        std::vector<std::string> pins;
        if (e.is_object() && e.contains("pinned_by") && e["pinned_by"].is_array())
            for (const json& x : e["pinned_by"])
                pins.push_back(x.is_string() ? x.get<std::string>() : dump_compact(x));
        rows.push_back({field(e, "kind"), sha, size ? compact_bytes(*size) : "-", used,
                        pins.empty() ? "-" : one_line(join(pins, ","))});
    }
    return rows;
}

std::string cache_total_line(const json& list) {
    auto used = bytes_member(list, "used_bytes");
    auto budget = bytes_member(list, "budget_bytes");
    std::size_t count = 0;
    std::uint64_t pinned = 0;
    if (list.is_object() && list.contains("entries") && list["entries"].is_array()) {
        for (const json& e : list["entries"]) {
            ++count;
            if (e.is_object() && e.contains("pinned_by") && e["pinned_by"].is_array() &&
                !e["pinned_by"].empty())
                pinned += bytes_member(e, "bytes").value_or(0);
        }
    }
    // hearth's own sum, when it sends one, also counts what entries share.
    if (auto p = bytes_member(list, "pinned_bytes")) pinned = *p;
    return "used " + (used ? format_bytes(*used) : std::string("?")) + " of budget " +
           (budget ? format_bytes(*budget) : std::string("?")) + " (" + std::to_string(count) +
           (count == 1 ? " entry, " : " entries, ") + format_bytes(pinned) + " pinned)";
}

std::vector<std::string> cache_gc_lines(const json& result) {
    std::vector<std::string> lines;
    if (result.is_object() && result.contains("evicted") && result["evicted"].is_array()) {
        for (const json& e : result["evicted"]) {
            std::string sha = field(e, "sha256");
            if (sha.size() > 12) sha.resize(12);
            auto b = bytes_member(e, "bytes");
            lines.push_back("evicted " + field(e, "kind") + " " + sha + " " +
                            (b ? format_bytes(*b) : std::string("?")));
        }
    }
    auto used = bytes_member(result, "used_bytes");
    std::string used_s = used ? format_bytes(*used) : std::string("?");
    if (lines.empty()) {
        lines.push_back("nothing to evict; used " + used_s);
    } else {
        auto freed = bytes_member(result, "freed_bytes");
        lines.push_back("freed " + (freed ? format_bytes(*freed) : std::string("?")) +
                        "; used now " + used_s);
    }
    // Why less than asked was freed (e.g. pinned objects exceed the target).
    const std::string message = field(result, "message", "");
    if (!message.empty()) lines.push_back(one_line(message));
    return lines;
}

std::string format_event(const json& event) {
    const std::string head =
        field(event, "ts") + " " + field(event, "location") + " " + field(event, "id");
    const std::string type = field(event, "type", "state");
    if (type == "progress") return one_line(head + " progress " + format_progress(event));
    if (type != "state") {
        std::string state = field(event, "state", "");
        return one_line(head + " " + type + (state.empty() ? "" : " " + state));
    }
    std::string line = head + " " + field(event, "previous") + " -> " + field(event, "state");
    std::string reason = field(event, "reason", ""), message = field(event, "message", "");
    if (!reason.empty()) line += " " + reason;
    if (!message.empty()) line += ": " + message;
    return one_line(std::move(line));
}

std::string format_log_line(const json& line) {
    return one_line(field(line, "ts") + " " + field(line, "stream") + " " +
                    field(line, "text", ""));
}

WaitVerdict DeployWaiter::feed(const json& ev) {
    if (!ev.is_object() || field(ev, "id", "") != id_) return WaitVerdict::waiting;
    if (field(ev, "type", "state") != "state") return WaitVerdict::waiting;
    const std::string state = field(ev, "state", "");
    if (state == "ready") {
        ever_ready_ = true;
        return WaitVerdict::ready;
    }
    if (state == "failed") return WaitVerdict::failed;
    if (state == "backoff") {
        // Crashing after it was ready is the restart policy's business, not
        // a failed deploy.
        if (ever_ready_ || field(ev, "previous", "") == "ready") {
            ever_ready_ = true;
            return WaitVerdict::waiting;
        }
        return WaitVerdict::backoff;
    }
    if (state == "stopping" || state == "stopped") return WaitVerdict::stopped;
    return WaitVerdict::waiting;
}

int wait_exit_status(WaitVerdict v) noexcept {
    switch (v) {
    case WaitVerdict::waiting:
        return -1;
    case WaitVerdict::ready:
        return exit_ok;
    case WaitVerdict::failed:
    case WaitVerdict::backoff:
    case WaitVerdict::stopped:
        return exit_failed;
    }
    return -1;
}

std::optional<int> wait_outcome(const std::string& id, const std::vector<json>& events) {
    DeployWaiter w(id);
    for (const json& ev : events) {
        WaitVerdict v = w.feed(ev);
        if (v != WaitVerdict::waiting) return wait_exit_status(v);
    }
    return std::nullopt;
}

std::string wait_failure_report(const std::string& id, const json& ev, WaitVerdict v, double now) {
    const json& rev = object_member(ev, "revision");
    const std::string message = event_or_revision(ev, "message", "");
    const std::string msg_part = message.empty() ? "" : ": " + one_line(message);
    if (v == WaitVerdict::stopped)
        return "hearthctl: deploy: " + id + " was stopped before it became ready" + msg_part + "\n";
    const std::string reason = event_or_revision(ev, "reason", "unknown");
    std::string text;
    if (v == WaitVerdict::backoff) {
        text = "hearthctl: deploy: " + id + " is in backoff after " + reason + msg_part + "\n";
        std::string next = event_or_revision(ev, "next_attempt_at", "");
        if (next.empty()) {
            text += "  hearth will retry it (hearthctl does not wait for restarts)\n";
        } else {
            text += "  hearth will retry at " + next;
            if (auto at = parse_timestamp(next)) text += " (in " + format_duration(*at - now) + ")";
            text += "; hearthctl does not wait for restarts\n";
        }
    } else {
        text = "hearthctl: deploy: " + id + " failed: " + reason + msg_part + "\n";
    }
    auto present = [&](const char* k) { return rev.contains(k) && !rev[k].is_null(); };
    if (present("exit_code")) text += "  exit code: " + field(rev, "exit_code") + "\n";
    if (present("signal")) text += "  signal: " + field(rev, "signal") + "\n";
    if (present("stderr_tail") && rev["stderr_tail"].is_array() && !rev["stderr_tail"].empty()) {
        text += "  stderr (last " + std::to_string(rev["stderr_tail"].size()) + " lines):\n";
        for (const json& l : rev["stderr_tail"])
            text +=
                "    " + one_line(l.is_string() ? l.get<std::string>() : dump_compact(l)) + "\n";
    }
    return text;
}

std::optional<json> parse_params_text(std::string_view text, const std::string& name,
                                      std::string& error) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        // Drop nlohmann's "[json.exception.parse_error.101] " tag.
        if (!what.empty() && what[0] == '[') {
            auto close = what.find("] ");
            if (close != std::string::npos) what.erase(0, close + 2);
        }
        error = name + " is not valid JSON: " + one_line(what);
        return std::nullopt;
    }
    if (!j.is_object()) {
        error = name + " must hold a JSON object of deploy params, not " +
                (j.is_array() ? "an array" : std::string("a ") + j.type_name());
        return std::nullopt;
    }
    return j;
}

std::optional<json> read_params_file(const std::string& path, std::FILE* in, std::string& error) {
    constexpr std::size_t kMax = 16u * 1024 * 1024;
    const bool from_stdin = path == "-";
    const std::string name = from_stdin ? "standard input" : path;
    std::FILE* f = from_stdin ? in : std::fopen(path.c_str(), "re");
    if (!f) {
        error = "cannot read " + name + ": " + std::strerror(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        text.append(buf, n);
        if (text.size() > kMax) break;
    }
    const int read_errno = std::ferror(f) ? errno : 0;
    if (!from_stdin) std::fclose(f);
    if (read_errno != 0) {
        error = "cannot read " + name + ": " + std::strerror(read_errno);
        return std::nullopt;
    }
    if (text.size() > kMax) {
        error = name + " is larger than 16 MiB";
        return std::nullopt;
    }
    return parse_params_text(text, name, error);
}

namespace {

// `p[key]` as an object, replacing whatever non-object was there.
json& object_slot(json& p, const char* key) {
    json& slot = p[key];
    if (!slot.is_object()) slot = json::object();
    return slot;
}

std::string absolute(const std::string& given, const std::string& cwd) {
    if (!given.empty() && given[0] == '/') return given;
    std::string_view rel(given);
    while (rel.size() > 2 && rel.substr(0, 2) == "./")
        rel.remove_prefix(2);
    std::string path = cwd;
    if (path.empty() || path.back() != '/') path += '/';
    path += rel;
    return path;
}

} // namespace

DeployBuild deploy_params(const Args& a, const json& base, const std::string& cwd,
                          const Hasher& hash) {
    DeployBuild b;
    auto fail = [&](int status, std::string msg) {
        b.params.reset();
        b.status = status;
        b.error = std::move(msg);
        return b;
    };
    json p = base.is_object() ? base : json::object();

    if (!a.location.empty()) p["location"] = a.location;
    if (!p.contains("location"))
        return fail(exit_usage, "missing LOCATION (an argument, or \"location\" in --params)");
    if (!p["location"].is_string() || !valid_location(p["location"].get<std::string>()))
        return fail(exit_usage, "--params: invalid \"location\" " + dump_compact(p["location"]) +
                                    ": expected ^[a-z0-9][a-z0-9_.-]{0,62}$");

    // One artifact: a flag replaces the file's object, except that a lone
    // --*-sha256 sets the file's digest. Returns false after fail().
    auto artifact = [&](const char* key, const std::string& given, const std::string& sha) {
        const std::string flag = std::string("--") + key;
        json art;
        if (!given.empty())
            art = looks_like_url(given) ? json{{"url", given}} : json{{"path", given}};
        else if (p.contains(key))
            art = p[key];
        else {
            fail(exit_usage, "missing " + flag + " FILE|URL (or \"" + key + "\" in --params)");
            return false;
        }
        if (!art.is_object()) { // hearth names the problem
            p[key] = std::move(art);
            return true;
        }
        if (!sha.empty()) art["sha256"] = sha;
        const std::string where = given.empty() ? std::string(key) + " (from --params)" : flag;
        auto path = art.find("path");
        if (path != art.end() && path->is_string()) *path = absolute(path->get<std::string>(), cwd);
        if (!art.contains("sha256")) {
            if (path != art.end() && path->is_string()) {
                std::string why;
                auto h = hash(path->get<std::string>(), why);
                if (!h) {
                    // The hasher's message names the path and the failing call.
                    fail(exit_failed,
                         where + ": " +
                             (why.empty() ? "cannot hash " + path->get<std::string>() : why));
                    return false;
                }
                art["sha256"] = *h;
            } else if (art.contains("url")) {
                fail(exit_usage, where + " is a URL, so " + flag + "-sha256 is required");
                return false;
            }
        }
        p[key] = std::move(art);
        return true;
    };
    if (!artifact("deps", a.deps, a.deps_sha256)) return b;
    if (!artifact("source", a.source, a.source_sha256)) return b;

    if (!a.runtime.empty()) p["runtime"] = a.runtime;
    if (!a.module.empty()) p["entry"] = {{"module", a.module}, {"args", a.args}};
    if (!a.env.empty()) {
        json& env = object_slot(p, "env");
        for (const auto& [k, v] : a.env)
            env[k] = v; // the last --env for a key wins
    }
    if (!a.cwd.empty()) p["cwd"] = a.cwd;
    if (a.min_uptime_s) p["min_uptime_s"] = *a.min_uptime_s;

    if (a.memory || a.memory_high || a.cpus || a.cpu_weight || a.cpu_idle || a.pids ||
        a.cpu_exclusive || a.cpu_slice_us) {
        json& lim = object_slot(p, "limits");
        if (a.memory) lim["memory"] = *a.memory;
        if (a.memory_high) lim["memory_high"] = *a.memory_high;
        if (a.cpus) lim["cpus"] = *a.cpus;
        if (a.cpu_weight) lim["cpu_weight"] = *a.cpu_weight;
        if (a.cpu_idle) lim["cpu_weight"] = "idle";
        if (a.pids) lim["pids"] = *a.pids;
        if (a.cpu_exclusive) lim["cpu_exclusive"] = true;
        if (a.cpu_slice_us) lim["cpu_slice_us"] = *a.cpu_slice_us;
    }

    // The short string form when only the policy is given and the file has
    // no object form to keep; otherwise merge into {"policy", ...}.
    if (!a.restart.empty() || a.max_restarts || a.restart_window_s) {
        const bool want_object = a.max_restarts || a.restart_window_s ||
                                 (p.contains("restart") && p["restart"].is_object());
        if (!want_object) {
            p["restart"] = a.restart;
        } else {
            json r = json::object();
            if (p.contains("restart") && p["restart"].is_object())
                r = p["restart"];
            else if (p.contains("restart") && p["restart"].is_string())
                r["policy"] = p["restart"];
            if (!a.restart.empty()) r["policy"] = a.restart;
            if (!r.contains("policy")) r["policy"] = "on-failure"; // hearth's default, spelled out
            if (a.max_restarts) r["max_restarts"] = *a.max_restarts;
            if (a.restart_window_s) r["window_s"] = *a.restart_window_s;
            p["restart"] = std::move(r);
        }
    }

    if (!a.stop_signal.empty() || a.stop_grace_s) {
        json& stop = object_slot(p, "stop");
        if (!a.stop_signal.empty()) stop["signal"] = a.stop_signal;
        if (a.stop_grace_s) stop["grace_s"] = *a.stop_grace_s;
    }
    if (!a.user.empty()) p["user"] = a.user;
    if (!a.group.empty()) p["group"] = a.group;

    b.params = std::move(p);
    return b;
}

// ---------------------------------------------------------------------------
// Running commands

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_interrupt(int) {
    g_interrupted = 1;
}

// Installs on_interrupt for SIGINT/SIGTERM while following, so ^C ends the
// follow with a clean exit and flushed output. Without SA_RESTART, poll(2)
// returns EINTR and the Client sees the flag.
class InterruptGuard {
public:
    InterruptGuard() {
        g_interrupted = 0;
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        ::sigaction(SIGINT, &sa, &old_int_);
        ::sigaction(SIGTERM, &sa, &old_term_);
    }
    ~InterruptGuard() {
        ::sigaction(SIGINT, &old_int_, nullptr);
        ::sigaction(SIGTERM, &old_term_, nullptr);
    }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

class Runner {
public:
    Runner(const Args& a, std::FILE* out, std::FILE* err, std::FILE* in)
        : a_(a), out_(out), err_(err), in_(in) {
        if (a.timeout_s > 0) {
            double ms = std::ceil(a.timeout_s * 1000.0);
            timeout_ =
                Timeout(ms > 1e12 ? static_cast<long long>(1e12) : static_cast<long long>(ms));
        }
    }

    int run() {
        const std::string& c = a_.command;
        if (c == "ping") return ping();
        if (c == "version") return version();
        if (c == "deploy") return deploy();
        if (c == "status") return status();
        if (c == "logs") return logs();
        if (c == "stop") return stop();
        if (c == "remove") return remove();
        if (c == "events") return events();
        if (c == "cache") return cache();
        if (c == "shutdown") return shutdown();
        line_err("unknown command '" + c + "'");
        return exit_usage;
    }

private:
    void line_out(const std::string& s) {
        std::fputs(s.c_str(), out_);
        std::fputc('\n', out_);
        std::fflush(out_);
    }
    void line_err(const std::string& s) {
        std::fprintf(err_, "hearthctl: %s\n", s.c_str());
        std::fflush(err_);
    }

    // Prints `failure` as one line and maps it to an exit status.
    int report(const std::string& what, const Failure& f) {
        if (f.kind == Failure::Kind::rpc) {
            line_err(what + ": " + one_line(f.message) + " (code " + std::to_string(f.code) + ")");
            return exit_failed;
        }
        std::string msg = one_line(f.message);
        if (f.kind == Failure::Kind::timeout && a_.timeout_s > 0)
            msg = "no answer from hearth within " + fmt_seconds(a_.timeout_s) + "s (see --timeout)";
        line_err(what + ": " + msg);
        return exit_unavailable;
    }

    static std::string fmt_seconds(double s) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%g", s);
        return buf;
    }

    bool connect() {
        auto c = Client::connect(a_.socket, timeout_);
        if (!c) {
            report(a_.command, c.error());
            return false;
        }
        client_.emplace(std::move(c).value());
        return true;
    }

    Result<json> call(const char* method, const json& params) {
        return client_->call(method, params, timeout_);
    }

    // The common shape: connect, one call, print the result.
    template <typename Human> int simple(const char* method, const json& params, Human human) {
        if (!connect()) return exit_unavailable;
        auto r = call(method, params);
        if (!r) return report(method, r.error());
        if (a_.json)
            line_out(dump(r.value()));
        else
            human(r.value());
        return exit_ok;
    }

    int ping() {
        return simple("ping", json::object(), [&](const json& r) {
            std::string s = "pong from hearth " + field(r, "version") + " (pid " + field(r, "pid");
            if (auto up = number(r, "uptime_s")) s += ", up " + format_duration(*up);
            s += ", cgroup driver " + field(r, "cgroup_driver") + ")";
            if (flag(r, "shutting_down")) s += ", shutting down";
            line_out(s);
        });
    }

    int version() {
        json daemon = nullptr;
        int status = exit_ok;
        auto c = Client::connect(a_.socket, timeout_);
        if (c) {
            auto r = c.value().call("version", json::object(), timeout_);
            if (r)
                daemon = field(r.value(), "version");
            else if (r.error().kind == Failure::Kind::rpc)
                status = report("version", r.error());
            else
                line_err("version: hearth not reachable: " + one_line(r.error().message));
        } else {
            line_err("version: hearth not reachable: " + one_line(c.error().message));
        }
        if (a_.json) {
            line_out(dump(json{{"client", HEARTH_VERSION}, {"daemon", daemon}}));
        } else {
            line_out(std::string("hearthctl ") + HEARTH_VERSION);
            if (daemon.is_string()) line_out("hearth " + daemon.get<std::string>());
        }
        return status;
    }

    static double now_s() {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    int deploy() {
        char buf[PATH_MAX];
        std::string cwd = ::getcwd(buf, sizeof(buf)) ? buf : "/";
        json base = nullptr;
        if (!a_.params_file.empty()) {
            std::string why;
            auto file = read_params_file(a_.params_file, in_, why);
            if (!file) {
                line_err("deploy: --params: " + why);
                return exit_usage;
            }
            base = std::move(*file);
        }
        Hasher hasher = [](const std::string& path,
                           std::string& why) -> std::optional<std::string> {
            Sha256FileResult h = sha256_file(path);
            if (!h.ok) {
                why = h.error;
                return std::nullopt;
            }
            return h.hex;
        };
        DeployBuild built = deploy_params(a_, base, cwd, hasher);
        if (!built.ok()) {
            line_err("deploy: " + built.error);
            return built.status;
        }
        const json& params = *built.params;
        const std::string location = field(params, "location", "");
        if (!connect()) return exit_unavailable;

        if (a_.wait) {
            // Subscribe before deploying, so no state change can slip by.
            auto sub = call("events.subscribe", json{{"location", location}});
            if (!sub && sub.error().kind == Failure::Kind::rpc && sub.error().code == -32001)
                sub = call("events.subscribe", json::object()); // first deploy: not known yet
            if (!sub) return report("events.subscribe", sub.error());
        }

        auto r = call("deploy", params);
        if (!r) return report("deploy", r.error());
        std::string id = field(r.value(), "id", "");
        if (!a_.wait) {
            if (a_.json)
                line_out(dump(r.value()));
            else
                line_out(id);
            return exit_ok;
        }
        if (id.empty()) {
            line_err("deploy: hearth's reply has no revision id");
            return exit_failed;
        }
        return follow_deploy(id);
    }

    int follow_deploy(const std::string& id) {
        DeployWaiter waiter(id);
        // The progress line is redrawn in place, which only makes sense on a
        // terminal; fileno() of a memstream is -1, so tests never see it.
        const int err_fd = ::fileno(err_);
        const bool tty = !a_.json && err_fd >= 0 && ::isatty(err_fd) == 1;
        bool progress_shown = false;
        auto clear_progress = [&] {
            if (!progress_shown) return;
            std::fputs("\r\033[K", err_);
            std::fflush(err_);
            progress_shown = false;
        };
        for (;;) {
            auto n = client_->next_notification(kNoTimeout);
            if (!n) {
                clear_progress();
                if (n.error().kind == Failure::Kind::interrupted) return exit_failed;
                line_err("deploy: connection lost while waiting for " + id + ": " +
                         one_line(n.error().message));
                return exit_unavailable;
            }
            const json& msg = n.value();
            if (field(msg, "method", "") != "event") continue;
            const json& ev = object_member(msg, "params");
            if (field(ev, "id", "") != id) continue;
            const std::string type = field(ev, "type", "state");
            if (a_.json) {
                line_out(dump(ev));
            } else if (type == "progress") {
                if (tty) {
                    std::fprintf(err_, "\r\033[K%s: fetching %s", id.c_str(),
                                 format_progress(ev).c_str());
                    std::fflush(err_);
                    progress_shown = true;
                }
                continue;
            } else if (type != "state") {
                continue; // a kind of event this hearthctl does not know
            } else {
                clear_progress();
                line_out(format_event(ev));
            }
            WaitVerdict v = waiter.feed(ev);
            if (v == WaitVerdict::waiting) continue;
            clear_progress();
            if (v == WaitVerdict::ready) return exit_ok;
            std::fputs(wait_failure_report(id, ev, v, now_s()).c_str(), err_);
            std::fflush(err_);
            return exit_failed;
        }
    }

    json location_params() const {
        json p = json::object();
        if (!a_.location.empty()) p["location"] = a_.location;
        return p;
    }

    int status() {
        return simple("status", location_params(), [&](const json& r) {
            const double now = now_s();
            std::string text = format_table(status_rows(r, now));
            if (!a_.location.empty()) {
                auto detail = status_detail(r, now);
                if (!detail.empty()) text += "\n";
                for (const auto& l : detail)
                    text += l + "\n";
            }
            std::fputs(text.c_str(), out_);
            std::fflush(out_);
        });
    }

    int cache() {
        if (a_.subcommand == "ls") {
            return simple("cache.list", json::object(), [&](const json& r) {
                std::string text = format_table(cache_rows(r, now_s()));
                text += cache_total_line(r) + "\n";
                std::fputs(text.c_str(), out_);
                std::fflush(out_);
            });
        }
        json p = json::object();
        if (a_.target_bytes) p["target_bytes"] = *a_.target_bytes;
        return simple("cache.gc", p, [&](const json& r) {
            for (const auto& l : cache_gc_lines(r))
                line_out(l);
        });
    }

    int logs() {
        json p = location_params();
        if (!a_.id.empty()) p["id"] = a_.id;
        if (a_.tail) p["tail"] = *a_.tail;
        p["follow"] = a_.follow;
        std::optional<InterruptGuard> guard;
        if (a_.follow) guard.emplace();
        if (!connect()) return exit_unavailable;
        if (a_.follow) client_->set_interrupt_flag(&g_interrupted);

        auto r = call("logs", p);
        if (!r) {
            if (r.error().kind == Failure::Kind::interrupted) return exit_ok;
            return report("logs", r.error());
        }
        const json& res = r.value();
        std::string id = field(res, "id", "");
        if (a_.json && !a_.follow) {
            line_out(dump(res));
        } else if (res.is_object() && res.contains("lines") && res["lines"].is_array()) {
            for (const json& l : res["lines"]) {
                if (!a_.json) {
                    line_out(format_log_line(l));
                } else {
                    // Following: the tail in the same shape as the notifications.
                    json o = {{"location", a_.location}, {"id", id}};
                    if (l.is_object()) o.update(l);
                    line_out(dump(o));
                }
            }
        }
        if (number(res, "dropped").value_or(0) > 0)
            line_err("logs: " + field(res, "dropped") +
                     " older lines were dropped (log buffer overflow)");
        if (!a_.follow) return exit_ok;

        return follow("log", [&](const json& params) {
            line_out(a_.json ? dump(params) : format_log_line(params));
        });
    }

    // Prints notifications of `method` until interrupted (exit 0) or the
    // connection ends (exit 3).
    template <typename Print> int follow(const char* method, Print print) {
        for (;;) {
            auto n = client_->next_notification(kNoTimeout);
            if (!n) {
                if (n.error().kind == Failure::Kind::interrupted) return exit_ok;
                line_err(a_.command + ": " + one_line(n.error().message));
                return exit_unavailable;
            }
            const json& msg = n.value();
            if (field(msg, "method", "") != method) continue;
            print(msg.contains("params") ? msg["params"] : json::object());
        }
    }

    int events() {
        InterruptGuard guard;
        if (!connect()) return exit_unavailable;
        client_->set_interrupt_flag(&g_interrupted);
        auto r = call("events.subscribe", location_params());
        if (!r) {
            if (r.error().kind == Failure::Kind::interrupted) return exit_ok;
            return report("events.subscribe", r.error());
        }
        return follow("event", [&](const json& params) {
            line_out(a_.json ? dump(params) : format_event(params));
        });
    }

    static std::vector<std::string> string_list(const json& r, const char* key) {
        std::vector<std::string> v;
        if (r.is_object() && r.contains(key) && r[key].is_array())
            for (const json& x : r[key])
                v.push_back(x.is_string() ? x.get<std::string>() : dump(x));
        return v;
    }

    int stop() {
        json p = location_params();
        if (!a_.id.empty()) p["id"] = a_.id;
        return simple("stop", p, [&](const json& r) {
            auto ids = string_list(r, "stopped");
            if (ids.empty()) line_out("nothing was running");
            for (const auto& id : ids)
                line_out("stopped " + id);
        });
    }

    int remove() {
        return simple("remove", location_params(), [&](const json& r) {
            for (const auto& id : string_list(r, "stopped"))
                line_out("stopped " + id);
            line_out("removed " + field(r, "removed", a_.location));
        });
    }

    int shutdown() {
        return simple("shutdown", json::object(),
                      [&](const json&) { line_out("hearth is shutting down"); });
    }

    const Args& a_;
    std::FILE* out_;
    std::FILE* err_;
    std::FILE* in_;
    Timeout timeout_ = kNoTimeout;
    std::optional<Client> client_;
};

} // namespace

int run(const Args& args, std::FILE* out, std::FILE* err, std::FILE* in) {
    try {
        return Runner(args, out, err, in).run();
    } catch (const std::exception& e) {
        // Only allocation failure or a library bug can get here.
        std::fprintf(err, "hearthctl: %s: internal error: %s\n", args.command.c_str(), e.what());
        return exit_failed;
    }
}

} // namespace ctl

int ctl_main(int argc, char** argv) {
    std::vector<std::string> argv_vec;
    for (int i = 1; i < argc; ++i)
        argv_vec.emplace_back(argv[i]);
    ctl::ParseResult parsed = ctl::parse_args(argv_vec, std::getenv("HEARTH_SOCKET"));
    if (parsed.args.help) {
        std::fputs(ctl::usage().c_str(), stdout);
        return ctl::exit_ok;
    }
    if (parsed.args.version) {
        std::printf("hearthctl %s\n", HEARTH_VERSION);
        return ctl::exit_ok;
    }
    if (!parsed.ok()) {
        std::fprintf(stderr, "hearthctl: %s\n", parsed.error.c_str());
        return ctl::exit_usage;
    }
    return ctl::run(parsed.args, stdout, stderr);
}

} // namespace hearth

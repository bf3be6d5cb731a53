#include "ctl.hpp"

#include "client.hpp"
#include "sha256.hpp"
#include "version.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstring>
#include <ctime>
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
    {"id", 0, true, "logs stop"},
    {"tail", 0, true, "logs"},
    {"follow", 'f', false, "logs"},
};

struct CommandSpec {
    std::string_view name;
    int min_args; // positional arguments after the command
    int max_args;
};

constexpr CommandSpec kCommands[] = {
    {"ping", 0, 0}, {"version", 0, 0}, {"deploy", 1, 1}, {"status", 0, 1},   {"logs", 1, 1},
    {"stop", 1, 1}, {"remove", 1, 1},  {"events", 0, 1}, {"shutdown", 0, 0},
};

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
    if (nargs == 1) {
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
        if (a.deps.empty()) {
            r.error = pfx + "missing --deps FILE|URL";
            return r;
        }
        if (a.source.empty()) {
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
  logs LOCATION [--id ID] [--tail N] [-f]
                              print a revision's output lines
  stop LOCATION [--id ID]     stop the location's revisions (or only ID)
  remove LOCATION             stop everything of LOCATION and forget it
  events [LOCATION]           print state changes as they happen
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
  --wait              follow the revision until ready (exit 0) or failed (exit 1)

Logs and stop options:
  --id ID             revision (logs default: the active one, else the newest)
  --tail N            lines of history, 0 to 10000 (default 100)
  -f, --follow        keep printing new lines until interrupted

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

} // namespace

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
    std::vector<std::vector<std::string>> rows{
        {"LOCATION", "ID", "STATE", "PID", "UPTIME", "RUNTIME", "CACHE", "REASON"}};
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
            rows.push_back({name, "-", "-", "-", "-", "-", "-", "-"});
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
                            cache_cell(rev), field(rev, "reason")});
        }
    }
    return rows;
}

std::string format_event(const json& event) {
    std::string line = field(event, "ts") + " " + field(event, "location") + " " +
                       field(event, "id") + " " + field(event, "previous") + " -> " +
                       field(event, "state");
    std::string reason = field(event, "reason", ""), message = field(event, "message", "");
    if (!reason.empty()) line += " " + reason;
    if (!message.empty()) line += ": " + message;
    return one_line(std::move(line));
}

std::string format_log_line(const json& line) {
    return one_line(field(line, "ts") + " " + field(line, "stream") + " " +
                    field(line, "text", ""));
}

std::optional<json> deploy_params(const Args& a, const std::string& cwd, const Hasher& hash,
                                  std::string& error) {
    auto artifact = [&](const char* what, const std::string& given,
                        const std::string& sha) -> std::optional<json> {
        if (looks_like_url(given)) return json{{"url", given}, {"sha256", sha}};
        std::string path = given;
        if (path.empty() || path[0] != '/') {
            std::string_view rel(given);
            while (rel.size() > 2 && rel.substr(0, 2) == "./")
                rel.remove_prefix(2);
            path = cwd;
            if (path.empty() || path.back() != '/') path += '/';
            path += rel;
        }
        std::string digest = sha;
        if (digest.empty()) {
            std::string why;
            auto h = hash(path, why);
            if (!h) {
                // The hasher's message names the path and the failing call.
                error = std::string(what) + ": " + (why.empty() ? "cannot hash " + path : why);
                return std::nullopt;
            }
            digest = *h;
        }
        return json{{"path", path}, {"sha256", digest}};
    };
    json p = {{"location", a.location}};
    auto deps = artifact("--deps", a.deps, a.deps_sha256);
    if (!deps) return std::nullopt;
    auto source = artifact("--source", a.source, a.source_sha256);
    if (!source) return std::nullopt;
    p["deps"] = std::move(*deps);
    p["source"] = std::move(*source);
    if (!a.runtime.empty()) p["runtime"] = a.runtime;
    if (!a.module.empty()) p["entry"] = {{"module", a.module}, {"args", a.args}};
    if (!a.env.empty()) {
        json env = json::object();
        for (const auto& [k, v] : a.env)
            env[k] = v; // the last --env for a key wins
        p["env"] = std::move(env);
    }
    if (!a.cwd.empty()) p["cwd"] = a.cwd;
    if (a.min_uptime_s) p["min_uptime_s"] = *a.min_uptime_s;
    return p;
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
    Runner(const Args& a, std::FILE* out, std::FILE* err) : a_(a), out_(out), err_(err) {
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

    int deploy() {
        char buf[PATH_MAX];
        std::string cwd = ::getcwd(buf, sizeof(buf)) ? buf : "/";
        std::string error;
        Hasher hasher = [](const std::string& path,
                           std::string& why) -> std::optional<std::string> {
            Sha256FileResult h = sha256_file(path);
            if (!h.ok) {
                why = h.error;
                return std::nullopt;
            }
            return h.hex;
        };
        auto params = deploy_params(a_, cwd, hasher, error);
        if (!params) {
            line_err("deploy: " + error);
            return exit_failed;
        }
        if (!connect()) return exit_unavailable;

        if (a_.wait) {
            // Subscribe before deploying, so no state change can slip by.
            auto sub = call("events.subscribe", json{{"location", a_.location}});
            if (!sub && sub.error().kind == Failure::Kind::rpc && sub.error().code == -32001)
                sub = call("events.subscribe", json::object()); // first deploy: not known yet
            if (!sub) return report("events.subscribe", sub.error());
        }

        auto r = call("deploy", *params);
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
        for (;;) {
            auto n = client_->next_notification(kNoTimeout);
            if (!n) {
                if (n.error().kind == Failure::Kind::interrupted) return exit_failed;
                line_err("deploy: connection lost while waiting for " + id + ": " +
                         one_line(n.error().message));
                return exit_unavailable;
            }
            const json& msg = n.value();
            if (field(msg, "method", "") != "event") continue;
            const json& ev = msg.contains("params") ? msg["params"] : msg;
            if (field(ev, "id", "") != id) continue;
            if (a_.json)
                line_out(dump(ev));
            else
                line_out(format_event(ev));
            std::string state = field(ev, "state", "");
            if (state == "ready") return exit_ok;
            if (state == "failed") {
                print_failure(id, ev);
                return exit_failed;
            }
            if (state == "stopping" || state == "stopped") {
                std::string m = field(ev, "message", "");
                line_err("deploy: " + id + " was stopped before it became ready" +
                         (m.empty() ? "" : ": " + one_line(m)));
                return exit_failed;
            }
        }
    }

    void print_failure(const std::string& id, const json& ev) {
        const json rev =
            ev.is_object() && ev.contains("revision") ? ev["revision"] : json::object();
        std::string reason = field(ev, "reason", field(rev, "reason", "unknown"));
        std::string message = field(ev, "message", field(rev, "message", ""));
        line_err("deploy: " + id + " failed: " + reason +
                 (message.empty() ? "" : ": " + one_line(message)));
        std::string text;
        if (rev.is_object() && rev.contains("exit_code") && !rev["exit_code"].is_null())
            text += "  exit code: " + field(rev, "exit_code") + "\n";
        if (rev.is_object() && rev.contains("signal") && !rev["signal"].is_null())
            text += "  signal: " + field(rev, "signal") + "\n";
        if (rev.is_object() && rev.contains("stderr_tail") && rev["stderr_tail"].is_array() &&
            !rev["stderr_tail"].empty()) {
            text += "  stderr (last " + std::to_string(rev["stderr_tail"].size()) + " lines):\n";
            for (const json& l : rev["stderr_tail"])
                text += "    " + one_line(l.is_string() ? l.get<std::string>() : dump(l)) + "\n";
        }
        std::fputs(text.c_str(), err_);
        std::fflush(err_);
    }

    json location_params() const {
        json p = json::object();
        if (!a_.location.empty()) p["location"] = a_.location;
        return p;
    }

    int status() {
        return simple("status", location_params(), [&](const json& r) {
            double now =
                std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                    .count();
            std::string table = format_table(status_rows(r, now));
            std::fputs(table.c_str(), out_);
            std::fflush(out_);
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
    Timeout timeout_ = kNoTimeout;
    std::optional<Client> client_;
};

} // namespace

int run(const Args& args, std::FILE* out, std::FILE* err) {
    try {
        return Runner(args, out, err).run();
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

#include "daemon/options.hpp"

#include "util/units.hpp"

#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>

namespace hearth {

namespace {

std::optional<double> parse_seconds(std::string_view s) {
    double value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size() || !std::isfinite(value) || value < 0 ||
        value > 86400)
        return std::nullopt;
    return value;
}

} // namespace

std::string usage() {
    return "Usage: hearth [OPTIONS] [-- COMMAND [ARGS...]]\n"
           "\n"
           "Supervisor for warm containers: runs as PID 1, deploys pex environments on\n"
           "request and supervises them. With COMMAND, also runs it as the main process:\n"
           "its exit ends hearth with the same exit code.\n"
           "\n"
           "Options:\n"
           "  --state-dir DIR       artifact store and state (default /var/lib/hearth)\n"
           "  --run-dir DIR         control socket and runtime files (default /run/hearth)\n"
           "  --grace SECONDS       wait this long after TERM before KILL on shutdown (default "
           "10)\n"
           "  --python PATH         interpreter to offer environments (repeatable; default: PATH)\n"
           "\n"
           "Isolation:\n"
           "  --cgroup-driver MODE  auto (detect v2, v1, hybrid) or none (default auto)\n"
           "  --cgroup-parent PATH  where revision cgroups go, relative to each hierarchy's\n"
           "                        root (default: hearth's own cgroup)\n"
           "  --cpu-placement P     spread (default): a revision limited to N CPUs runs on\n"
           "                        ceil(N) of them, spread out; shared: on every CPU\n"
           "  --default-memory SIZE, --default-cpus N, --default-pids N\n"
           "                        limits of deploys that set none\n"
           "  --max-memory SIZE, --max-cpus N, --max-pids N\n"
           "                        ceiling a deploy may not exceed\n"
           "  --user USER, --group GROUP\n"
           "                        identity environments run as (default: hearth's)\n"
           "\n"
           "Store and fetch:\n"
           "  --store-max-bytes SIZE      store budget (default: half the filesystem)\n"
           "  --fetch-max-bytes SIZE      largest download (default 4Gi)\n"
           "  --fetch-stall-timeout SEC   fail a download silent this long (default 30)\n"
           "  --fetch-connect-timeout SEC (default 10)\n"
           "  --fetch-attempts N          attempts per download, retries included (default 4)\n"
           "  --extract-max-entries N     (default 1000000)\n"
           "  --extract-max-bytes SIZE    (default: 16Gi or the store budget if smaller)\n"
           "  --extract-max-ratio R       compression ratio bound per entry (default 200)\n"
           "\n"
           "Logging and help:\n"
           "  --log-level LEVEL     trace, debug, info, warn, error, critical, off (default info)\n"
           "  --log-format FORMAT   text or json (default text)\n"
           "  -h, --help            show this help\n"
           "  -V, --version         show the version\n";
}

std::variant<Options, std::string> parse_options(int argc, const char* const argv[]) {
    Options opts;
    int i = 1;
    // Returns the option's value from `--opt=value` or the next word.
    auto take_value = [&](std::string_view name, std::optional<std::string_view> inline_value,
                          std::string& error) -> std::optional<std::string> {
        if (inline_value) return std::string(*inline_value);
        if (i + 1 >= argc) {
            error = "option --" + std::string(name) + " needs a value";
            return std::nullopt;
        }
        return std::string(argv[++i]);
    };

    for (; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg == "-h") {
            opts.help = true;
            continue;
        }
        if (arg == "-V") {
            opts.version = true;
            continue;
        }
        if (arg.size() < 2 || arg.substr(0, 2) != "--") {
            if (!arg.empty() && arg[0] == '-') return "unknown option '" + std::string(arg) + "'";
            break; // first word of the main command
        }
        std::string_view name = arg.substr(2);
        std::optional<std::string_view> inline_value;
        if (auto eq = name.find('='); eq != std::string_view::npos) {
            inline_value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        std::string error;
        auto flag = [&](bool& target) -> bool {
            if (inline_value) {
                error = "option --" + std::string(name) + " takes no value";
                return false;
            }
            target = true;
            return true;
        };
        if (name == "help") {
            if (!flag(opts.help)) return error;
        } else if (name == "version") {
            if (!flag(opts.version)) return error;
        } else if (name == "state-dir" || name == "run-dir" || name == "python") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (v->empty() || (*v)[0] != '/')
                return "option --" + std::string(name) + " needs an absolute path, got '" + *v +
                       "'";
            if (name == "state-dir")
                opts.state_dir = *v;
            else if (name == "run-dir")
                opts.run_dir = *v;
            else
                opts.python.push_back(*v);
        } else if (name == "grace") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            auto seconds = parse_seconds(*v);
            if (!seconds)
                return "option --grace needs a number of seconds from 0 to 86400, got '" + *v + "'";
            opts.grace_s = *seconds;
        } else if (name == "log-level") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (!log::parse_level(*v, opts.log_level))
                return "option --log-level: unknown level '" + *v +
                       "' (trace, debug, info, warn, error, critical, off)";
        } else if (name == "log-format") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (!log::parse_format(*v, opts.log_format))
                return "option --log-format: unknown format '" + *v + "' (text, json)";
        } else if (name == "cgroup-driver") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (*v == "none")
                opts.cgroup_none = true;
            else if (*v == "auto")
                opts.cgroup_none = false;
            else
                return "option --cgroup-driver: unknown mode '" + *v + "' (auto, none)";
        } else if (name == "cpu-placement") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (*v == "spread")
                opts.cpu_spread = true;
            else if (*v == "shared")
                opts.cpu_spread = false;
            else
                return "option --cpu-placement: unknown placement '" + *v + "' (spread, shared)";
        } else if (name == "cgroup-parent") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (v->empty() || (*v)[0] != '/' || v->find("/../") != std::string::npos ||
                (v->size() >= 3 && v->compare(v->size() - 3, 3, "/..") == 0))
                return "option --cgroup-parent needs a path from the hierarchy's root such as "
                       "/hearth, got '" +
                       *v + "'";
            opts.cgroup_parent = *v;
        } else if (name == "default-memory" || name == "max-memory" || name == "store-max-bytes" ||
                   name == "fetch-max-bytes" || name == "extract-max-bytes") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            std::uint64_t bytes = 0;
            std::string why;
            if (!parse_bytes(nlohmann::json(*v), bytes, why) || bytes == 0)
                return "option --" + std::string(name) + ": " +
                       (why.empty() ? "must not be 0" : why);
            if (name == "default-memory")
                opts.default_memory = bytes;
            else if (name == "max-memory")
                opts.max_memory = bytes;
            else if (name == "store-max-bytes")
                opts.store_max_bytes = bytes;
            else if (name == "fetch-max-bytes")
                opts.fetch_max_bytes = bytes;
            else
                opts.extract_max_bytes = bytes;
        } else if (name == "default-cpus" || name == "max-cpus") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            double cpus = 0;
            std::string why;
            if (!parse_cpus(nlohmann::json(*v), cpus, why))
                return "option --" + std::string(name) + ": " + why;
            (name == "default-cpus" ? opts.default_cpus : opts.max_cpus) = cpus;
        } else if (name == "default-pids" || name == "max-pids" || name == "fetch-attempts" ||
                   name == "extract-max-entries") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
            if (ec != std::errc{} || end != v->data() + v->size() || n == 0 ||
                (name == "fetch-attempts" && n > 100))
                return "option --" + std::string(name) + " needs a positive whole number, got '" +
                       *v + "'";
            if (name == "default-pids")
                opts.default_pids = n;
            else if (name == "max-pids")
                opts.max_pids = n;
            else if (name == "fetch-attempts")
                opts.fetch_attempts = static_cast<unsigned>(n);
            else
                opts.extract_max_entries = n;
        } else if (name == "fetch-stall-timeout" || name == "fetch-connect-timeout" ||
                   name == "extract-max-ratio") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            auto seconds = parse_seconds(*v);
            if (!seconds || *seconds <= 0)
                return "option --" + std::string(name) + " needs a positive number, got '" + *v +
                       "'";
            if (name == "fetch-stall-timeout")
                opts.fetch_stall_timeout_s = *seconds;
            else if (name == "fetch-connect-timeout")
                opts.fetch_connect_timeout_s = *seconds;
            else
                opts.extract_max_ratio = *seconds;
        } else if (name == "user" || name == "group") {
            auto v = take_value(name, inline_value, error);
            if (!v) return error;
            if (v->empty()) return "option --" + std::string(name) + " needs a name or a number";
            (name == "user" ? opts.user : opts.group) = *v;
        } else {
            return "unknown option '--" + std::string(name) + "'";
        }
    }
    for (; i < argc; ++i)
        opts.command.emplace_back(argv[i]);
    return opts;
}

} // namespace hearth

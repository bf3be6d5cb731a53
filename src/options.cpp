#include "options.hpp"

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
           "  --grace SECONDS       wait this long after TERM before KILL on shutdown (default 10)\n"
           "  --python PATH         interpreter to offer environments (repeatable; default: PATH)\n"
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
            if (name == "state-dir") opts.state_dir = *v;
            else if (name == "run-dir") opts.run_dir = *v;
            else opts.python.push_back(*v);
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
        } else {
            return "unknown option '--" + std::string(name) + "'";
        }
    }
    for (; i < argc; ++i) opts.command.emplace_back(argv[i]);
    return opts;
}

} // namespace hearth

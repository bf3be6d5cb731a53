#include "daemon/options.hpp"

#include "util/units.hpp"

#include <charconv>
#include <cmath>
#include <span>

namespace hearth {

namespace {

using Apply = std::function<std::string(Options&, const std::string&)>;

std::string got(const std::string& v) {
    return ", got '" + v + "'";
}

// A plain number from 0 to 86400 (fractions allowed).
std::optional<double> parse_seconds(std::string_view s) {
    double value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc{} || end != s.data() + s.size() || !std::isfinite(value) || value < 0 ||
        value > 86400)
        return std::nullopt;
    return value;
}

// A whole number from 1 to `max`.
std::optional<std::uint64_t> parse_count(std::string_view s, std::uint64_t max) {
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec != std::errc{} || end != s.data() + s.size() || n == 0 || n > max) return std::nullopt;
    return n;
}

// Paths are taken as given, so a relative one would depend on hearth's
// working directory, which nobody chooses on purpose for PID 1.
std::string check_absolute(const std::string& v) {
    if (v.empty() || v[0] != '/') return "expected an absolute path" + got(v);
    return {};
}

Apply absolute_path(std::string Options::*field) {
    return [field](Options& o, const std::string& v) {
        std::string problem = check_absolute(v);
        if (problem.empty()) o.*field = v;
        return problem;
    };
}

std::string add_python(Options& o, const std::string& v) {
    std::string problem = check_absolute(v);
    if (problem.empty()) o.python.push_back(v);
    return problem;
}

template <typename Field> Apply bytes_into(Field Options::*field) {
    return [field](Options& o, const std::string& v) -> std::string {
        std::uint64_t bytes = 0;
        std::string why;
        if (!parse_bytes(nlohmann::json(v), bytes, why)) return why;
        if (bytes == 0) return "must not be 0";
        o.*field = bytes;
        return {};
    };
}

Apply cpus_into(std::optional<double> Options::*field) {
    return [field](Options& o, const std::string& v) -> std::string {
        double cpus = 0;
        std::string why;
        if (!parse_cpus(nlohmann::json(v), cpus, why)) return why;
        o.*field = cpus;
        return {};
    };
}

template <typename Field> Apply count_into(Field Options::*field, std::uint64_t max) {
    return [field, max](Options& o, const std::string& v) -> std::string {
        auto n = parse_count(v, max);
        if (!n)
            return (max == UINT64_MAX
                        ? std::string("expected a positive whole number")
                        : "expected a whole number from 1 to " + std::to_string(max)) +
                   got(v);
        o.*field = static_cast<Field>(*n);
        return {};
    };
}

Apply positive_seconds(double Options::*field, const char* what) {
    return [field, what](Options& o, const std::string& v) -> std::string {
        auto s = parse_seconds(v);
        if (!s || *s <= 0) return std::string("expected ") + what + " up to 86400" + got(v);
        o.*field = *s;
        return {};
    };
}

Apply identity(std::string Options::*field) {
    return [field](Options& o, const std::string& v) -> std::string {
        if (v.empty()) return "expected a name or a number";
        o.*field = v;
        return {};
    };
}

std::string set_grace(Options& o, const std::string& v) {
    auto s = parse_seconds(v);
    if (!s) return "expected seconds from 0 to 86400" + got(v);
    o.grace_s = *s;
    return {};
}

std::string set_log_level(Options& o, const std::string& v) {
    if (log::parse_level(v, o.log_level)) return {};
    return "unknown level '" + v + "' (trace, debug, info, warn, error, critical, off)";
}

std::string set_log_format(Options& o, const std::string& v) {
    if (log::parse_format(v, o.log_format)) return {};
    return "unknown format '" + v + "' (text, json)";
}

std::string set_cgroup_driver(Options& o, const std::string& v) {
    if (v != "none" && v != "auto") return "unknown mode '" + v + "' (auto, none)";
    o.cgroup_none = v == "none";
    return {};
}

std::string set_cpu_placement(Options& o, const std::string& v) {
    if (v != "spread" && v != "shared") return "unknown placement '" + v + "' (spread, shared)";
    o.cpu_spread = v == "spread";
    return {};
}

std::string set_cgroup_parent(Options& o, const std::string& v) {
    const bool escapes = v.find("/../") != std::string::npos ||
                         (v.size() >= 3 && v.compare(v.size() - 3, 3, "/..") == 0);
    if (v.empty() || v[0] != '/' || escapes)
        return "expected a path from the hierarchy's root such as /hearth" + got(v);
    o.cgroup_parent = v;
    return {};
}

std::string set_help(Options& o, const std::string&) {
    o.help = true;
    return {};
}

std::string set_overcommit(Options& o, const std::string&) {
    o.overcommit = true;
    return {};
}

std::string set_version(Options& o, const std::string&) {
    o.version = true;
    return {};
}

// Every option of hearth, in the order --help lists them. `env` is true for
// all but --help and --version (see kEnvPrefix).
const std::vector<cli::Option<Options>>& rows() {
    using O = Options;
    static const std::vector<cli::Option<Options>> table = {
        {{"state-dir", 0, true, "*", true, 0, "DIR",
          "artifact store and state (default /var/lib/hearth)"},
         absolute_path(&O::state_dir)},
        {{"run-dir", 0, true, "*", true, 0, "DIR",
          "control socket and runtime files (default /run/hearth)"},
         absolute_path(&O::run_dir)},
        {{"port-range", 0, true, "*", true, 0, "FIRST-LAST",
          "ports given to revisions as PORT, one each (default 20000-29999)"},
         [](Options& o, const std::string& v) -> std::string {
             auto range = health::parse_port_range(v);
             if (!range) return range.error().message;
             o.port_range = *range;
             return {};
         }},
        {{"grace", 0, true, "*", true, 0, "SECONDS",
          "wait this long after TERM before KILL on shutdown (default 10)"},
         set_grace},
        {{"python", 0, true, "*", true, ':', "PATH",
          "interpreter to offer environments (repeatable; default: PATH);\n"
          "the variable holds one or more paths separated by ':'"},
         add_python},

        {{"cgroup-driver", 0, true, "*", true, 0, "MODE",
          "auto (detect v2, v1, hybrid) or none (default auto)"},
         set_cgroup_driver},
        {{"cgroup-parent", 0, true, "*", true, 0, "PATH",
          "where revision cgroups go, relative to each hierarchy's root\n"
          "(default: hearth's own cgroup)"},
         set_cgroup_parent},
        {{"cpu-placement", 0, true, "*", true, 0, "P",
          "spread (default): a revision limited to N CPUs runs on ceil(N)\n"
          "of them, spread out; shared: on every CPU"},
         set_cpu_placement},
        {{"default-memory", 0, true, "*", true, 0, "SIZE", "memory limit of deploys that set none"},
         bytes_into(&O::default_memory)},
        {{"default-cpus", 0, true, "*", true, 0, "N", "CPU limit of deploys that set none"},
         cpus_into(&O::default_cpus)},
        {{"default-pids", 0, true, "*", true, 0, "N", "pids limit of deploys that set none"},
         count_into(&O::default_pids, UINT64_MAX)},
        {{"max-memory", 0, true, "*", true, 0, "SIZE", "memory ceiling a deploy may not exceed"},
         bytes_into(&O::max_memory)},
        {{"max-cpus", 0, true, "*", true, 0, "N", "CPU ceiling a deploy may not exceed"},
         cpus_into(&O::max_cpus)},
        {{"max-pids", 0, true, "*", true, 0, "N", "pids ceiling a deploy may not exceed"},
         count_into(&O::max_pids, UINT64_MAX)},
        {{"user", 0, true, "*", true, 0, "USER", "user environments run as (default: hearth's)"},
         identity(&O::user)},
        {{"group", 0, true, "*", true, 0, "GROUP", "group environments run as (default: hearth's)"},
         identity(&O::group)},
        {{"overcommit",
          0,
          false,
          "*",
          true,
          0,
          {},
          "accept deploys whose limits exceed the free memory or CPUs\n"
          "(default: refuse them, insufficient_capacity)"},
         set_overcommit},

        {{"store-max-bytes", 0, true, "*", true, 0, "SIZE",
          "store budget (default: half the filesystem)"},
         bytes_into(&O::store_max_bytes)},
        {{"fetch-max-bytes", 0, true, "*", true, 0, "SIZE", "largest download (default 4Gi)"},
         bytes_into(&O::fetch_max_bytes)},
        {{"fetch-stall-timeout", 0, true, "*", true, 0, "SEC",
          "fail a download silent this long (default 30)"},
         positive_seconds(&O::fetch_stall_timeout_s, "a positive number of seconds")},
        {{"fetch-connect-timeout", 0, true, "*", true, 0, "SEC",
          "fail a connection not made in time (default 10)"},
         positive_seconds(&O::fetch_connect_timeout_s, "a positive number of seconds")},
        {{"fetch-attempts", 0, true, "*", true, 0, "N",
          "attempts per download, retries included (default 4, at most 100)"},
         count_into(&O::fetch_attempts, 100)},
        {{"extract-max-entries", 0, true, "*", true, 0, "N",
          "entries per archive (default 1000000)"},
         count_into(&O::extract_max_entries, UINT64_MAX)},
        {{"extract-max-bytes", 0, true, "*", true, 0, "SIZE",
          "bytes per archive (default: 16Gi or the store budget if smaller)"},
         bytes_into(&O::extract_max_bytes)},
        {{"extract-max-ratio", 0, true, "*", true, 0, "R",
          "compression ratio bound per entry (default 200)"},
         positive_seconds(&O::extract_max_ratio, "a positive number")},

        {{"log-level", 0, true, "*", true, 0, "LEVEL",
          "trace, debug, info, warn, error, critical, off (default info)"},
         set_log_level},
        {{"log-format", 0, true, "*", true, 0, "FORMAT", "text or json (default text)"},
         set_log_format},
        {{"help", 'h', false, "*", false, 0, {}, "show this help"}, set_help},
        {{"version", 'V', false, "*", false, 0, {}, "show the version"}, set_version},
    };
    return table;
}

// The --help headings, each before the option named.
struct Section {
    std::string_view first_option;
    std::string_view title;
};
constexpr Section kSections[] = {
    {"state-dir", "Options:"},
    {"cgroup-driver", "Isolation:"},
    {"store-max-bytes", "Store and fetch:"},
    {"log-level", "Logging and help:"},
};

} // namespace

std::vector<cli::OptSpec> option_specs() {
    std::vector<cli::OptSpec> specs;
    for (const auto& r : rows())
        specs.push_back(r.spec);
    return specs;
}

std::string usage() {
    std::string text =
        "Usage: hearth [OPTIONS] [-- COMMAND [ARGS...]]\n"
        "\n"
        "Supervisor for warm containers: runs as PID 1, deploys pex environments on\n"
        "request and supervises them. With COMMAND, also runs it as the main process:\n"
        "its exit ends hearth with the same exit code.\n"
        "\n"
        "Each option but --help and --version may instead be set by the variable\n"
        "shown beside it; the option wins over the variable, and an empty variable\n"
        "counts as unset. Sizes: bytes, or k M G T / Ki Mi Gi Ti; CPUs: 0.5 or 500m.\n";
    for (const auto& r : rows()) {
        for (const Section& s : kSections)
            if (s.first_option == r.spec.name) text += "\n" + std::string(s.title) + "\n";
        text += cli::describe(r.spec, kEnvPrefix);
    }
    return text;
}

Result<Options> parse_options(int argc, const char* const argv[], const cli::Env& env) {
    const auto& table_rows = rows();
    const std::span<const cli::Option<Options>> span(table_rows);
    const cli::Table table = cli::table_of<Options>(span);
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i)
        args.emplace_back(argv[i]);

    cli::Scan scan = cli::scan(table, args, cli::Mode::options_first);
    auto invalid = [](std::string message) {
        return Error{Errc::invalid_argument, 0, std::move(message)};
    };
    if (!scan.ok()) return invalid(scan.error);
    // --help and --version print and exit whatever the environment holds.
    if (!scan.has("help") && !scan.has("version")) {
        cli::add_environment(table, kEnvPrefix, env, scan);
        if (!scan.ok()) return invalid(scan.error);
    }
    Options opts;
    if (std::string problem = cli::apply(span, scan.given, opts); !problem.empty())
        return invalid(std::move(problem));
    opts.command = std::move(scan.positionals);
    return opts;
}

} // namespace hearth

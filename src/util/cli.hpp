#pragma once
// One table-driven option parser for hearth and hearthctl, and hearth's
// configuration from the environment.
//
// A program describes its options in a table (Option<T> rows: an OptSpec
// and a function that checks a value and stores it in T). scan() splits the
// command line into the options given, with their values as written, and
// the positional words; add_environment() then adds what the table lets the
// environment set and the command line did not; apply() runs the rows'
// functions in order. Every problem is one line that names the option as it
// was spelled ("--grace", "-f") or the variable ("HEARTH_GRACE"), so the
// user sees where the bad value came from.
//
// Message forms (the caller adds its program prefix):
//   unknown option '--bogus'
//   option '--grace' requires a value
//   option '--help' does not take a value
//   --grace: expected seconds from 0 to 86400, got 'soon'   (from apply)
//   HEARTH_GRACE: expected seconds from 0 to 86400, got 'soon'
//
// Pure: no I/O, no globals. Nothing throws except std::bad_alloc and what
// a row's function throws (none of hearth's do).

#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::cli {

// What the parser needs to know about one option.
struct OptSpec {
    std::string_view name;        // long name without "--"
    char short_name = 0;          // "-x" spelling; 0 = none
    bool takes_value = true;      // false: a flag, present or absent
    std::string_view scope = "*"; // "*": every command; else space-separated commands
    bool env = false;             // also settable by env_name(prefix, name)
    char env_list_sep = 0; // non-zero: the variable is a list split here, each part given once
    std::string_view arg;  // usage: the value's name ("DIR"); empty for a flag
    std::string_view help; // usage: one or more lines ('\n' between them)
};

// A row of a program's table. `apply` checks `value` (as written; "" for a
// flag) and stores it in `target`. It returns "" or the problem without the
// option's name, e.g. "expected 'text' or 'json', got 'xml'".
template <typename T> struct Option {
    OptSpec spec;
    std::function<std::string(T& target, const std::string& value)> apply;
};

// One option as given, in the order given.
struct Given {
    std::size_t row = 0;   // index in the table
    std::string_view name; // the row's long name
    std::string spelled;   // "--grace", "-h", or the variable's name
    std::string value;     // as written; "" for a flag
    bool from_env = false;
};

enum class Mode {
    interleaved,   // options and positional words mix (hearthctl)
    options_first, // the first positional word ends the options (hearth: the
                   // rest is its main command, whose own options stay its own)
};

struct Scan {
    std::vector<Given> given;             // environment first, then command-line order
    std::vector<std::string> positionals; // in order; every word after "--" is one
    std::string error;                    // the first problem; "" = none

    bool ok() const noexcept { return error.empty(); }
    // True if an option with this long name was given (by either source).
    bool has(std::string_view name) const noexcept;
};

// The table as scan() sees it: one pointer per row, into `rows`, which must
// outlive the result.
using Table = std::vector<const OptSpec*>;
template <typename T> Table table_of(std::span<const Option<T>> rows) {
    Table t;
    t.reserve(rows.size());
    for (const auto& r : rows)
        t.push_back(&r.spec);
    return t;
}

// Splits `args` (without the program name). Accepts "--name value",
// "--name=value", "-x" and "-x value"; "--" ends the options. A word shorter
// than two characters or not starting with '-' is positional. After a
// problem scanning goes on (error keeps the first), so a later --help is
// still seen; an unknown option is taken to have no value.
Scan scan(const Table& table, const std::vector<std::string>& args, Mode mode);

// True if `spec` may be given with `command` (its scope is "*" or names it).
bool applies_to(const OptSpec& spec, std::string_view command) noexcept;

// ---------------------------------------------------------------------------
// The environment

// Environment variables by name.
using Env = std::map<std::string, std::string, std::less<>>;

// `prefix` + the option in upper case with '-' as '_':
// env_name("HEARTH_", "log-format") == "HEARTH_LOG_FORMAT".
std::string env_name(std::string_view prefix, std::string_view option);

// The variables of `envp` (an environ-style array of "NAME=VALUE", ending
// with nullptr; nullptr is an empty environment) whose names start with
// `prefix`.
Env environment(const char* const* envp, std::string_view prefix);

// The accepted spellings of a boolean variable, in any case: 1, true, yes,
// on; 0, false, no, off. nullopt for anything else.
std::optional<bool> parse_bool(std::string_view text);

// Adds a Given (from_env, spelled as the variable) for every row with `env`
// whose variable is set to a non-empty value and whose option is not on the
// command line (a flag wins over the variable; an empty variable counts as
// unset). The environment's entries go before the command line's, so they
// are applied first. A flag's variable must be a boolean (parse_bool): true
// gives the flag, false leaves it out, anything else sets `scan.error`
// (when it is empty) naming the variable and the accepted values.
void add_environment(const Table& table, std::string_view prefix, const Env& env, Scan& scan);

// Runs the rows' apply functions for `given` in order and stops at the first
// problem: "option '<spelled>' is not valid for '<command>'" when `command`
// is not empty and the row's scope does not include it, else
// "<prefix><spelled>: <problem>" where `prefix_for` (optional) gives the
// prefix of a row (hearthctl puts "deploy: " before options of one command).
// Returns "" when every option was applied.
template <typename T>
std::string apply(std::span<const Option<T>> rows, const std::vector<Given>& given, T& target,
                  std::string_view command = {},
                  const std::function<std::string(const OptSpec&)>& prefix_for = {}) {
    for (const Given& g : given) {
        const Option<T>& row = rows[g.row];
        if (!command.empty() && !applies_to(row.spec, command))
            return "option '" + g.spelled + "' is not valid for '" + std::string(command) + "'";
        std::string problem = row.apply(target, g.value);
        if (!problem.empty())
            return (prefix_for ? prefix_for(row.spec) : std::string()) + g.spelled + ": " + problem;
    }
    return {};
}

// Usage lines of one option: "  -h, --grace SECONDS" padded to a column and
// followed by its variable when it has one, then its help indented below.
// Each line ends with '\n'.
std::string describe(const OptSpec& spec, std::string_view env_prefix);

} // namespace hearth::cli

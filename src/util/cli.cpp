#include "util/cli.hpp"

#include <algorithm>
#include <cstring>

namespace hearth::cli {

namespace {

const OptSpec* find_long(const Table& table, std::string_view name, std::size_t& row) {
    for (std::size_t i = 0; i < table.size(); ++i)
        if (table[i]->name == name) {
            row = i;
            return table[i];
        }
    return nullptr;
}

const OptSpec* find_short(const Table& table, char c, std::size_t& row) {
    for (std::size_t i = 0; i < table.size(); ++i)
        if (table[i]->short_name != 0 && table[i]->short_name == c) {
            row = i;
            return table[i];
        }
    return nullptr;
}

// One option word split into its spelling and, for "--name=value", the value.
struct Word {
    std::string spelled; // "--name" or "-x"
    std::string_view long_name;
    char short_name = 0;
    std::optional<std::string> inline_value;
};

Word split_word(const std::string& tok) {
    Word w;
    w.spelled = tok;
    if (tok[1] != '-') {
        if (tok.size() == 2) w.short_name = tok[1];
        return w;
    }
    std::string_view body(tok);
    body.remove_prefix(2);
    if (auto eq = body.find('='); eq != std::string_view::npos) {
        w.inline_value = std::string(body.substr(eq + 1));
        body = body.substr(0, eq);
        w.spelled = "--" + std::string(body);
    }
    w.long_name = body;
    return w;
}

char upper(char c) {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

} // namespace

bool Scan::has(std::string_view name) const noexcept {
    return std::any_of(given.begin(), given.end(), [&](const Given& g) { return g.name == name; });
}

Scan scan(const Table& table, const std::vector<std::string>& args, Mode mode) {
    Scan s;
    auto note = [&](std::string msg) {
        if (s.error.empty()) s.error = std::move(msg);
    };
    bool only_positional = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& tok = args[i];
        if (only_positional || tok.size() < 2 || tok[0] != '-') {
            s.positionals.push_back(tok);
            if (mode == Mode::options_first) only_positional = true;
            continue;
        }
        if (tok == "--") {
            only_positional = true;
            continue;
        }
        Word w = split_word(tok);
        std::size_t row = 0;
        const OptSpec* spec = w.short_name != 0     ? find_short(table, w.short_name, row)
                              : w.long_name.empty() ? nullptr
                                                    : find_long(table, w.long_name, row);
        if (!spec) {
            note("unknown option '" + w.spelled + "'");
            continue;
        }
        Given g{row, spec->name, w.spelled, {}, false};
        if (spec->takes_value) {
            if (w.inline_value)
                g.value = std::move(*w.inline_value);
            else if (i + 1 < args.size())
                g.value = args[++i];
            else {
                note("option '" + w.spelled + "' requires a value");
                continue;
            }
        } else if (w.inline_value) {
            note("option '" + w.spelled + "' does not take a value");
            continue;
        }
        s.given.push_back(std::move(g));
    }
    return s;
}

bool applies_to(const OptSpec& spec, std::string_view command) noexcept {
    if (spec.scope == "*") return true;
    std::string_view rest = spec.scope;
    while (!rest.empty()) {
        auto sp = rest.find(' ');
        if (rest.substr(0, sp) == command) return true;
        if (sp == std::string_view::npos) break;
        rest.remove_prefix(sp + 1);
    }
    return false;
}

std::string env_name(std::string_view prefix, std::string_view option) {
    std::string name(prefix);
    for (char c : option)
        name += c == '-' ? '_' : upper(c);
    return name;
}

Env environment(const char* const* envp, std::string_view prefix) {
    Env env;
    if (!envp) return env;
    for (; *envp; ++envp) {
        std::string_view kv(*envp);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos || kv.substr(0, prefix.size()) != prefix) continue;
        // The first definition wins, as with getenv(3).
        env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    return env;
}

std::optional<bool> parse_bool(std::string_view text) {
    const std::string v = lower(text);
    if (v == "1" || v == "true" || v == "yes" || v == "on") return true;
    if (v == "0" || v == "false" || v == "no" || v == "off") return false;
    return std::nullopt;
}

void add_environment(const Table& table, std::string_view prefix, const Env& env, Scan& scan) {
    std::vector<Given> from_env;
    for (std::size_t row = 0; row < table.size(); ++row) {
        const OptSpec& spec = *table[row];
        if (!spec.env || scan.has(spec.name)) continue;
        const std::string var = env_name(prefix, spec.name);
        auto it = env.find(var);
        if (it == env.end() || it->second.empty()) continue;
        const std::string& value = it->second;
        if (!spec.takes_value) {
            auto on = parse_bool(value);
            if (!on) {
                if (scan.error.empty()) scan.error = var;
                scan.error.append(": expected 1, true, yes, on, 0, false, no or off, got '")
                    .append(value)
                    .append("'");
                continue;
            }
            if (*on) from_env.push_back(Given{row, spec.name, var, {}, true});
            continue;
        }
        if (spec.env_list_sep == 0) {
            from_env.push_back(Given{row, spec.name, var, value, true});
            continue;
        }
        std::string_view rest = value;
        for (;;) {
            auto sep = rest.find(spec.env_list_sep);
            from_env.push_back(Given{row, spec.name, var, std::string(rest.substr(0, sep)), true});
            if (sep == std::string_view::npos) break;
            rest.remove_prefix(sep + 1);
        }
    }
    scan.given.insert(scan.given.begin(), std::make_move_iterator(from_env.begin()),
                      std::make_move_iterator(from_env.end()));
}

std::string describe(const OptSpec& spec, std::string_view env_prefix) {
    // Variables start in this column, so they line up under each other.
    constexpr std::size_t kEnvColumn = 36;
    std::string head = "  ";
    if (spec.short_name != 0) {
        head += '-';
        head += spec.short_name;
        head += ", ";
    }
    head += "--";
    head += spec.name;
    if (!spec.arg.empty()) {
        head += ' ';
        head += spec.arg;
    }
    if (spec.env) {
        head.append(head.size() + 2 <= kEnvColumn ? kEnvColumn - head.size() : 2, ' ');
        head += env_name(env_prefix, spec.name);
    }
    std::string out = head + "\n";
    std::string_view help = spec.help;
    while (!help.empty()) {
        auto nl = help.find('\n');
        out += "      ";
        out += help.substr(0, nl);
        out += '\n';
        if (nl == std::string_view::npos) break;
        help.remove_prefix(nl + 1);
    }
    return out;
}

} // namespace hearth::cli

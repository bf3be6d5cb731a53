#include "launch/python.hpp"

#include "util/text.hpp"

#include <cstdlib>
#include <memory>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace hearth {

namespace {

constexpr std::string_view kProbeMarker = "HEARTH-PROBE-1";
constexpr int kNewestMinor = 20;
constexpr int kOldestMinor = 7;

// ---- candidates ------------------------------------------------------------

bool is_executable_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return false;
    return S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// The identity used for de-duplication: the resolved path when there is one,
// else the path itself (a configured path that does not exist yet still
// appears once).
std::string identity(const std::string& path) {
    std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
    return real ? std::string(real.get()) : path;
}

std::vector<std::string> path_dirs(std::string_view path_env) {
    std::vector<std::string> dirs;
    while (true) {
        auto colon = path_env.find(':');
        std::string_view dir = path_env.substr(0, colon);
        if (!dir.empty() && dir.front() == '/') {
            while (dir.size() > 1 && dir.back() == '/')
                dir.remove_suffix(1);
            dirs.emplace_back(dir);
        }
        if (colon == std::string_view::npos) break;
        path_env.remove_prefix(colon + 1);
    }
    return dirs;
}

} // namespace

// ---- Interpreter ---------------------------------------------------------------

std::string Interpreter::version() const {
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(micro);
}

std::vector<std::string> python_candidates(std::string_view path_env,
                                           const std::vector<std::string>& configured) {
    std::vector<std::string> out;
    std::set<std::string> seen;
    auto add = [&](const std::string& path) {
        if (seen.insert(identity(path)).second) out.push_back(path);
    };
    std::vector<std::string> dirs = path_dirs(path_env);

    if (!configured.empty()) {
        for (const auto& c : configured) {
            if (c.empty()) continue;
            if (c.find('/') != std::string::npos) {
                add(c);
                continue;
            }
            std::string found;
            for (const auto& d : dirs) {
                std::string p = path_join(d, c);
                if (is_executable_file(p)) {
                    found = std::move(p);
                    break;
                }
            }
            add(found.empty() ? c : found);
        }
        return out;
    }

    std::vector<std::string> names;
    for (int minor = kNewestMinor; minor >= kOldestMinor; --minor)
        names.push_back("python3." + std::to_string(minor));
    names.emplace_back("python3");
    names.emplace_back("python");
    for (const auto& d : dirs)
        for (const auto& n : names) {
            std::string p = path_join(d, n);
            if (is_executable_file(p)) add(p);
        }
    return out;
}

std::vector<std::string> probe_argv(const std::string& candidate) {
    // Bytes, not print(): sys.executable may hold undecodable bytes that a
    // strict UTF-8 stdout would refuse to encode.
    std::string code = "import sys,os;v=sys.version_info;sys.stdout.buffer.write(b'\\n'.join(["
                       "b'" +
                       std::string(kProbeMarker) +
                       "',os.fsencode(sys.executable),"
                       "sys.implementation.name.encode(),('%d.%d.%d'%tuple(v[:3])).encode(),b'']))";
    return {candidate, "-I", "-S", "-c", std::move(code)};
}

std::string implementation_name(std::string_view name) {
    static constexpr std::pair<std::string_view, std::string_view> known[] = {
        {"cpython", "CPython"},
        {"pypy", "PyPy"},
        {"ironpython", "IronPython"},
        {"jython", "Jython"},
    };
    for (auto& [k, v] : known)
        if (k == name) return std::string(v);
    return std::string(name);
}

std::optional<Interpreter> parse_probe_output(std::string_view text, std::string& err) {
    std::vector<std::string_view> lines;
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        lines.push_back(line);
        if (nl == std::string_view::npos) break;
        text.remove_prefix(nl + 1);
    }
    std::size_t at = 0;
    while (at < lines.size() && lines[at] != kProbeMarker)
        ++at;
    if (at == lines.size()) {
        err = "the interpreter did not answer the probe (not Python 3, or it failed to start)";
        return std::nullopt;
    }
    if (lines.size() - at < 4) {
        err = "the probe's output is truncated";
        return std::nullopt;
    }
    Interpreter in;
    in.path = std::string(lines[at + 1]);
    if (in.path.empty()) {
        err = "the interpreter does not know its own path (empty sys.executable)";
        return std::nullopt;
    }
    if (in.path.front() != '/') {
        err = "the interpreter reported a relative sys.executable \"" + in.path + "\"";
        return std::nullopt;
    }
    std::string_view impl = lines[at + 2];
    if (impl.empty()) {
        err = "the probe reported no implementation name";
        return std::nullopt;
    }
    in.implementation = implementation_name(impl);

    std::string_view ver = lines[at + 3];
    int parts[3] = {0, 0, 0};
    std::size_t i = 0;
    for (int p = 0; p < 3; ++p) {
        std::size_t start = i;
        long v = 0;
        while (i < ver.size() && is_ascii_digit(ver[i]) && i - start < 6)
            v = v * 10 + (ver[i++] - '0');
        bool sep_ok = p < 2 ? (i < ver.size() && ver[i] == '.') : i == ver.size();
        if (i == start || !sep_ok) {
            err = "the probe reported a malformed version \"" + std::string(ver) + "\"";
            return std::nullopt;
        }
        parts[p] = static_cast<int>(v);
        if (p < 2) ++i;
    }
    in.major = parts[0];
    in.minor = parts[1];
    in.micro = parts[2];
    return in;
}

bool parse_constraint(std::string_view text, Constraint& out, std::string& err) {
    auto fail = [&](const std::string& why) {
        err = "invalid interpreter constraint \"" + std::string(text) + "\": " + why;
        return false;
    };
    std::string_view s = trim(text);
    if (s.empty()) return fail("it is empty");

    Constraint c;
    c.text = std::string(s);
    std::size_t name_end = 0;
    while (name_end < s.size() && (is_ascii_alnum(s[name_end]) || s[name_end] == '.' ||
                                   s[name_end] == '-' || s[name_end] == '_'))
        ++name_end;
    std::string_view name = s.substr(0, name_end);
    if (!name.empty()) {
        bool has_letter = false;
        for (char ch : name)
            has_letter = has_letter || is_ascii_alpha(ch);
        if (!has_letter)
            return fail("a bare version has no comparison operator (write ==" + std::string(name) +
                        ".* or >=" + std::string(name) + ")");
        if (!is_ascii_alnum(name.front()) || !is_ascii_alnum(name.back()))
            return fail("\"" + std::string(name) + "\" is not a valid implementation name");
        c.implementation = std::string(name);
    }
    std::string_view rest = trim(s.substr(name_end));
    if (rest.find(';') != std::string_view::npos)
        return fail("environment markers (;) are not supported");
    if (rest.find('[') != std::string_view::npos) return fail("extras ([...]) are not supported");
    if (!rest.empty() && rest.front() == '(') {
        if (rest.back() != ')') return fail("unbalanced parenthesis");
        rest = trim(rest.substr(1, rest.size() - 2));
    }
    if (rest.empty() && c.implementation.empty()) return fail("it has no specifier");
    while (!rest.empty()) {
        auto comma = rest.find(',');
        std::string_view item = trim(rest.substr(0, comma));
        if (item.empty()) return fail("empty specifier between commas");
        Specifier spec;
        std::string why;
        if (!parse_specifier(item, spec, why)) return fail(why);
        c.specifiers.push_back(std::move(spec));
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
        if (trim(rest).empty()) return fail("trailing comma");
    }
    out = std::move(c);
    return true;
}

bool parse_constraints(const std::vector<std::string>& texts, std::vector<Constraint>& out,
                       std::string& err) {
    std::vector<Constraint> parsed;
    for (const auto& t : texts) {
        Constraint c;
        if (!parse_constraint(t, c, err)) return false;
        parsed.push_back(std::move(c));
    }
    out = std::move(parsed);
    return true;
}

bool matches(const Interpreter& interp, const Constraint& constraint) {
    if (!constraint.implementation.empty() &&
        !iequals(constraint.implementation, interp.implementation))
        return false;
    Version v;
    v.release = {static_cast<std::uint64_t>(interp.major), static_cast<std::uint64_t>(interp.minor),
                 static_cast<std::uint64_t>(interp.micro)};
    std::string text = interp.version();
    for (const auto& spec : constraint.specifiers)
        if (!specifier_matches(v, text, spec)) return false;
    return true;
}

bool satisfies(const Interpreter& interp, const std::vector<Constraint>& constraints) {
    if (constraints.empty()) return true;
    for (const auto& c : constraints)
        if (matches(interp, c)) return true;
    return false;
}

const Interpreter* choose(const std::vector<Interpreter>& in_candidate_order,
                          const std::vector<Constraint>& constraints) {
    for (const auto& in : in_candidate_order)
        if (satisfies(in, constraints)) return &in;
    return nullptr;
}

std::string describe(const std::vector<Constraint>& constraints) {
    std::string out;
    for (const auto& c : constraints) {
        if (!out.empty()) out += " or ";
        out += c.text;
    }
    return out;
}

} // namespace hearth

#include "launch/python.hpp"

#include <cstdlib>
#include <memory>
#include <set>
#include <sys/stat.h>
#include <tuple>
#include <unistd.h>

namespace hearth {

namespace {

constexpr std::string_view kProbeMarker = "HEARTH-PROBE-1";
constexpr int kNewestMinor = 20;
constexpr int kOldestMinor = 7;

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() &&
           (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
        s.remove_suffix(1);
    return s;
}

char lower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_alnum(char c) {
    return is_digit(c) || is_alpha(c);
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

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

std::string join(const std::string& dir, std::string_view name) {
    std::string p = dir;
    if (p != "/") p += '/';
    p += name;
    return p;
}

// ---- versions ----------------------------------------------------------------

// A cursor over a lower-cased version string.
struct Cursor {
    std::string_view s;
    std::size_t i = 0;

    bool at_end() const { return i >= s.size(); }
    char peek(std::size_t ahead = 0) const { return i + ahead < s.size() ? s[i + ahead] : '\0'; }
    bool take(char c) {
        if (peek() != c) return false;
        ++i;
        return true;
    }
    bool take_sep() {
        char c = peek();
        if (c == '-' || c == '_' || c == '.') {
            ++i;
            return true;
        }
        return false;
    }
    bool take_word(std::string_view w) {
        if (s.substr(i, w.size()) != w) return false;
        i += w.size();
        return true;
    }
    // Digits into `out`; false when there are none or they overflow.
    bool take_number(std::uint64_t& out, bool& overflow) {
        std::size_t start = i;
        std::uint64_t v = 0;
        while (is_digit(peek())) {
            if (__builtin_mul_overflow(v, 10u, &v) ||
                __builtin_add_overflow(v, static_cast<unsigned>(peek() - '0'), &v))
                overflow = true;
            ++i;
        }
        out = v;
        return i > start;
    }
};

// Optional separator, one of `words`, optional separator and number
// (implicitly 0). Restores the cursor when no word follows.
bool take_labelled(Cursor& c, std::initializer_list<std::string_view> words, std::size_t& which,
                   std::uint64_t& number, bool& overflow) {
    std::size_t save = c.i;
    c.take_sep();
    std::size_t idx = 0;
    for (auto w : words) {
        if (c.take_word(w)) {
            which = idx;
            std::size_t before_sep = c.i;
            c.take_sep();
            if (!c.take_number(number, overflow)) {
                c.i = before_sep; // the separator belonged to what follows
                number = 0;
            }
            return true;
        }
        ++idx;
    }
    c.i = save;
    return false;
}

// Ordering key of the non-release parts, after PEP 440 (and packaging):
// 1.0.dev1 < 1.0a1 < 1.0 < 1.0.post1.
using Part = std::pair<int, std::uint64_t>; // rank -1: -inf, 0: value, 1: +inf
struct Key {
    Part pre_rank;
    int pre_kind;
    Part post;
    Part dev;
};

Key key_of(const Version& v) {
    Key k{};
    if (!v.pre && !v.post && v.dev)
        k.pre_rank = {-1, 0}, k.pre_kind = 0;
    else if (!v.pre)
        k.pre_rank = {1, 0}, k.pre_kind = 0;
    else
        k.pre_rank = {0, v.pre->second}, k.pre_kind = v.pre->first;
    k.post = v.post ? Part{0, *v.post} : Part{-1, 0};
    k.dev = v.dev ? Part{0, *v.dev} : Part{1, 0};
    return k;
}

int compare_release(const std::vector<std::uint64_t>& a, const std::vector<std::uint64_t>& b) {
    std::size_t n = std::max(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i) {
        std::uint64_t x = i < a.size() ? a[i] : 0;
        std::uint64_t y = i < b.size() ? b[i] : 0;
        if (x != y) return x < y ? -1 : 1;
    }
    return 0;
}

// Compares public versions (local labels ignored).
int compare(const Version& a, const Version& b) {
    if (a.epoch != b.epoch) return a.epoch < b.epoch ? -1 : 1;
    if (int r = compare_release(a.release, b.release)) return r;
    Key ka = key_of(a), kb = key_of(b);
    // Within equal ranks the pre kind decides before the pre number.
    auto ta = std::make_tuple(ka.pre_rank.first, ka.pre_kind, ka.pre_rank.second, ka.post, ka.dev);
    auto tb = std::make_tuple(kb.pre_rank.first, kb.pre_kind, kb.pre_rank.second, kb.post, kb.dev);
    if (ta == tb) return 0;
    return ta < tb ? -1 : 1;
}

// "==P.*": the candidate's release, zero-padded, starts with P's release.
bool prefix_match(const Version& candidate, const Version& prefix, std::size_t components) {
    if (candidate.epoch != prefix.epoch) return false;
    for (std::size_t i = 0; i < components; ++i) {
        std::uint64_t x = i < candidate.release.size() ? candidate.release[i] : 0;
        if (x != prefix.release[i]) return false;
    }
    return true;
}

bool is_release_only(const Version& v) {
    return !v.pre && !v.post && !v.dev && v.local.empty();
}

bool specifier_matches(const Version& candidate, const std::string& candidate_text,
                       const Specifier& spec) {
    using Op = Specifier::Op;
    switch (spec.op) {
    case Op::arbitrary:
        return iequals(candidate_text, spec.text);
    case Op::eq:
    case Op::ne: {
        bool eq;
        if (spec.wildcard)
            eq = prefix_match(candidate, spec.version, spec.version.release.size());
        else if (!spec.version.local.empty())
            // A local spec version matches only that exact local version;
            // interpreter versions never carry one.
            eq = candidate.local == spec.version.local && compare(candidate, spec.version) == 0;
        else
            eq = compare(candidate, spec.version) == 0;
        return spec.op == Op::eq ? eq : !eq;
    }
    case Op::ge:
        return compare(candidate, spec.version) >= 0;
    case Op::le:
        return compare(candidate, spec.version) <= 0;
    // PEP 440's extra exclusions for < and > concern pre-, post- and local
    // versions of the candidate; interpreter versions are final releases.
    case Op::gt:
        return compare(candidate, spec.version) > 0;
    case Op::lt:
        return compare(candidate, spec.version) < 0;
    case Op::compatible:
        return compare(candidate, spec.version) >= 0 &&
               prefix_match(candidate, spec.version, spec.version.release.size() - 1);
    }
    return false;
}

bool parse_specifier(std::string_view item, Specifier& out, std::string& why) {
    using Op = Specifier::Op;
    static constexpr std::pair<std::string_view, Op> ops[] = {
        {"===", Op::arbitrary}, {"~=", Op::compatible}, {"==", Op::eq}, {"!=", Op::ne},
        {"<=", Op::le},         {">=", Op::ge},         {"<", Op::lt},  {">", Op::gt},
    };
    Specifier spec;
    bool found = false;
    std::string_view op_text;
    for (auto& [text, op] : ops)
        if (item.substr(0, text.size()) == text) {
            spec.op = op;
            op_text = text;
            found = true;
            break;
        }
    if (!found) {
        why = "\"" + std::string(item) +
              "\" has no comparison operator (use ==, !=, <=, >=, <, >, ~= or ===)";
        return false;
    }
    std::string_view ver = trim(item.substr(op_text.size()));
    if (ver.empty()) {
        why = "\"" + std::string(item) + "\" has no version";
        return false;
    }
    for (char c : ver)
        if (c == ' ' || c == '\t') {
            why = "\"" + std::string(item) + "\" has a space inside the version";
            return false;
        }
    spec.text = std::string(ver);
    if (spec.op == Op::arbitrary) {
        out = std::move(spec);
        return true;
    }
    if (ver.size() >= 2 && ver.substr(ver.size() - 2) == ".*") {
        if (spec.op != Op::eq && spec.op != Op::ne) {
            why = "\"" + std::string(item) + "\": a .* wildcard is only allowed with == and !=";
            return false;
        }
        spec.wildcard = true;
        ver.remove_suffix(2);
    }
    std::string verr;
    if (!parse_version(ver, spec.version, verr)) {
        why = verr;
        return false;
    }
    if (spec.wildcard && !is_release_only(spec.version)) {
        why =
            "\"" + std::string(item) + "\": a .* wildcard must follow a plain release such as 3.11";
        return false;
    }
    if (!spec.version.local.empty() && spec.op != Op::eq && spec.op != Op::ne) {
        why = "\"" + std::string(item) + "\": a local version label is only allowed with == and !=";
        return false;
    }
    if (spec.op == Op::compatible && spec.version.release.size() < 2) {
        why = "\"" + std::string(item) + "\": ~= needs at least two release components (~=3.10)";
        return false;
    }
    out = std::move(spec);
    return true;
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
                std::string p = join(d, c);
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
            std::string p = join(d, n);
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
        while (i < ver.size() && is_digit(ver[i]) && i - start < 6)
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

bool parse_version(std::string_view text, Version& out, std::string& err) {
    std::string lowered;
    for (char ch : trim(text))
        lowered += lower(ch);
    Cursor c{lowered};
    bool overflow = false;
    auto fail = [&] {
        err = "\"" + std::string(text) + "\" is not a valid version" +
              (overflow ? " (a number is too large)" : "");
        return false;
    };
    Version v;
    c.take('v');
    std::uint64_t n = 0;
    if (!c.take_number(n, overflow)) return fail();
    if (c.take('!')) {
        v.epoch = n;
        if (!c.take_number(n, overflow)) return fail();
    }
    v.release.push_back(n);
    while (c.peek() == '.' && is_digit(c.peek(1))) {
        c.take('.');
        c.take_number(n, overflow);
        v.release.push_back(n);
    }
    std::size_t which = 0;
    std::uint64_t num = 0;
    // Longer spellings first so "preview" is not read as "pre" + "view".
    if (take_labelled(c, {"preview", "alpha", "beta", "pre", "rc", "a", "b", "c"}, which, num,
                      overflow)) {
        static constexpr int kinds[] = {2, 0, 1, 2, 2, 0, 1, 2};
        v.pre = std::make_pair(kinds[which], num);
    }
    if (c.peek() == '-' && is_digit(c.peek(1))) {
        c.take('-');
        c.take_number(num, overflow);
        v.post = num;
    } else if (take_labelled(c, {"post", "rev", "r"}, which, num, overflow)) {
        v.post = num;
    }
    if (take_labelled(c, {"dev"}, which, num, overflow)) v.dev = num;
    if (c.take('+')) {
        std::size_t start = c.i;
        bool need_alnum = true;
        while (!c.at_end()) {
            char ch = c.peek();
            if (is_alnum(ch)) {
                v.local += ch;
                need_alnum = false;
            } else if ((ch == '.' || ch == '-' || ch == '_') && !need_alnum) {
                v.local += '.';
                need_alnum = true;
            } else {
                break;
            }
            ++c.i;
        }
        if (c.i == start || need_alnum) return fail();
    }
    if (!c.at_end() || overflow) return fail();
    out = std::move(v);
    return true;
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
    while (name_end < s.size() && (is_alnum(s[name_end]) || s[name_end] == '.' ||
                                   s[name_end] == '-' || s[name_end] == '_'))
        ++name_end;
    std::string_view name = s.substr(0, name_end);
    if (!name.empty()) {
        bool has_letter = false;
        for (char ch : name)
            has_letter = has_letter || is_alpha(ch);
        if (!has_letter)
            return fail("a bare version has no comparison operator (write ==" + std::string(name) +
                        ".* or >=" + std::string(name) + ")");
        if (!is_alnum(name.front()) || !is_alnum(name.back()))
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

#include "launch/version.hpp"

#include "util/text.hpp"

#include <initializer_list>
#include <tuple>

namespace hearth {

namespace {

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
        while (is_ascii_digit(peek())) {
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

bool is_release_only(const Version& v) {
    return !v.pre && !v.post && !v.dev && v.local.empty();
}

} // namespace

bool parse_version(std::string_view text, Version& out, std::string& err) {
    std::string lowered;
    for (char ch : trim(text))
        lowered += ascii_lower(ch);
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
    while (c.peek() == '.' && is_ascii_digit(c.peek(1))) {
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
    if (c.peek() == '-' && is_ascii_digit(c.peek(1))) {
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
            if (is_ascii_alnum(ch)) {
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

int compare_versions(const Version& a, const Version& b) noexcept {
    if (a.epoch != b.epoch) return a.epoch < b.epoch ? -1 : 1;
    if (int r = compare_release(a.release, b.release)) return r;
    Key ka = key_of(a), kb = key_of(b);
    // Within equal ranks the pre kind decides before the pre number.
    auto ta = std::make_tuple(ka.pre_rank.first, ka.pre_kind, ka.pre_rank.second, ka.post, ka.dev);
    auto tb = std::make_tuple(kb.pre_rank.first, kb.pre_kind, kb.pre_rank.second, kb.post, kb.dev);
    if (ta == tb) return 0;
    return ta < tb ? -1 : 1;
}

bool release_prefix_match(const Version& candidate, const Version& prefix,
                          std::size_t components) noexcept {
    if (candidate.epoch != prefix.epoch) return false;
    for (std::size_t i = 0; i < components; ++i) {
        std::uint64_t x = i < candidate.release.size() ? candidate.release[i] : 0;
        if (x != prefix.release[i]) return false;
    }
    return true;
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

bool specifier_matches(const Version& candidate, std::string_view candidate_text,
                       const Specifier& spec) {
    using Op = Specifier::Op;
    switch (spec.op) {
    case Op::arbitrary:
        return iequals(candidate_text, spec.text);
    case Op::eq:
    case Op::ne: {
        bool eq;
        if (spec.wildcard)
            eq = release_prefix_match(candidate, spec.version, spec.version.release.size());
        else if (!spec.version.local.empty())
            // A local spec version matches only that exact local version;
            // interpreter versions never carry one.
            eq = candidate.local == spec.version.local &&
                 compare_versions(candidate, spec.version) == 0;
        else
            eq = compare_versions(candidate, spec.version) == 0;
        return spec.op == Op::eq ? eq : !eq;
    }
    case Op::ge:
        return compare_versions(candidate, spec.version) >= 0;
    case Op::le:
        return compare_versions(candidate, spec.version) <= 0;
    // PEP 440's extra exclusions for < and > concern pre-, post- and local
    // versions of the candidate; interpreter versions are final releases.
    case Op::gt:
        return compare_versions(candidate, spec.version) > 0;
    case Op::lt:
        return compare_versions(candidate, spec.version) < 0;
    case Op::compatible:
        return compare_versions(candidate, spec.version) >= 0 &&
               release_prefix_match(candidate, spec.version, spec.version.release.size() - 1);
    }
    return false;
}

} // namespace hearth

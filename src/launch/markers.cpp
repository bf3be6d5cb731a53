#include "launch/markers.hpp"

#include "launch/version.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

namespace hearth {

namespace {

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

} // namespace

bool parse_requirement(std::string_view text, Requirement& req) {
    std::string s(trim(text));
    size_t i = 0;
    while (i < s.size() && is_name_char(s[i]))
        ++i;
    if (i == 0) return false;
    req.project = normalize_project_name(std::string_view(s).substr(0, i));
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])))
        ++i;
    if (i < s.size() && s[i] == '[') {
        size_t close = s.find(']', i);
        if (close == std::string::npos) return false;
        std::string_view list = std::string_view(s).substr(i + 1, close - i - 1);
        size_t start = 0;
        while (start <= list.size()) {
            size_t comma = list.find(',', start);
            if (comma == std::string_view::npos) comma = list.size();
            std::string extra(trim(list.substr(start, comma - start)));
            if (!extra.empty()) req.extras.push_back(normalize_project_name(extra));
            start = comma + 1;
        }
        i = close + 1;
    }
    std::string_view rest = std::string_view(s).substr(i);
    size_t semi;
    if (trim(rest).rfind('@', 0) == 0) {
        // `name @ URL ; marker`: the URL may itself hold ';', so PEP 508
        // requires whitespace before the marker separator.
        semi = std::string_view::npos;
        for (size_t k = 1; k < rest.size(); ++k)
            if (rest[k] == ';' && std::isspace(static_cast<unsigned char>(rest[k - 1]))) {
                semi = k;
                break;
            }
    } else {
        semi = rest.find(';');
    }
    if (semi != std::string_view::npos) req.marker = std::string(trim(rest.substr(semi + 1)));
    std::sort(req.extras.begin(), req.extras.end());
    req.extras.erase(std::unique(req.extras.begin(), req.extras.end()), req.extras.end());
    return true;
}

namespace {

// Marker truth: `unknown` when a variable has no value for the target.
enum class Tri { no, yes, unknown };

bool is_version_variable(std::string_view name) {
    return name == "python_version" || name == "python_full_version" ||
           name == "implementation_version";
}

class MarkerParser {
public:
    MarkerParser(std::string_view text, const std::vector<std::string>& extras,
                 const PythonTarget& target)
        : text_(text), extras_(extras), target_(target) {}

    // nullopt when the marker does not parse.
    std::optional<Tri> evaluate() {
        Tri t = parse_or();
        skip_ws();
        if (failed_ || pos_ != text_.size()) return std::nullopt;
        return t;
    }

private:
    struct Value {
        bool variable = false;
        std::string text;
    };

    void skip_ws() {
        while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_])))
            ++pos_;
    }

    bool peek_word(std::string_view word) {
        skip_ws();
        if (text_.substr(pos_, word.size()) != word) return false;
        size_t end = pos_ + word.size();
        return end == text_.size() ||
               !(std::isalnum(static_cast<unsigned char>(text_[end])) || text_[end] == '_');
    }

    Tri parse_or() {
        Tri acc = parse_and();
        while (!failed_ && peek_word("or")) {
            pos_ += 2;
            Tri rhs = parse_and();
            if (acc == Tri::yes || rhs == Tri::yes)
                acc = Tri::yes;
            else if (acc == Tri::unknown || rhs == Tri::unknown)
                acc = Tri::unknown;
            else
                acc = Tri::no;
        }
        return acc;
    }

    Tri parse_and() {
        Tri acc = parse_atom();
        while (!failed_ && peek_word("and")) {
            pos_ += 3;
            Tri rhs = parse_atom();
            if (acc == Tri::no || rhs == Tri::no)
                acc = Tri::no;
            else if (acc == Tri::unknown || rhs == Tri::unknown)
                acc = Tri::unknown;
            else
                acc = Tri::yes;
        }
        return acc;
    }

    Tri parse_atom() {
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == '(') {
            ++pos_;
            Tri inner = parse_or();
            skip_ws();
            if (pos_ >= text_.size() || text_[pos_] != ')') {
                failed_ = true;
                return Tri::unknown;
            }
            ++pos_;
            return inner;
        }
        auto lhs = parse_value();
        auto op = parse_op();
        auto rhs = parse_value();
        if (!lhs || !op || !rhs) {
            failed_ = true;
            return Tri::unknown;
        }
        return compare(*lhs, *op, *rhs);
    }

    std::optional<Value> parse_value() {
        skip_ws();
        if (pos_ >= text_.size()) return std::nullopt;
        char c = text_[pos_];
        if (c == '"' || c == '\'') {
            size_t close = text_.find(c, pos_ + 1);
            if (close == std::string_view::npos) return std::nullopt;
            Value v{false, std::string(text_.substr(pos_ + 1, close - pos_ - 1))};
            pos_ = close + 1;
            return v;
        }
        size_t start = pos_;
        while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) ||
                                       text_[pos_] == '_' || text_[pos_] == '.'))
            ++pos_;
        if (start == pos_) return std::nullopt;
        return Value{true, std::string(text_.substr(start, pos_ - start))};
    }

    std::optional<std::string> parse_op() {
        skip_ws();
        for (std::string_view op : {"===", "==", "!=", "<=", ">=", "~=", "<", ">"}) {
            if (text_.substr(pos_, op.size()) == op) {
                pos_ += op.size();
                return std::string(op);
            }
        }
        if (peek_word("in")) {
            pos_ += 2;
            return std::string("in");
        }
        if (peek_word("not")) {
            pos_ += 3;
            if (!peek_word("in")) return std::nullopt;
            pos_ += 2;
            return std::string("not in");
        }
        return std::nullopt;
    }

    // Resolves a variable for the target; nullopt when unknown.
    std::optional<std::string> variable(const std::string& name) const {
        // hearth runs on Linux only; these hold for every interpreter it starts.
        if (name == "sys_platform") return std::string("linux");
        if (name == "os_name") return std::string("posix");
        if (name == "platform_system") return std::string("Linux");
        if (name == "platform_machine" && !target_.machine.empty()) return target_.machine;
        if (target_.major <= 0) return std::nullopt;
        const std::string mm = std::to_string(target_.major) + "." + std::to_string(target_.minor);
        if (name == "python_version") return mm;
        if (name == "python_full_version" || name == "implementation_version") {
            if (target_.micro < 0) return std::nullopt;
            return mm + "." + std::to_string(target_.micro);
        }
        if (name == "implementation_name") return target_.implementation;
        if (name == "platform_python_implementation") {
            if (target_.implementation == "cpython") return std::string("CPython");
            if (target_.implementation == "pypy") return std::string("PyPy");
        }
        return std::nullopt;
    }

    Tri compare_extra(const std::string& op, const std::string& literal) const {
        const std::string want = normalize_project_name(literal);
        const bool present = std::find(extras_.begin(), extras_.end(), want) != extras_.end();
        if (op == "==" || op == "===") return present ? Tri::yes : Tri::no;
        if (op == "!=") return present ? Tri::no : Tri::yes;
        return Tri::unknown;
    }

    Tri compare(const Value& lhs, const std::string& op, const Value& rhs) const {
        if (lhs.variable && lhs.text == "extra" && !rhs.variable)
            return compare_extra(op, rhs.text);
        if (rhs.variable && rhs.text == "extra" && !lhs.variable)
            return compare_extra(op, lhs.text);

        std::string a = lhs.text, b = rhs.text;
        if (lhs.variable) {
            auto v = variable(lhs.text);
            if (!v) return Tri::unknown;
            a = *v;
        }
        if (rhs.variable) {
            auto v = variable(rhs.text);
            if (!v) return Tri::unknown;
            b = *v;
        }
        const bool versiony = (lhs.variable && is_version_variable(lhs.text)) ||
                              (rhs.variable && is_version_variable(rhs.text));
        auto as_tri = [](bool x) { return x ? Tri::yes : Tri::no; };
        if (op == "in") return as_tri(b.find(a) != std::string::npos);
        if (op == "not in") return as_tri(b.find(a) == std::string::npos);
        if (op == "===") return as_tri(a == b);
        if (!versiony) {
            if (op == "==") return as_tri(a == b);
            if (op == "!=") return as_tri(a != b);
            return Tri::unknown;
        }
        // As packaging's Marker does: Specifier(op + rhs).contains(lhs).
        Specifier spec;
        Version candidate;
        std::string ignored;
        if (!parse_specifier(op + b, spec, ignored) || !parse_version(a, candidate, ignored))
            return Tri::unknown;
        return as_tri(specifier_matches(candidate, a, spec));
    }

    std::string_view text_;
    const std::vector<std::string>& extras_;
    const PythonTarget& target_;
    size_t pos_ = 0;
    bool failed_ = false;
};

} // namespace

std::string normalize_project_name(std::string_view name) {
    std::string out;
    out.reserve(name.size());
    bool pending_dash = false;
    for (char c : name) {
        if (c == '-' || c == '_' || c == '.') {
            pending_dash = !out.empty();
            continue;
        }
        if (pending_dash) out += '-';
        pending_dash = false;
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

bool marker_applies(std::string_view marker, const std::vector<std::string>& extras,
                    const PythonTarget& target) {
    if (trim(marker).empty()) return true;
    std::vector<std::string> normalized;
    for (const auto& e : extras)
        normalized.push_back(normalize_project_name(e));
    MarkerParser parser(marker, normalized, target);
    auto result = parser.evaluate();
    return !result || *result != Tri::no;
}

} // namespace hearth

#include "launch/pex_info.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>

namespace hearth {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// PEX-INFO grows by ~100 bytes per distribution; anything near this is not a
// pex. METADATA files are capped too (we only read their header block).
constexpr std::uintmax_t kMaxPexInfoBytes = 16u << 20;
constexpr std::uintmax_t kMaxSmallFileBytes = 4u << 20;

bool read_file(const fs::path& path, std::uintmax_t limit, std::string& out, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = path.string() + ": " + std::strerror(errno ? errno : ENOENT);
        return false;
    }
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (!ec && size > limit) {
        error = path.string() + ": file too large (" + std::to_string(size) + " bytes)";
        return false;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
        error = path.string() + ": read error";
        return false;
    }
    out = std::move(buf).str();
    if (out.size() > limit) {
        error = path.string() + ": file too large";
        return false;
    }
    return true;
}

bool is_dir(const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p, ec);
}

bool is_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

// Names of the entries of `dir` (empty on error), sorted for determinism.
std::vector<std::string> list_dir(const fs::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    while (!ec && it != end) {
        names.push_back(it->path().filename().string());
        it.increment(ec);
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b])))
        ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1])))
        --e;
    return std::string(s.substr(b, e - b));
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) !=
            std::tolower(static_cast<unsigned char>(prefix[i])))
            return false;
    return true;
}

std::string normal_string(const fs::path& p) {
    std::string s = p.lexically_normal().string();
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    return s;
}

// ---------------------------------------------------------------- PEX-INFO

std::string key_error(std::string_view key, std::string_view problem) {
    return "PEX-INFO: key '" + std::string(key) + "': " + std::string(problem);
}

std::string found(const json& v) {
    return std::string(", found ") + v.type_name();
}

const json* member(const json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

bool get_string(const json& obj, const char* key, std::string& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_string()) {
        error = key_error(key, "must be a string" + found(*v));
        return false;
    }
    out = v->get_ref<const std::string&>();
    return true;
}

bool get_bool(const json& obj, const char* key, bool& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_boolean()) {
        error = key_error(key, "must be a boolean" + found(*v));
        return false;
    }
    out = v->get<bool>();
    return true;
}

bool get_string_list(const json& obj, const char* key, std::vector<std::string>& out,
                     std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_array()) {
        error = key_error(key, "must be a list of strings" + found(*v));
        return false;
    }
    out.clear();
    for (size_t i = 0; i < v->size(); ++i) {
        const json& item = (*v)[i];
        if (!item.is_string()) {
            error = key_error(key, "item " + std::to_string(i) + " must be a string" + found(item));
            return false;
        }
        out.push_back(item.get_ref<const std::string&>());
    }
    return true;
}

bool get_string_map(const json& obj, const char* key,
                    std::vector<std::pair<std::string, std::string>>& out, std::string& error) {
    const json* v = member(obj, key);
    if (!v) return true;
    if (!v->is_object()) {
        error = key_error(key, "must be an object of strings" + found(*v));
        return false;
    }
    out.clear();
    for (auto it = v->begin(); it != v->end(); ++it) {
        if (!it.value().is_string()) {
            error =
                key_error(key, "value of '" + it.key() + "' must be a string" + found(it.value()));
            return false;
        }
        out.emplace_back(it.key(), it.value().get_ref<const std::string&>());
    }
    return true;
}

bool parse_pex_info_json(const json& doc, PexInfo& info, std::string& error) {
    if (!doc.is_object()) {
        error = "PEX-INFO: must be a JSON object" + found(doc);
        return false;
    }
    if (!get_string(doc, "entry_point", info.entry_point, error)) return false;
    if (!get_string(doc, "script", info.script, error)) return false;
    if (!info.entry_point.empty() && !info.script.empty()) {
        error = "PEX-INFO: keys 'entry_point' and 'script' are both set; pex allows only one";
        return false;
    }
    if (!info.entry_point.empty()) {
        EntryPoint ep;
        std::string why;
        if (!parse_entry_point(info.entry_point, ep, why)) {
            error = key_error("entry_point", why);
            return false;
        }
    }
    if (!get_string_map(doc, "distributions", info.distributions, error)) return false;
    for (const auto& [name, fingerprint] : info.distributions) {
        if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
            name.find('\0') != std::string::npos) {
            error = key_error("distributions", "invalid wheel name '" + name + "'");
            return false;
        }
    }

    if (const json* reqs = member(doc, "requirements")) {
        if (!reqs->is_array()) {
            error = key_error("requirements", "must be a list of strings" + found(*reqs));
            return false;
        }
        for (size_t i = 0; i < reqs->size(); ++i) {
            const json& r = (*reqs)[i];
            // pex < 0.8 stored [requirement, repo, dynamic] triples; pex still reads them.
            if (r.is_array() && r.size() == 3 && r[0].is_string()) {
                info.requirements.push_back(r[0].get_ref<const std::string&>());
            } else if (r.is_string()) {
                info.requirements.push_back(r.get_ref<const std::string&>());
            } else {
                error = key_error("requirements",
                                  "item " + std::to_string(i) + " must be a string" + found(r));
                return false;
            }
        }
    }

    if (const json* ih = member(doc, "inherit_path")) {
        if (ih->is_boolean()) {
            info.inherit_path = ih->get<bool>() ? InheritPath::prefer : InheritPath::none;
        } else if (ih->is_string()) {
            const auto& s = ih->get_ref<const std::string&>();
            if (s.empty() || s == "false")
                info.inherit_path = InheritPath::none;
            else if (s == "prefer")
                info.inherit_path = InheritPath::prefer;
            else if (s == "fallback")
                info.inherit_path = InheritPath::fallback;
            else {
                error =
                    key_error("inherit_path",
                              "must be \"false\", \"prefer\" or \"fallback\", found \"" + s + "\"");
                return false;
            }
        } else {
            error = key_error("inherit_path", "must be a string or boolean" + found(*ih));
            return false;
        }
    }

    if (!get_string_list(doc, "interpreter_constraints", info.interpreter_constraints, error))
        return false;
    if (!get_string_map(doc, "inject_env", info.inject_env, error)) return false;
    if (!get_string_list(doc, "inject_args", info.inject_args, error)) return false;
    if (!get_string_list(doc, "inject_python_args", info.inject_python_args, error)) return false;
    if (!get_bool(doc, "strip_pex_env", info.strip_pex_env, error)) return false;
    if (!get_bool(doc, "deps_are_wheel_files", info.deps_are_wheel_files, error)) return false;
    if (!get_string(doc, "pex_hash", info.pex_hash, error)) return false;
    if (!get_string(doc, "code_hash", info.code_hash, error)) return false;

    if (!get_string_list(doc, "pex_paths", info.pex_path, error)) return false;
    if (info.pex_path.empty()) {
        std::string legacy;
        if (!get_string(doc, "pex_path", legacy, error)) return false;
        size_t start = 0;
        while (!legacy.empty() && start <= legacy.size()) {
            size_t colon = legacy.find(':', start);
            if (colon == std::string::npos) colon = legacy.size();
            if (colon > start) info.pex_path.push_back(legacy.substr(start, colon - start));
            start = colon + 1;
        }
    }

    if (const json* bp = member(doc, "build_properties")) {
        if (!bp->is_object()) {
            error = key_error("build_properties", "must be an object" + found(*bp));
            return false;
        }
        if (const json* ver = member(*bp, "pex_version"); ver && ver->is_string())
            info.pex_version = ver->get_ref<const std::string&>();
    }
    return true;
}

// ------------------------------------------------------------ requirements

struct Requirement {
    std::string project;             // normalised
    std::vector<std::string> extras; // normalised, sorted, unique
    std::string marker;
};

bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

bool parse_requirement(std::string_view text, Requirement& req) {
    std::string s = trim(text);
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
            std::string extra = trim(list.substr(start, comma - start));
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
    if (semi != std::string_view::npos) req.marker = trim(rest.substr(semi + 1));
    std::sort(req.extras.begin(), req.extras.end());
    req.extras.erase(std::unique(req.extras.begin(), req.extras.end()), req.extras.end());
    return true;
}

// ------------------------------------------------------------------ markers

enum class Tri { no, yes, unknown };

std::vector<long> version_parts(std::string_view v, bool* wildcard = nullptr) {
    std::vector<long> parts;
    size_t i = 0;
    if (wildcard) *wildcard = false;
    while (i < v.size()) {
        if (v[i] == '*') {
            if (wildcard) *wildcard = true;
            break;
        }
        if (!std::isdigit(static_cast<unsigned char>(v[i]))) break;
        long n = 0;
        while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i])))
            n = n * 10 + (v[i++] - '0');
        parts.push_back(n);
        if (i < v.size() && v[i] == '.')
            ++i;
        else
            break;
    }
    return parts;
}

int compare_versions(std::vector<long> a, std::vector<long> b) {
    const size_t n = std::max(a.size(), b.size());
    a.resize(n, 0);
    b.resize(n, 0);
    for (size_t i = 0; i < n; ++i)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

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
        bool wild_a = false, wild_b = false;
        auto va = version_parts(a, &wild_a);
        auto vb = version_parts(b, &wild_b);
        if (va.empty() || vb.empty()) return Tri::unknown;
        if ((op == "==" || op == "!=") && (wild_a || wild_b)) {
            const auto& prefix = wild_b ? vb : va;
            const auto& full = wild_b ? va : vb;
            bool match = full.size() >= prefix.size() &&
                         std::equal(prefix.begin(), prefix.end(), full.begin());
            return as_tri(op == "==" ? match : !match);
        }
        const int c = compare_versions(va, vb);
        if (op == "==") return as_tri(c == 0);
        if (op == "!=") return as_tri(c != 0);
        if (op == "<") return as_tri(c < 0);
        if (op == "<=") return as_tri(c <= 0);
        if (op == ">") return as_tri(c > 0);
        if (op == ">=") return as_tri(c >= 0);
        if (op == "~=") {
            // Compatible release, literal on the right: V >= X and V == X[:-1].*
            if (vb.size() < 2) return Tri::unknown;
            std::vector<long> prefix(vb.begin(), vb.end() - 1);
            bool same =
                va.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), va.begin());
            return as_tri(c >= 0 && same);
        }
        return Tri::unknown;
    }

    std::string_view text_;
    const std::vector<std::string>& extras_;
    const PythonTarget& target_;
    size_t pos_ = 0;
    bool failed_ = false;
};

// --------------------------------------------------------------- wheel names

struct WheelName {
    std::string project;      // normalised
    std::string name_version; // "<name>-<version>" as in the file name
    std::string python, abi, platform;
    bool ok = false;
};

WheelName parse_wheel_name(std::string_view file) {
    WheelName w;
    if (file.size() < 5 || file.substr(file.size() - 4) != ".whl") return w;
    std::string_view stem = file.substr(0, file.size() - 4);
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
        size_t dash = stem.find('-', start);
        parts.push_back(stem.substr(start, dash == std::string_view::npos ? dash : dash - start));
        if (dash == std::string_view::npos) break;
        start = dash + 1;
    }
    if (parts.size() < 5 || parts.size() > 6) return w;
    w.project = normalize_project_name(parts[0]);
    w.name_version = std::string(parts[0]) + "-" + std::string(parts[1]);
    w.python = std::string(parts[parts.size() - 3]);
    w.abi = std::string(parts[parts.size() - 2]);
    w.platform = std::string(parts[parts.size() - 1]);
    w.ok = true;
    return w;
}

std::vector<std::string> split_dots(const std::string& s) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= s.size()) {
        size_t dot = s.find('.', start);
        if (dot == std::string::npos) dot = s.size();
        out.push_back(s.substr(start, dot - start));
        start = dot + 1;
    }
    return out;
}

// "cp311" -> 11 when the prefix and major match; -1 otherwise.
int tag_minor(std::string_view tag, std::string_view prefix, int major) {
    if (tag.substr(0, prefix.size()) != prefix) return -1;
    std::string_view digits = tag.substr(prefix.size());
    if (digits.empty() || digits[0] != static_cast<char>('0' + major)) return -1;
    digits.remove_prefix(1);
    if (digits.empty()) return -2; // "py3": any minor
    int n = 0;
    for (char c : digits) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return -1;
        n = n * 10 + (c - '0');
    }
    return n;
}

// -------------------------------------------------------- distribution walk

struct Dist {
    std::string wheel;
    std::string fingerprint;
    WheelName name;
    fs::path base;                    // chroot or unpacked wheel directory
    std::vector<std::string> entries; // absolute sys.path entries
    fs::path metadata;                // METADATA file (may not exist)
    bool metadata_loaded = false;
    std::vector<Requirement> requires_dist;
};

bool load_chroot(const fs::path& base, Dist& d, std::string& error) {
    if (!is_dir(base)) {
        error = base.string() + ": distribution directory missing from the extracted tree";
        return false;
    }
    const fs::path layout_path = base / ".layout.json";
    InstalledWheelLayout layout;
    if (is_file(layout_path)) {
        std::string text;
        if (!read_file(layout_path, kMaxSmallFileBytes, text, error)) return false;
        if (!parse_layout_json(text, layout_path.string(), layout, error)) return false;
    } else {
        // Chroots from pex releases before .layout.json were importable at
        // their root, which is also what pex assumes when the key is absent.
        layout.sys_path_entries = {"."};
    }
    for (const auto& rel : layout.sys_path_entries)
        d.entries.push_back(normal_string(base / rel));
    if (!layout.record_relpath.empty()) {
        d.metadata = base / fs::path(layout.record_relpath).parent_path() / "METADATA";
    } else {
        for (const auto& n : list_dir(base))
            if (n.size() > 10 && n.compare(n.size() - 10, 10, ".dist-info") == 0) {
                d.metadata = base / n / "METADATA";
                break;
            }
    }
    return true;
}

bool load_unpacked_wheel(const fs::path& base, Dist& d, std::string& error) {
    if (!is_dir(base)) {
        error = base.string() + ": raw wheel was not unpacked into the tree";
        return false;
    }
    std::string dist_info, data;
    for (const auto& n : list_dir(base)) {
        if (n.size() > 10 && n.compare(n.size() - 10, 10, ".dist-info") == 0 &&
            (dist_info.empty() || n == d.name.name_version + ".dist-info"))
            dist_info = n;
        if (n.size() > 5 && n.compare(n.size() - 5, 5, ".data") == 0 &&
            (data.empty() || n == d.name.name_version + ".data"))
            data = n;
    }
    bool root_is_purelib = true;
    if (!dist_info.empty()) {
        d.metadata = base / dist_info / "METADATA";
        std::string wheel_text, ignored;
        if (read_file(base / dist_info / "WHEEL", kMaxSmallFileBytes, wheel_text, ignored)) {
            std::istringstream lines(wheel_text);
            for (std::string line; std::getline(lines, line);) {
                if (starts_with_ci(line, "Root-Is-Purelib:"))
                    root_is_purelib = starts_with_ci(trim(line.substr(16)), "true");
            }
        }
    }
    d.entries.push_back(normal_string(base));
    if (!data.empty()) {
        // pex installs the other lib kind into the chroot's stash and lists
        // it after the root (pex/pep_427.py install_wheel_chroot); the
        // unpacked wheel keeps both under <name>-<ver>.data/.
        const char* first = root_is_purelib ? "purelib" : "platlib";
        const char* second = root_is_purelib ? "platlib" : "purelib";
        for (const char* kind : {first, second})
            if (is_dir(base / data / kind)) d.entries.push_back(normal_string(base / data / kind));
    }
    return true;
}

void load_requires_dist(Dist& d) {
    if (d.metadata_loaded) return;
    d.metadata_loaded = true;
    if (d.metadata.empty()) return;
    std::string text, ignored;
    if (!read_file(d.metadata, kMaxSmallFileBytes, text, ignored)) return;
    std::istringstream lines(text);
    std::string current;
    auto flush = [&] {
        if (starts_with_ci(current, "Requires-Dist:")) {
            Requirement r;
            if (parse_requirement(std::string_view(current).substr(14), r))
                d.requires_dist.push_back(std::move(r));
        }
        current.clear();
    };
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) break; // end of the header block; the body is the description
        if (line[0] == ' ' || line[0] == '\t') {
            current += " " + trim(line);
            continue;
        }
        flush();
        current = line;
    }
    flush();
}

// The distributions of one tree in pex's activation order.
class TreeResolver {
public:
    TreeResolver(const PexTree& tree, const PythonTarget& target) : tree_(tree), target_(target) {}

    bool run(std::vector<Dist>& out, std::string& error) {
        const PexInfo& info = *tree_.info;
        const fs::path root(tree_.root);
        for (const auto& [wheel, fingerprint] : info.distributions) {
            Dist d;
            d.wheel = wheel;
            d.fingerprint = fingerprint;
            d.name = parse_wheel_name(wheel);
            if (!d.name.ok) d.name.project = normalize_project_name(wheel);
            bool ok = info.deps_are_wheel_files
                          ? load_unpacked_wheel(root / ".hearth" / "wheels" / wheel, d, error)
                          : load_chroot(root / ".deps" / wheel, d, error);
            if (!ok) return false;
            dists_.push_back(std::move(d));
        }
        choose_per_project();

        // Roots as pex/environment.py _root_requirements_iter groups them:
        // one per project in first-seen order, extras merged.
        std::vector<Requirement> roots;
        for (const auto& text : info.requirements) {
            Requirement r;
            if (!parse_requirement(text, r)) continue;
            if (!marker_applies(r.marker, {}, target_)) continue;
            auto same = std::find_if(roots.begin(), roots.end(),
                                     [&](const Requirement& x) { return x.project == r.project; });
            if (same == roots.end()) {
                roots.push_back(std::move(r));
            } else {
                same->extras.insert(same->extras.end(), r.extras.begin(), r.extras.end());
                std::sort(same->extras.begin(), same->extras.end());
                same->extras.erase(std::unique(same->extras.begin(), same->extras.end()),
                                   same->extras.end());
            }
        }
        for (const auto& r : roots)
            resolve(r.project, r.extras);

        // Distributions no requirement reaches (markers we could not rule
        // out, hand-made pexes): pex leaves them inactive; hearth appends them
        // after the resolved ones so they cannot shadow anything that is.
        for (const auto& entry : chosen_) {
            if (std::find(order_.begin(), order_.end(), entry.second) == order_.end())
                unreached_.push_back(entry.second);
        }
        std::sort(unreached_.begin(), unreached_.end());
        for (size_t i : order_)
            out.push_back(dists_[i]);
        for (size_t i : unreached_)
            out.push_back(dists_[i]);
        return true;
    }

private:
    void choose_per_project() {
        for (size_t i = 0; i < dists_.size(); ++i) {
            const std::string& project = dists_[i].name.project;
            auto it = chosen_.find(project);
            if (it == chosen_.end()) {
                chosen_.emplace(project, i);
                continue;
            }
            const int current = wheel_tag_rank(dists_[it->second].wheel, target_);
            const int candidate = wheel_tag_rank(dists_[i].wheel, target_);
            if (candidate > current) it->second = i;
        }
    }

    void resolve(const std::string& project, const std::vector<std::string>& extras) {
        // pex/environment.py _resolve_requirement: a key already resolved with
        // a superset of these extras satisfies the requirement.
        for (const auto& [p, e] : resolved_keys_) {
            if (p == project && std::includes(e.begin(), e.end(), extras.begin(), extras.end()))
                return;
        }
        auto it = chosen_.find(project);
        if (it == chosen_.end()) return; // not in this pex: nothing to activate
        resolved_keys_.emplace_back(project, extras);
        const size_t index = it->second;
        if (std::find(order_.begin(), order_.end(), index) == order_.end()) order_.push_back(index);
        load_requires_dist(dists_[index]);
        const std::vector<Requirement>& deps = dists_[index].requires_dist;
        for (const auto& dep : deps) {
            if (!marker_applies(dep.marker, extras, target_)) continue;
            resolve(dep.project, dep.extras);
        }
    }

    const PexTree& tree_;
    const PythonTarget& target_;
    std::vector<Dist> dists_;
    std::map<std::string, size_t> chosen_;
    std::vector<std::pair<std::string, std::vector<std::string>>> resolved_keys_;
    std::vector<size_t> order_;
    std::vector<size_t> unreached_;
};

bool is_placeholder(char c) {
    return c == '{' || c == '}';
}

bool expand_one(const std::string& arg, const std::map<std::string, std::string>& env,
                std::string& out, std::string& why) {
    out.clear();
    for (size_t i = 0; i < arg.size(); ++i) {
        const char c = arg[i];
        if (!is_placeholder(c)) {
            out += c;
            continue;
        }
        if (i + 1 < arg.size() && arg[i + 1] == c) {
            out += c;
            ++i;
            continue;
        }
        if (c == '}') {
            why = "single '}' encountered";
            return false;
        }
        const size_t close = arg.find('}', i + 1);
        if (close == std::string::npos) {
            why = "single '{' encountered";
            return false;
        }
        const std::string field = arg.substr(i + 1, close - i - 1);
        std::string name;
        constexpr std::string_view dot = "pex.env.", bracket = "pex.env[";
        if (field.compare(0, dot.size(), dot) == 0) {
            name = field.substr(dot.size());
            if (name.empty() || name.find_first_of(".[!:") != std::string::npos) name.clear();
        } else if (field.compare(0, bracket.size(), bracket) == 0 && field.back() == ']') {
            name = field.substr(bracket.size(), field.size() - bracket.size() - 1);
            if (name.find_first_of("[]") != std::string::npos) name.clear();
        }
        if (name.empty()) {
            why = "unsupported replacement field '{" + field + "}' (pex supports {pex.env.NAME})";
            return false;
        }
        if (auto it = env.find(name); it != env.end()) out += it->second;
        i = close;
    }
    return true;
}

} // namespace

// ===================================================================== API

std::string_view to_string(InheritPath value) noexcept {
    switch (value) {
    case InheritPath::prefer:
        return "prefer";
    case InheritPath::fallback:
        return "fallback";
    case InheritPath::none:
        break;
    }
    return "false";
}

bool parse_pex_info(std::string_view text, PexInfo& out, std::string& error) {
    try {
        json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
        if (doc.is_discarded()) {
            error = "PEX-INFO: not valid JSON";
            return false;
        }
        PexInfo info;
        if (!parse_pex_info_json(doc, info, error)) return false;
        out = std::move(info);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = std::string("PEX-INFO: ") + e.what();
        return false;
    }
}

bool load_pex_info(const std::string& tree, PexInfo& out, std::string& error) {
    std::string text;
    const fs::path path = fs::path(tree) / "PEX-INFO";
    if (!read_file(path, kMaxPexInfoBytes, text, error)) return false;
    if (!parse_pex_info(text, out, error)) {
        error = path.string() + ": " + error;
        return false;
    }
    return true;
}

bool parse_entry_point(std::string_view spec, EntryPoint& out, std::string& error) {
    // pex/dist_metadata.py parse_entry_point.
    std::string s = trim(spec);
    if (auto bracket = s.find('['); bracket != std::string::npos) s = trim(s.substr(0, bracket));
    const auto colon = s.find(':');
    std::string module = trim(s.substr(0, colon));
    std::string attrs = colon == std::string::npos ? std::string() : trim(s.substr(colon + 1));
    if (module.empty() || (colon != std::string::npos && attrs.empty())) {
        error =
            "invalid entry point '" + std::string(spec) + "': expected module or module:function";
        return false;
    }
    auto dotted_ok = [](const std::string& v) {
        if (v.front() == '.' || v.back() == '.' || v.find("..") != std::string::npos) return false;
        return std::all_of(v.begin(), v.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
                   static_cast<unsigned char>(c) >= 0x80;
        });
    };
    if (!dotted_ok(module) || (!attrs.empty() && !dotted_ok(attrs))) {
        error = "invalid entry point '" + std::string(spec) + "': not a dotted Python name";
        return false;
    }
    out.module = std::move(module);
    out.attrs = std::move(attrs);
    return true;
}

bool parse_layout_json(std::string_view text, std::string_view origin, InstalledWheelLayout& out,
                       std::string& error) {
    const std::string where(origin);
    try {
        json doc = json::parse(text.begin(), text.end(), nullptr, false);
        if (doc.is_discarded()) {
            error = where + ": not valid JSON";
            return false;
        }
        if (!doc.is_object()) {
            error = where + ": must be a JSON object" + found(doc);
            return false;
        }
        InstalledWheelLayout layout;
        auto str = [&](const char* key, std::string& dst, bool required) {
            const json* v = member(doc, key);
            if (!v) {
                if (required) error = where + ": key '" + key + "' is missing";
                return !required;
            }
            if (!v->is_string() || (required && v->get_ref<const std::string&>().empty())) {
                error = where + ": key '" + key + "' must be a non-empty string" + found(*v);
                return false;
            }
            dst = v->get_ref<const std::string&>();
            return true;
        };
        // pex/installed_wheel.py InstalledWheel.load requires both.
        if (!str("stash_dir", layout.stash_dir, true)) return false;
        if (!str("record_relpath", layout.record_relpath, true)) return false;
        if (!str("fingerprint", layout.fingerprint, false)) return false;
        if (const json* v = member(doc, "root_is_purelib")) {
            if (!v->is_boolean()) {
                error = where + ": key 'root_is_purelib' must be a boolean" + found(*v);
                return false;
            }
            layout.root_is_purelib = v->get<bool>();
        }
        const json* entries = member(doc, "sys_path_entries");
        if (!entries) {
            layout.sys_path_entries = {"."};
        } else {
            if (!entries->is_array()) {
                error =
                    where + ": key 'sys_path_entries' must be a list of strings" + found(*entries);
                return false;
            }
            for (const auto& e : *entries) {
                if (!e.is_string()) {
                    error = where + ": key 'sys_path_entries' must be a list of strings, item" +
                            found(e);
                    return false;
                }
                std::string rel = e.get<std::string>();
                if (rel.empty()) rel = ".";
                const fs::path p(rel);
                bool escapes = p.is_absolute();
                for (const auto& part : p)
                    if (part == "..") escapes = true;
                if (escapes) {
                    error = where + ": sys_path_entries item '" + rel + "' leaves the chroot";
                    return false;
                }
                layout.sys_path_entries.push_back(std::move(rel));
            }
        }
        out = std::move(layout);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = where + ": " + e.what();
        return false;
    }
}

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

int wheel_tag_rank(std::string_view wheel_file_name, const PythonTarget& target) {
    const WheelName w = parse_wheel_name(wheel_file_name);
    if (!w.ok || target.major <= 0) return 0;
    const bool cpython = target.implementation == "cpython";
    int best = -1;
    for (const auto& py : split_dots(w.python)) {
        int py_rank = -1;
        bool cp_exact = false;
        int cp_minor = -1;
        if (int m = tag_minor(py, "py", target.major); m == -2)
            py_rank = 1;
        else if (m >= 0 && m <= target.minor)
            py_rank = 2;
        if (int m = tag_minor(py, cpython ? "cp" : "pp", target.major); m >= 0) {
            cp_minor = m;
            cp_exact = (m == target.minor);
            py_rank = cp_exact ? 4 : 3;
        }
        if (py_rank < 0) continue;
        for (const auto& abi : split_dots(w.abi)) {
            int abi_rank = -1;
            if (abi == "none")
                abi_rank = 0;
            else if (abi == "abi3" && cpython && cp_minor >= 0 && cp_minor <= target.minor)
                abi_rank = 1;
            else if (cp_exact) {
                const std::string own = (cpython ? "cp" : "pypy") + std::to_string(target.major) +
                                        std::to_string(target.minor);
                if (abi == own || abi == own + "m") abi_rank = 2;
            }
            if (abi_rank < 0) continue;
            // A cpXY-only wheel for an older minor needs abi3.
            if (py_rank == 3 && abi_rank != 1) continue;
            for (const auto& plat : split_dots(w.platform)) {
                int plat_rank = -1;
                if (plat == "any") {
                    plat_rank = 0;
                } else if (plat.rfind("linux_", 0) == 0 || plat.rfind("manylinux", 0) == 0 ||
                           plat.rfind("musllinux", 0) == 0) {
                    const std::string suffix = "_" + target.machine;
                    const bool machine_ok =
                        target.machine.empty() ||
                        (plat.size() > suffix.size() &&
                         plat.compare(plat.size() - suffix.size(), suffix.size(), suffix) == 0);
                    if (machine_ok) plat_rank = 1;
                }
                if (plat_rank < 0) continue;
                best = std::max(best, py_rank * 100 + abi_rank * 10 + plat_rank);
            }
        }
    }
    return best;
}

bool build_sys_path(const std::vector<PexTree>& trees, const PythonTarget& target,
                    std::vector<std::string>& out, std::string& error) {
    try {
        for (const auto& t : trees) {
            if (!t.info) {
                error = "build_sys_path: tree '" + t.root + "' has no PexInfo";
                return false;
            }
            if (!fs::path(t.root).is_absolute()) {
                error = "build_sys_path: tree root '" + t.root + "' is not absolute";
                return false;
            }
        }
        // Replays pex/environment.py PEXEnvironment._activate for the main
        // tree, then each PEX_PATH tree: a tree's root goes to the head of
        // sys.path (the main root is already there as the script directory),
        // then each distribution entry is appended, or inserted at the head
        // when that tree's own inherit_path is fallback. The same wheel (name
        // and fingerprint: pex's install location) is activated once.
        std::vector<std::string> head, tail;
        std::set<std::string> seen;
        auto add_head = [&](const std::string& e) {
            if (std::find(head.begin(), head.end(), e) == head.end() &&
                std::find(tail.begin(), tail.end(), e) == tail.end())
                head.insert(head.begin(), e);
        };
        auto add_tail = [&](const std::string& e) {
            if (std::find(head.begin(), head.end(), e) == head.end() &&
                std::find(tail.begin(), tail.end(), e) == tail.end())
                tail.push_back(e);
        };
        for (const PexTree& t : trees) {
            add_head(normal_string(t.root));
            std::vector<Dist> dists;
            TreeResolver resolver(t, target);
            if (!resolver.run(dists, error)) return false;
            const bool fallback = t.info->inherit_path == InheritPath::fallback;
            for (const auto& d : dists) {
                if (!seen.insert(d.wheel + '\0' + d.fingerprint).second) continue;
                for (const auto& e : d.entries) {
                    if (fallback)
                        add_head(e);
                    else
                        add_tail(e);
                }
            }
        }
        // The main root must stay the last head entry: hearth_boot.py finds the
        // head's end by its PEX-INFO and puts PYTHONPATH (prefer) before it.
        std::vector<std::string> result = std::move(head);
        result.insert(result.end(), tail.begin(), tail.end());
        out = std::move(result);
        return true;
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const std::exception& e) {
        error = std::string("build_sys_path: ") + e.what();
        return false;
    }
}

bool build_sys_path(const std::string& tree, const PexInfo& info, std::vector<std::string>& out,
                    std::string& error) {
    return build_sys_path({PexTree{tree, &info}}, PythonTarget{}, out, error);
}

void apply_pex_environment(const PexInfo& info, std::map<std::string, std::string>& env) {
    // pex/pex.py PEX._execute: _clean_environment, then os.environ.setdefault.
    if (info.strip_pex_env) {
        for (auto it = env.begin(); it != env.end();) {
            if (it->first.rfind("PEX_", 0) == 0)
                it = env.erase(it);
            else
                ++it;
        }
    }
    for (const auto& [name, value] : info.inject_env)
        env.emplace(name, value);
}

bool expand_inject_args(const PexInfo& info, const std::map<std::string, std::string>& env,
                        std::vector<std::string>& out, std::string& error) {
    std::vector<std::string> result;
    result.reserve(info.inject_args.size());
    for (size_t i = 0; i < info.inject_args.size(); ++i) {
        std::string expanded, why;
        if (!expand_one(info.inject_args[i], env, expanded, why)) {
            error = "PEX-INFO: key 'inject_args': item " + std::to_string(i) + " ('" +
                    info.inject_args[i] + "'): " + why;
            return false;
        }
        result.push_back(std::move(expanded));
    }
    out = std::move(result);
    return true;
}

} // namespace hearth

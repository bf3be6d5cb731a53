#include "util/text.hpp"

namespace hearth {

namespace {
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
} // namespace

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::string_view trim(std::string_view s, std::string_view chars) noexcept {
    const auto first = s.find_first_not_of(chars);
    if (first == std::string_view::npos) return {};
    return s.substr(first, s.find_last_not_of(chars) - first + 1);
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> out;
    for (;;) {
        auto at = s.find(sep);
        out.push_back(s.substr(0, at));
        if (at == std::string_view::npos) break;
        s.remove_prefix(at + 1);
    }
    return out;
}

namespace {
template <typename Parts> std::string join_parts(const Parts& parts, std::string_view sep) {
    std::string out;
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i) out += sep;
        out += parts[i];
    }
    return out;
}
} // namespace

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
    return join_parts(parts, sep);
}

std::string join(const std::vector<std::string_view>& parts, std::string_view sep) {
    return join_parts(parts, sep);
}

std::string path_join(std::string_view dir, std::string_view name) {
    while (!name.empty() && name.front() == '/')
        name.remove_prefix(1);
    std::string out(dir);
    if (!out.empty() && out.back() != '/' && !name.empty()) out += '/';
    out += name;
    return out;
}

} // namespace hearth

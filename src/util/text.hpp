#pragma once
// Small string helpers. Pure; none throws except std::bad_alloc.

#include <string>
#include <string_view>
#include <vector>

namespace hearth {

// `s` without leading and trailing ASCII white space (space, \t, \n, \r, \v, \f).
std::string_view trim(std::string_view s) noexcept;

// `s` without leading and trailing characters that occur in `chars`
// (trim(s, " \t") strips blanks only, keeping line breaks).
std::string_view trim(std::string_view s, std::string_view chars) noexcept;

// `s` cut at every `sep`; views into `s`. An empty `s` gives one empty part.
std::vector<std::string_view> split(std::string_view s, char sep);

// The parts joined with `sep` between them.
std::string join(const std::vector<std::string>& parts, std::string_view sep);
std::string join(const std::vector<std::string_view>& parts, std::string_view sep);

// ASCII character classes and case folding, independent of the C locale
// (PEP 440 and PEP 503 are defined on ASCII).
constexpr bool is_ascii_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_ascii_alpha(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_ascii_alnum(char c) noexcept {
    return is_ascii_digit(c) || is_ascii_alpha(c);
}
constexpr char ascii_lower(char c) noexcept {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

// Whether `a` and `b` are equal ignoring ASCII case.
bool iequals(std::string_view a, std::string_view b) noexcept;

// Whether `s` starts with `prefix`, ignoring ASCII case.
bool starts_with_ci(std::string_view s, std::string_view prefix) noexcept;

// `dir` + "/" + `name`, with exactly one slash between them (none added
// after a trailing one, leading slashes of `name` dropped); "" + name is name.
std::string path_join(std::string_view dir, std::string_view name);

} // namespace hearth

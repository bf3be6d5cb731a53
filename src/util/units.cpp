#include "util/units.hpp"

#include "util/text.hpp"

#include <charconv>
#include <cmath>
#include <cstddef>
#include <string_view>

namespace hearth {

namespace {

__extension__ typedef unsigned __int128 u128;

// Quotes a user-supplied value for an error message; never throws on
// invalid UTF-8.
std::string show(const nlohmann::json& v) {
    return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Values are typed by people on one line: blanks around them are fine, a
// line break inside a value is not.
constexpr std::string_view blanks = " \t";

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

struct Unit {
    std::string_view name;
    std::uint64_t multiplier;
};

constexpr std::uint64_t kPow1000(int n) {
    std::uint64_t v = 1;
    for (int i = 0; i < n; ++i)
        v *= 1000;
    return v;
}

constexpr Unit kUnits[] = {
    {"", 1},
    {"k", kPow1000(1)},
    {"M", kPow1000(2)},
    {"G", kPow1000(3)},
    {"T", kPow1000(4)},
    {"P", kPow1000(5)},
    {"E", kPow1000(6)},
    {"Ki", 1ull << 10},
    {"Mi", 1ull << 20},
    {"Gi", 1ull << 30},
    {"Ti", 1ull << 40},
    {"Pi", 1ull << 50},
    {"Ei", 1ull << 60},
};

// Looks `suffix` up, allowing one trailing "B" ("MiB", "GB", "B").
bool lookup_unit(std::string_view suffix, std::uint64_t& mult) {
    if (!suffix.empty() && suffix.back() == 'B') suffix.remove_suffix(1);
    for (const auto& u : kUnits)
        if (u.name == suffix) {
            mult = u.multiplier;
            return true;
        }
    return false;
}

// Explains why a unit was not accepted, steering people away from the
// notations whose meaning differs between tools.
std::string unit_hint(std::string_view suffix) {
    std::string lower;
    for (char c : suffix)
        lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (suffix == "K" || suffix == "KB") return "\"K\" is ambiguous; use k (1000) or Ki (1024)";
    if (lower == "max" || lower == "unlimited" || lower == "inf" || lower == "infinity")
        return "there is no \"max\"; omit the limit to leave it unset";
    if (!suffix.empty() && (suffix[0] == 'm' || suffix[0] == 'g' || suffix[0] == 't'))
        return "lowercase \"" + std::string(suffix) +
               "\" is ambiguous; use Ki, Mi, Gi, Ti (1024-based) or k, M, G, T (1000-based)";
    if (!suffix.empty() && suffix[0] == 'b')
        return "\"b\" would mean bits; use B or no unit for bytes";
    return "unknown unit \"" + std::string(suffix) +
           "\" (use k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, optionally followed by B)";
}

bool parse_bytes_string(std::string_view text, std::uint64_t& out, std::string& why) {
    std::string_view s = trim(text, blanks);
    if (s.empty()) {
        why = "empty string";
        return false;
    }
    std::size_t i = 0;
    std::uint64_t whole = 0;
    std::size_t whole_digits = 0;
    for (; i < s.size() && is_digit(s[i]); ++i, ++whole_digits) {
        if (__builtin_mul_overflow(whole, 10u, &whole) ||
            __builtin_add_overflow(whole, static_cast<unsigned>(s[i] - '0'), &whole)) {
            why = "value out of range (the maximum is 18446744073709551615 bytes)";
            return false;
        }
    }
    if (whole_digits == 0) {
        if (s[0] == '-')
            why = "negative sizes are not allowed";
        else if (s[0] == '+')
            why = "a leading '+' is not allowed";
        else if (s[0] == '.')
            why = "a digit is needed before the decimal point";
        else
            why = unit_hint(s);
        return false;
    }
    std::uint64_t frac = 0;
    std::size_t frac_digits = 0;
    if (i < s.size() && s[i] == '.') {
        ++i;
        for (; i < s.size() && is_digit(s[i]); ++i, ++frac_digits) {
            if (frac_digits == 18) {
                why = "too many decimal places";
                return false;
            }
            frac = frac * 10 + static_cast<unsigned>(s[i] - '0');
        }
        if (frac_digits == 0) {
            why = "a digit is needed after the decimal point";
            return false;
        }
    }
    std::string_view suffix = trim(s.substr(i), blanks); // "1 Gi" reads fine too
    std::uint64_t mult = 0;
    if (!lookup_unit(suffix, mult)) {
        if (!suffix.empty() && (suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() > 1 &&
            (is_digit(suffix[1]) || suffix[1] == '-' || suffix[1] == '+'))
            why = "exponent notation is not supported; use a unit such as G or Gi";
        else
            why = unit_hint(suffix);
        return false;
    }
    // whole < 2^64 and mult <= 2^60, frac < 10^18 < 2^60: no product or sum
    // below can exceed 2^125.
    u128 scaled_frac = static_cast<u128>(frac) * mult;
    u128 denom = 1;
    for (std::size_t d = 0; d < frac_digits; ++d)
        denom *= 10;
    if (scaled_frac % denom != 0) {
        why = "not a whole number of bytes";
        return false;
    }
    u128 total = static_cast<u128>(whole) * mult + scaled_frac / denom;
    if (total > UINT64_MAX) {
        why = "value out of range (the maximum is 18446744073709551615 bytes)";
        return false;
    }
    out = static_cast<std::uint64_t>(total);
    return true;
}

} // namespace

bool parse_bytes(const nlohmann::json& v, std::uint64_t& out, std::string& err) {
    if (v.is_number_unsigned()) {
        out = v.get<std::uint64_t>();
        return true;
    }
    if (v.is_number_integer()) {
        auto n = v.get<std::int64_t>();
        if (n < 0) {
            err = "invalid byte size " + show(v) + ": negative sizes are not allowed";
            return false;
        }
        out = static_cast<std::uint64_t>(n);
        return true;
    }
    if (v.is_string()) {
        std::string why;
        std::uint64_t value = 0;
        if (!parse_bytes_string(v.get_ref<const std::string&>(), value, why)) {
            err = "invalid byte size " + show(v) + ": " + why;
            return false;
        }
        out = value;
        return true;
    }
    err = "invalid byte size " + show(v) + ": expected an integer or a string such as \"512Mi\"";
    return false;
}

bool parse_cpus(const nlohmann::json& v, double& out, std::string& err) {
    double value = 0;
    if (v.is_number()) {
        value = v.get<double>();
    } else if (v.is_string()) {
        std::string_view s = trim(v.get_ref<const std::string&>(), blanks);
        bool milli = !s.empty() && s.back() == 'm';
        if (milli) s.remove_suffix(1);
        // Only plain decimals: from_chars alone would also take "inf", "nan",
        // exponents and a sign.
        bool ok = !s.empty() && is_digit(s.front()) && is_digit(s.back());
        std::size_t dots = 0;
        for (char c : s) {
            if (c == '.')
                ++dots;
            else if (!is_digit(c))
                ok = false;
        }
        if (milli && dots != 0) ok = false;
        if (!ok || dots > 1) {
            err = "invalid CPU count " + show(v) +
                  ": expected a number such as 0.5 or 2, or millicores such as \"500m\"";
            return false;
        }
        auto res = std::from_chars(s.data(), s.data() + s.size(), value);
        if (res.ec != std::errc() || res.ptr != s.data() + s.size()) {
            err = "invalid CPU count " + show(v) + ": not a number";
            return false;
        }
        if (milli) value /= 1000.0;
    } else {
        err = "invalid CPU count " + show(v) + ": expected a number or a string";
        return false;
    }
    if (!std::isfinite(value) || value <= 0.0) {
        err = "invalid CPU count " + show(v) + ": must be greater than 0";
        return false;
    }
    if (value > 1024.0) {
        err = "invalid CPU count " + show(v) + ": must be at most 1024";
        return false;
    }
    out = value;
    return true;
}

std::string format_bytes(std::uint64_t bytes) {
    static constexpr const char* names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) return std::to_string(bytes) + " B";
    int unit = 1;
    while (unit < 6 && bytes >= (1ull << (10 * (unit + 1))))
        ++unit;
    auto tenths_in = [&](int u) {
        u128 div = static_cast<u128>(1) << (10 * u);
        return static_cast<std::uint64_t>((static_cast<u128>(bytes) * 10 + div / 2) / div);
    };
    std::uint64_t tenths = tenths_in(unit);
    // 1023.96 KiB rounds to 1024.0 KiB: show it as 1 MiB instead.
    if (tenths >= 10240 && unit < 6) tenths = tenths_in(++unit);
    std::string s = std::to_string(tenths / 10);
    if (tenths % 10 != 0) s += "." + std::to_string(tenths % 10);
    return s + " " + names[unit];
}

} // namespace hearth

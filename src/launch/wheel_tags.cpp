#include "launch/wheel_tags.hpp"

#include "util/text.hpp"

#include <algorithm>
#include <vector>

namespace hearth {

namespace {

// "cp311" -> 11 when the prefix and major match; -1 otherwise.
int tag_minor(std::string_view tag, std::string_view prefix, int major) {
    if (tag.substr(0, prefix.size()) != prefix) return -1;
    std::string_view digits = tag.substr(prefix.size());
    if (digits.empty() || digits[0] != static_cast<char>('0' + major)) return -1;
    digits.remove_prefix(1);
    if (digits.empty()) return -2; // "py3": any minor
    int n = 0;
    for (char c : digits) {
        if (!is_ascii_digit(c)) return -1;
        n = n * 10 + (c - '0');
    }
    return n;
}

} // namespace

WheelName parse_wheel_name(std::string_view file) {
    WheelName w;
    if (file.size() < 5 || file.substr(file.size() - 4) != ".whl") return w;
    std::string_view stem = file.substr(0, file.size() - 4);
    const std::vector<std::string_view> parts = split(stem, '-');
    if (parts.size() < 5 || parts.size() > 6) return w;
    w.project = normalize_project_name(parts[0]);
    w.name_version = std::string(parts[0]) + "-" + std::string(parts[1]);
    w.python = std::string(parts[parts.size() - 3]);
    w.abi = std::string(parts[parts.size() - 2]);
    w.platform = std::string(parts[parts.size() - 1]);
    w.ok = true;
    return w;
}

int wheel_tag_rank(std::string_view wheel_file_name, const PythonTarget& target) {
    const WheelName w = parse_wheel_name(wheel_file_name);
    if (!w.ok || target.major <= 0) return 0;
    const bool cpython = target.implementation == "cpython";
    int best = -1;
    for (const auto& py : split(w.python, '.')) {
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
        for (const auto& abi : split(w.abi, '.')) {
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
            for (const auto& plat : split(w.platform, '.')) {
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

} // namespace hearth

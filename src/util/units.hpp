#pragma once
// Resource quantities as a deploy or the command line states them: byte sizes
// ("512Mi", "2Gi", 1073741824) and CPU counts (0.5, "1.5", "500m").
//
// Suffixes follow Kubernetes quantities, the notation operators of such
// containers already write: decimal k, M, G, T, P, E (powers of 1000) and
// binary Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024). An optional trailing "B"
// ("512MiB", "1GB", "100B") is accepted because it is unambiguous.
// Deliberately rejected, with a hint in the error: "K" (means 1000 or 1024
// depending on who wrote it), lowercase "m"/"g" (Docker means MiB/GiB, while
// Kubernetes "m" means milli), "max"/"unlimited" (omit the limit instead),
// negative numbers, exponents and anything that does not come out as a whole
// number of bytes.
//
// All functions are pure, thread-safe and never throw.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace hearth {

// Parses a byte size from a JSON integer (>= 0) or string (see above;
// surrounding whitespace is ignored, "1.5Gi" is allowed when the result is a
// whole number of bytes). On success stores the value in `out` and returns
// true; otherwise returns false, leaves `out` unchanged and sets `err` to a
// message that quotes the offending value. Values above UINT64_MAX are errors.
bool parse_bytes(const nlohmann::json& v, std::uint64_t& out, std::string& err);

// Parses a CPU count: a JSON number, or a string holding a decimal number or
// Kubernetes millicores ("500m" = 0.5). Must be finite, > 0 and <= 1024.
// Same error contract as parse_bytes.
bool parse_cpus(const nlohmann::json& v, double& out, std::string& err);

// Renders a byte count for people with binary units and at most one decimal:
// "0 B", "1023 B", "1 KiB", "1.5 GiB", "16 EiB" (trailing ".0" dropped).
std::string format_bytes(std::uint64_t bytes);

} // namespace hearth

#pragma once
// PEP 440 versions and version specifiers: hearth's one version type and one
// comparison. Interpreter constraints (launch/python.hpp) and PEP 508
// environment markers (launch/markers.hpp) both compare through here.
//
// Pure functions: no I/O, no global state, callable from any thread; nothing
// throws except std::bad_alloc. Parsers return false and set their error
// string to a message that quotes the input.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hearth {

struct Version {
    std::uint64_t epoch = 0;
    std::vector<std::uint64_t> release;
    // Pre-release: kind 0 = a, 1 = b, 2 = rc; absent for a final release.
    std::optional<std::pair<int, std::uint64_t>> pre;
    std::optional<std::uint64_t> post;
    std::optional<std::uint64_t> dev;
    std::string local; // after '+', normalized to lower case; empty if none
};

// Parses a PEP 440 version ("3.11", "1!2.0rc1.post2.dev3+local", with the
// spec's alternative spellings: "v3.11-2", "3.13.0-preview.2"); surrounding
// white space is ignored. False and `err` set when it is not one.
bool parse_version(std::string_view text, Version& out, std::string& err);

// <0, 0 or >0 as `a` orders before, equal to or after `b` by PEP 440 (the
// public part: local labels are ignored; 1.0 == 1.0.0; 1.0.dev1 < 1.0a1 <
// 1.0 < 1.0.post1).
int compare_versions(const Version& a, const Version& b) noexcept;

// Whether the first `components` release numbers of `candidate` (zero-padded)
// equal those of `prefix`, in the same epoch: the "==3.11.*" test.
// `components` must not exceed prefix.release.size().
bool release_prefix_match(const Version& candidate, const Version& prefix,
                          std::size_t components) noexcept;

// One PEP 440 specifier: an operator and a version ("==3.11.*", "~=3.10").
struct Specifier {
    enum class Op { eq, ne, le, ge, lt, gt, compatible, arbitrary };
    Op op = Op::eq;
    bool wildcard = false; // "==3.11.*" / "!=3.11.*"
    Version version;       // unused for Op::arbitrary
    std::string text;      // the version as written (what === compares)
};

// Parses one specifier ("<=3.12", "== 3.11.*"). Refuses what PEP 440 refuses:
// a wildcard other than with == and !=, or after anything but a plain
// release; a local label other than with == and !=; ~= with fewer than two
// release components. False and `why` set otherwise.
bool parse_specifier(std::string_view item, Specifier& out, std::string& why);

// Whether `candidate` (spelled `candidate_text`, which only === compares,
// case-insensitively) satisfies `spec`. PEP 440's extra exclusions of pre-,
// post- and local releases for < and > are not applied: hearth compares
// interpreter versions, which are final releases.
bool specifier_matches(const Version& candidate, std::string_view candidate_text,
                       const Specifier& spec);

} // namespace hearth

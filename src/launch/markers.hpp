#pragma once
// PEP 508 dependency specifiers as pex's runtime resolver reads them:
// requirement strings ("requests[socks] >=2 ; python_version >= '3.8'"),
// their environment markers, and PEP 503 project names.
//
// Markers are evaluated for a PythonTarget, the interpreter a sys.path is
// built for; version comparisons go through PEP 440 specifiers
// (launch/version.hpp), as in packaging's Marker.evaluate.
//
// Pure functions: no I/O, no global state, callable from any thread; nothing
// throws except std::bad_alloc.

#include <string>
#include <string_view>
#include <vector>

namespace hearth {

// The interpreter a sys.path is built for. Used to evaluate Requires-Dist
// markers and, when one project ships several wheels (multi-platform pex), to
// pick the one whose tags fit (launch/wheel_tags.hpp). major == 0 means
// unknown: markers other than `extra` then count as true and same-project
// wheels all stay.
struct PythonTarget {
    int major = 0;
    int minor = 0;
    int micro = -1;      // -1: unknown
    std::string machine; // uname -m, e.g. "x86_64", "aarch64"
    std::string implementation = "cpython";
};

// PEP 503 project name normalisation ("Foo_Bar.baz" -> "foo-bar-baz").
std::string normalize_project_name(std::string_view name);

// The parts of a requirement string pex's resolver uses; version specifiers
// and URLs are dropped (the pex already holds the resolved distributions).
struct Requirement {
    std::string project;             // normalised
    std::vector<std::string> extras; // normalised, sorted, unique
    std::string marker;              // after ';', trimmed; empty when none
};

// Parses `text` into `out`. False (and `out` unspecified) when it does not
// start with a project name or its extras bracket is not closed. In the
// `name @ URL ; marker` form the ';' must follow white space, since the URL
// may contain one.
bool parse_requirement(std::string_view text, Requirement& out);

// Evaluates a PEP 508 marker for `target` with the requesting requirement's
// `extras` (normalised here). Unknown variables or an unknown target count as
// true; a marker that does not parse counts as true (pex would have refused
// to build it, so such a marker is hand-made and excluding on it would be a
// guess).
bool marker_applies(std::string_view marker, const std::vector<std::string>& extras,
                    const PythonTarget& target);

} // namespace hearth

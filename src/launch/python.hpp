#pragma once
// Python interpreter discovery and selection by pex `interpreter_constraints`.
//
// This file never starts a process. hearth is PID 1 and its SIGCHLD reaper
// owns every child, so the daemon runs each probe itself on its event loop:
//
//   for each path in python_candidates(PATH, --python values):
//       run probe_argv(path) with a timeout, collect stdout
//       parse_probe_output(stdout) -> Interpreter   (failures: log and skip)
//   choose(interpreters in candidate order, parsed constraints)
//
// Everything here is synchronous, touches no global state other than the
// filesystem (python_candidates only: stat/access/realpath) and never throws
// except std::bad_alloc.

#include "launch/version.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth {

// An interpreter the probe identified.
struct Interpreter {
    // sys.executable as the interpreter itself reported it. For a version
    // manager's shim (pyenv) this is the real binary, so launches skip the
    // shim; for a venv's python it stays the venv's path, which is what makes
    // it that venv.
    std::string path;
    // pex's names: "CPython", "PyPy", "IronPython", "Jython"; any other
    // sys.implementation.name is kept as reported.
    std::string implementation;
    int major = 0;
    int minor = 0;
    int micro = 0;

    std::string version() const; // "3.11.4"
};

// Candidate interpreter paths, best first.
//
// With `configured` non-empty (hearth's --python, repeatable) only those are
// returned, in the given order: an entry containing '/' as given, a bare name
// resolved through PATH (kept bare if nothing on PATH has that name, so the
// probe reports it missing). Otherwise, for each PATH directory in order, the
// executable regular files named python3.20 ... python3.7 (newest first),
// python3 and python.
// Empty and relative PATH entries are skipped: as PID 1 hearth's working
// directory is arbitrary, and POSIX's "empty entry means ." would let
// whatever sits there be picked.
// Entries naming the same file (by realpath) are reported once, at the
// position of the first path seen; the path kept is the one seen, not the
// resolved one (python3 -> python3.11 symlinks stay readable in status).
// Blocking: stat/realpath on each name; call from the thread pool if PATH may
// hold network mounts.
std::vector<std::string> python_candidates(std::string_view path_env,
                                           const std::vector<std::string>& configured);

// The argv that identifies `candidate`: `candidate -I -S -c CODE`. -I keeps
// PYTHON* variables, the user site and the cwd out; -S skips site, which is
// where most of an interpreter's start-up time goes. CODE prints a marker
// line and then, one per line: sys.executable, sys.implementation.name,
// major.minor.micro. Run it with stdin from /dev/null, a clean environment
// and a timeout (a broken shim may hang).
std::vector<std::string> probe_argv(const std::string& candidate);

// Parses the probe's stdout. Lines before the marker (noise a wrapper script
// might print) are ignored. Returns nullopt and sets `err` when the marker or
// a field is missing or malformed (e.g. a Python 2 interpreter, which rejects
// -I and prints nothing), or sys.executable is empty or relative.
std::optional<Interpreter> parse_probe_output(std::string_view stdout_text, std::string& err);

// Maps sys.implementation.name to pex's (platform.python_implementation)
// spelling: cpython -> CPython, pypy -> PyPy, ...; unknown names unchanged.
std::string implementation_name(std::string_view sys_implementation_name);

// ---- interpreter constraints (pex semantics) -----------------------------
//
// A constraint is an optional implementation name followed by PEP 440
// version specifiers, all of which must hold: "CPython>=3.8,<4", ">=3.9",
// "CPython==3.11.*", "PyPy", "CPython~=3.10". Without a name any
// implementation matches (pex >= 2.1.110). A list of constraints matches when
// ANY of them does; an empty list matches every interpreter. Names compare
// case-insensitively (pex compares exactly; "cpython>=3.8" silently matching
// nothing helps nobody). The interpreter's version is its release
// major.minor.micro, as in pex. Versions and specifiers are PEP 440's
// (launch/version.hpp).

struct Constraint {
    std::string text;           // as given, for messages
    std::string implementation; // empty: any implementation
    std::vector<Specifier> specifiers;
};

// Parses one constraint string. On failure returns false and sets `err` to a
// message that quotes the constraint and says what is wrong.
bool parse_constraint(std::string_view text, Constraint& out, std::string& err);

// Parses each entry (e.g. PEX-INFO's interpreter_constraints); stops at the
// first bad one. Duplicates are kept (harmless for matching).
bool parse_constraints(const std::vector<std::string>& texts, std::vector<Constraint>& out,
                       std::string& err);

// Whether `interp` satisfies this one constraint.
bool matches(const Interpreter& interp, const Constraint& constraint);

// True when `constraints` is empty or any constraint matches.
bool satisfies(const Interpreter& interp, const std::vector<Constraint>& constraints);

// The first interpreter (in the order given: candidate order) satisfying
// `constraints`; with no constraints, the first interpreter. nullptr if none.
// The pointer points into `in_candidate_order`.
const Interpreter* choose(const std::vector<Interpreter>& in_candidate_order,
                          const std::vector<Constraint>& constraints);

// "CPython>=3.8,<4 or PyPy" for a no_interpreter message; "" when empty.
std::string describe(const std::vector<Constraint>& constraints);

} // namespace hearth

#pragma once
// PEX-INFO parsing and the native runtime's sys.path composition.
//
// Every rule here mirrors pex 2.x; doc/pex-format.md records what pex does and
// which pex source file says so. For `PEX_PATH=deps.pex python3 source.pex`
// pex (pex/pex.py, pex/environment.py) ends up with
//
//   [PEX_PATH roots reversed..., source root, stdlib..., dist entries...]
//
// Every pex's root is on sys.path before the stdlib, user code or not. Each
// installed distribution contributes the `sys_path_entries` of its
// `.layout.json`, appended after the stdlib with its `.pth` files processed,
// in the order pex's runtime resolver activates them: a depth-first walk of
// `requirements` through each distribution's `Requires-Dist`, the source pex
// first, then each PEX_PATH pex, the same wheel (name and fingerprint) once.
// A pex whose own inherit_path is fallback inserts its distributions at the
// head instead, one by one.
//
// build_sys_path() returns that list as absolute paths in two parts: the
// head (everything pex puts before the stdlib; it always ends with the main
// tree's root) and the tail (appended after the stdlib). src/launch/hearth_boot.py
// finds the boundary as the last entry holding a PEX-INFO file. Script names
// (`--script`) are resolved by hearth_boot.py, so there is no script lookup
// here.
//
// A native launch, put together (pex/pex.py PEX._execute decides the order):
//   load_pex_info() for the source tree and each deps tree;
//   build_sys_path({source, deps...}, target, entries);
//   env = the deploy's environment; apply_pex_environment(source, env);
//   expand_inject_args(source, env, injected);
//   argv = python -s <source.inject_python_args> <state>/lib/hearth_boot.py
//          [--argv0 NAME] (-m <entry_point> | --script <script>) injected... user args...
//   env += HEARTH_SYS_PATH=join(entries, ":"),
//          HEARTH_INHERIT_PATH=to_string(source.inherit_path).
// Only the main (source) PEX-INFO's inject_*, strip_pex_env and inherit_path
// count, as in pex. When the deploy names its own module instead of the
// PEX-INFO entry (pex's PEX_MODULE/PEX_SCRIPT), pex skips inject_args.
//
// Where the parts live: PEX-INFO, .layout.json, entry points, the pex
// environment and build_sys_path() here; the distribution walk that
// build_sys_path() composes in launch/distributions.hpp; PEP 508
// requirements, markers and PythonTarget in launch/markers.hpp; wheel tags in
// launch/wheel_tags.hpp; PEP 440 versions in launch/version.hpp.
//
// Error convention: functions return false and set `error` to a message that
// names the file or key and the problem. Nothing here throws across the API
// (std::bad_alloc aside). None of it is async-signal-safe; the functions that
// read files block and belong on the thread pool, not the loop.

#include "launch/markers.hpp"

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hearth {

// PEX-INFO `inherit_path`: "false" | "prefer" | "fallback" (pex also accepts
// JSON booleans: false -> none, true -> prefer).
enum class InheritPath { none, prefer, fallback };

// "false", "prefer", "fallback": the values HEARTH_INHERIT_PATH takes.
std::string_view to_string(InheritPath value) noexcept;

struct PexInfo {
    // "module" or "module:attr[.attr...]"; empty when absent. At most one of
    // entry_point and script is set (parse_pex_info() rejects both).
    std::string entry_point;
    std::string script;
    // Wheel file name -> fingerprint, in file order (pex writes keys sorted).
    std::vector<std::pair<std::string, std::string>> distributions;
    // PEP 508 strings: the roots of pex's runtime resolve.
    std::vector<std::string> requirements;
    InheritPath inherit_path = InheritPath::none;
    std::vector<std::string> interpreter_constraints;
    // Applied with setdefault semantics: the environment wins (see
    // apply_pex_environment()).
    std::vector<std::pair<std::string, std::string>> inject_env;
    // Inserted before the user's arguments, after `{pex.env.NAME}` expansion
    // (see expand_inject_args()).
    std::vector<std::string> inject_args;
    // Interpreter options, placed before the script on the python command line.
    std::vector<std::string> inject_python_args;
    bool strip_pex_env = true;
    bool deps_are_wheel_files = false;
    // sha1 of PEX-INFO itself (not of the file) and of the user code.
    std::string pex_hash;
    std::string code_hash;
    // `pex_paths` (list), else legacy `pex_path` (":"-joined string).
    std::vector<std::string> pex_path;
    // build_properties.pex_version, informational; may be empty.
    std::string pex_version;
};

// Parses PEX-INFO JSON text. Unknown keys are ignored; null counts as absent.
bool parse_pex_info(std::string_view text, PexInfo& out, std::string& error);

// Reads and parses <tree>/PEX-INFO. Blocking.
bool load_pex_info(const std::string& tree, PexInfo& out, std::string& error);

// An entry point as pex parses it: optional trailing "[extras]" dropped,
// `module` non-empty, `attrs` empty for the module form.
struct EntryPoint {
    std::string module;
    std::string attrs; // "func" or "Class.method"; empty means run as __main__
};
bool parse_entry_point(std::string_view spec, EntryPoint& out, std::string& error);

// `.deps/<wheel>/.layout.json` of an installed wheel chroot.
struct InstalledWheelLayout {
    std::string fingerprint;
    std::string record_relpath; // e.g. "foo-1.0.dist-info/RECORD"
    std::string stash_dir;      // ".prefix": scripts live in <stash_dir>/bin
    bool root_is_purelib = true;
    // Relative to the chroot, never absolute or containing "..". Defaults to
    // {"."} when the key is absent (older pex), as pex itself does.
    std::vector<std::string> sys_path_entries;
};
// `origin` names the file in error messages.
bool parse_layout_json(std::string_view text, std::string_view origin, InstalledWheelLayout& out,
                       std::string& error);

// One extracted pex tree. `info` is borrowed and must outlive the call.
struct PexTree {
    std::string root; // absolute path of the extracted tree
    const PexInfo* info = nullptr;
};

// Builds the ordered absolute sys.path entries for `trees`: the main (source)
// tree first, then the PEX_PATH trees in PEX_PATH order. Result: head entries
// (PEX_PATH roots reversed, the main root last; distributions of fallback
// trees inserted before them), then tail entries (distributions of the other
// trees, in activation order). A distribution's entries are
//   - installed chroots: `.deps/<wheel>/` + each `.layout.json`
//     `sys_path_entries` (a missing `.layout.json` means the chroot root);
//   - deps_are_wheel_files: the store's unpacked copy
//     `<root>/.hearth/wheels/<wheel>/` plus its `<name>-<ver>.data/purelib`
//     and `platlib` when present (root's own kind first, as pex orders them).
// Distributions that no requirement reaches (pex leaves them inactive) are
// still added, after the reached ones. When a project ships several wheels,
// only the best fit for `target` is used.
// Blocking: lists directories and reads .layout.json, WHEEL and METADATA files.
bool build_sys_path(const std::vector<PexTree>& trees, const PythonTarget& target,
                    std::vector<std::string>& out, std::string& error);

// Single-tree convenience form of the above with an unknown target.
bool build_sys_path(const std::string& tree, const PexInfo& info, std::vector<std::string>& out,
                    std::string& error);

// Environment as pex's runtime leaves it for user code: when strip_pex_env,
// every PEX_* variable is removed first; then inject_env entries are added
// where the variable is not already set.
void apply_pex_environment(const PexInfo& info, std::map<std::string, std::string>& env);

// Expands pex's inject_args templates against `env` (the environment after
// apply_pex_environment()): "{pex.env.NAME}" and "{pex.env[NAME]}" become the
// variable's value or "" when unset, "{{" and "}}" become braces. Any other
// replacement field is an error, as it would be in pex (str.format).
bool expand_inject_args(const PexInfo& info, const std::map<std::string, std::string>& env,
                        std::vector<std::string>& out, std::string& error);

} // namespace hearth

#pragma once
// The command line and environment of a revision's process, for both
// runtimes. Pure functions: no I/O, so every rule is unit-tested.
//
// native: PYTHON -s [inject_python_args] <state>/lib/hearth_boot.py
//             (-m MODULE[:FUNC] | --script NAME) [inject_args] [args]
//         with HEARTH_SYS_PATH / HEARTH_INHERIT_PATH for the boot script.
//         The entry module stays on the command line so `ps` shows what runs.
// pex:    PYTHON <source tree> [args], PEX_PATH=<deps tree>,
//         PEX_ROOT=<state>/pex-root; pex's own runtime does the rest.
//
// Environment: a clean baseline (PATH, HOME, LANG=C.UTF-8, TMPDIR, the
// bytecode cache, HEARTH_LOCATION, HEARTH_REVISION), then PEX-INFO's
// inject_env where not already set, then the deploy's own `env`, which wins.
// Nothing else of hearth's environment (PYTHON* in particular) leaks in.

#include "daemon/deploy.hpp"
#include "launch/pex_info.hpp"

#include <map>
#include <string>
#include <vector>

namespace hearth {

struct LaunchInput {
    Runtime runtime = Runtime::native;
    std::string python;      // resolved interpreter binary
    std::string boot_script; // native only
    std::string source_tree;
    std::string deps_tree;
    const PexInfo* source_info = nullptr; // required
    std::vector<std::string> sys_path;    // native only, from build_sys_path
    std::optional<std::string> module;    // deploy's entry.module override
    std::vector<std::string> args;        // deploy's entry.args
    std::map<std::string, std::string> deploy_env;
    std::string location;
    std::string revision_id;
    std::string scratch_dir; // TMPDIR (and the default working directory)
    std::string pycache_dir; // PYTHONPYCACHEPREFIX
    std::string pex_root;    // pex runtime's PEX_ROOT
    std::string host_path;   // hearth's PATH ("" = default)
    std::string host_home;   // hearth's HOME ("" = "/")
};

struct LaunchPlan {
    std::vector<std::string> argv; // argv[0] is the interpreter path
    std::vector<std::string> env;  // "K=V"
    std::string error;             // non-empty: cannot launch (message says why)
};

LaunchPlan plan_launch(const LaunchInput& in);

} // namespace hearth

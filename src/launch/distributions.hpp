#pragma once
// The distribution walk: which distributions of one extracted pex tree pex's
// runtime activates, in its order (pex/environment.py PEXEnvironment), and
// the sys.path entries each contributes. build_sys_path() (pex_info.hpp)
// composes the walks of all trees into one sys.path.
//
// Order: a depth-first walk of PEX-INFO `requirements` (grouped per project,
// extras merged) through each distribution's Requires-Dist, markers evaluated
// for the target (launch/markers.hpp); when a project ships several wheels,
// only the best tag fit (launch/wheel_tags.hpp) takes part. Distributions no
// requirement reaches follow, sorted by PEX-INFO position.
//
// Blocking (lists directories, reads .layout.json, WHEEL and METADATA files):
// call from the thread pool. Thread-safe for distinct calls; nothing throws
// except std::bad_alloc and the std::filesystem errors build_sys_path turns
// into messages.

#include "launch/markers.hpp"
#include "launch/pex_info.hpp"

#include <string>
#include <vector>

namespace hearth {

struct ActiveDistribution {
    std::string wheel;       // file name, as in PEX-INFO `distributions`
    std::string fingerprint; // as in PEX-INFO
    // Absolute, lexically normal sys.path entries:
    //   installed chroot: `.deps/<wheel>/` + each `.layout.json`
    //     sys_path_entries (the chroot root when .layout.json is missing);
    //   deps_are_wheel_files: `.hearth/wheels/<wheel>/`, then its
    //     `<name>-<ver>.data/purelib` and `platlib` when present (the root's
    //     own kind first).
    std::vector<std::string> entries;
};

struct TreeActivation {
    std::string root; // the tree's root, lexically normal, no trailing '/'
    std::vector<ActiveDistribution> distributions; // activation order
};

// Walks `tree` (root absolute, info set) for `target`. False with `error`
// naming the path when a listed distribution is missing from the tree or its
// .layout.json is unreadable or invalid; unreadable METADATA or WHEEL files
// only mean no Requires-Dist / pex's defaults.
bool walk_distributions(const PexTree& tree, const PythonTarget& target, TreeActivation& out,
                        std::string& error);

} // namespace hearth

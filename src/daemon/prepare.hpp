#pragma once
// The real `starting` step (Preparer, seams.hpp): from a revision's
// extracted trees to the command of its process.
//
//   inspect: PEX-INFO of both trees (thread pool)            -> bad_archive
//   choose:  an interpreter satisfying both pex files' constraints (loop,
//            after the probe of interpreters.hpp)             -> no_interpreter
//   compose: sys.path of the native runtime (thread pool)     -> bad_archive
//   scratch: rev.scratch_dir made afresh, mode 0700, and a bytecode cache of
//            the revision's user, both owned by it (thread pool) -> spawn_error
//   plan:    argv and environment (launch.hpp, loop)          -> bad_archive
//
// Loop thread only; `done` on the loop, never from inside prepare(). Holds
// nothing of the revision: what each step needs is copied.

#include "daemon/interpreters.hpp"
#include "daemon/seams.hpp"

#include <string>
#include <uv.h>

namespace hearth {

class LaunchPreparer final : public Preparer {
public:
    // `interpreters` outlives this object. `state_dir` holds pycache/ and
    // pex-root/; `boot_script` is the installed hearth_boot.py.
    LaunchPreparer(uv_loop_t* loop, Interpreters& interpreters, std::string state_dir,
                   std::string boot_script);

    void prepare(const Revision& rev,
                 std::function<void(Result<LaunchPlanned, StepFailure>)> done) override;

private:
    uv_loop_t* loop_;
    Interpreters& interpreters_;
    std::string state_dir_;
    std::string boot_script_;
};

} // namespace hearth

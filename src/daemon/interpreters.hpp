#pragma once
// The Python interpreters on this machine, probed once on first use.
//
// Candidates (--python, else PATH) are run one at a time with a short
// probe script (run_oneshot, 10 s timeout each): spawn() waits for the
// child's exec, and on a busy machine probes competing with each other
// (version-manager shims are shell scripts) would stall the loop each time.
// Interpreters that resolve to one binary are listed once.
//
// Loop thread only. Callers are answered on the loop, in the order they
// asked; never from inside with() while a probe runs.

#include "init/init.hpp"
#include "launch/python.hpp"
#include "util/uv_util.hpp"

#include <functional>
#include <string>
#include <sys/types.h>
#include <uv.h>
#include <vector>

namespace hearth {

class Interpreters {
public:
    using Callback = std::function<void(const std::vector<Interpreter>&)>;

    // `init` reaps the probes; it must outlive this object. `python`: the
    // --python options (empty = search PATH).
    Interpreters(uv_loop_t* loop, Init& init, std::vector<std::string> python);

    // Calls `cb` with what was found: at once when probed already, else once
    // the probe (started now if none runs) has finished.
    void with(Callback cb);
    // Starts probing after `delay_ms`, so that the first deploy finds the
    // result ready (a version manager's shims can take seconds).
    void probe_soon(std::uint64_t delay_ms);
    // Kills a running probe's process group (at shutdown: a slow shim must
    // not hold up the exit). Waiters are still answered, with what was found.
    void cancel();

private:
    void probe_next(std::size_t index);

    uv_loop_t* loop_;
    Init& init_;
    std::vector<std::string> python_;
    bool probed_ = false;
    bool probing_ = false;
    std::vector<Interpreter> found_;
    std::vector<Callback> waiters_;
    std::vector<std::string> candidates_;
    std::vector<std::string> seen_; // realpaths of interpreters found
    pid_t probe_pid_ = -1;          // the running probe's process group
    Timer timer_;
};

} // namespace hearth

#pragma once
// Fan-in of asynchronous branches, for "reply once every revision has
// stopped" and "extract once both artifacts are stored".
//
// A Barrier is a cheap copyable handle on shared state. `done` runs once,
// after every branch handed out by add() has been called and seal() was
// called (seal() after the last add(), so that branches finishing at once
// cannot run `done` early). A branch that is never called keeps `done` from
// running: callers that drop out on failure rely on that. Calling a branch
// twice counts once. Loop thread only: nothing here is thread-safe. `done`
// runs inside the last branch (or inside seal()), so it must not assume a
// fresh stack; it may throw only where its caller may.

#include <functional>
#include <memory>
#include <utility>

namespace hearth {

class Barrier {
public:
    explicit Barrier(std::function<void()> done) : state_(std::make_shared<State>()) {
        state_->done = std::move(done);
    }

    // One more branch to wait for; call the result exactly once.
    std::function<void()> add() {
        ++state_->pending;
        return [state = state_, called = false]() mutable {
            if (std::exchange(called, true)) return;
            state->arrive();
        };
    }
    // No more add(); runs `done` now when every branch has already arrived.
    void seal() {
        if (!std::exchange(state_->sealed, true)) state_->arrive();
    }

private:
    struct State {
        int pending = 1; // seal() is the last arrival
        bool sealed = false;
        std::function<void()> done;
        void arrive() {
            if (--pending == 0 && done) std::exchange(done, nullptr)();
        }
    };
    std::shared_ptr<State> state_;
};

} // namespace hearth

#pragma once
// `hearthctl deploy --wait`: what the events of the new revision mean for
// the exit status, and the report printed when it did not become ready.
// Pure: no I/O; nothing throws except std::bad_alloc.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hearth::ctl {

// What one event notification means for `deploy --wait`.
enum class WaitVerdict {
    waiting, // not decisive: another revision, progress, unknown type, or a step on the way
    ready,   // exit 0
    failed,  // exit 1: the revision failed
    backoff, // exit 1: it entered backoff before it was ever ready (hearth will retry)
    stopped, // exit 1: stopped before it became ready
};

// Follows the events of one revision for `deploy --wait`. Events of other
// revisions, progress events and events of an unknown "type" are waiting.
// A backoff after the revision was ready (seen here, or "previous":"ready")
// is waiting too: the deploy succeeded and hearth is restarting it.
class DeployWaiter {
public:
    explicit DeployWaiter(std::string id) : id_(std::move(id)) {}
    // `event` is the params of an `event` notification (any JSON; never throws
    // on odd shapes).
    WaitVerdict feed(const nlohmann::json& event);
    bool ever_ready() const noexcept { return ever_ready_; }

private:
    std::string id_;
    bool ever_ready_ = false;
};

// exit_ok for ready, exit_failed for failed/backoff/stopped; -1 for waiting.
int wait_exit_status(WaitVerdict v) noexcept;

// Feeds `events` in order and returns the exit status at the first decisive
// one, or nullopt when none is.
std::optional<int> wait_outcome(const std::string& id, const std::vector<nlohmann::json>& events);

// What `deploy --wait` writes to stderr for a failed, backoff or stopped
// verdict: a first line "hearthctl: deploy: ID ..." with the reason and
// message, then indented lines for the next attempt (backoff), exit code,
// signal and stderr tail. Fields are taken from the event, else from its
// "revision" object. `now` (epoch seconds) is for "in 4s". Each line ends
// with '\n'.
std::string wait_failure_report(const std::string& id, const nlohmann::json& event, WaitVerdict v,
                                double now);

} // namespace hearth::ctl

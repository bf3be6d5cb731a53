#include "ctl/wait.hpp"

#include "ctl/args.hpp"
#include "ctl/format.hpp"

namespace hearth::ctl {

using nlohmann::json;

namespace {

// A member of the event, else of its "revision" object, else `dflt`.
std::string event_or_revision(const json& ev, const char* key, const std::string& dflt) {
    std::string v = field(ev, key, "");
    if (!v.empty()) return v;
    return field(object_member(ev, "revision"), key, dflt);
}

} // namespace

WaitVerdict DeployWaiter::feed(const json& ev) {
    if (!ev.is_object() || field(ev, "id", "") != id_) return WaitVerdict::waiting;
    if (field(ev, "type", "state") != "state") return WaitVerdict::waiting;
    const std::string state = field(ev, "state", "");
    if (state == "ready") {
        ever_ready_ = true;
        return WaitVerdict::ready;
    }
    if (state == "failed") return WaitVerdict::failed;
    if (state == "backoff") {
        // Crashing after it was ready is the restart policy's business, not
        // a failed deploy.
        if (ever_ready_ || field(ev, "previous", "") == "ready") {
            ever_ready_ = true;
            return WaitVerdict::waiting;
        }
        return WaitVerdict::backoff;
    }
    if (state == "stopping" || state == "stopped") return WaitVerdict::stopped;
    return WaitVerdict::waiting;
}

int wait_exit_status(WaitVerdict v) noexcept {
    switch (v) {
    case WaitVerdict::waiting:
        return -1;
    case WaitVerdict::ready:
        return exit_ok;
    case WaitVerdict::failed:
    case WaitVerdict::backoff:
    case WaitVerdict::stopped:
        return exit_failed;
    }
    return -1;
}

std::optional<int> wait_outcome(const std::string& id, const std::vector<json>& events) {
    DeployWaiter w(id);
    for (const json& ev : events) {
        WaitVerdict v = w.feed(ev);
        if (v != WaitVerdict::waiting) return wait_exit_status(v);
    }
    return std::nullopt;
}

std::string wait_failure_report(const std::string& id, const json& ev, WaitVerdict v, double now) {
    const json& rev = object_member(ev, "revision");
    const std::string message = event_or_revision(ev, "message", "");
    const std::string msg_part = message.empty() ? "" : ": " + one_line(message);
    if (v == WaitVerdict::stopped)
        return "hearthctl: deploy: " + id + " was stopped before it became ready" + msg_part + "\n";
    const std::string reason = event_or_revision(ev, "reason", "unknown");
    std::string text;
    if (v == WaitVerdict::backoff) {
        text = "hearthctl: deploy: " + id + " is in backoff after " + reason + msg_part + "\n";
        std::string next = event_or_revision(ev, "next_attempt_at", "");
        if (next.empty()) {
            text += "  hearth will retry it (hearthctl does not wait for restarts)\n";
        } else {
            text += "  hearth will retry at " + next;
            if (auto at = parse_timestamp(next)) text += " (in " + format_duration(*at - now) + ")";
            text += "; hearthctl does not wait for restarts\n";
        }
    } else {
        text = "hearthctl: deploy: " + id + " failed: " + reason + msg_part + "\n";
    }
    auto present = [&](const char* k) { return rev.contains(k) && !rev[k].is_null(); };
    if (present("exit_code")) text += "  exit code: " + field(rev, "exit_code") + "\n";
    if (present("signal")) text += "  signal: " + field(rev, "signal") + "\n";
    if (present("stderr_tail") && rev["stderr_tail"].is_array() && !rev["stderr_tail"].empty()) {
        text += "  stderr (last " + std::to_string(rev["stderr_tail"].size()) + " lines):\n";
        for (const json& l : rev["stderr_tail"])
            text +=
                "    " + one_line(l.is_string() ? l.get<std::string>() : dump_compact(l)) + "\n";
    }
    return text;
}

} // namespace hearth::ctl

#pragma once
// A revision's own sd_notify socket (NOTIFY_SOCKET): readiness, progress and
// load errors pushed by the application instead of polled.
//
// Protocol (sd_notify(3)): each datagram holds newline-separated KEY=VALUE
// assignments. Understood keys:
//   READY=1                   loading finished
//   STATUS=<text>             one line of progress, shown as is
//   EXTEND_TIMEOUT_USEC=<n>   the loading deadline becomes "now + n us"
//                             (re-sent before each extension runs out, as with
//                             systemd)
//   ERRNO=<n>                 the service failed with errno n
//   STOPPING=1                the service is shutting down
//   WATCHDOG=1                keep-alive (reserved for a liveness watchdog)
//   HEARTH_LOAD_ERROR=<json>  hearth's own key: a structured load error on a
//                             single line (health/load_error.hpp has the
//                             document); hearth_boot.py sends it when the
//                             entry module raises, an application may too
// Other keys are ignored (as systemd does); a malformed value of a known key
// is reported in NotifyMessage::invalid and the rest of the datagram still
// counts. The last assignment of a key in a datagram wins.
//
// Authentication: the socket has SO_PASSCRED, so every datagram carries the
// sender's pid/uid/gid as the kernel saw them. A caller-supplied predicate
// decides whether that pid belongs to the revision (pid_in_cgroup below for
// the cgroup drivers, pid_in_session for `none`); refused datagrams are
// counted and dropped. File descriptors sent along (SCM_RIGHTS) are closed at
// once, so a sender cannot fill hearth's fd table. The socket file is mode
// 0666 (like systemd's own notify socket): the credential check is the access
// control, and the revision may run as another user.
//
// Threading: NotifyListener is loop-thread only; nothing blocks (reads use
// MSG_DONTWAIT, at most 64 datagrams per wake-up so a flood cannot starve the
// loop). No exception escapes into libuv: one thrown by the predicate refuses
// the datagram, one thrown by the callback is logged.

#include "health/load_error.hpp"
#include "util/error.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <uv.h>
#include <vector>

namespace hearth::health {

inline constexpr std::size_t default_max_notify_datagram = std::size_t{64} * 1024;

// One datagram, parsed. Fields not present in it are unset/false.
struct NotifyMessage {
    pid_t pid = 0; // the sender, from its credentials (0 when parsed without)
    bool ready = false;
    bool stopping = false;
    bool watchdog = false;
    std::optional<std::string> status;
    std::optional<std::uint64_t> extend_timeout_usec;
    std::optional<int> errno_value;
    std::optional<LoadError> load_error; // set only when HEARTH_LOAD_ERROR parsed and checked
    // One line per rejected assignment, e.g. "EXTEND_TIMEOUT_USEC: not a
    // number" or "HEARTH_LOAD_ERROR: frames[0].line: not a non-negative integer".
    std::vector<std::string> invalid;

    // Whether anything understood (valid) was in the datagram.
    bool empty() const noexcept {
        return !ready && !stopping && !watchdog && !status && !extend_timeout_usec &&
               !errno_value && !load_error;
    }
};

// Parses one datagram's payload. Pure; never throws except std::bad_alloc.
// READY, STOPPING and WATCHDOG count only with the value "1" (systemd's
// rule); STATUS keeps its text as is (invalid UTF-8 included: the caller's
// JSON encoder replaces it); numbers are decimal without sign or spaces.
NotifyMessage parse_notify_message(std::string_view payload);

// Whether the process `pid` is in the cgroup `relpath` or below it, per
// /proc/PID/cgroup. `relpath` is the cgroup's path as that file shows it (the
// directory below the hierarchy's mount point, starting with '/', as seen
// from hearth's cgroup namespace). `controller` picks the line: "" is the
// unified hierarchy ("0::", v2 and hybrid), otherwise the v1 hierarchy whose
// controller list holds it (e.g. "memory"). Blocks briefly on procfs (a few
// microseconds: fine on the loop). A process that is gone (ENOENT/ESRCH) is
// false, not an error; other read failures are errors. Any thread.
Result<bool> pid_in_cgroup(pid_t pid, std::string_view relpath, std::string_view controller = "");
// The pure part: whether the text of a /proc/PID/cgroup file places the
// process in `relpath` or below on the chosen hierarchy.
bool cgroup_file_has(std::string_view proc_pid_cgroup, std::string_view relpath,
                     std::string_view controller = "");

// Whether `pid` is in the session `sid` (getsid). For the `none` cgroup
// driver, where a revision is its session (spawned with setsid). A process
// that left the session (setsid of its own) is not recognised. A process
// that is gone is false. Any thread; does not block.
Result<bool> pid_in_session(pid_t pid, pid_t sid);

class NotifyListener {
public:
    struct Sender {
        pid_t pid = 0;
        uid_t uid = 0;
        gid_t gid = 0;
    };
    // Whether datagrams from `sender` are accepted. Called on the loop for
    // each datagram, before it is parsed.
    using Predicate = std::function<bool(const Sender& sender)>;
    // Each accepted datagram, parsed (even one with only invalid entries, so
    // the caller can report them). The callback may destroy the listener.
    using Callback = std::function<void(const NotifyMessage& message)>;

    struct Stats {
        std::uint64_t accepted = 0;  // delivered to the callback
        std::uint64_t refused = 0;   // the predicate said no, or no credentials
        std::uint64_t oversize = 0;  // longer than max_datagram; dropped unread
        std::uint64_t malformed = 0; // accepted datagrams with invalid entries
        pid_t last_refused_pid = 0;  // the sender of the latest refused datagram
    };

    // Creates the socket at `path` (a stale socket file there is replaced;
    // any other file is an error), binds it, makes it mode 0666 and starts
    // reading on `loop`. Fails with invalid_argument when `path` does not fit
    // in sockaddr_un (107 bytes), io/not_found with the errno otherwise.
    // `max_datagram` bounds one datagram (larger ones are dropped whole).
    static Result<std::unique_ptr<NotifyListener>>
    open(uv_loop_t* loop, std::string path, Predicate accept, Callback on_message,
         std::size_t max_datagram = default_max_notify_datagram);

    // Stops reading, closes the socket (after libuv released it) and removes
    // the socket file. No callback runs afterwards. May run inside this
    // listener's own callback.
    ~NotifyListener();
    NotifyListener(const NotifyListener&) = delete;
    NotifyListener& operator=(const NotifyListener&) = delete;

    // The socket's path: the value for NOTIFY_SOCKET.
    const std::string& path() const noexcept { return path_; }
    const Stats& stats() const noexcept;

    struct Block; // libuv state; outlives the listener until uv_close is done

private:
    NotifyListener(std::string path, Block* block) : path_(std::move(path)), block_(block) {}
    std::string path_;
    Block* block_;
};

} // namespace hearth::health

#pragma once
// Metadata extraction (issue 13): the deploy's `metadata` command runs once
// per revision, its stdout must be ONE JSON document, and that document is
// kept content-addressed under `<state_dir>/metadata/sha256/<hex>.json`.
//
//   parse_metadata_params   deploy's `metadata` object -> MetadataCommand
//   run_metadata            runs the command on the loop, classifies the
//                           outcome, validates/hashes/stores the document on
//                           the thread pool, and reports a MetadataRecord
//   classify_metadata_exit, store_metadata_document
//                           the two halves of that, pure/blocking, for tests
//   metadata_record_to_json the `metadata` object of status and events
//
// Outcomes (MetadataRecord::state / detail):
//   ok                       exit 0, stdout one JSON document, stored
//   error / invalid_json     stdout is not one JSON document (position set)
//   error / too_large        stdout passed max_bytes (the command is killed)
//   error / exited           non-zero exit or a signal, or spawn failure (127/126)
//   error / oom_killed       the caller's cgroup saw the OOM killer strike
//   error / store_error      hearth could not write the document (hearth's fault)
//   timeout                  still running at timeout_s; its tree was killed

#include "init/init.hpp"
#include "init/oneshot.hpp"
#include "init/spawn.hpp"
#include "util/error.hpp"

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <uv.h>
#include <vector>

namespace hearth::health {

inline constexpr double default_metadata_timeout_s = 300;
inline constexpr std::uint64_t default_metadata_max_bytes = 16ull << 20;
// Bytes of the command's stderr kept (its end: a traceback ends there).
inline constexpr std::size_t metadata_stderr_tail_bytes = 8192;

// A validated deploy `metadata` object. Exactly one of `argv` (non-empty) and
// `module` is set. The module form runs like the revision's entry point
// (launch.hpp plan_launch with LaunchInput::module = module, args = args), in
// the revision's composed environment; the argv form is executed as given
// (argv[0] looked up on the revision's PATH).
struct MetadataCommand {
    std::vector<std::string> argv;
    std::optional<std::string> module;
    std::vector<std::string> args; // module form only
    double timeout_s = default_metadata_timeout_s;
    std::uint64_t max_bytes = default_metadata_max_bytes;

    std::uint64_t timeout_ms() const;
    // The params form again ({"argv": [...]} or {"module", "args"}, plus
    // timeout_s and max_bytes), for status and for state.json round trips.
    nlohmann::json to_json() const;
};

// Validates `obj` (the deploy's `metadata` value, whose path in the request
// is `where`). Accepts {"argv": [str, ...]} or {"module": str, "args": [str,
// ...]}, plus "timeout_s" (number, > 0, <= 86400; default 300) and
// "max_bytes" (an integer or a size string like "16Mi", 1 .. 1Gi; default
// 16Mi). Throws rpc::RpcError (invalid_params) naming the field, e.g.
// "params.metadata.argv[1]: expected a string".
MetadataCommand parse_metadata_params(const nlohmann::json& obj,
                                      std::string_view where = "params.metadata");

enum class MetadataState { none, pending, ok, error, timeout };
const char* metadata_state_name(MetadataState state) noexcept;

// Values of MetadataRecord::detail.
namespace metadata_detail {
inline constexpr const char* invalid_json = "invalid_json";
inline constexpr const char* too_large = "too_large";
inline constexpr const char* exited = "exited";
inline constexpr const char* oom_killed = "oom_killed";
inline constexpr const char* store_error = "store_error";
} // namespace metadata_detail

struct MetadataRecord {
    MetadataState state = MetadataState::none;
    std::string detail;                     // state error: one of metadata_detail
    std::string message;                    // error/timeout: one line for people
    std::string sha256;                     // ok: of the document's bytes exactly as received
    std::uint64_t bytes = 0;                // ok/invalid_json: stdout size
    std::optional<std::uint64_t> max_bytes; // too_large: the limit it passed
    std::optional<std::uint64_t> position;  // invalid_json: byte offset of the error
    double duration_ms = 0;                 // the command's run time (spawn to exit)
    std::optional<int> exit_code;           // it exited (any code)
    std::optional<int> signal;              // it was killed by a signal
    bool oom_killed = false;
    std::string stderr_tail; // last metadata_stderr_tail_bytes of stderr
    // Structured load error ({"type","message","frames","cause"}) when the
    // command raised and reported it; null when none. Filled by the caller
    // (the report channel is the daemon's); this module never sets it.
    nlohmann::json error;
};

// {"state", then what applies: "sha256", "bytes", "duration_ms", "detail",
// "message", "exit_code" | "signal" (+ "signal_name"), "oom_killed",
// "position", "max_bytes", "stderr_tail", "error"}. state none has only
// "state"; pending adds nothing else either.
nlohmann::json metadata_record_to_json(const MetadataRecord& record);

// Classifies a finished command run by everything but its stdout's content.
// Order: spawn failure (exited, exit_code 127/126) > timeout > oom_killed >
// too_large (stdout overflow) > non-zero exit or signal (exited). Returns a
// record in state error or timeout, or state pending when the command
// exited 0 within its limits: its stdout then goes to store_metadata_document.
// Sets duration_ms, exit_code/signal, oom_killed and stderr_tail in all cases.
// `timeout_ms` is only used for the message. Pure.
MetadataRecord classify_metadata_exit(const OneshotResult& result, bool oom_killed,
                                      std::uint64_t max_bytes, std::uint64_t timeout_ms,
                                      double duration_ms);

struct JsonProblem {
    // Bytes the parser had read when it failed: the 1-based offset of the
    // offending byte (for a bad literal, of the byte where it stopped being
    // a literal: "trailing" fails at its "a"),
    // one past the end for a document cut short. nlohmann's count.
    std::uint64_t position = 0;
    std::string message; // nlohmann's description
};
// Whether `text` is exactly one JSON document (whitespace around it allowed;
// trailing garbage, a second document, invalid UTF-8 and empty input are
// not). Uses a SAX pass: no DOM is built, so a 16 MiB or deeply nested
// document costs no recursion and little memory. Pure; thread-safe.
std::optional<JsonProblem> check_json_document(std::string_view text);

// `<state_dir>/metadata/sha256/<sha256>.json`
std::string metadata_document_path(const std::string& state_dir, const std::string& sha256);

// Validates `stdout_bytes` (check_json_document), hashes it and writes it
// atomically, mode 0644, to metadata_document_path (a file already there with
// the same content is left alone). Updates and returns `record` (which should
// be the pending record from classify_metadata_exit): ok with sha256/bytes,
// or error invalid_json (position, message) or store_error. Blocking (thread
// pool); thread-safe; never throws but bad_alloc.
MetadataRecord store_metadata_document(const std::string& state_dir, std::string_view stdout_bytes,
                                       MetadataRecord record);

// Reads a stored document back (for the `metadata` method). Fails not_found
// when it is not there. Blocking.
Result<std::string> read_metadata_document(const std::string& state_dir, const std::string& sha256);

// Removes every stored document `<hex>.json` whose hex is not in `keep`
// (the documents of revisions that still live, or that state.json needs).
// Other files (a write in progress) are left alone. Returns how many were
// removed; files that cannot be removed are skipped. Blocking (thread pool
// or before the loop runs); never throws but bad_alloc.
std::size_t prune_metadata_documents(const std::string& state_dir,
                                     const std::set<std::string>& keep);

struct MetadataRun {
    // The command composed like the revision's process: argv/path, env, cwd,
    // cgroup, uid/gid. Its stdin is /dev/null; stdout and stderr are
    // replaced by pipes; it gets its own process group.
    SpawnRequest request;
    std::uint64_t timeout_ms = 300000;
    std::uint64_t max_bytes = default_metadata_max_bytes;
    std::string state_dir;
    // Asked on the loop once the command has ended (before classification):
    // did the OOM killer kill a process of it? E.g. compare the revision
    // cgroup's oom_kill counter with its value before the run. May be empty.
    std::function<bool()> oom_killed;
    // Runs on the loop when hearth kills the command (timeout or too_large),
    // after its process group and tree were killed: kill what they cannot
    // reach (a double-forked daemon, via the cgroup). May be empty; must not
    // throw; must not block for long.
    std::function<void(pid_t)> on_kill;
};

// Runs `run` and calls `done` on the loop exactly once with the final
// record (state ok, error or timeout), after the document was stored on the
// thread pool when there was one. Loop thread only; `init` must outlive the
// run. Returns the command's pid (its process group) or -1 when it could not
// be spawned (`done` has then already run with detail exited). To cancel
// (revision stopped), SIGKILL the process group; `done` still runs once and
// the caller drops its result. `done` must not throw.
pid_t run_metadata(uv_loop_t* loop, Init& init, MetadataRun run,
                   std::function<void(MetadataRecord)> done);

} // namespace hearth::health

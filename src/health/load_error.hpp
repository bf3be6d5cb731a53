#pragma once
// Structured load errors: the exception a revision's entry module raised
// while it was imported or run, as hearth_boot.py reports it (through
// NOTIFY_SOCKET as HEARTH_LOAD_ERROR=<json> and in
// $HEARTH_RUNTIME_DIR/load_error.json), or as an application reports it
// itself through the same notify key.
//
// The JSON document (one line, at most max_load_error_bytes):
//   {"type": "json.decoder.JSONDecodeError",      // as Python names the class
//    "message": "Expecting value: line 1 column 1 (char 0)",
//    "frames": [{"file": "/app/defs.py", "line": 12, "function": "<module>"}, ...],
//    "frames_omitted": 40, "omitted_at": 10,      // optional: frames trimmed
//                                                 // from the middle, before
//                                                 // frames[omitted_at]
//    "cause": {... the same shape ..., "via": "cause" | "context"}}
// `frames` run from the outermost call to the innermost (Python's order).
// A frame's `function` may be "" (a SyntaxError's own location). `via` says
// whether the cause was the explicit `raise ... from` (__cause__, "cause") or
// the exception being handled when this one was raised (__context__,
// "context"); it defaults to "cause". Unknown keys are ignored.
//
// Pure functions: no I/O, any thread, nothing throws except std::bad_alloc.

#include "util/error.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::health {

// Bounds applied by parse_load_error (and by hearth_boot.py when it builds
// the document).
inline constexpr std::size_t max_load_error_bytes = std::size_t{64} * 1024;
inline constexpr std::size_t max_load_error_depth = 8;      // exceptions in one chain
inline constexpr std::size_t max_load_error_frames = 1000;  // per exception
inline constexpr std::size_t max_load_error_string = 16384; // bytes per string

struct LoadFrame {
    std::string file;
    std::int64_t line = 0; // 0 when unknown
    std::string function;  // "" when there is none (a SyntaxError's location)
    bool operator==(const LoadFrame&) const = default;
};

struct LoadError {
    std::string type; // never empty
    std::string message;
    std::vector<LoadFrame> frames;    // outermost first
    std::uint64_t frames_omitted = 0; // trimmed from the middle
    std::size_t omitted_at = 0;       // index in `frames` before which they were
    // The exception this one was raised from, or while handling; null at the
    // end of the chain. `cause_is_context` is false for `raise ... from` and
    // true for an exception raised while another was being handled.
    std::unique_ptr<LoadError> cause;
    bool cause_is_context = false;

    LoadError() = default;
    LoadError(LoadError&&) noexcept = default;
    LoadError& operator=(LoadError&&) noexcept = default;
    // Deep copies (the chain is at most max_load_error_depth long).
    LoadError(const LoadError& other);
    LoadError& operator=(const LoadError& other);
};

// Parses and checks a load error document. Fails with too_large past
// max_load_error_bytes, invalid_argument for anything else (not JSON, a
// missing or mistyped field, a chain deeper than max_load_error_depth, too
// many frames, an oversized string, omitted_at past the frames); the message
// names the field by its path, e.g. "cause.frames[2].line: not an integer".
Result<LoadError> parse_load_error(std::string_view text);
// The same from an already parsed value (the notify listener and the status
// code hold one); the size bound is not checked here.
Result<LoadError> load_error_from_json(const nlohmann::json& value);

// The document for status and events (the shape above; `via` only on causes).
nlohmann::json to_json(const LoadError& error);

// What Python prints for the uncaught exception, causes first:
//   Traceback (most recent call last):
//     File "/app/defs.py", line 12, in <module>
//     ... 40 frames omitted ...
//   json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)
// with "\nThe above exception was the direct cause of the following
// exception:\n\n" (or "During handling of the above exception, another
// exception occurred:") between the links of the chain. No source lines
// (hearth does not have them). Ends with a newline.
std::string render_traceback(const LoadError& error);

} // namespace hearth::health

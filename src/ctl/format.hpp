#pragma once
// hearthctl's output for people: the tables and lines of hearthctl(1) built
// from hearth's JSON results and notifications, and the tolerant JSON reads
// they use. hearth may be newer or older than hearthctl, so every read
// accepts a missing member or one of another type (printing "-" or
// skipping it) instead of throwing. Pure: no I/O; nothing throws except
// std::bad_alloc.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::ctl {

// ---------------------------------------------------------------------------
// Tolerant reads of hearth's JSON

// A member as text: a string as is, any other value as compact JSON; `dflt`
// when `j` is not an object or the member is absent or null.
std::string field(const nlohmann::json& j, const char* key, const std::string& dflt = "-");

// One line of JSON whatever it holds (invalid UTF-8 is replaced).
std::string dump_compact(const nlohmann::json& j);

// True only for a boolean member that is true.
bool flag(const nlohmann::json& j, const char* key);

// A numeric member; nullopt for anything else.
std::optional<double> number(const nlohmann::json& j, const char* key);

// `s` with '\n' and '\r' as spaces, so one record stays on one line
// whatever hearth put in a message.
std::string one_line(std::string s);

// The object member `key`, or an empty object (so lookups can chain). The
// reference lives as long as `j` (or for the program, for the empty one).
const nlohmann::json& object_member(const nlohmann::json& j, const char* key);

// A byte count hearth sent as an integer (or, tolerated, a size string).
std::optional<std::uint64_t> bytes_member(const nlohmann::json& j, const char* key);

// ---------------------------------------------------------------------------
// Values

// Compact human duration, truncated: 0s, 59s, 1m05s, 2h03m, 3d04h.
// Negative or NaN input prints as 0s.
std::string format_duration(double seconds);

// "2026-11-22T10:00:00.123Z" -> seconds since the epoch; nullopt if malformed.
std::optional<double> parse_timestamp(std::string_view ts);

// "512MiB" (format_bytes without its space, for table cells).
std::string compact_bytes(std::uint64_t bytes);

// ---------------------------------------------------------------------------
// Tables and lines

// Left-aligned columns separated by two spaces, one '\n'-terminated line per
// row, no trailing spaces. Widths count UTF-8 code points. Rows may have
// different lengths.
std::string format_table(const std::vector<std::vector<std::string>>& rows);

// Rows (header first) of the `status` table built from a `status` result:
// LOCATION ID STATE PID UPTIME RUNTIME CACHE MEM RESTARTS REASON (MEM: see
// mem_cell; RESTARTS: "restarts", "-" when absent). The active revision's
// ID carries a trailing '*'. `now` is seconds since the epoch (UPTIME is
// now - state_since for revisions not failed/stopped).
std::vector<std::vector<std::string>> status_rows(const nlohmann::json& status, double now);

// The MEM cell of a revision: "CURRENT/LIMIT" from cgroup.memory_current and
// limits.memory, "-" for an unknown part, "-" when both are unknown.
std::string mem_cell(const nlohmann::json& revision);

// Detail lines (no newlines) for `status LOCATION`: the active revision,
// else the newest, of the first location in a `status` result: state,
// cgroup driver/enforcement/degraded, limits, usage, restarts (and the
// policy when hearth reports it), backoff, last failure, oom, fetch
// progress, user, stop. Empty when there is no revision.
std::vector<std::string> status_detail(const nlohmann::json& status, double now);

// Rows (header first) of `cache ls`: KIND SHA256 (first 12 hex) SIZE
// LAST-USED ("5m03s ago") PINNED-BY (comma-separated ids, "-" for none).
std::vector<std::vector<std::string>> cache_rows(const nlohmann::json& list, double now);

// "used 1.5 GiB of budget 10 GiB (3 entries, 1 GiB pinned)"; pinned is the
// result's "pinned_bytes", else the sum of the pinned entries.
std::string cache_total_line(const nlohmann::json& list);

// Lines of `cache gc`: "evicted KIND SHA12 SIZE" per entry, then
// "freed X; used now Y" (or "nothing to evict; used Y"), then hearth's
// "message" when it sent one.
std::vector<std::string> cache_gc_lines(const nlohmann::json& result);

// "TS LOCATION ID PREVIOUS -> STATE[ REASON][: MESSAGE]" for an `event`
// notification's params (no newline). Missing fields print as "-".
// A progress event ("type":"progress") prints as
// "TS LOCATION ID progress " + format_progress(event); an event of another
// unknown type as "TS LOCATION ID TYPE[ STATE]".
std::string format_event(const nlohmann::json& event);

// "deps 1.5 MiB/40 MiB (3%)" for a progress event ("?" for an unknown total,
// no percentage then).
std::string format_progress(const nlohmann::json& event);

// "TS STREAM TEXT" for one log line object (no newline).
std::string format_log_line(const nlohmann::json& line);

} // namespace hearth::ctl

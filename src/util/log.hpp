#pragma once
// Structured logging on top of spdlog, to stderr.
//
// Text format:  2026-11-22T10:00:00.123Z info  main command exited pid=12 code=0
// JSON format:  {"ts":"...","level":"info","msg":"main command exited","pid":12,"code":0}
//
// Not async-signal-safe: never call between fork and exec.

#include <cstdint>
#include <initializer_list>
#include <spdlog/spdlog.h>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hearth::log {

enum class Format { text, json };

// Parses "text"/"json" and "trace".."critical"/"off"; false on an unknown name.
bool parse_format(std::string_view name, Format& out);
bool parse_level(std::string_view name, spdlog::level::level_enum& out);

// Installs the process-wide stderr logger. Call once, early, from main.
void setup(Format format, spdlog::level::level_enum level);

using Value = std::variant<std::int64_t, double, bool, std::string_view, std::string>;
struct Field {
    std::string_view key;
    Value value;
    Field(std::string_view k, int v) : key(k), value(std::int64_t{v}) {}
    Field(std::string_view k, long v) : key(k), value(std::int64_t{v}) {}
    Field(std::string_view k, long long v) : key(k), value(std::int64_t{v}) {}
    Field(std::string_view k, unsigned v) : key(k), value(std::int64_t{v}) {}
    Field(std::string_view k, unsigned long v) : key(k), value(static_cast<std::int64_t>(v)) {}
    Field(std::string_view k, unsigned long long v) : key(k), value(static_cast<std::int64_t>(v)) {}
    Field(std::string_view k, double v) : key(k), value(v) {}
    Field(std::string_view k, bool v) : key(k), value(v) {}
    Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
    Field(std::string_view k, std::string_view v) : key(k), value(v) {}
    Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
};
using Fields = std::initializer_list<Field>;

// Formats `msg` plus fields for the configured format (exposed for tests).
std::string render(Format format, std::string_view msg, Fields fields);

void write(spdlog::level::level_enum level, std::string_view msg, Fields fields = {});
inline void debug(std::string_view msg, Fields f = {}) {
    write(spdlog::level::debug, msg, f);
}
inline void info(std::string_view msg, Fields f = {}) {
    write(spdlog::level::info, msg, f);
}
inline void warn(std::string_view msg, Fields f = {}) {
    write(spdlog::level::warn, msg, f);
}
inline void error(std::string_view msg, Fields f = {}) {
    write(spdlog::level::err, msg, f);
}

} // namespace hearth::log

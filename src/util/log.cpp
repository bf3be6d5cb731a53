#include "util/log.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_sinks.h>

namespace hearth::log {

namespace {

Format g_format = Format::text;

// JSON string escaping that never throws: user-controlled text (paths, child
// output, client input) may be invalid UTF-8, which nlohmann rejects by default.
std::string quote(std::string_view s) {
    return nlohmann::json(std::string(s))
        .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool needs_quotes(std::string_view s) {
    if (s.empty()) return true;
    for (unsigned char c : s)
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f) return true;
    return false;
}

void append_value(std::string& out, const Value& v, Format format) {
    std::visit(
        [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool>) {
                out += x ? "true" : "false";
            } else if constexpr (std::is_same_v<T, std::string_view> ||
                                 std::is_same_v<T, std::string>) {
                if (format == Format::json || needs_quotes(x))
                    out += quote(x);
                else
                    out += x;
            } else if constexpr (std::is_same_v<T, double>) {
                out += fmt::format("{}", x); // shortest form that round-trips
            } else {
                out += std::to_string(x);
            }
        },
        v);
}

} // namespace

bool parse_format(std::string_view name, Format& out) {
    if (name == "text")
        out = Format::text;
    else if (name == "json")
        out = Format::json;
    else
        return false;
    return true;
}

bool parse_level(std::string_view name, spdlog::level::level_enum& out) {
    static constexpr std::pair<std::string_view, spdlog::level::level_enum> names[] = {
        {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
        {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
        {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
        {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
    };
    for (auto& [n, l] : names)
        if (n == name) {
            out = l;
            return true;
        }
    return false;
}

void setup(Format format, spdlog::level::level_enum level) {
    g_format = format;
    auto logger = spdlog::stderr_logger_mt("hearth");
    logger->set_level(level);
    // Flush each record: hearth may be killed at any time, and as PID 1 its
    // stderr is what `docker logs` shows.
    logger->flush_on(spdlog::level::trace);
    if (format == Format::json)
        logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})",
                            spdlog::pattern_time_type::utc);
    else
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %v", spdlog::pattern_time_type::utc);
    spdlog::set_default_logger(std::move(logger));
}

std::string render(Format format, std::string_view msg, Fields fields) {
    std::string out;
    if (format == Format::json) {
        out += "\"msg\":";
        out += quote(msg);
        for (const auto& f : fields) {
            out += ',';
            out += quote(f.key);
            out += ':';
            append_value(out, f.value, format);
        }
    } else {
        out += msg;
        for (const auto& f : fields) {
            out += ' ';
            out += f.key;
            out += '=';
            append_value(out, f.value, format);
        }
    }
    return out;
}

void write(spdlog::level::level_enum level, std::string_view msg, Fields fields) {
    auto* logger = spdlog::default_logger_raw();
    if (!logger->should_log(level)) return;
    logger->log(level, "{}", render(g_format, msg, fields));
}

} // namespace hearth::log

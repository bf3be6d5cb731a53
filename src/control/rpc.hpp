#pragma once
// JSON-RPC 2.0 vocabulary shared by the control server, its method handlers
// and hearthctl: error codes, message builders, line framing and typed
// parameter access with errors that name the offending field path.
//
// No libuv here; everything is plain, synchronous and usable from any thread
// (no shared state). Functions documented as throwing throw rpc::RpcError only
// (plus std::bad_alloc).

#include <cstdint>
#include <exception>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::rpc {

using nlohmann::json;

// Standard JSON-RPC codes.
inline constexpr int parse_error = -32700;
inline constexpr int invalid_request = -32600;
inline constexpr int method_not_found = -32601;
inline constexpr int invalid_params = -32602;
inline constexpr int internal_error = -32603;
// hearth's own codes (hearth-protocol(7) ERRORS, man/hearth-protocol.7.scd).
inline constexpr int unknown_location = -32001;
inline constexpr int unknown_revision = -32002;
inline constexpr int shutting_down = -32003;
inline constexpr int too_many_connections = -32004;

// The `error` member of a response. A null `data` is left out of the reply.
struct Error {
    int code = internal_error;
    std::string message;
    json data;
};

// Thrown by method handlers (and the param helpers below); the control server
// turns it into an error reply for the request being handled.
class RpcError : public std::exception {
public:
    explicit RpcError(Error error) : error_(std::move(error)) {}
    RpcError(int code, std::string message, json data = nullptr)
        : error_{code, std::move(message), std::move(data)} {}
    const char* what() const noexcept override { return error_.message.c_str(); }
    const Error& error() const noexcept { return error_; }

private:
    Error error_;
};

// Ready-made failures for hearth's codes (the spec fixes their `data`).
RpcError invalid_params_at(std::string_view path, std::string_view problem); // "path: problem"
RpcError unknown_location_error(std::string_view location);                  // data {"location"}
RpcError unknown_revision_error(std::string_view id);                        // data {"id"}
RpcError shutting_down_error();

// Message builders. `id` must be a number, a string or null (null only for
// errors about requests whose id could not be determined).
json make_request(const json& id, std::string_view method, json params);
json make_notification(std::string_view method, json params);
json make_result(const json& id, json result);
json make_error(const json& id, const Error& error);

// One compact line: the dump (invalid UTF-8 replaced by U+FFFD, never throws
// on that account) plus '\n'.
std::string to_line(const json& message);

// ---- Parameter access ----------------------------------------------------
//
// Each helper reads `obj[key]`, where `where` is the path of `obj` in the
// request ("params" for the top level, "params.deps" for a nested object);
// errors are RpcError(invalid_params, "<where>.<key>: <problem>").
// Unknown keys are never rejected (newer clients may send more fields).
// For the optional_* helpers an absent key and an explicit null both mean
// "not given". If `obj` itself is not an object they fail naming `where`.

// "params" + "deps" -> "params.deps"; index form: "params.args" + 2 -> "params.args[2]".
std::string join_path(std::string_view where, std::string_view key);
std::string join_path(std::string_view where, std::size_t index);

std::string require_string(const json& obj, std::string_view key,
                           std::string_view where = "params");
std::optional<std::string> optional_string(const json& obj, std::string_view key,
                                           std::string_view where = "params");

// The returned reference/pointer points into `obj`.
const json& require_object(const json& obj, std::string_view key,
                           std::string_view where = "params");
const json* optional_object(const json& obj, std::string_view key,
                            std::string_view where = "params");

std::optional<bool> optional_bool(const json& obj, std::string_view key,
                                  std::string_view where = "params");
std::optional<double> optional_number(const json& obj, std::string_view key,
                                      std::string_view where = "params");
// An integral number (1 and 1.0 are accepted, 1.5 is not) within [min, max].
std::optional<std::int64_t> optional_integer(const json& obj, std::string_view key,
                                             std::int64_t min, std::int64_t max,
                                             std::string_view where = "params");

// {"K":"V",...}; each non-string value fails naming "<where>.<key>.<K>".
std::optional<std::map<std::string, std::string>>
optional_string_map(const json& obj, std::string_view key, std::string_view where = "params");
// ["a","b"]; a non-string element fails naming "<where>.<key>[i]".
std::optional<std::vector<std::string>> optional_string_array(const json& obj, std::string_view key,
                                                              std::string_view where = "params");

} // namespace hearth::rpc

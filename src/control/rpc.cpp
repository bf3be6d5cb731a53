#include "control/rpc.hpp"

#include <cmath>

namespace hearth::rpc {

namespace {

const char* type_phrase(const json& v) {
    switch (v.type()) {
    case json::value_t::null:
        return "null";
    case json::value_t::object:
        return "an object";
    case json::value_t::array:
        return "an array";
    case json::value_t::string:
        return "a string";
    case json::value_t::boolean:
        return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
        return "a number";
    default:
        return "an unsupported value";
    }
}

[[noreturn]] void fail_type(std::string_view path, std::string_view expected, const json& got) {
    std::string problem = "expected ";
    problem += expected;
    problem += ", got ";
    problem += type_phrase(got);
    throw invalid_params_at(path, problem);
}

void check_container(const json& obj, std::string_view where) {
    if (!obj.is_object()) fail_type(where, "an object", obj);
}

// nullptr when absent or null.
const json* lookup(const json& obj, std::string_view key, std::string_view where) {
    check_container(obj, where);
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
}

const json& lookup_required(const json& obj, std::string_view key, std::string_view where,
                            std::string_view expected) {
    const json* v = lookup(obj, key, where);
    if (!v) {
        std::string problem = "missing (expected ";
        problem += expected;
        problem += ')';
        throw invalid_params_at(join_path(where, key), problem);
    }
    return *v;
}

} // namespace

RpcError invalid_params_at(std::string_view path, std::string_view problem) {
    std::string msg(path);
    msg += ": ";
    msg += problem;
    return RpcError(invalid_params, std::move(msg));
}

RpcError unknown_location_error(std::string_view location) {
    return RpcError(unknown_location, "unknown location: " + std::string(location),
                    json{{"location", location}});
}

RpcError unknown_revision_error(std::string_view id) {
    return RpcError(unknown_revision, "unknown revision: " + std::string(id), json{{"id", id}});
}

RpcError shutting_down_error() {
    return RpcError(shutting_down, "hearth is shutting down");
}

json make_request(const json& id, std::string_view method, json params) {
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}};
}

json make_notification(std::string_view method, json params) {
    return json{{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
}

json make_result(const json& id, json result) {
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json make_error(const json& id, const Error& error) {
    json err = {{"code", error.code}, {"message", error.message}};
    if (!error.data.is_null()) err["data"] = error.data;
    return json{{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

std::string to_line(const json& message) {
    std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace);
    line += '\n';
    return line;
}

std::string join_path(std::string_view where, std::string_view key) {
    std::string p(where);
    p += '.';
    p += key;
    return p;
}

std::string join_path(std::string_view where, std::size_t index) {
    std::string p(where);
    p += '[';
    p += std::to_string(index);
    p += ']';
    return p;
}

std::string require_string(const json& obj, std::string_view key, std::string_view where) {
    const json& v = lookup_required(obj, key, where, "a string");
    if (!v.is_string()) fail_type(join_path(where, key), "a string", v);
    return v.get<std::string>();
}

std::optional<std::string> optional_string(const json& obj, std::string_view key,
                                           std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail_type(join_path(where, key), "a string", *v);
    return v->get<std::string>();
}

const json& require_object(const json& obj, std::string_view key, std::string_view where) {
    const json& v = lookup_required(obj, key, where, "an object");
    if (!v.is_object()) fail_type(join_path(where, key), "an object", v);
    return v;
}

const json* optional_object(const json& obj, std::string_view key, std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (v && !v->is_object()) fail_type(join_path(where, key), "an object", *v);
    return v;
}

std::optional<bool> optional_bool(const json& obj, std::string_view key, std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail_type(join_path(where, key), "a boolean", *v);
    return v->get<bool>();
}

std::optional<double> optional_number(const json& obj, std::string_view key,
                                      std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail_type(join_path(where, key), "a number", *v);
    return v->get<double>();
}

std::optional<std::int64_t> optional_integer(const json& obj, std::string_view key,
                                             std::int64_t min, std::int64_t max,
                                             std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    std::string path = join_path(where, key);
    if (!v->is_number()) fail_type(path, "an integer", *v);
    auto range_problem = [&] {
        return "must be between " + std::to_string(min) + " and " + std::to_string(max);
    };
    if (v->is_number_unsigned()) {
        auto u = v->get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(INT64_MAX))
            throw invalid_params_at(path, range_problem());
        auto i = static_cast<std::int64_t>(u);
        if (i < min || i > max) throw invalid_params_at(path, range_problem());
        return i;
    }
    if (v->is_number_integer()) {
        auto i = v->get<std::int64_t>();
        if (i < min || i > max) throw invalid_params_at(path, range_problem());
        return i;
    }
    double d = v->get<double>();
    if (std::trunc(d) != d) throw invalid_params_at(path, "expected an integer, got a fraction");
    // Compare in double first: casting an out-of-range double is undefined.
    if (d < static_cast<double>(min) || d > static_cast<double>(max))
        throw invalid_params_at(path, range_problem());
    auto i = static_cast<std::int64_t>(d);
    if (i < min || i > max) throw invalid_params_at(path, range_problem());
    return i;
}

std::optional<std::map<std::string, std::string>>
optional_string_map(const json& obj, std::string_view key, std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    std::string path = join_path(where, key);
    if (!v->is_object()) fail_type(path, "an object of strings", *v);
    std::map<std::string, std::string> out;
    for (auto it = v->begin(); it != v->end(); ++it) {
        if (!it->is_string()) fail_type(join_path(path, it.key()), "a string", *it);
        out.emplace(it.key(), it->get<std::string>());
    }
    return out;
}

std::optional<std::vector<std::string>> optional_string_array(const json& obj, std::string_view key,
                                                              std::string_view where) {
    const json* v = lookup(obj, key, where);
    if (!v) return std::nullopt;
    std::string path = join_path(where, key);
    if (!v->is_array()) fail_type(path, "an array of strings", *v);
    std::vector<std::string> out;
    out.reserve(v->size());
    for (std::size_t i = 0; i < v->size(); ++i) {
        const json& e = (*v)[i];
        if (!e.is_string()) fail_type(join_path(path, i), "a string", e);
        out.push_back(e.get<std::string>());
    }
    return out;
}

} // namespace hearth::rpc

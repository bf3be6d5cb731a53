#include "health/load_error.hpp"

#include <limits>
#include <utility>

namespace hearth::health {

using nlohmann::json;

namespace {

Error invalid(const std::string& where, std::string_view problem) {
    return Error{Errc::invalid_argument, 0,
                 (where.empty() ? std::string("load error") : where) + ": " + std::string(problem)};
}

std::string at(const std::string& where, std::string_view key) {
    return where.empty() ? std::string(key) : where + "." + std::string(key);
}

// Reads a string member; absent is "" unless `required`.
Result<std::string> get_string(const json& obj, const std::string& where, std::string_view key,
                               bool required) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        if (required) return invalid(at(where, key), "missing");
        return std::string();
    }
    if (!it->is_string()) return invalid(at(where, key), "not a string");
    const auto& s = it->get_ref<const std::string&>();
    if (s.size() > max_load_error_string)
        return invalid(at(where, key),
                       "longer than " + std::to_string(max_load_error_string) + " bytes");
    return s;
}

// An integer member >= 0 (1 and 1.0 alike); absent is 0.
Result<std::uint64_t> get_count(const json& obj, const std::string& where, std::string_view key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return std::uint64_t{0};
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    if (it->is_number_integer()) {
        auto v = it->get<std::int64_t>();
        if (v < 0) return invalid(at(where, key), "negative");
        return static_cast<std::uint64_t>(v);
    }
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (d >= 0 && d < 9e15 && d == static_cast<double>(static_cast<std::uint64_t>(d)))
            return static_cast<std::uint64_t>(d);
    }
    return invalid(at(where, key), "not a non-negative integer");
}

Result<LoadError> parse_one(const json& value, const std::string& where, std::size_t depth) {
    if (!value.is_object()) return invalid(where, "not an object");
    LoadError out;
    auto type = get_string(value, where, "type", true);
    if (!type) return std::move(type).error();
    if (type->empty()) return invalid(at(where, "type"), "empty");
    out.type = std::move(*type);
    auto message = get_string(value, where, "message", false);
    if (!message) return std::move(message).error();
    out.message = std::move(*message);

    if (auto it = value.find("frames"); it != value.end() && !it->is_null()) {
        const std::string fwhere = at(where, "frames");
        if (!it->is_array()) return invalid(fwhere, "not an array");
        if (it->size() > max_load_error_frames)
            return invalid(fwhere,
                           "more than " + std::to_string(max_load_error_frames) + " frames");
        out.frames.reserve(it->size());
        for (std::size_t i = 0; i < it->size(); ++i) {
            const json& f = (*it)[i];
            const std::string w = fwhere + "[" + std::to_string(i) + "]";
            if (!f.is_object()) return invalid(w, "not an object");
            LoadFrame frame;
            auto file = get_string(f, w, "file", true);
            if (!file) return std::move(file).error();
            frame.file = std::move(*file);
            auto line = get_count(f, w, "line");
            if (!line) return std::move(line).error();
            if (*line > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                return invalid(at(w, "line"), "out of range");
            frame.line = static_cast<std::int64_t>(*line);
            auto function = get_string(f, w, "function", false);
            if (!function) return std::move(function).error();
            frame.function = std::move(*function);
            out.frames.push_back(std::move(frame));
        }
    }
    auto omitted = get_count(value, where, "frames_omitted");
    if (!omitted) return std::move(omitted).error();
    out.frames_omitted = *omitted;
    auto omitted_at = get_count(value, where, "omitted_at");
    if (!omitted_at) return std::move(omitted_at).error();
    if (*omitted_at > out.frames.size())
        return invalid(at(where, "omitted_at"), "past the last frame");
    out.omitted_at = out.frames_omitted > 0 && value.find("omitted_at") == value.end()
                         ? out.frames.size() / 2
                         : static_cast<std::size_t>(*omitted_at);

    if (auto it = value.find("cause"); it != value.end() && !it->is_null()) {
        const std::string cwhere = at(where, "cause");
        if (depth + 1 >= max_load_error_depth)
            return invalid(cwhere, "chain deeper than " + std::to_string(max_load_error_depth));
        auto cause = parse_one(*it, cwhere, depth + 1);
        if (!cause) return std::move(cause).error();
        auto via = get_string(*it, cwhere, "via", false);
        if (!via) return std::move(via).error();
        if (!via->empty() && *via != "cause" && *via != "context")
            return invalid(at(cwhere, "via"), "must be \"cause\" or \"context\"");
        out.cause = std::make_unique<LoadError>(std::move(*cause));
        out.cause_is_context = *via == "context";
    }
    return out;
}

json to_json_impl(const LoadError& e) {
    json frames = json::array();
    for (const auto& f : e.frames)
        frames.push_back({{"file", f.file}, {"line", f.line}, {"function", f.function}});
    json out = {{"type", e.type}, {"message", e.message}, {"frames", std::move(frames)}};
    if (e.frames_omitted > 0) {
        out["frames_omitted"] = e.frames_omitted;
        out["omitted_at"] = e.omitted_at;
    }
    if (e.cause) {
        json cause = to_json_impl(*e.cause);
        cause["via"] = e.cause_is_context ? "context" : "cause";
        out["cause"] = std::move(cause);
    }
    return out;
}

void render_one(const LoadError& e, std::string& out) {
    if (!e.frames.empty() || e.frames_omitted > 0) {
        out += "Traceback (most recent call last):\n";
        for (std::size_t i = 0; i <= e.frames.size(); ++i) {
            if (e.frames_omitted > 0 && i == e.omitted_at)
                out += "  ... " + std::to_string(e.frames_omitted) + " frames omitted ...\n";
            if (i == e.frames.size()) break;
            const LoadFrame& f = e.frames[i];
            out += "  File \"" + f.file + "\", line " + std::to_string(f.line);
            if (!f.function.empty()) out += ", in " + f.function;
            out += '\n';
        }
    }
    out += e.type;
    if (!e.message.empty()) out += ": " + e.message;
    out += '\n';
}

} // namespace

LoadError::LoadError(const LoadError& other)
    : type(other.type), message(other.message), frames(other.frames),
      frames_omitted(other.frames_omitted), omitted_at(other.omitted_at),
      cause(other.cause ? std::make_unique<LoadError>(*other.cause) : nullptr),
      cause_is_context(other.cause_is_context) {}

LoadError& LoadError::operator=(const LoadError& other) {
    if (this != &other) *this = LoadError(other);
    return *this;
}

Result<LoadError> load_error_from_json(const json& value) {
    return parse_one(value, "", 0);
}

Result<LoadError> parse_load_error(std::string_view text) {
    if (text.size() > max_load_error_bytes)
        return Error{Errc::too_large, 0,
                     "load error: " + std::to_string(text.size()) + " bytes, more than " +
                         std::to_string(max_load_error_bytes)};
    json value = json::parse(text, nullptr, false);
    if (value.is_discarded()) return invalid("", "not valid JSON");
    return load_error_from_json(value);
}

json to_json(const LoadError& error) {
    return to_json_impl(error);
}

std::string render_traceback(const LoadError& error) {
    // Python prints the chain from its root: the deepest cause first.
    std::vector<const LoadError*> chain;
    for (const LoadError* e = &error; e != nullptr; e = e->cause.get())
        chain.push_back(e);
    std::string out;
    for (std::size_t i = chain.size(); i-- > 0;) {
        render_one(*chain[i], out);
        if (i > 0)
            out += chain[i - 1]->cause_is_context
                       ? "\nDuring handling of the above exception, another exception "
                         "occurred:\n\n"
                       : "\nThe above exception was the direct cause of the following "
                         "exception:\n\n";
    }
    return out;
}

} // namespace hearth::health

#include "deploy.hpp"

#include "exit_status.hpp"
#include "rpc.hpp"
#include "sha256.hpp"

#include <sys/wait.h>

#include <cmath>
#include <ctime>

namespace hearth {

using nlohmann::json;

const char* state_name(State s) noexcept {
    switch (s) {
    case State::pending: return "pending";
    case State::fetching: return "fetching";
    case State::extracting: return "extracting";
    case State::starting: return "starting";
    case State::loading: return "loading";
    case State::ready: return "ready";
    case State::failed: return "failed";
    case State::backoff: return "backoff";
    case State::stopping: return "stopping";
    case State::stopped: return "stopped";
    }
    return "unknown";
}

bool is_final(State s) noexcept { return s == State::failed || s == State::stopped; }
bool is_live(State s) noexcept { return !is_final(s); }

const char* runtime_name(Runtime r) noexcept { return r == Runtime::pex ? "pex" : "native"; }

bool valid_location_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 63) return false;
    auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (!lower_or_digit(name[0])) return false;
    for (char c : name.substr(1))
        if (!lower_or_digit(c) && c != '_' && c != '.' && c != '-') return false;
    return true;
}

namespace {

ArtifactSpec parse_artifact(const json& params, const char* key) {
    const std::string where = rpc::join_path("params", key);
    const json& obj = rpc::require_object(params, key);
    ArtifactSpec spec;
    spec.sha256 = rpc::require_string(obj, "sha256", where);
    if (!is_sha256_hex(spec.sha256))
        throw rpc::invalid_params_at(rpc::join_path(where, "sha256"),
                                     "expected 64 lowercase hex characters");
    auto path = rpc::optional_string(obj, "path", where);
    auto url = rpc::optional_string(obj, "url", where);
    if (path && url)
        throw rpc::invalid_params_at(where, "give either \"path\" or \"url\", not both");
    if (url) {
        constexpr std::string_view file_scheme = "file://";
        if (url->rfind(file_scheme, 0) != 0) {
            std::string scheme = url->substr(0, url->find(':'));
            throw rpc::invalid_params_at(rpc::join_path(where, "url"),
                                         "unsupported URL scheme '" + scheme +
                                             "' (supported: file://)");
        }
        path = url->substr(file_scheme.size());
        // file://localhost/x is the same as file:///x.
        if (path->rfind("localhost/", 0) == 0) path = path->substr(9);
    }
    if (!path) throw rpc::invalid_params_at(where, "needs \"path\" or \"url\"");
    if (path->empty() || (*path)[0] != '/')
        throw rpc::invalid_params_at(rpc::join_path(where, url ? "url" : "path"),
                                     "expected an absolute path, got '" + *path + "'");
    spec.path = *path;
    return spec;
}

} // namespace

DeploySpec parse_deploy_params(const json& params) {
    DeploySpec spec;
    spec.location = rpc::require_string(params, "location");
    if (!valid_location_name(spec.location))
        throw rpc::invalid_params_at("params.location",
                                     "'" + spec.location +
                                         "' is not a valid name (^[a-z0-9][a-z0-9_.-]{0,62}$)");
    spec.deps = parse_artifact(params, "deps");
    spec.source = parse_artifact(params, "source");
    if (auto runtime = rpc::optional_string(params, "runtime")) {
        if (*runtime == "native") spec.runtime = Runtime::native;
        else if (*runtime == "pex") spec.runtime = Runtime::pex;
        else
            throw rpc::invalid_params_at("params.runtime",
                                         "unknown runtime '" + *runtime + "' (native, pex)");
    }
    if (const json* entry = rpc::optional_object(params, "entry")) {
        spec.module = rpc::require_string(*entry, "module", "params.entry");
        if (spec.module->empty())
            throw rpc::invalid_params_at("params.entry.module", "must not be empty");
        if (auto args = rpc::optional_string_array(*entry, "args", "params.entry"))
            spec.args = std::move(*args);
    }
    if (auto env = rpc::optional_string_map(params, "env")) {
        for (const auto& [k, v] : *env) {
            if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
                throw rpc::invalid_params_at("params.env", "invalid variable name '" + k + "'");
            if (v.find('\0') != std::string::npos)
                throw rpc::invalid_params_at(rpc::join_path("params.env", k),
                                             "value contains a NUL byte");
        }
        spec.env = std::move(*env);
    }
    if (auto cwd = rpc::optional_string(params, "cwd")) {
        if (cwd->empty() || (*cwd)[0] != '/')
            throw rpc::invalid_params_at("params.cwd", "expected an absolute path");
        spec.cwd = *cwd;
    }
    if (auto up = rpc::optional_number(params, "min_uptime_s")) {
        if (!std::isfinite(*up) || *up < 0 || *up > 3600)
            throw rpc::invalid_params_at("params.min_uptime_s", "expected 0 to 3600 seconds");
        spec.min_uptime_s = *up;
    }
    return spec;
}

std::string format_timestamp(WallClock::time_point t) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}

Revision::Revision(uv_loop_t* loop, std::string loc, int num, DeploySpec s)
    : id(loc + "-" + std::to_string(num)), location(std::move(loc)), number(num),
      spec(std::move(s)), created_at(WallClock::now()), state_since(created_at),
      phase_started(Clock::now()), timer(loop) {}

json Revision::to_json() const {
    json j = {
        {"id", id},
        {"location", location},
        {"number", number},
        {"state", state_name(state)},
        {"runtime", runtime_name(spec.runtime)},
        {"created_at", format_timestamp(created_at)},
        {"state_since", format_timestamp(state_since)},
        {"deps", {{"sha256", spec.deps.sha256}, {"cache_hit", deps.cache_hit}, {"bytes", deps.bytes}}},
        {"source",
         {{"sha256", spec.source.sha256}, {"cache_hit", source.cache_hit}, {"bytes", source.bytes}}},
        {"timings_ms", timings_ms},
    };
    if (process_running) j["pid"] = pid;
    if (!python.empty()) j["python"] = python;
    if (!command.empty()) j["command"] = command;
    if (!reason.empty()) j["reason"] = reason;
    if (!message.empty()) j["message"] = message;
    if (wait_status) {
        if (WIFEXITED(*wait_status)) j["exit_code"] = WEXITSTATUS(*wait_status);
        else if (WIFSIGNALED(*wait_status)) j["signal"] = signal_name(WTERMSIG(*wait_status));
    }
    if (!stderr_tail.empty()) j["stderr_tail"] = stderr_tail;
    return j;
}

Revision* Location::find(std::string_view rev_id) {
    for (auto& r : revisions)
        if (r->id == rev_id) return r.get();
    return nullptr;
}

json Location::to_json() const {
    json revs = json::array();
    for (const auto& r : revisions) revs.push_back(r->to_json());
    return {{"location", name}, {"active", active.empty() ? json(nullptr) : json(active)},
            {"revisions", std::move(revs)}};
}

} // namespace hearth

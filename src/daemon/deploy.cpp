#include "daemon/deploy.hpp"

#include "control/rpc.hpp"
#include "init/exit_status.hpp"
#include "isolation/cpu_spread.hpp"
#include "store/sha256.hpp"
#include "util/names.hpp"
#include "util/units.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>
#include <signal.h>
#include <sys/wait.h>

namespace hearth {

using nlohmann::json;

const char* state_name(State s) noexcept {
    switch (s) {
    case State::pending:
        return "pending";
    case State::fetching:
        return "fetching";
    case State::extracting:
        return "extracting";
    case State::starting:
        return "starting";
    case State::loading:
        return "loading";
    case State::ready:
        return "ready";
    case State::failed:
        return "failed";
    case State::backoff:
        return "backoff";
    case State::stopping:
        return "stopping";
    case State::stopped:
        return "stopped";
    }
    return "unknown";
}

bool is_final(State s) noexcept {
    return s == State::failed || s == State::stopped;
}
bool is_live(State s) noexcept {
    return !is_final(s);
}

const char* runtime_name(Runtime r) noexcept {
    return r == Runtime::pex ? "pex" : "native";
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
    if (url && (url->rfind("http://", 0) == 0 || url->rfind("https://", 0) == 0)) {
        if (url->find_first_of(" \t\r\n") != std::string::npos ||
            url->find('\0') != std::string::npos)
            throw rpc::invalid_params_at(rpc::join_path(where, "url"), "URL contains whitespace");
        spec.url = *url;
        return spec;
    }
    if (url) {
        constexpr std::string_view file_scheme = "file://";
        if (url->rfind(file_scheme, 0) != 0) {
            std::string scheme = url->substr(0, url->find(':'));
            throw rpc::invalid_params_at(rpc::join_path(where, "url"),
                                         "unsupported URL scheme '" + scheme +
                                             "' (supported: http://, https://, file://)");
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

// Fills `out` from params.limits; only the fields present are set.
void parse_limits(const json& params, cgroup::Limits& out) {
    const json* limits = rpc::optional_object(params, "limits");
    if (!limits) return;
    static const char* const known[] = {"memory",        "memory_high",  "cpus", "cpu_weight",
                                        "cpu_exclusive", "cpu_slice_us", "pids"};
    for (const auto& item : limits->items()) {
        bool ok = false;
        for (const char* k : known)
            ok |= item.key() == k;
        if (!ok)
            throw rpc::invalid_params_at(
                "params.limits." + item.key(),
                "unknown limit (memory, memory_high, cpus, cpu_weight, cpu_exclusive, "
                "cpu_slice_us, pids)");
    }
    auto bytes = [&](const char* key, std::optional<std::uint64_t>& field) {
        auto it = limits->find(key);
        if (it == limits->end() || it->is_null()) return;
        std::uint64_t v = 0;
        std::string err;
        if (!parse_bytes(*it, v, err))
            throw rpc::invalid_params_at(std::string("params.limits.") + key, err);
        if (v < (1u << 20))
            throw rpc::invalid_params_at(std::string("params.limits.") + key,
                                         "must be at least 1Mi");
        field = v;
    };
    bytes("memory", out.memory_max);
    bytes("memory_high", out.memory_high);
    if (auto it = limits->find("cpus"); it != limits->end() && !it->is_null()) {
        double v = 0;
        std::string err;
        if (!parse_cpus(*it, v, err)) throw rpc::invalid_params_at("params.limits.cpus", err);
        out.cpu_quota = v;
    }
    auto integer = [&](const char* key, std::optional<std::uint64_t>& field, std::int64_t lo,
                       std::int64_t hi) {
        if (auto v = rpc::optional_integer(*limits, key, lo, hi, "params.limits"))
            field = static_cast<std::uint64_t>(*v);
    };
    if (auto it = limits->find("cpu_weight"); it != limits->end() && it->is_string()) {
        if (it->get<std::string>() != "idle")
            throw rpc::invalid_params_at("params.limits.cpu_weight",
                                         "expected an integer from 1 to 10000 or \"idle\", got \"" +
                                             it->get<std::string>() + "\"");
        out.cpu_idle = true;
        out.cpu_weight.reset();
    } else {
        integer("cpu_weight", out.cpu_weight, 1, 10000);
        if (out.cpu_weight) out.cpu_idle = false;
    }
    integer("pids", out.pids_max, 1, 4194304);
    if (auto v = rpc::optional_bool(*limits, "cpu_exclusive", "params.limits"))
        out.cpu_exclusive = *v;
    // The kernel's own bounds for a custom slice (0.1 ms to 100 ms).
    if (auto v = rpc::optional_integer(*limits, "cpu_slice_us", 100, 100000, "params.limits"))
        out.cpu_slice_us = static_cast<std::uint32_t>(*v);
}

template <typename T>
void check_ceiling(const std::optional<T>& asked, const std::optional<T>& ceiling,
                   const char* field, const std::function<std::string(T)>& show) {
    if (asked && ceiling && *asked > *ceiling)
        throw rpc::invalid_params_at(std::string("params.limits.") + field,
                                     show(*asked) + " exceeds hearth's ceiling " + show(*ceiling));
}

void apply_policy(cgroup::Limits& limits, const DeployPolicy& policy) {
    const auto& d = policy.default_limits;
    if (!limits.memory_max) limits.memory_max = d.memory_max;
    if (!limits.memory_high) limits.memory_high = d.memory_high;
    if (!limits.cpu_quota) limits.cpu_quota = d.cpu_quota;
    if (!limits.cpu_weight && !limits.cpu_idle) {
        limits.cpu_weight = d.cpu_weight;
        limits.cpu_idle = d.cpu_idle;
    }
    if (!limits.pids_max) limits.pids_max = d.pids_max;
    const auto& m = policy.max_limits;
    std::function<std::string(std::uint64_t)> size = [](std::uint64_t v) {
        return format_bytes(v);
    };
    std::function<std::string(std::uint64_t)> count = [](std::uint64_t v) {
        return std::to_string(v);
    };
    std::function<std::string(double)> cpus = [](double v) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", v);
        return std::string(buf);
    };
    check_ceiling(limits.memory_max, m.memory_max, "memory", size);
    check_ceiling(limits.memory_high, m.memory_max, "memory_high", size);
    check_ceiling(limits.cpu_quota, m.cpu_quota, "cpus", cpus);
    check_ceiling(limits.pids_max, m.pids_max, "pids", count);
    // A ceiling also applies when the deploy asked for nothing: unlimited
    // would exceed it.
    if (m.memory_max && !limits.memory_max) limits.memory_max = m.memory_max;
    if (m.cpu_quota && !limits.cpu_quota) limits.cpu_quota = m.cpu_quota;
    if (m.pids_max && !limits.pids_max) limits.pids_max = m.pids_max;
    if (limits.cpu_exclusive && !limits.cpu_quota)
        throw rpc::invalid_params_at("params.limits.cpu_exclusive",
                                     "needs limits.cpus (how many CPUs to reserve)");
    if (limits.cpu_exclusive && !policy.cpu_placement)
        throw rpc::invalid_params_at("params.limits.cpu_exclusive",
                                     "hearth runs with --cpu-placement shared");
}

RestartSpec parse_restart(const json& params) {
    RestartSpec spec;
    auto it = params.find("restart");
    if (it == params.end() || it->is_null()) return spec;
    auto policy_from = [](const std::string& name, const std::string& where) {
        if (name == "never") return RestartPolicy::never;
        if (name == "on-failure") return RestartPolicy::on_failure;
        if (name == "always") return RestartPolicy::always;
        throw rpc::invalid_params_at(where,
                                     "unknown policy '" + name + "' (never, on-failure, always)");
    };
    if (it->is_string()) {
        spec.policy = policy_from(it->get<std::string>(), "params.restart");
        return spec;
    }
    if (!it->is_object())
        throw rpc::invalid_params_at("params.restart", "expected a policy name or an object");
    if (auto p = rpc::optional_string(*it, "policy", "params.restart"))
        spec.policy = policy_from(*p, "params.restart.policy");
    if (auto n = rpc::optional_integer(*it, "max_restarts", 0, 1000000, "params.restart"))
        spec.max_restarts = static_cast<int>(*n);
    if (auto w = rpc::optional_number(*it, "window_s", "params.restart")) {
        if (!std::isfinite(*w) || *w <= 0 || *w > 86400 * 7)
            throw rpc::invalid_params_at("params.restart.window_s", "expected 0 to 604800 seconds");
        spec.window_s = *w;
    }
    return spec;
}

StopSpec parse_stop(const json& params, const StopSpec& defaults) {
    StopSpec spec = defaults;
    const json* stop = rpc::optional_object(params, "stop");
    if (!stop) return spec;
    if (auto sig = rpc::optional_string(*stop, "signal", "params.stop")) {
        int n = parse_signal_name(*sig);
        if (n <= 0)
            throw rpc::invalid_params_at("params.stop.signal",
                                         "unknown signal '" + *sig +
                                             "' (e.g. TERM, INT, QUIT, HUP, USR1)");
        spec.signal = n;
    }
    if (auto g = rpc::optional_number(*stop, "grace_s", "params.stop")) {
        if (!std::isfinite(*g) || *g < 0 || *g > 3600)
            throw rpc::invalid_params_at("params.stop.grace_s", "expected 0 to 3600 seconds");
        spec.grace_s = *g;
    }
    return spec;
}

std::string parse_identity(const json& params, const char* key) {
    auto v = params.find(key);
    if (v == params.end() || v->is_null()) return {};
    if (v->is_number_unsigned()) return std::to_string(v->get<std::uint64_t>());
    if (!v->is_string() || v->get<std::string>().empty() ||
        v->get<std::string>().find_first_of(":/\n") != std::string::npos)
        throw rpc::invalid_params_at(std::string("params.") + key, "expected a name or a number");
    return v->get<std::string>();
}

} // namespace

const char* restart_policy_name(RestartPolicy p) noexcept {
    switch (p) {
    case RestartPolicy::never:
        return "never";
    case RestartPolicy::on_failure:
        return "on-failure";
    case RestartPolicy::always:
        return "always";
    }
    return "unknown";
}

int parse_signal_name(std::string_view name) noexcept {
    if (name.empty()) return -1;
    if (name[0] >= '0' && name[0] <= '9') {
        int n = 0;
        for (char c : name) {
            if (c < '0' || c > '9' || n > 64) return -1;
            n = n * 10 + (c - '0');
        }
        return n >= 1 && n <= 64 ? n : -1;
    }
    const StopSignal* sig = find_stop_signal(name);
    return sig ? sig->number : -1;
}

json limits_to_json(const cgroup::Limits& l) {
    json j = json::object();
    if (l.memory_max) j["memory"] = *l.memory_max;
    if (l.memory_high) j["memory_high"] = *l.memory_high;
    if (l.cpu_quota) j["cpus"] = *l.cpu_quota;
    if (l.cpu_weight) j["cpu_weight"] = *l.cpu_weight;
    if (l.cpu_idle) j["cpu_weight"] = "idle";
    if (l.pids_max) j["pids"] = *l.pids_max;
    if (l.cpu_exclusive) j["cpu_exclusive"] = true;
    if (l.cpu_slice_us) j["cpu_slice_us"] = *l.cpu_slice_us;
    return j;
}

DeploySpec parse_deploy_params(const json& params, const DeployPolicy& policy) {
    DeploySpec spec;
    spec.location = rpc::require_string(params, "location");
    if (!valid_location_name(spec.location))
        throw rpc::invalid_params_at("params.location",
                                     "'" + spec.location +
                                         "' is not a valid name (^[a-z0-9][a-z0-9_.-]{0,62}$)");
    spec.deps = parse_artifact(params, "deps");
    spec.source = parse_artifact(params, "source");
    if (auto runtime = rpc::optional_string(params, "runtime")) {
        if (*runtime == "native")
            spec.runtime = Runtime::native;
        else if (*runtime == "pex")
            spec.runtime = Runtime::pex;
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
    if (params.contains("readiness") && !params["readiness"].is_null())
        spec.readiness = health::parse_readiness(params["readiness"], "params.readiness");
    parse_limits(params, spec.limits);
    apply_policy(spec.limits, policy);
    spec.restart = parse_restart(params);
    spec.stop = parse_stop(params, policy.default_stop);
    spec.user = parse_identity(params, "user");
    spec.group = parse_identity(params, "group");
    if (spec.user.empty()) spec.user = policy.default_user;
    if (spec.group.empty()) spec.group = policy.default_group;
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

namespace {
void deadline_fields(json& r, std::chrono::milliseconds left) {
    r["deadline_in_ms"] = std::max<std::int64_t>(0, left.count());
    r["deadline"] =
        format_timestamp(WallClock::now() + std::chrono::duration_cast<WallClock::duration>(left));
}

json artifact_json(const ArtifactSpec& spec, const ArtifactStatus& st) {
    json j = {{"sha256", spec.sha256}, {"cache_hit", st.cache_hit}, {"bytes", st.bytes}};
    if (st.fetched_bytes) {
        j["fetched_bytes"] = *st.fetched_bytes;
        j["total_bytes"] = st.total_bytes ? json(*st.total_bytes) : json(nullptr);
    }
    return j;
}
} // namespace

Revision::Revision(uv_loop_t* loop, std::string loc, int num, DeploySpec s)
    : id(loc + "-" + std::to_string(num)), location(std::move(loc)), number(num),
      spec(std::move(s)), created_at(WallClock::now()), state_since(created_at),
      phase_started(Clock::now()), deadline_timer(loop), timer(loop) {}

json Revision::to_json() const {
    json j = {
        {"id", id},
        {"location", location},
        {"number", number},
        {"state", state_name(state)},
        {"runtime", runtime_name(spec.runtime)},
        {"created_at", format_timestamp(created_at)},
        {"state_since", format_timestamp(state_since)},
        {"deps", artifact_json(spec.deps, deps)},
        {"source", artifact_json(spec.source, source)},
        {"timings_ms", timings_ms},
        {"restarts", restarts},
        {"restart", restart_policy_name(spec.restart.policy)},
        {"stop",
         {{"signal", signal_name(spec.stop.signal)
                         .substr(signal_name(spec.stop.signal).rfind("SIG", 0) == 0 ? 3 : 0)},
          {"grace_s", spec.stop.grace_s}}},
    };
    json lim = limits_to_json(spec.limits);
    if (!lim.empty()) j["limits"] = std::move(lim);
    if (!spec.user.empty()) j["user"] = spec.user;
    if (!spec.group.empty()) j["group"] = spec.group;
    if (!cgroup_driver.empty()) {
        json cg = {{"driver", cgroup_driver},
                   {"enforcement", enforced ? "enforced" : "degraded"},
                   {"degraded", degraded}};
        if (cgroup && !cgroup->directories().empty()) cg["path"] = cgroup->directories().front();
        if (!cpus.empty()) {
            cg["cpu_set"] = format_cpu_list(cpus);
            cg["cpu_set_by"] = cpus_by_cgroup ? "cpuset" : "affinity";
            cg["cpu_exclusive"] = cpus_exclusive;
        }
        if (usage.memory_current) cg["memory_current"] = *usage.memory_current;
        if (usage.memory_peak) cg["memory_peak"] = *usage.memory_peak;
        if (usage.cpu_usage_usec) cg["cpu_usage_usec"] = *usage.cpu_usage_usec;
        if (usage.pids_current) cg["pids_current"] = *usage.pids_current;
        // The counters are sampled in the background (revisions.hpp): how
        // old these figures are.
        if (usage_sampled_at && !is_final(state))
            cg["usage_age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                     Clock::now() - *usage_sampled_at)
                                     .count();
        j["cgroup"] = std::move(cg);
    }
    if (oom) j["oom"] = *oom;
    if (state == State::backoff && next_attempt_at) {
        j["next_attempt_at"] = format_timestamp(*next_attempt_at);
        j["backoff_s"] = backoff_s;
    }
    if (process_running) j["pid"] = pid;
    if (!python.empty()) j["python"] = python;
    if (!command.empty()) j["command"] = command;
    if (!reason.empty()) j["reason"] = reason;
    if (!message.empty()) j["message"] = message;
    if (wait_status) {
        if (WIFEXITED(*wait_status))
            j["exit_code"] = WEXITSTATUS(*wait_status);
        else if (WIFSIGNALED(*wait_status))
            j["signal"] = signal_name(WTERMSIG(*wait_status));
    }
    if (!stderr_tail.empty()) j["stderr_tail"] = stderr_tail;
    if (load_error) j["error"] = *load_error;
    if (port != 0 || !runtime_dir.empty())
        j["endpoint"] = {{"port", port ? json(port) : json(nullptr)},
                         {"runtime_dir", runtime_dir.empty() ? json(nullptr) : json(runtime_dir)}};
    if (pid > 0) {
        json p = {{"state", process_running ? "running" : "exited"},
                  {"pid", pid},
                  {"oom_killed", oom.has_value()},
                  {"since", format_timestamp(process_since)}};
        if (!process_running && wait_status) {
            if (WIFEXITED(*wait_status))
                p["exit_code"] = WEXITSTATUS(*wait_status);
            else if (WIFSIGNALED(*wait_status))
                p["signal"] = signal_name(WTERMSIG(*wait_status));
        }
        j["process"] = std::move(p);
        const char* names[] = {"pending", "ready", "failed"};
        json r = {{"state", names[static_cast<int>(readiness)]},
                  {"kind", health::probe_kind_name(spec.readiness.kind)},
                  {"loading_since", format_timestamp(loading_since)}};
        // The deadline is monotonic (EXTEND_TIMEOUT_USEC moves it): shown as
        // what remains of it, and as the wall-clock time that is now.
        if (deadline && readiness == Readiness::pending) {
            auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now());
            deadline_fields(r, left);
        }
        if (!progress.empty()) r["progress"] = progress;
        if (notify_errno) r["errno"] = *notify_errno;
        if (readiness_since) r["since"] = format_timestamp(*readiness_since);
        j["readiness"] = std::move(r);
    }
    if (restored) j["restored"] = true;
    return j;
}

RestartDecision decide_restart(Revision& rev, bool clean_exit, double ran_s,
                               Clock::time_point now) {
    RestartDecision d;
    const RestartSpec& spec = rev.spec.restart;
    if (spec.policy == RestartPolicy::never) {
        d.why_not = "restart policy never";
        return d;
    }
    if (clean_exit && spec.policy == RestartPolicy::on_failure) {
        d.why_not = "exited cleanly (restart policy on-failure)";
        return d;
    }
    if (ran_s >= restart_stable_s) rev.backoff_step = 0;
    auto window =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.window_s));
    rev.failures.push_back(now);
    while (!rev.failures.empty() && now - rev.failures.front() > window)
        rev.failures.pop_front();
    if (spec.max_restarts && static_cast<int>(rev.failures.size()) > *spec.max_restarts) {
        char buf[128];
        std::snprintf(buf, sizeof buf, "%d restarts within %g s (max_restarts %d)",
                      static_cast<int>(rev.failures.size()) - 1, spec.window_s, *spec.max_restarts);
        d.why_not = buf;
        return d;
    }
    d.restart = true;
    d.delay_s = restart_backoff_initial_s;
    for (int i = 0; i < rev.backoff_step && d.delay_s < restart_backoff_max_s; ++i)
        d.delay_s *= 2;
    d.delay_s = std::min(d.delay_s, restart_backoff_max_s);
    ++rev.backoff_step;
    return d;
}

Revision* Location::find(std::string_view rev_id) {
    for (auto& r : revisions)
        if (r->id == rev_id) return r.get();
    return nullptr;
}

json Location::to_json() const {
    json revs = json::array();
    for (const auto& r : revisions)
        revs.push_back(r->to_json());
    return {{"location", name},
            {"active", active.empty() ? json(nullptr) : json(active)},
            {"revisions", std::move(revs)}};
}

} // namespace hearth

#include "ctl/deploy_params.hpp"

#include "ctl/format.hpp"
#include "util/fs.hpp"
#include "util/names.hpp"
#include "util/text.hpp"

#include <cerrno>

namespace hearth::ctl {

using nlohmann::json;

std::optional<json> parse_params_text(std::string_view text, const std::string& name,
                                      std::string& error) {
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        // Drop nlohmann's "[json.exception.parse_error.101] " tag.
        if (!what.empty() && what[0] == '[') {
            auto close = what.find("] ");
            if (close != std::string::npos) what.erase(0, close + 2);
        }
        error = name + " is not valid JSON: " + one_line(what);
        return std::nullopt;
    }
    if (!j.is_object()) {
        error = name + " must hold a JSON object of deploy params, not " +
                (j.is_array() ? "an array" : std::string("a ") + j.type_name());
        return std::nullopt;
    }
    return j;
}

std::optional<json> read_params_file(const std::string& path, std::FILE* in, std::string& error) {
    constexpr std::size_t kMax = std::size_t{16} * 1024 * 1024;
    const bool from_stdin = path == "-";
    const std::string name = from_stdin ? "standard input" : path;
    std::FILE* f = from_stdin ? in : std::fopen(path.c_str(), "re");
    if (!f) {
        error = "cannot read " + name + ": " + errno_text(errno);
        return std::nullopt;
    }
    std::string text;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        text.append(buf, n);
        if (text.size() > kMax) break;
    }
    const int read_errno = std::ferror(f) ? errno : 0;
    if (!from_stdin) std::fclose(f);
    if (read_errno != 0) {
        error = "cannot read " + name + ": " + errno_text(read_errno);
        return std::nullopt;
    }
    if (text.size() > kMax) {
        error = name + " is larger than 16 MiB";
        return std::nullopt;
    }
    return parse_params_text(text, name, error);
}

namespace {

// `p[key]` as an object, replacing whatever non-object was there.
json& object_slot(json& p, const char* key) {
    json& slot = p[key];
    if (!slot.is_object()) slot = json::object();
    return slot;
}

std::string absolute(const std::string& given, const std::string& cwd) {
    if (!given.empty() && given[0] == '/') return given;
    std::string_view rel(given);
    while (rel.size() > 2 && rel.substr(0, 2) == "./")
        rel.remove_prefix(2);
    return path_join(cwd.empty() ? "/" : cwd, rel);
}

} // namespace

DeployBuild deploy_params(const Args& a, const json& base, const std::string& cwd,
                          const Hasher& hash) {
    DeployBuild b;
    auto fail = [&](int status, std::string msg) {
        b.params.reset();
        b.status = status;
        b.error = std::move(msg);
        return b;
    };
    json p = base.is_object() ? base : json::object();

    if (!a.location.empty()) p["location"] = a.location;
    if (!p.contains("location"))
        return fail(exit_usage, "missing LOCATION (an argument, or \"location\" in --params)");
    if (!p["location"].is_string() || !valid_location_name(p["location"].get<std::string>()))
        return fail(exit_usage, "--params: invalid \"location\" " + dump_compact(p["location"]) +
                                    ": expected " + std::string(kLocationNamePattern));

    // One artifact: a flag replaces the file's object, except that a lone
    // --*-sha256 sets the file's digest. Returns false after fail().
    auto artifact = [&](const char* key, const std::string& given, const std::string& sha) {
        const std::string flag = std::string("--") + key;
        json art;
        if (!given.empty())
            art = looks_like_url(given) ? json{{"url", given}} : json{{"path", given}};
        else if (p.contains(key))
            art = p[key];
        else {
            fail(exit_usage, "missing " + flag + " FILE|URL (or \"" + key + "\" in --params)");
            return false;
        }
        if (!art.is_object()) { // hearth names the problem
            p[key] = std::move(art);
            return true;
        }
        if (!sha.empty()) art["sha256"] = sha;
        const std::string where = given.empty() ? std::string(key) + " (from --params)" : flag;
        auto path = art.find("path");
        if (path != art.end() && path->is_string()) *path = absolute(path->get<std::string>(), cwd);
        if (!art.contains("sha256")) {
            if (path != art.end() && path->is_string()) {
                std::string why;
                auto h = hash(path->get<std::string>(), why);
                if (!h) {
                    // The hasher's message names the path and the failing call.
                    fail(exit_failed,
                         where + ": " +
                             (why.empty() ? "cannot hash " + path->get<std::string>() : why));
                    return false;
                }
                art["sha256"] = *h;
            } else if (art.contains("url")) {
                fail(exit_usage, where + " is a URL, so " + flag + "-sha256 is required");
                return false;
            }
        }
        p[key] = std::move(art);
        return true;
    };
    if (!artifact("deps", a.deps, a.deps_sha256)) return b;
    if (!artifact("source", a.source, a.source_sha256)) return b;

    if (!a.runtime.empty()) p["runtime"] = a.runtime;
    if (!a.module.empty()) p["entry"] = {{"module", a.module}, {"args", a.args}};
    if (!a.env.empty()) {
        json& env = object_slot(p, "env");
        for (const auto& [k, v] : a.env)
            env[k] = v; // the last --env for a key wins
    }
    if (!a.cwd.empty()) p["cwd"] = a.cwd;
    if (a.min_uptime_s) p["min_uptime_s"] = *a.min_uptime_s;

    if (a.memory || a.memory_high || a.cpus || a.cpu_weight || a.cpu_idle || a.pids ||
        a.cpu_exclusive || a.cpu_slice_us) {
        json& lim = object_slot(p, "limits");
        if (a.memory) lim["memory"] = *a.memory;
        if (a.memory_high) lim["memory_high"] = *a.memory_high;
        if (a.cpus) lim["cpus"] = *a.cpus;
        if (a.cpu_weight) lim["cpu_weight"] = *a.cpu_weight;
        if (a.cpu_idle) lim["cpu_weight"] = "idle";
        if (a.pids) lim["pids"] = *a.pids;
        if (a.cpu_exclusive) lim["cpu_exclusive"] = true;
        if (a.cpu_slice_us) lim["cpu_slice_us"] = *a.cpu_slice_us;
    }

    // The short string form when only the policy is given and the file has
    // no object form to keep; otherwise merge into {"policy", ...}.
    if (!a.restart.empty() || a.max_restarts || a.restart_window_s) {
        const bool want_object = a.max_restarts || a.restart_window_s ||
                                 (p.contains("restart") && p["restart"].is_object());
        if (!want_object) {
            p["restart"] = a.restart;
        } else {
            json r = json::object();
            if (p.contains("restart") && p["restart"].is_object())
                r = p["restart"];
            else if (p.contains("restart") && p["restart"].is_string())
                r["policy"] = p["restart"];
            if (!a.restart.empty()) r["policy"] = a.restart;
            if (!r.contains("policy")) r["policy"] = "on-failure"; // hearth's default, spelled out
            if (a.max_restarts) r["max_restarts"] = *a.max_restarts;
            if (a.restart_window_s) r["window_s"] = *a.restart_window_s;
            p["restart"] = std::move(r);
        }
    }

    if (!a.stop_signal.empty() || a.stop_grace_s) {
        json& stop = object_slot(p, "stop");
        if (!a.stop_signal.empty()) stop["signal"] = a.stop_signal;
        if (a.stop_grace_s) stop["grace_s"] = *a.stop_grace_s;
    }
    if (!a.user.empty()) p["user"] = a.user;
    if (!a.group.empty()) p["group"] = a.group;

    b.params = std::move(p);
    return b;
}

} // namespace hearth::ctl

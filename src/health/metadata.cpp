#include "health/metadata.hpp"

#include "control/rpc.hpp"
#include "init/exit_status.hpp"
#include "store/sha256.hpp"
#include "util/fs.hpp"
#include "util/text.hpp"
#include "util/units.hpp"
#include "util/uv_util.hpp"

#include <chrono>
#include <cmath>
#include <dirent.h>
#include <memory>
#include <sys/wait.h>
#include <unistd.h>

namespace hearth::health {

using nlohmann::json;

namespace {

constexpr double max_timeout_s = 86400;
constexpr std::uint64_t max_max_bytes = 1ull << 30;

std::string seconds_text(double s) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g s", s);
    return buf;
}

// Accepts every event; records the first syntax error. A SAX pass keeps the
// validation of a large document flat (no DOM, no recursion).
class Validator : public json::json_sax_t {
public:
    std::optional<JsonProblem> problem;

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return true; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return true; }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& ex) override {
        problem = JsonProblem{position, ex.what()};
        return false;
    }
};

} // namespace

std::uint64_t MetadataCommand::timeout_ms() const {
    return static_cast<std::uint64_t>(std::llround(timeout_s * 1000.0));
}

json MetadataCommand::to_json() const {
    json out = json::object();
    if (module) {
        out["module"] = *module;
        out["args"] = args;
    } else {
        out["argv"] = argv;
    }
    out["timeout_s"] = timeout_s;
    out["max_bytes"] = max_bytes;
    return out;
}

MetadataCommand parse_metadata_params(const json& obj, std::string_view where) {
    if (!obj.is_object()) throw rpc::invalid_params_at(where, "expected an object");
    MetadataCommand cmd;
    bool has_argv = obj.contains("argv") && !obj["argv"].is_null();
    bool has_module = obj.contains("module") && !obj["module"].is_null();
    if (has_argv && has_module)
        throw rpc::invalid_params_at(where, "give either \"argv\" or \"module\", not both");
    if (!has_argv && !has_module)
        throw rpc::invalid_params_at(where, "needs \"argv\" or \"module\"");
    if (has_argv) {
        if (obj.contains("args") && !obj["args"].is_null())
            throw rpc::invalid_params_at(rpc::join_path(where, "args"),
                                         "only with \"module\" (put arguments in \"argv\")");
        cmd.argv = *rpc::optional_string_array(obj, "argv", where);
        if (cmd.argv.empty())
            throw rpc::invalid_params_at(rpc::join_path(where, "argv"), "must not be empty");
        if (cmd.argv[0].empty())
            throw rpc::invalid_params_at(rpc::join_path(rpc::join_path(where, "argv"), 0),
                                         "must not be empty");
    } else {
        cmd.module = rpc::require_string(obj, "module", where);
        if (cmd.module->empty())
            throw rpc::invalid_params_at(rpc::join_path(where, "module"), "must not be empty");
        if (auto args = rpc::optional_string_array(obj, "args", where)) cmd.args = std::move(*args);
    }
    auto no_nul = [&](const std::vector<std::string>& list, const char* key) {
        for (std::size_t i = 0; i < list.size(); ++i)
            if (list[i].find('\0') != std::string::npos)
                throw rpc::invalid_params_at(rpc::join_path(rpc::join_path(where, key), i),
                                             "contains a NUL byte");
    };
    no_nul(cmd.argv, "argv");
    no_nul(cmd.args, "args");
    if (cmd.module && cmd.module->find('\0') != std::string::npos)
        throw rpc::invalid_params_at(rpc::join_path(where, "module"), "contains a NUL byte");

    if (auto t = rpc::optional_number(obj, "timeout_s", where)) {
        if (!std::isfinite(*t) || *t <= 0 || *t > max_timeout_s)
            throw rpc::invalid_params_at(rpc::join_path(where, "timeout_s"),
                                         "expected a number of seconds above 0 and at most " +
                                             seconds_text(max_timeout_s));
        cmd.timeout_s = *t;
    }
    if (auto it = obj.find("max_bytes"); it != obj.end() && !it->is_null()) {
        std::uint64_t v = 0;
        std::string err;
        if (!parse_bytes(*it, v, err))
            throw rpc::invalid_params_at(rpc::join_path(where, "max_bytes"), err);
        if (v == 0 || v > max_max_bytes)
            throw rpc::invalid_params_at(rpc::join_path(where, "max_bytes"),
                                         "must be from 1 byte to " + format_bytes(max_max_bytes));
        cmd.max_bytes = v;
    }
    return cmd;
}

const char* metadata_state_name(MetadataState state) noexcept {
    switch (state) {
    case MetadataState::none:
        return "none";
    case MetadataState::pending:
        return "pending";
    case MetadataState::ok:
        return "ok";
    case MetadataState::error:
        return "error";
    case MetadataState::timeout:
        return "timeout";
    }
    return "none";
}

json metadata_record_to_json(const MetadataRecord& r) {
    json out = json::object();
    out["state"] = metadata_state_name(r.state);
    if (r.state == MetadataState::none || r.state == MetadataState::pending) return out;
    if (r.state == MetadataState::ok) {
        out["sha256"] = r.sha256;
        out["bytes"] = r.bytes;
    }
    out["duration_ms"] = r.duration_ms;
    if (!r.detail.empty()) out["detail"] = r.detail;
    if (!r.message.empty()) out["message"] = r.message;
    if (r.exit_code) out["exit_code"] = *r.exit_code;
    if (r.signal) {
        out["signal"] = *r.signal;
        out["signal_name"] = signal_name(*r.signal);
    }
    if (r.state != MetadataState::ok) out["oom_killed"] = r.oom_killed;
    if (r.position) out["position"] = *r.position;
    if (r.max_bytes) out["max_bytes"] = *r.max_bytes;
    if (r.state != MetadataState::ok || !r.stderr_tail.empty()) out["stderr_tail"] = r.stderr_tail;
    if (!r.error.is_null()) out["error"] = r.error;
    return out;
}

MetadataRecord classify_metadata_exit(const OneshotResult& result, bool oom_killed,
                                      std::uint64_t max_bytes, std::uint64_t timeout_ms,
                                      double duration_ms) {
    MetadataRecord r;
    r.duration_ms = duration_ms;
    r.stderr_tail = result.err;
    r.oom_killed = oom_killed;
    if (!result.started) {
        r.state = MetadataState::error;
        r.detail = metadata_detail::exited;
        r.exit_code = result.spawn_exit_code ? result.spawn_exit_code : exit_not_found;
        r.message = "metadata command could not be started: " + result.error;
        return r;
    }
    int status = result.wait_status;
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
    if (result.timed_out) {
        r.state = MetadataState::timeout;
        r.message = "metadata command still running after " +
                    seconds_text(static_cast<double>(timeout_ms) / 1000.0) +
                    " (budget metadata.timeout_s = " +
                    seconds_text(static_cast<double>(timeout_ms) / 1000.0) +
                    "); its process tree was killed";
        return r;
    }
    r.state = MetadataState::error;
    if (oom_killed) {
        r.detail = metadata_detail::oom_killed;
        r.message = "metadata command was killed by the OOM killer (" +
                    describe_wait_status(status) + "); raise limits.memory";
        return r;
    }
    if (result.out_overflow) {
        r.detail = metadata_detail::too_large;
        r.max_bytes = max_bytes;
        r.message = "metadata command wrote more than " + format_bytes(max_bytes) +
                    " to stdout (metadata.max_bytes); it was stopped";
        return r;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        r.detail = metadata_detail::exited;
        r.message = "metadata command " + describe_wait_status(status);
        return r;
    }
    r.state = MetadataState::pending;
    return r;
}

std::optional<JsonProblem> check_json_document(std::string_view text) {
    Validator v;
    // strict: the whole input must be the one document.
    json::sax_parse(text.begin(), text.end(), &v, json::input_format_t::json, true);
    if (v.problem) return v.problem;
    return std::nullopt;
}

std::string metadata_document_path(const std::string& state_dir, const std::string& sha256) {
    return path_join(path_join(state_dir, "metadata/sha256"), sha256 + ".json");
}

MetadataRecord store_metadata_document(const std::string& state_dir, std::string_view bytes,
                                       MetadataRecord record) {
    record.bytes = bytes.size();
    if (auto problem = check_json_document(bytes)) {
        record.state = MetadataState::error;
        record.detail = metadata_detail::invalid_json;
        record.position = problem->position;
        record.message = bytes.empty() ? "metadata command wrote nothing to stdout"
                                       : "metadata command's stdout is not one JSON document: " +
                                             problem->message;
        return record;
    }
    Sha256 hasher;
    hasher.update(bytes);
    std::string hex = hasher.finish_hex();
    if (hex.empty()) {
        record.state = MetadataState::error;
        record.detail = metadata_detail::store_error;
        record.message = "cannot hash the metadata document (libcrypto failed)";
        return record;
    }
    std::string dir = path_join(state_dir, "metadata/sha256");
    Status st = make_dirs(dir);
    if (st) st = write_file_atomic(metadata_document_path(state_dir, hex), bytes, 0644, true);
    if (!st) {
        record.state = MetadataState::error;
        record.detail = metadata_detail::store_error;
        record.message = "cannot store the metadata document: " + st.error().message;
        return record;
    }
    record.state = MetadataState::ok;
    record.sha256 = std::move(hex);
    return record;
}

Result<std::string> read_metadata_document(const std::string& state_dir,
                                           const std::string& sha256) {
    return read_file(metadata_document_path(state_dir, sha256));
}

std::size_t prune_metadata_documents(const std::string& state_dir,
                                     const std::set<std::string>& keep) {
    std::string dir = path_join(state_dir, "metadata/sha256");
    DIR* d = ::opendir(dir.c_str());
    if (!d) return 0;
    std::vector<std::string> doomed;
    while (dirent* e = ::readdir(d)) {
        std::string_view name = e->d_name;
        constexpr std::string_view suffix = ".json";
        if (name.size() != 64 + suffix.size() || name.substr(64) != suffix) continue;
        std::string hex(name.substr(0, 64));
        if (is_sha256_hex(hex) && !keep.count(hex)) doomed.push_back(std::string(name));
    }
    ::closedir(d);
    std::size_t removed = 0;
    for (const auto& name : doomed)
        if (::unlink(path_join(dir, name).c_str()) == 0) ++removed;
    return removed;
}

pid_t run_metadata(uv_loop_t* loop, Init& init, MetadataRun run,
                   std::function<void(MetadataRecord)> done) {
    OneshotOptions options;
    options.timeout_ms = run.timeout_ms;
    options.max_stdout = static_cast<std::size_t>(run.max_bytes);
    options.max_stderr = metadata_stderr_tail_bytes;
    options.stderr_tail = true;
    options.kill_on_stdout_overflow = true;
    options.kill_tree = true;
    options.on_kill = std::move(run.on_kill);
    run.request.stdin_fd = spawn_dev_null;
    auto started = std::chrono::steady_clock::now();
    auto finish = [loop, started, max_bytes = run.max_bytes, timeout_ms = run.timeout_ms,
                   state_dir = std::move(run.state_dir), oom = std::move(run.oom_killed),
                   done = std::move(done)](OneshotResult result) mutable {
        double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
                .count();
        bool oom_killed = false;
        if (oom && result.started) {
            try {
                oom_killed = oom();
            } catch (const std::exception& e) {
                log::warn("metadata OOM check failed", {{"error", e.what()}});
            }
        }
        MetadataRecord record =
            classify_metadata_exit(result, oom_killed, max_bytes, timeout_ms, ms);
        if (record.state != MetadataState::pending) {
            done(std::move(record));
            return;
        }
        auto out = std::make_shared<std::string>(std::move(result.out));
        auto cb = std::make_shared<std::function<void(MetadataRecord)>>(std::move(done));
        auto fallback = record;
        run_blocking<MetadataRecord>(
            loop,
            [state_dir, out, record]() mutable {
                return store_metadata_document(state_dir, *out, std::move(record));
            },
            [cb, fallback](std::optional<MetadataRecord> stored, std::string error) mutable {
                if (!stored) {
                    fallback.state = MetadataState::error;
                    fallback.detail = metadata_detail::store_error;
                    fallback.message = "cannot store the metadata document: " + error;
                    stored = std::move(fallback);
                }
                (*cb)(std::move(*stored));
            });
    };
    return run_oneshot(loop, init, std::move(run.request), std::move(options), std::move(finish));
}

} // namespace hearth::health

#include "health/probe.hpp"

#include "control/rpc.hpp"
#include "init/exit_status.hpp"
#include "init/oneshot.hpp"
#include "util/log.hpp"
#include "util/text.hpp"

#include <arpa/inet.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <netinet/in.h>
#include <optional>
#include <sys/wait.h>
#include <utility>

namespace hearth::health {

using nlohmann::json;

const char* probe_kind_name(ProbeKind kind) noexcept {
    switch (kind) {
    case ProbeKind::none:
        return "none";
    case ProbeKind::notify:
        return "notify";
    case ProbeKind::tcp:
        return "tcp";
    case ProbeKind::http:
        return "http";
    case ProbeKind::exec:
        return "exec";
    }
    return "none";
}

const char* liveness_action_name(LivenessAction action) noexcept {
    return action == LivenessAction::restart ? "restart" : "report";
}

const char* probe_outcome_name(ProbeOutcome outcome) noexcept {
    switch (outcome) {
    case ProbeOutcome::success:
        return "success";
    case ProbeOutcome::unreachable:
        return "unreachable";
    case ProbeOutcome::error:
        return "error";
    }
    return "error";
}

// ---------------------------------------------------------------------------
// Deploy parameters

namespace {

constexpr ProbeKind all_kinds[] = {ProbeKind::notify, ProbeKind::tcp, ProbeKind::http,
                                   ProbeKind::exec, ProbeKind::none};

bool has(const json& obj, std::string_view key) {
    auto it = obj.find(key);
    return it != obj.end() && !it->is_null();
}

// A number of seconds in (0, max].
std::optional<double> seconds(const json& obj, std::string_view key, double max,
                              std::string_view where) {
    auto v = rpc::optional_number(obj, key, where);
    if (v && !(std::isfinite(*v) && *v > 0 && *v <= max)) {
        char bound[32];
        std::snprintf(bound, sizeof bound, "%g", max);
        throw rpc::invalid_params_at(rpc::join_path(where, key),
                                     std::string("must be a number of seconds above 0 and at "
                                                 "most ") +
                                         bound);
    }
    return v;
}

void parse_port(const json& kind_obj, std::string_view where, ProbeSpec& spec) {
    auto it = kind_obj.find("port");
    if (it == kind_obj.end() || it->is_null() || (it->is_string() && *it == "auto")) {
        spec.port_auto = true;
        spec.port = 0;
        return;
    }
    if (it->is_number()) {
        double d = it->get<double>();
        if (d >= 1 && d <= 65535 && d == std::floor(d)) {
            spec.port_auto = false;
            spec.port = static_cast<std::uint16_t>(d);
            return;
        }
    }
    throw rpc::invalid_params_at(rpc::join_path(where, "port"), "must be 1-65535 or \"auto\"");
}

ProbeSpec parse_common(const json& value, std::string_view where, bool liveness) {
    if (!value.is_object()) throw rpc::invalid_params_at(where, "expected an object");
    std::vector<ProbeKind> given;
    for (ProbeKind k : all_kinds)
        if (has(value, probe_kind_name(k))) given.push_back(k);
    if (given.size() != 1) {
        std::string problem = liveness ? "give exactly one of tcp, http, exec, none"
                                       : "give exactly one of notify, tcp, http, exec, none";
        if (given.size() > 1) {
            std::vector<std::string> names;
            for (ProbeKind k : given)
                names.emplace_back(probe_kind_name(k));
            problem += " (got " + join(names, " and ") + ")";
        }
        throw rpc::invalid_params_at(where, problem);
    }
    ProbeSpec spec;
    spec.kind = given.front();
    const char* kind_name = probe_kind_name(spec.kind);
    const std::string kwhere = rpc::join_path(where, kind_name);
    const json& kind_obj = rpc::require_object(value, kind_name, where);
    if (liveness) {
        spec.period_s = 10;
        if (spec.kind == ProbeKind::notify)
            throw rpc::invalid_params_at(kwhere, "notify is a readiness kind; liveness takes tcp, "
                                                 "http, exec or none");
    }
    switch (spec.kind) {
    case ProbeKind::tcp:
        parse_port(kind_obj, kwhere, spec);
        break;
    case ProbeKind::http: {
        parse_port(kind_obj, kwhere, spec);
        if (auto path = rpc::optional_string(kind_obj, "path", kwhere)) {
            bool clean = !path->empty() && path->front() == '/' && path->size() <= 2048;
            for (unsigned char c : *path)
                if (c <= 0x20 || c == 0x7f || c == '#') clean = false;
            if (!clean)
                throw rpc::invalid_params_at(rpc::join_path(kwhere, "path"),
                                             "must start with '/', hold no spaces, control "
                                             "characters or '#', and be at most 2048 bytes");
            spec.path = std::move(*path);
        }
        break;
    }
    case ProbeKind::exec: {
        auto argv = rpc::optional_string_array(kind_obj, "argv", kwhere);
        const std::string awhere = rpc::join_path(kwhere, "argv");
        if (!argv || argv->empty())
            throw rpc::invalid_params_at(awhere, "must be a non-empty array of strings");
        if (argv->size() > 1024) throw rpc::invalid_params_at(awhere, "more than 1024 arguments");
        if ((*argv)[0].empty())
            throw rpc::invalid_params_at(rpc::join_path(awhere, std::size_t{0}),
                                         "the command is empty");
        for (std::size_t i = 0; i < argv->size(); ++i)
            if ((*argv)[i].find('\0') != std::string::npos)
                throw rpc::invalid_params_at(rpc::join_path(awhere, i), "contains a NUL byte");
        spec.argv = std::move(*argv);
        break;
    }
    case ProbeKind::notify:
    case ProbeKind::none:
        break;
    }

    if (liveness) {
        if (has(value, "timeout_s"))
            throw rpc::invalid_params_at(rpc::join_path(where, "timeout_s"),
                                         "not used by liveness (it has no loading budget); use "
                                         "period_s and failure_threshold");
        if (auto n = rpc::optional_integer(value, "failure_threshold", 1, 1000, where))
            spec.failure_threshold = static_cast<unsigned>(*n);
        if (auto action = rpc::optional_string(value, "action", where)) {
            if (*action == "report")
                spec.action = LivenessAction::report;
            else if (*action == "restart")
                spec.action = LivenessAction::restart;
            else
                throw rpc::invalid_params_at(rpc::join_path(where, "action"),
                                             "must be \"report\" or \"restart\"");
        }
    } else {
        for (const char* key : {"failure_threshold", "action"})
            if (has(value, key))
                throw rpc::invalid_params_at(rpc::join_path(where, key),
                                             "only for liveness (readiness retries until "
                                             "timeout_s)");
        if (auto t = seconds(value, "timeout_s", 7 * 86400.0, where)) spec.timeout_s = *t;
    }
    if (auto p = seconds(value, "period_s", 86400.0, where)) spec.period_s = *p;
    if (auto a = seconds(value, "attempt_timeout_s", 3600.0, where)) spec.attempt_timeout_s = *a;
    return spec;
}

} // namespace

ProbeSpec parse_readiness(const json& value, std::string_view where) {
    return parse_common(value, where, false);
}

ProbeSpec parse_liveness(const json& value, std::string_view where) {
    return parse_common(value, where, true);
}

json to_json(const ProbeSpec& spec, bool liveness) {
    json kind = json::object();
    if (spec.kind == ProbeKind::tcp || spec.kind == ProbeKind::http)
        kind["port"] = spec.port_auto ? json("auto") : json(spec.port);
    if (spec.kind == ProbeKind::http) kind["path"] = spec.path;
    if (spec.kind == ProbeKind::exec) kind["argv"] = spec.argv;
    json out = {{probe_kind_name(spec.kind), std::move(kind)},
                {"period_s", spec.period_s},
                {"attempt_timeout_s", spec.attempt_timeout_s}};
    if (liveness) {
        out["failure_threshold"] = spec.failure_threshold;
        out["action"] = liveness_action_name(spec.action);
    } else {
        out["timeout_s"] = spec.timeout_s;
    }
    return out;
}

// ---------------------------------------------------------------------------
// Attempts

struct Probe::Token {
    Probe* probe; // nullptr once the Probe is gone
};

namespace {

std::uint64_t to_ms(double s) {
    double ms = std::ceil(s * 1000.0);
    return ms < 1 ? 1 : static_cast<std::uint64_t>(ms);
}

// The TCP handle of one attempt. Heap-allocated: it lives until libuv has
// closed it, which may be after the attempt (and the Probe) are gone.
struct TcpConnect {
    uv_tcp_t tcp{};
    uv_connect_t req{};
    std::function<void(int status)> on_connect; // cleared when abandoned
    bool closing = false;

    void close() noexcept {
        on_connect = nullptr;
        if (closing) return;
        closing = true;
        // A pending connect request completes with UV_ECANCELED before the
        // close callback, so the block is freed only after both.
        uv_close(reinterpret_cast<uv_handle_t*>(&tcp),
                 [](uv_handle_t* h) { delete static_cast<TcpConnect*>(h->data); });
    }
};

// Keeps no body: a probe only needs the status. Accepts up to 64 KiB, then
// refuses (which ends a 2xx transfer early; it still counts as success).
class DiscardSink final : public FetchSink {
public:
    bool write(const void*, std::size_t size) override {
        bytes_ += size;
        return bytes_ <= 64 * 1024;
    }
    bool reset() override {
        bytes_ = 0;
        return true;
    }
    std::string error() const override { return "response body over 64 KiB"; }

private:
    std::uint64_t bytes_ = 0;
};

std::string strip_attempts(std::string message) {
    constexpr std::string_view suffix = " (1 attempt)";
    if (message.size() >= suffix.size() &&
        message.compare(message.size() - suffix.size(), suffix.size(), suffix) == 0)
        message.resize(message.size() - suffix.size());
    return message;
}

// The first non-empty line of the command's output, shortened: the reason a
// health command gives.
std::string first_line(const std::string& err, const std::string& out) {
    for (const std::string* s : {&err, &out}) {
        for (std::string_view line : split(*s, '\n')) {
            std::string_view t = trim(line);
            if (t.empty()) continue;
            if (t.size() > 200) t = t.substr(0, 200);
            return std::string(t);
        }
    }
    return {};
}

} // namespace

Probe::Probe(uv_loop_t* loop, ProbeSpec spec, ProbeTarget target)
    : loop_(loop), spec_(std::move(spec)), target_(std::move(target)),
      token_(std::make_shared<Token>(Token{this})), timer_(loop) {}

Probe::~Probe() {
    cancel();
    token_->probe = nullptr;
}

void Probe::cancel() noexcept {
    ++attempt_; // any late completion of the old attempt is ignored
    timer_.stop();
    done_ = nullptr;
    if (auto abort = std::exchange(abort_, nullptr)) {
        try {
            abort();
        } catch (const std::exception& e) {
            log::error("cancelling a probe failed", {{"error", e.what()}});
        }
    }
}

std::string Probe::endpoint() const {
    return "127.0.0.1:" + std::to_string(port());
}

void Probe::run(Done done) {
    cancel();
    done_ = std::move(done);
    started_ = uv_now(loop_);
    try {
        switch (spec_.kind) {
        case ProbeKind::tcp:
            start_tcp();
            return;
        case ProbeKind::http:
            start_http();
            return;
        case ProbeKind::exec:
            start_exec();
            return;
        case ProbeKind::notify:
        case ProbeKind::none:
            break;
        }
        fail_later(ProbeOutcome::error,
                   std::string("probe kind ") + probe_kind_name(spec_.kind) + " has no attempts");
    } catch (const std::exception& e) {
        fail_later(ProbeOutcome::error, std::string("cannot start the probe: ") + e.what());
    }
}

void Probe::fail_later(ProbeOutcome outcome, std::string message) {
    if (abort_) {
        auto abort = std::exchange(abort_, nullptr);
        abort();
    }
    std::uint64_t id = attempt_;
    timer_.start(0, [this, id, outcome, message = std::move(message)] {
        if (id != attempt_) return;
        finish(ProbeResult{outcome, message, 0, 0});
    });
}

void Probe::finish(ProbeResult result) noexcept {
    if (!done_) return;
    ++attempt_;
    timer_.stop();
    abort_ = nullptr;
    result.duration_ms = uv_now(loop_) - started_;
    Done done = std::move(done_);
    done_ = nullptr;
    try {
        done(result); // may destroy *this: nothing touches a member after it
    } catch (const std::exception& e) {
        log::error("probe callback failed", {{"error", e.what()}});
    } catch (...) {
        log::error("probe callback failed");
    }
}

void Probe::start_tcp() {
    if (port() == 0) {
        fail_later(ProbeOutcome::error, "no port to probe (the revision has no PORT)");
        return;
    }
    auto* c = new TcpConnect;
    c->tcp.data = c;
    if (int rc = uv_tcp_init(loop_, &c->tcp); rc < 0) {
        delete c;
        fail_later(ProbeOutcome::unreachable, std::string("uv_tcp_init: ") + uv_strerror(rc));
        return;
    }
    std::uint64_t id = attempt_;
    auto token = token_;
    const std::string where = endpoint();
    c->on_connect = [token, id, where](int status) {
        Probe* self = token->probe;
        if (!self || self->attempt_ != id) return;
        if (status == 0)
            self->finish({ProbeOutcome::success, "connected to " + where, 0, 0});
        else if (status == UV_ECONNREFUSED)
            self->finish({ProbeOutcome::unreachable, where + ": connection refused", 0, 0});
        else
            self->finish({ProbeOutcome::unreachable, where + ": " + uv_strerror(status), 0, 0});
    };
    abort_ = [c] { c->close(); };
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = uv_tcp_connect(&c->req, &c->tcp, reinterpret_cast<const sockaddr*>(&addr),
                            [](uv_connect_t* req, int status) {
                                auto* conn = static_cast<TcpConnect*>(req->handle->data);
                                auto cb = std::move(conn->on_connect);
                                conn->close(); // done with the connection either way
                                if (cb && status != UV_ECANCELED) cb(status);
                            });
    if (rc < 0) {
        fail_later(ProbeOutcome::unreachable, where + ": " + uv_strerror(rc));
        return;
    }
    const std::uint64_t ms = to_ms(spec_.attempt_timeout_s);
    timer_.start(ms, [this, id, where, ms] {
        if (id != attempt_) return;
        if (auto abort = std::exchange(abort_, nullptr)) abort();
        finish({ProbeOutcome::unreachable,
                where + ": no connection within " + std::to_string(ms) + " ms", 0, 0});
    });
}

void Probe::start_http() {
    if (port() == 0) {
        fail_later(ProbeOutcome::error, "no port to probe (the revision has no PORT)");
        return;
    }
    if (!target_.fetcher) {
        fail_later(ProbeOutcome::error, "http probe without a fetcher");
        return;
    }
    const std::string url = "http://" + endpoint() + spec_.path;
    const std::uint64_t ms = to_ms(spec_.attempt_timeout_s);
    FetchOptions options;
    options.connect_timeout = std::chrono::milliseconds(ms);
    options.stall_timeout = std::chrono::milliseconds(ms);
    options.max_bytes = 0;
    options.max_redirects = 0; // a redirect is an answer, not a success
    options.max_attempts = 1;  // the period is the retry
    options.use_proxy = false; // 127.0.0.1 is never behind the environment's proxy
    std::uint64_t id = attempt_;
    auto token = token_;
    FetchHandle handle = target_.fetcher->start(
        url, options, std::make_shared<DiscardSink>(), nullptr,
        [token, id, url](const FetchResult& r) {
            Probe* self = token->probe;
            if (!self || self->attempt_ != id) return;
            const bool answered_2xx = r.http_status >= 200 && r.http_status < 300;
            if (r.ok() || (answered_2xx && r.kind == FetchErrorKind::sink)) {
                self->finish({ProbeOutcome::success,
                              "HTTP " + std::to_string(r.http_status) + " from " + url, 0,
                              r.http_status});
            } else if (r.kind == FetchErrorKind::http_status && r.http_status > 0) {
                self->finish({ProbeOutcome::error,
                              "HTTP " + std::to_string(r.http_status) + " from " + url, 0,
                              r.http_status});
            } else {
                self->finish(
                    {ProbeOutcome::unreachable, strip_attempts(r.message), 0, r.http_status});
            }
        });
    abort_ = [handle]() mutable { handle.cancel(); };
    timer_.start(ms, [this, id, url, ms] {
        if (id != attempt_) return;
        ++attempt_; // the cancellation completes at once; that is not the result
        if (auto abort = std::exchange(abort_, nullptr)) abort();
        finish({ProbeOutcome::unreachable,
                "GET " + url + ": no answer within " + std::to_string(ms) + " ms", 0, 0});
    });
}

void Probe::start_exec() {
    if (!target_.init) {
        fail_later(ProbeOutcome::error, "exec probe without a reaper");
        return;
    }
    SpawnRequest req = target_.exec_base;
    std::string path_env;
    if (req.env) {
        for (const auto& e : *req.env)
            if (e.rfind("PATH=", 0) == 0) path_env = e.substr(5);
    } else if (const char* p = std::getenv("PATH")) {
        path_env = p;
    }
    ResolvedExecutable exe = resolve_executable(spec_.argv.front(), path_env);
    if (exe.error) {
        fail_later(ProbeOutcome::error,
                   "cannot run " + spec_.argv.front() + ": " + std::strerror(exe.error));
        return;
    }
    req.path = exe.path;
    req.argv = spec_.argv;
    req.stdin_fd = spawn_dev_null;
    req.new_session = false;
    req.take_terminal = false;
    const std::uint64_t ms = to_ms(spec_.attempt_timeout_s);
    std::uint64_t id = attempt_;
    auto token = token_;
    struct Early {
        bool returned = false;               // run_oneshot has returned
        std::optional<OneshotResult> result; // a result that came before that
    };
    auto early = std::make_shared<Early>();
    run_oneshot(
        loop_, *target_.init, std::move(req), ms, 4096, [token, id, ms, early](OneshotResult r) {
            Probe* self = token->probe;
            if (!self || self->attempt_ != id) return;
            if (!early->returned) {
                // Spawning failed inside run_oneshot: report it later,
                // never from inside run().
                early->result = std::move(r);
                return;
            }
            if (r.timed_out) {
                self->finish({ProbeOutcome::unreachable,
                              "no exit within " + std::to_string(ms) + " ms (killed)", 0, 0});
                return;
            }
            const int st = r.wait_status;
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                self->finish({ProbeOutcome::success, "exited with code 0", 0, 0});
                return;
            }
            std::string msg = describe_wait_status(st);
            std::string why = first_line(r.err, r.out);
            if (!why.empty()) msg += ": " + why;
            self->finish({ProbeOutcome::error, std::move(msg), 0, 0});
        });
    early->returned = true;
    if (early->result)
        fail_later(ProbeOutcome::error, early->result->error.empty()
                                            ? std::string("cannot start the command")
                                            : early->result->error);
}

// ---------------------------------------------------------------------------
// Periodic attempts

PeriodicProbe::PeriodicProbe(uv_loop_t* loop, ProbeSpec spec, ProbeTarget target,
                             OnResult on_result)
    : loop_(loop), probe_(loop, std::move(spec), std::move(target)),
      on_result_(std::move(on_result)), timer_(loop) {}

void PeriodicProbe::start(std::uint64_t delay_ms) {
    stop();
    active_ = true;
    timer_.start(delay_ms, [this] { attempt(); });
}

void PeriodicProbe::stop() noexcept {
    active_ = false;
    timer_.stop();
    probe_.cancel();
}

void PeriodicProbe::attempt() {
    if (!active_) return;
    attempt_started_ = uv_now(loop_);
    // Runs from probe_, a member: never after this object is gone.
    probe_.run([this](const ProbeResult& r) {
        if (!active_) return;
        if (r.ok()) {
            failures_ = 0;
            failing_since_ = 0;
        } else {
            if (failures_ == 0) failing_since_ = uv_now(loop_);
            ++failures_;
        }
        // The next attempt starts one period after this one started.
        const std::uint64_t period = to_ms(probe_.spec().period_s);
        const std::uint64_t spent = uv_now(loop_) - attempt_started_;
        timer_.start(period > spent ? period - spent : 0, [this] { attempt(); });
        auto cb = on_result_; // it may stop or destroy this object
        cb(r, failures_, failing_since_);
    });
}

} // namespace hearth::health

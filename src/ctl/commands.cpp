#include "ctl/commands.hpp"

#include "ctl/client.hpp"
#include "ctl/deploy_params.hpp"
#include "ctl/format.hpp"
#include "ctl/wait.hpp"
#include "store/sha256.hpp"
#include "version.hpp"

#include <chrono>
#include <climits>
#include <cmath>
#include <csignal>
#include <signal.h>
#include <unistd.h>

namespace hearth {

namespace ctl {

using nlohmann::json;

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_interrupt(int) {
    g_interrupted = 1;
}

// Installs on_interrupt for SIGINT/SIGTERM while following, so ^C ends the
// follow with a clean exit and flushed output. Without SA_RESTART, poll(2)
// returns EINTR and the Client sees the flag.
class InterruptGuard {
public:
    InterruptGuard() {
        g_interrupted = 0;
        struct sigaction sa {};
        sa.sa_handler = on_interrupt;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        ::sigaction(SIGINT, &sa, &old_int_);
        ::sigaction(SIGTERM, &sa, &old_term_);
    }
    ~InterruptGuard() {
        ::sigaction(SIGINT, &old_int_, nullptr);
        ::sigaction(SIGTERM, &old_term_, nullptr);
    }
    InterruptGuard(const InterruptGuard&) = delete;
    InterruptGuard& operator=(const InterruptGuard&) = delete;

private:
    struct sigaction old_int_ {};
    struct sigaction old_term_ {};
};

class Runner {
public:
    Runner(const Args& a, std::FILE* out, std::FILE* err, std::FILE* in)
        : a_(a), out_(out), err_(err), in_(in) {
        if (a.timeout_s > 0) {
            double ms = std::ceil(a.timeout_s * 1000.0);
            timeout_ =
                Timeout(ms > 1e12 ? static_cast<long long>(1e12) : static_cast<long long>(ms));
        }
    }

    int run() {
        const std::string& c = a_.command;
        if (c == "ping") return ping();
        if (c == "version") return version();
        if (c == "deploy") return deploy();
        if (c == "status") return status();
        if (c == "logs") return logs();
        if (c == "stop") return stop();
        if (c == "remove") return remove();
        if (c == "events") return events();
        if (c == "cache") return cache();
        if (c == "shutdown") return shutdown();
        line_err("unknown command '" + c + "'");
        return exit_usage;
    }

private:
    void line_out(const std::string& s) {
        std::fputs(s.c_str(), out_);
        std::fputc('\n', out_);
        std::fflush(out_);
    }
    void line_err(const std::string& s) {
        std::fprintf(err_, "hearthctl: %s\n", s.c_str());
        std::fflush(err_);
    }

    // Prints `failure` as one line and maps it to an exit status.
    int report(const std::string& what, const CallError& f) {
        if (f.kind == CallError::Kind::rpc) {
            line_err(what + ": " + one_line(f.message) + " (code " + std::to_string(f.code) + ")");
            return exit_failed;
        }
        std::string msg = one_line(f.message);
        if (f.kind == CallError::Kind::timeout && a_.timeout_s > 0)
            msg = "no answer from hearth within " + fmt_seconds(a_.timeout_s) + "s (see --timeout)";
        line_err(what + ": " + msg);
        return exit_unavailable;
    }

    static std::string fmt_seconds(double s) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%g", s);
        return buf;
    }

    bool connect() {
        auto c = Client::connect(a_.socket, timeout_);
        if (!c) {
            report(a_.command, c.error());
            return false;
        }
        client_.emplace(std::move(c).value());
        return true;
    }

    Result<json, CallError> call(const char* method, const json& params) {
        return client_->call(method, params, timeout_);
    }

    // The common shape: connect, one call, print the result.
    template <typename Human> int simple(const char* method, const json& params, Human human) {
        if (!connect()) return exit_unavailable;
        auto r = call(method, params);
        if (!r) return report(method, r.error());
        if (a_.json)
            line_out(dump_compact(r.value()));
        else
            human(r.value());
        return exit_ok;
    }

    int ping() {
        return simple("ping", json::object(), [&](const json& r) {
            std::string s = "pong from hearth " + field(r, "version") + " (pid " + field(r, "pid");
            if (auto up = number(r, "uptime_s")) s += ", up " + format_duration(*up);
            s += ", cgroup driver " + field(r, "cgroup_driver") + ")";
            if (flag(r, "shutting_down")) s += ", shutting down";
            line_out(s);
        });
    }

    int version() {
        json daemon = nullptr;
        int status = exit_ok;
        auto c = Client::connect(a_.socket, timeout_);
        if (c) {
            auto r = c.value().call("version", json::object(), timeout_);
            if (r)
                daemon = field(r.value(), "version");
            else if (r.error().kind == CallError::Kind::rpc)
                status = report("version", r.error());
            else
                line_err("version: hearth not reachable: " + one_line(r.error().message));
        } else {
            line_err("version: hearth not reachable: " + one_line(c.error().message));
        }
        if (a_.json) {
            line_out(dump_compact(json{{"client", HEARTH_VERSION}, {"daemon", daemon}}));
        } else {
            line_out(std::string("hearthctl ") + HEARTH_VERSION);
            if (daemon.is_string()) line_out("hearth " + daemon.get<std::string>());
        }
        return status;
    }

    static double now_s() {
        return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    int deploy() {
        char buf[PATH_MAX];
        std::string cwd = ::getcwd(buf, sizeof(buf)) ? buf : "/";
        json base = nullptr;
        if (!a_.params_file.empty()) {
            std::string why;
            auto file = read_params_file(a_.params_file, in_, why);
            if (!file) {
                line_err("deploy: --params: " + why);
                return exit_usage;
            }
            base = std::move(*file);
        }
        Hasher hasher = [](const std::string& path,
                           std::string& why) -> std::optional<std::string> {
            Sha256FileResult h = sha256_file(path);
            if (!h.ok) {
                why = h.error;
                return std::nullopt;
            }
            return h.hex;
        };
        DeployBuild built = deploy_params(a_, base, cwd, hasher);
        if (!built.ok()) {
            line_err("deploy: " + built.error);
            return built.status;
        }
        const json& params = *built.params;
        const std::string location = field(params, "location", "");
        if (!connect()) return exit_unavailable;

        if (a_.wait) {
            // Subscribe before deploying, so no state change can slip by.
            auto sub = call("events.subscribe", json{{"location", location}});
            if (!sub && sub.error().kind == CallError::Kind::rpc && sub.error().code == -32001)
                sub = call("events.subscribe", json::object()); // first deploy: not known yet
            if (!sub) return report("events.subscribe", sub.error());
        }

        auto r = call("deploy", params);
        if (!r) return report("deploy", r.error());
        std::string id = field(r.value(), "id", "");
        if (!a_.wait) {
            if (a_.json)
                line_out(dump_compact(r.value()));
            else
                line_out(id);
            return exit_ok;
        }
        if (id.empty()) {
            line_err("deploy: hearth's reply has no revision id");
            return exit_failed;
        }
        return follow_deploy(id);
    }

    int follow_deploy(const std::string& id) {
        DeployWaiter waiter(id);
        // The progress line is redrawn in place, which only makes sense on a
        // terminal; fileno() of a memstream is -1, so tests never see it.
        const int err_fd = ::fileno(err_);
        const bool tty = !a_.json && err_fd >= 0 && ::isatty(err_fd) == 1;
        bool progress_shown = false;
        auto clear_progress = [&] {
            if (!progress_shown) return;
            std::fputs("\r\033[K", err_);
            std::fflush(err_);
            progress_shown = false;
        };
        for (;;) {
            auto n = client_->next_notification(kNoTimeout);
            if (!n) {
                clear_progress();
                if (n.error().kind == CallError::Kind::interrupted) return exit_failed;
                line_err("deploy: connection lost while waiting for " + id + ": " +
                         one_line(n.error().message));
                return exit_unavailable;
            }
            const json& msg = n.value();
            if (field(msg, "method", "") != "event") continue;
            const json& ev = object_member(msg, "params");
            if (field(ev, "id", "") != id) continue;
            const std::string type = field(ev, "type", "state");
            if (a_.json) {
                line_out(dump_compact(ev));
            } else if (type == "progress") {
                if (tty) {
                    std::fprintf(err_, "\r\033[K%s: fetching %s", id.c_str(),
                                 format_progress(ev).c_str());
                    std::fflush(err_);
                    progress_shown = true;
                }
                continue;
            } else if (type != "state") {
                continue; // a kind of event this hearthctl does not know
            } else {
                clear_progress();
                line_out(format_event(ev));
            }
            WaitVerdict v = waiter.feed(ev);
            if (v == WaitVerdict::waiting) continue;
            clear_progress();
            if (v == WaitVerdict::ready) return exit_ok;
            std::fputs(wait_failure_report(id, ev, v, now_s()).c_str(), err_);
            std::fflush(err_);
            return exit_failed;
        }
    }

    json location_params() const {
        json p = json::object();
        if (!a_.location.empty()) p["location"] = a_.location;
        return p;
    }

    int status() {
        return simple("status", location_params(), [&](const json& r) {
            const double now = now_s();
            std::string text = format_table(status_rows(r, now));
            if (!a_.location.empty()) {
                auto detail = status_detail(r, now);
                if (!detail.empty()) text += "\n";
                for (const auto& l : detail)
                    text += l + "\n";
            }
            std::fputs(text.c_str(), out_);
            std::fflush(out_);
        });
    }

    int cache() {
        if (a_.subcommand == "ls") {
            return simple("cache.list", json::object(), [&](const json& r) {
                std::string text = format_table(cache_rows(r, now_s()));
                text += cache_total_line(r) + "\n";
                std::fputs(text.c_str(), out_);
                std::fflush(out_);
            });
        }
        json p = json::object();
        if (a_.target_bytes) p["target_bytes"] = *a_.target_bytes;
        return simple("cache.gc", p, [&](const json& r) {
            for (const auto& l : cache_gc_lines(r))
                line_out(l);
        });
    }

    int logs() {
        json p = location_params();
        if (!a_.id.empty()) p["id"] = a_.id;
        if (a_.tail) p["tail"] = *a_.tail;
        p["follow"] = a_.follow;
        std::optional<InterruptGuard> guard;
        if (a_.follow) guard.emplace();
        if (!connect()) return exit_unavailable;
        if (a_.follow) client_->set_interrupt_flag(&g_interrupted);

        auto r = call("logs", p);
        if (!r) {
            if (r.error().kind == CallError::Kind::interrupted) return exit_ok;
            return report("logs", r.error());
        }
        const json& res = r.value();
        std::string id = field(res, "id", "");
        if (a_.json && !a_.follow) {
            line_out(dump_compact(res));
        } else if (res.is_object() && res.contains("lines") && res["lines"].is_array()) {
            for (const json& l : res["lines"]) {
                if (!a_.json) {
                    line_out(format_log_line(l));
                } else {
                    // Following: the tail in the same shape as the notifications.
                    json o = {{"location", a_.location}, {"id", id}};
                    if (l.is_object()) o.update(l);
                    line_out(dump_compact(o));
                }
            }
        }
        if (number(res, "dropped").value_or(0) > 0)
            line_err("logs: " + field(res, "dropped") +
                     " older lines were dropped (log buffer overflow)");
        if (!a_.follow) return exit_ok;

        return follow("log", [&](const json& params) {
            line_out(a_.json ? dump_compact(params) : format_log_line(params));
        });
    }

    // Prints notifications of `method` until interrupted (exit 0) or the
    // connection ends (exit 3).
    template <typename Print> int follow(const char* method, Print print) {
        for (;;) {
            auto n = client_->next_notification(kNoTimeout);
            if (!n) {
                if (n.error().kind == CallError::Kind::interrupted) return exit_ok;
                line_err(a_.command + ": " + one_line(n.error().message));
                return exit_unavailable;
            }
            const json& msg = n.value();
            if (field(msg, "method", "") != method) continue;
            print(msg.contains("params") ? msg["params"] : json::object());
        }
    }

    int events() {
        InterruptGuard guard;
        if (!connect()) return exit_unavailable;
        client_->set_interrupt_flag(&g_interrupted);
        auto r = call("events.subscribe", location_params());
        if (!r) {
            if (r.error().kind == CallError::Kind::interrupted) return exit_ok;
            return report("events.subscribe", r.error());
        }
        return follow("event", [&](const json& params) {
            line_out(a_.json ? dump_compact(params) : format_event(params));
        });
    }

    static std::vector<std::string> string_list(const json& r, const char* key) {
        std::vector<std::string> v;
        if (r.is_object() && r.contains(key) && r[key].is_array())
            for (const json& x : r[key])
                v.push_back(x.is_string() ? x.get<std::string>() : dump_compact(x));
        return v;
    }

    int stop() {
        json p = location_params();
        if (!a_.id.empty()) p["id"] = a_.id;
        return simple("stop", p, [&](const json& r) {
            auto ids = string_list(r, "stopped");
            if (ids.empty()) line_out("nothing was running");
            for (const auto& id : ids)
                line_out("stopped " + id);
        });
    }

    int remove() {
        return simple("remove", location_params(), [&](const json& r) {
            for (const auto& id : string_list(r, "stopped"))
                line_out("stopped " + id);
            line_out("removed " + field(r, "removed", a_.location));
        });
    }

    int shutdown() {
        return simple("shutdown", json::object(),
                      [&](const json&) { line_out("hearth is shutting down"); });
    }

    const Args& a_;
    std::FILE* out_;
    std::FILE* err_;
    std::FILE* in_;
    Timeout timeout_ = kNoTimeout;
    std::optional<Client> client_;
};

} // namespace

int run(const Args& args, std::FILE* out, std::FILE* err, std::FILE* in) {
    try {
        return Runner(args, out, err, in).run();
    } catch (const std::exception& e) {
        // Only allocation failure or a library bug can get here.
        std::fprintf(err, "hearthctl: %s: internal error: %s\n", args.command.c_str(), e.what());
        return exit_failed;
    }
}

} // namespace ctl

int ctl_main(int argc, char** argv) {
    std::vector<std::string> argv_vec;
    for (int i = 1; i < argc; ++i)
        argv_vec.emplace_back(argv[i]);
    ctl::ParseResult parsed = ctl::parse_args(argv_vec, cli::environment(environ, ctl::kEnvPrefix));
    if (parsed.args.help) {
        std::fputs(ctl::usage().c_str(), stdout);
        return ctl::exit_ok;
    }
    if (parsed.args.version) {
        std::printf("hearthctl %s\n", HEARTH_VERSION);
        return ctl::exit_ok;
    }
    if (!parsed.ok()) {
        std::fprintf(stderr, "hearthctl: %s\n", parsed.error.c_str());
        return ctl::exit_usage;
    }
    return ctl::run(parsed.args, stdout, stderr);
}

} // namespace hearth

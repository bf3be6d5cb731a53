// Probes: the deploy parameters, and real attempts against listeners on
// loopback (tcp), a small HTTP responder written here on the test's loop
// (http; the probe itself goes through libcurl), and real commands (exec,
// run in a forked single-threaded child that owns the reaper).

#include "control/rpc.hpp"
#include "health/probe.hpp"
#include "init/init.hpp"
#include "store/fetch.hpp"
#include "util/fd.hpp"

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <memory>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

using namespace hearth;
using namespace hearth::health;
using nlohmann::json;

namespace {

// ---------------------------------------------------------------------------
// Parameters

std::string parse_error(const json& value, bool liveness = false) {
    try {
        if (liveness)
            parse_liveness(value);
        else
            parse_readiness(value);
    } catch (const rpc::RpcError& f) {
        CHECK(f.error().code == rpc::invalid_params);
        return f.error().message;
    }
    FAIL("no error for " << value.dump());
    return {};
}

// ---------------------------------------------------------------------------
// Loop plumbing

struct Loop {
    uv_loop_t loop{};
    Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
    ~Loop() {
        for (int i = 0; i < 200 && uv_loop_alive(&loop); ++i)
            uv_run(&loop, UV_RUN_NOWAIT);
        uv_loop_close(&loop);
    }
    bool run_until(const std::function<bool()>& done, int seconds = 5) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            uv_run(&loop, UV_RUN_NOWAIT);
            if (!done()) ::usleep(500);
        }
        return true;
    }
};

std::uint16_t bound_port(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    return ntohs(addr.sin_port);
}

// A listening socket on 127.0.0.1 (plain fd: the kernel completes
// handshakes into its backlog without anyone accepting).
struct RawListener {
    Fd fd;
    std::uint16_t port = 0;
    explicit RawListener(int backlog = 16) {
        fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        REQUIRE(fd);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(fd.get(), backlog) == 0);
        port = bound_port(fd.get());
    }
};

// A port nobody listens on (bound, never listening, so nobody else gets it
// while the test runs).
struct ClosedPort {
    Fd fd;
    std::uint16_t port = 0;
    ClosedPort() {
        fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        port = bound_port(fd.get());
    }
};

// A tiny HTTP/1.1 responder on the test's loop. Paths: /ok (200), /fail
// (503), /missing (404), /redirect (302 to /ok), /big (200 with 1 MiB),
// /silent (never answers).
class HttpResponder {
public:
    explicit HttpResponder(uv_loop_t* loop) : loop_(loop) {
        server_ = new uv_tcp_t;
        uv_tcp_init(loop, server_);
        server_->data = this;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(uv_tcp_bind(server_, reinterpret_cast<const sockaddr*>(&addr), 0) == 0);
        REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(server_), 16, on_connection) == 0);
        sockaddr_in bound{};
        int len = sizeof bound;
        uv_tcp_getsockname(server_, reinterpret_cast<sockaddr*>(&bound), &len);
        port = ntohs(bound.sin_port);
    }
    ~HttpResponder() {
        for (Conn* c : std::set<Conn*>(conns_)) {
            close_conn(c);
            c->owner = nullptr; // a write still in flight must not call back
        }
        uv_close(reinterpret_cast<uv_handle_t*>(server_),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    }
    std::uint16_t port = 0;
    std::vector<std::string> requests; // request lines seen

private:
    struct Conn {
        uv_tcp_t tcp{};
        std::string in;
        HttpResponder* owner = nullptr;
        bool answered = false;
    };
    struct Write {
        uv_write_t req{};
        std::string data;
        Conn* conn = nullptr;
    };

    static void on_connection(uv_stream_t* server, int status) {
        auto* self = static_cast<HttpResponder*>(server->data);
        if (status < 0) return;
        auto* c = new Conn;
        c->owner = self;
        uv_tcp_init(self->loop_, &c->tcp);
        c->tcp.data = c;
        if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
            uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
                     [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
            return;
        }
        self->conns_.insert(c);
        uv_read_start(
            reinterpret_cast<uv_stream_t*>(&c->tcp),
            [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
                buf->base = new char[suggested];
                buf->len = suggested;
            },
            [](uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
                std::unique_ptr<char[]> data(buf->base);
                auto* conn = static_cast<Conn*>(stream->data);
                if (n < 0) {
                    conn->owner->close_conn(conn);
                    return;
                }
                conn->in.append(buf->base, static_cast<std::size_t>(n));
                if (!conn->answered && conn->in.find("\r\n\r\n") != std::string::npos)
                    conn->owner->answer(conn);
            });
    }

    void answer(Conn* c) {
        c->answered = true;
        std::string line = c->in.substr(0, c->in.find("\r\n"));
        requests.push_back(line);
        std::string path = line.substr(4, line.rfind(' ') - 4);
        std::string head, body;
        if (path == "/ok") {
            head = "200 OK";
            body = "ok";
        } else if (path == "/fail") {
            head = "503 Service Unavailable";
            body = "loading";
        } else if (path == "/redirect") {
            head = "302 Found\r\nLocation: /ok";
        } else if (path == "/big") {
            head = "200 OK";
            body.assign(1 << 20, 'b');
        } else if (path == "/silent") {
            return;
        } else {
            head = "404 Not Found";
        }
        auto* w = new Write;
        w->conn = c;
        w->req.data = w;
        w->data = "HTTP/1.1 " + head + "\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\nConnection: close\r\n\r\n" + body;
        uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
        uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1,
                 [](uv_write_t* req, int) {
                     std::unique_ptr<Write> done(static_cast<Write*>(req->data));
                     if (done->conn->owner) done->conn->owner->close_conn(done->conn);
                 });
    }

    void close_conn(Conn* c) {
        if (!conns_.erase(c)) return;
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
                 [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
    }

    uv_loop_t* loop_;
    uv_tcp_t* server_;
    std::set<Conn*> conns_;
};

ProbeSpec spec_of(const json& readiness) {
    return parse_readiness(readiness);
}

// Runs one attempt and returns its result.
ProbeResult attempt(Loop& loop, Probe& probe) {
    std::optional<ProbeResult> result;
    probe.run([&](const ProbeResult& r) { result = r; });
    CHECK_FALSE(result); // never inside run()
    REQUIRE(loop.run_until([&] { return result.has_value(); }));
    return *result;
}

} // namespace

// ---------------------------------------------------------------------------

TEST_CASE("probe spec: kinds and defaults", "[health][probe]") {
    ProbeSpec n = parse_readiness(json{{"notify", json::object()}});
    CHECK(n.kind == ProbeKind::notify);
    CHECK(n.timeout_s == 180);
    CHECK(n.period_s == 1);
    CHECK(n.attempt_timeout_s == 1);

    ProbeSpec t = parse_readiness(json{{"tcp", {{"port", "auto"}}}, {"timeout_s", 60}});
    CHECK(t.kind == ProbeKind::tcp);
    CHECK(t.port_auto);
    CHECK(t.timeout_s == 60);
    CHECK(parse_readiness(json{{"tcp", json::object()}}).port_auto); // auto by default

    ProbeSpec h = parse_readiness(json{{"http", {{"port", 8080}, {"path", "/healthz?full=1"}}},
                                       {"period_s", 0.5},
                                       {"attempt_timeout_s", 2}});
    CHECK(h.kind == ProbeKind::http);
    CHECK_FALSE(h.port_auto);
    CHECK(h.port == 8080);
    CHECK(h.path == "/healthz?full=1");
    CHECK(h.period_s == 0.5);
    CHECK(h.attempt_timeout_s == 2);
    CHECK(parse_readiness(json{{"http", json::object()}}).path == "/");

    ProbeSpec e = parse_readiness(json{{"exec", {{"argv", {"check", "--ready"}}}}});
    CHECK(e.kind == ProbeKind::exec);
    CHECK(e.argv == std::vector<std::string>{"check", "--ready"});

    CHECK(parse_readiness(json{{"none", json::object()}}).kind == ProbeKind::none);
    // Null kinds do not count as given.
    CHECK(parse_readiness(json{{"none", json::object()}, {"tcp", nullptr}}).kind ==
          ProbeKind::none);

    ProbeSpec l = parse_liveness(json{{"http", {{"port", "auto"}, {"path", "/healthz"}}},
                                      {"period_s", 10},
                                      {"failure_threshold", 3}});
    CHECK(l.kind == ProbeKind::http);
    CHECK(l.failure_threshold == 3);
    CHECK(l.action == LivenessAction::report);
    ProbeSpec l2 = parse_liveness(json{{"tcp", json::object()}, {"action", "restart"}});
    CHECK(l2.period_s == 10); // liveness probes gently by default
    CHECK(l2.failure_threshold == 3);
    CHECK(l2.action == LivenessAction::restart);
}

TEST_CASE("probe spec: errors name the field", "[health][probe]") {
    CHECK(parse_error(json::array()) == "params.readiness: expected an object");
    CHECK(parse_error(json::object()) ==
          "params.readiness: give exactly one of notify, tcp, http, exec, none");
    CHECK(parse_error(json{{"tcp", json::object()}, {"http", json::object()}}) ==
          "params.readiness: give exactly one of notify, tcp, http, exec, none (got tcp and "
          "http)");
    CHECK(parse_error(json{{"tcp", 1}}) ==
          "params.readiness.tcp: expected an object, got a number");
    CHECK(parse_error(json{{"tcp", {{"port", 0}}}}) ==
          "params.readiness.tcp.port: must be 1-65535 or \"auto\"");
    CHECK(parse_error(json{{"http", {{"port", 70000}}}}) ==
          "params.readiness.http.port: must be 1-65535 or \"auto\"");
    CHECK(parse_error(json{{"http", {{"port", 80.5}}}}) ==
          "params.readiness.http.port: must be 1-65535 or \"auto\"");
    CHECK(parse_error(json{{"http", {{"port", "eighty"}}}}) ==
          "params.readiness.http.port: must be 1-65535 or \"auto\"");
    CHECK(parse_error(json{{"http", {{"path", "healthz"}}}})
              .rfind("params.readiness.http.path: must start with '/'", 0) == 0);
    CHECK(parse_error(json{{"http", {{"path", "/a b"}}}}).rfind("params.readiness.http.path:", 0) ==
          0);
    CHECK(parse_error(json{{"http", {{"path", 5}}}}) ==
          "params.readiness.http.path: expected a string, got a number");
    CHECK(parse_error(json{{"exec", json::object()}}) ==
          "params.readiness.exec.argv: must be a non-empty array of strings");
    CHECK(parse_error(json{{"exec", {{"argv", json::array()}}}}) ==
          "params.readiness.exec.argv: must be a non-empty array of strings");
    CHECK(parse_error(json{{"exec", {{"argv", {"", "x"}}}}}) ==
          "params.readiness.exec.argv[0]: the command is empty");
    CHECK(parse_error(json{{"exec", {{"argv", {"check", 3}}}}})
              .rfind("params.readiness.exec.argv[1]:", 0) == 0);
    CHECK(parse_error(json{{"exec", {{"argv", {"check", std::string("a\0b", 3)}}}}}) ==
          "params.readiness.exec.argv[1]: contains a NUL byte");
    CHECK(parse_error(json{{"tcp", json::object()}, {"timeout_s", 0}}) ==
          "params.readiness.timeout_s: must be a number of seconds above 0 and at most 604800");
    CHECK(parse_error(json{{"tcp", json::object()}, {"period_s", -1}})
              .rfind("params.readiness.period_s:", 0) == 0);
    CHECK(parse_error(json{{"tcp", json::object()}, {"attempt_timeout_s", "1"}})
              .rfind("params.readiness.attempt_timeout_s:", 0) == 0);
    CHECK(parse_error(json{{"tcp", json::object()}, {"failure_threshold", 3}}) ==
          "params.readiness.failure_threshold: only for liveness (readiness retries until "
          "timeout_s)");

    CHECK(parse_error(json{{"notify", json::object()}}, true) ==
          "params.liveness.notify: notify is a readiness kind; liveness takes tcp, http, exec "
          "or none");
    CHECK(parse_error(json{{"tcp", json::object()}, {"timeout_s", 5}}, true)
              .rfind("params.liveness.timeout_s: not used by liveness", 0) == 0);
    CHECK(parse_error(json{{"tcp", json::object()}, {"failure_threshold", 0}}, true)
              .rfind("params.liveness.failure_threshold:", 0) == 0);
    CHECK(parse_error(json{{"tcp", json::object()}, {"action", "kill"}}, true) ==
          "params.liveness.action: must be \"report\" or \"restart\"");
}

TEST_CASE("probe spec: to_json reads back to the same spec", "[health][probe]") {
    for (const json& r :
         {json{{"notify", json::object()}, {"timeout_s", 30}}, json{{"tcp", {{"port", 9000}}}},
          json{{"http", {{"path", "/h"}}}, {"period_s", 2}},
          json{{"exec", {{"argv", {"a", "b"}}}}, {"attempt_timeout_s", 3}},
          json{{"none", json::object()}}}) {
        ProbeSpec s = parse_readiness(r);
        CHECK(parse_readiness(to_json(s, false)) == s);
    }
    ProbeSpec l = parse_liveness(json{{"http", json::object()}, {"action", "restart"}});
    json lj = to_json(l, true);
    CHECK(lj["action"] == "restart");
    CHECK_FALSE(lj.contains("timeout_s"));
    CHECK(parse_liveness(lj) == l);
}

TEST_CASE("probe: tcp connects, is refused, or times out", "[health][probe]") {
    Loop loop;
    RawListener listening;
    {
        Probe probe(&loop.loop, spec_of({{"tcp", {{"port", listening.port}}}}), {});
        ProbeResult r = attempt(loop, probe);
        CHECK(r.outcome == ProbeOutcome::success);
        CHECK(r.message == "connected to 127.0.0.1:" + std::to_string(listening.port));
    }
    {
        ClosedPort closed;
        ProbeTarget target;
        target.port = closed.port; // "auto": the revision's PORT
        Probe probe(&loop.loop, spec_of({{"tcp", {{"port", "auto"}}}}), target);
        CHECK(probe.port() == closed.port);
        ProbeResult r = attempt(loop, probe);
        CHECK(r.outcome == ProbeOutcome::unreachable);
        CHECK(r.message == "127.0.0.1:" + std::to_string(closed.port) + ": connection refused");
    }
    {
        // A listener whose accept queue is full drops new SYNs: the connect
        // hangs until the attempt timeout.
        RawListener full(0);
        std::vector<Fd> fillers;
        for (int i = 0; i < 8; ++i) {
            Fd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
            sockaddr_in addr{};
            addr.sin_family = AF_INET;
            addr.sin_port = htons(full.port);
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            ::connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
            fillers.push_back(std::move(c));
        }
        ::usleep(50 * 1000);
        Probe probe(&loop.loop,
                    spec_of({{"tcp", {{"port", full.port}}}, {"attempt_timeout_s", 0.2}}), {});
        ProbeResult r = attempt(loop, probe);
        CHECK(r.outcome == ProbeOutcome::unreachable);
        CHECK(r.message ==
              "127.0.0.1:" + std::to_string(full.port) + ": no connection within 200 ms");
        CHECK(r.duration_ms >= 190);
    }
    {
        Probe probe(&loop.loop, spec_of({{"tcp", {{"port", "auto"}}}}), {}); // no PORT
        ProbeResult r = attempt(loop, probe);
        CHECK(r.outcome == ProbeOutcome::error);
    }
}

TEST_CASE("probe: http tells 2xx, an error answer and no answer apart", "[health][probe]") {
    Loop loop;
    Fetcher fetcher(&loop.loop);
    HttpResponder server(&loop.loop);
    // The environment's proxy must not be used for 127.0.0.1.
    const char* old_proxy = std::getenv("http_proxy");
    std::string saved = old_proxy ? old_proxy : "";
    ::setenv("http_proxy", "http://127.0.0.1:9", 1);

    auto run = [&](const std::string& path, double attempt_timeout = 1) {
        ProbeTarget target;
        target.port = server.port;
        target.fetcher = &fetcher;
        Probe probe(&loop.loop,
                    spec_of({{"http", {{"path", path}}}, {"attempt_timeout_s", attempt_timeout}}),
                    target);
        return attempt(loop, probe);
    };
    const std::string base = "http://127.0.0.1:" + std::to_string(server.port);

    ProbeResult ok = run("/ok");
    CHECK(ok.outcome == ProbeOutcome::success);
    CHECK(ok.http_status == 200);
    CHECK(ok.message == "HTTP 200 from " + base + "/ok");

    ProbeResult fail = run("/fail");
    CHECK(fail.outcome == ProbeOutcome::error);
    CHECK(fail.http_status == 503);
    CHECK(fail.message == "HTTP 503 from " + base + "/fail");

    CHECK(run("/missing").http_status == 404);
    ProbeResult redirect = run("/redirect");
    CHECK(redirect.outcome == ProbeOutcome::error); // not followed: a redirect is not health
    CHECK(redirect.http_status == 302);

    ProbeResult big = run("/big");
    CHECK(big.outcome == ProbeOutcome::success);

    ProbeResult silent = run("/silent", 0.3);
    CHECK(silent.outcome == ProbeOutcome::unreachable);
    CHECK(silent.message == "GET " + base + "/silent: no answer within 300 ms");

    if (old_proxy)
        ::setenv("http_proxy", saved.c_str(), 1);
    else
        ::unsetenv("http_proxy");

    ClosedPort closed;
    ProbeTarget target;
    target.port = closed.port;
    target.fetcher = &fetcher;
    Probe refused(&loop.loop, spec_of({{"http", json::object()}}), target);
    ProbeResult r = attempt(loop, refused);
    CHECK(r.outcome == ProbeOutcome::unreachable);
    CHECK(r.http_status == 0);
    CHECK(r.message.find("127.0.0.1:" + std::to_string(closed.port)) != std::string::npos);
    CHECK(server.requests.size() == 6);
    CHECK(server.requests.at(0) == "GET /ok HTTP/1.1");
}

TEST_CASE("probe: cancelled or destroyed in flight, no callback", "[health][probe]") {
    Loop loop;
    Fetcher fetcher(&loop.loop);
    HttpResponder server(&loop.loop);
    ProbeTarget target;
    target.port = server.port;
    target.fetcher = &fetcher;
    int calls = 0;
    {
        Probe probe(&loop.loop, spec_of({{"http", {{"path", "/silent"}}}}), target);
        probe.run([&](const ProbeResult&) { ++calls; });
        REQUIRE(loop.run_until([&] { return server.requests.size() == 1; }));
        CHECK(probe.running());
    } // destroyed with the request in flight
    Probe probe(&loop.loop, spec_of({{"tcp", {{"port", server.port}}}}), target);
    probe.run([&](const ProbeResult&) { ++calls; });
    probe.cancel();
    CHECK_FALSE(probe.running());
    // A new attempt replaces one in flight; only the new one reports.
    std::optional<ProbeResult> last;
    probe.run([&](const ProbeResult&) { ++calls; });
    probe.run([&](const ProbeResult& r) { last = r; });
    REQUIRE(loop.run_until([&] { return last.has_value(); }));
    for (int i = 0; i < 20; ++i)
        uv_run(&loop.loop, UV_RUN_NOWAIT);
    CHECK(calls == 0);
    CHECK(last->ok());
    CHECK(fetcher.in_flight() == 0);
}

TEST_CASE("probe: periodic attempts count consecutive failures", "[health][probe]") {
    Loop loop;
    ClosedPort closed;
    ProbeTarget target;
    target.port = closed.port;
    std::vector<unsigned> counts;
    std::vector<std::uint64_t> since;
    std::vector<ProbeOutcome> outcomes;
    std::unique_ptr<RawListener> later;
    PeriodicProbe periodic(&loop.loop, spec_of({{"tcp", {{"port", "auto"}}}, {"period_s", 0.02}}),
                           target,
                           [&](const ProbeResult& r, unsigned failures, std::uint64_t first) {
                               outcomes.push_back(r.outcome);
                               counts.push_back(failures);
                               since.push_back(first);
                           });
    periodic.start();
    REQUIRE(loop.run_until([&] { return counts.size() == 3; }));
    CHECK(counts == std::vector<unsigned>{1, 2, 3});
    CHECK(since[0] != 0);
    CHECK(since[0] == since[2]); // the start of the failing run
    CHECK(periodic.consecutive_failures() == 3);
    periodic.stop();
    for (int i = 0; i < 10; ++i) {
        uv_run(&loop.loop, UV_RUN_NOWAIT);
        ::usleep(5000);
    }
    CHECK(counts.size() == 3); // stopped: nothing more

    // Listening now: the next success resets the count.
    RawListener listening;
    PeriodicProbe recovering(&loop.loop,
                             spec_of({{"tcp", {{"port", listening.port}}}, {"period_s", 0.02}}), {},
                             [&](const ProbeResult& r, unsigned failures, std::uint64_t first) {
                                 outcomes.push_back(r.outcome);
                                 counts.push_back(failures);
                                 since.push_back(first);
                             });
    recovering.start();
    REQUIRE(loop.run_until([&] { return counts.size() == 4; }));
    CHECK(outcomes.back() == ProbeOutcome::success);
    CHECK(counts.back() == 0);
    CHECK(since.back() == 0);
}

TEST_CASE("probe: a periodic probe may be destroyed from its callback", "[health][probe]") {
    Loop loop;
    RawListener listening;
    int calls = 0;
    std::unique_ptr<PeriodicProbe> periodic;
    periodic = std::make_unique<PeriodicProbe>(
        &loop.loop, spec_of({{"tcp", {{"port", listening.port}}}, {"period_s", 0.01}}),
        ProbeTarget{}, [&](const ProbeResult&, unsigned, std::uint64_t) {
            ++calls;
            periodic.reset();
        });
    periodic->start();
    REQUIRE(loop.run_until([&] { return calls == 1; }));
    for (int i = 0; i < 10; ++i) {
        uv_run(&loop.loop, UV_RUN_NOWAIT);
        ::usleep(5000);
    }
    CHECK(calls == 1);
}

namespace {

// Runs the exec cases in a forked child: it is single-threaded, so blocking
// SIGCHLD there guarantees the reaper's signalfd sees every child exit
// (in this multi-threaded test binary another thread could take it).
// Each case writes "outcome|message" on its own line to the pipe.
std::vector<std::string> exec_cases_in_child() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    Fd read_end(fds[0]), write_end(fds[1]);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        read_end.reset();
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        ::sigprocmask(SIG_BLOCK, &set, nullptr);
        uv_loop_t loop;
        uv_loop_init(&loop);
        std::string out;
        auto init_owner = std::make_unique<Init>(&loop, 1.0);
        Init& init = *init_owner;
        if (!init.start().empty()) ::_exit(3);
        {
            struct Case {
                json argv;
                double timeout;
            };
            const std::vector<Case> cases = {
                {{"true"}, 1},
                {{"sh", "-c", "echo 'db not up yet' >&2; exit 3"}, 1},
                {{"sh", "-c", "kill -TERM $$"}, 1},
                {{"sleep", "10"}, 0.2},
                {{"/no/such/command"}, 1},
                {{"sh", "-c", "test \"$PROBE_VAR\" = yes && test \"$(pwd)\" = /tmp"}, 1},
            };
            for (const Case& c : cases) {
                ProbeTarget target;
                target.init = &init;
                target.exec_base.env =
                    std::vector<std::string>{"PATH=/usr/bin:/bin", "PROBE_VAR=yes"};
                target.exec_base.cwd = "/tmp";
                Probe probe(&loop,
                            parse_readiness(
                                {{"exec", {{"argv", c.argv}}}, {"attempt_timeout_s", c.timeout}}),
                            target);
                std::optional<ProbeResult> result;
                probe.run([&](const ProbeResult& r) { result = r; });
                bool early = result.has_value();
                auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
                while (!result && std::chrono::steady_clock::now() < deadline)
                    uv_run(&loop, UV_RUN_ONCE);
                if (early || !result) ::_exit(4);
                out +=
                    std::string(probe_outcome_name(result->outcome)) + "|" + result->message + "\n";
            }
        }
        init.close();
        for (int i = 0; i < 100 && uv_loop_alive(&loop); ++i)
            uv_run(&loop, UV_RUN_NOWAIT);
        init_owner.reset();
        ssize_t n = ::write(write_end.get(), out.data(), out.size());
        ::_exit(n == static_cast<ssize_t>(out.size()) ? 0 : 5);
    }
    write_end.reset();
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(read_end.get(), buf, sizeof buf)) > 0)
        all.append(buf, static_cast<std::size_t>(n));
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    INFO("child status " << status);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < all.size()) {
        std::size_t nl = all.find('\n', pos);
        lines.push_back(all.substr(pos, nl - pos));
        pos = nl + 1;
    }
    return lines;
}

} // namespace

TEST_CASE("probe: exec runs the command with the revision's environment", "[health][probe]") {
    std::vector<std::string> lines = exec_cases_in_child();
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == "success|exited with code 0");
    CHECK(lines[1] == "error|exited with code 3: db not up yet");
    CHECK(lines[2] == "error|killed by SIGTERM");
    CHECK(lines[3] == "unreachable|no exit within 200 ms (killed)");
    CHECK(lines[4] == "error|cannot run /no/such/command: No such file or directory");
    CHECK(lines[5] == "success|exited with code 0");
}

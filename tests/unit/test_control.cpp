// Control server transport and rpc helpers. The server runs on a private uv
// loop driven from the test thread; clients are plain non-blocking sockets
// pumped between loop iterations, so nothing waits on wall-clock sleeps
// (only deadlines that turn a hang into a failure).

#include "control/control.hpp"
#include "control/rpc.hpp"
#include "util/fd.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <signal.h>
#include <stdexcept>
#include <stdlib.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

using nlohmann::json;
using namespace hearth;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-control-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

sockaddr_un unix_addr(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(addr.sun_path));
    std::memcpy(addr.sun_path, path.data(), path.size());
    return addr;
}

// A blocking-connect, then non-blocking, line-oriented test client.
struct Client {
    Fd fd;
    std::string in, out;
    bool eof = false;

    explicit Client(const std::string& path) {
        fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd);
        auto addr = unix_addr(path);
        REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        REQUIRE(::fcntl(fd.get(), F_SETFL, O_NONBLOCK) == 0);
    }
    void send(const std::string& s) {
        out += s;
        flush();
    }
    void send_json(const json& j) { send(j.dump() + "\n"); }
    void flush() {
        while (!out.empty() && fd) {
            ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR) return;
                out.clear(); // peer gone; eof will show on the read side
                return;
            }
            out.erase(0, static_cast<std::size_t>(n));
        }
    }
    void pump() {
        flush();
        if (!fd || eof) return;
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
            if (n > 0) {
                in.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) eof = true;
            return;
        }
    }
    bool has_line() const { return in.find('\n') != std::string::npos; }
    std::string take_line() {
        auto nl = in.find('\n');
        REQUIRE(nl != std::string::npos);
        std::string line = in.substr(0, nl);
        in.erase(0, nl + 1);
        return line;
    }
};

struct Later {
    uv_timer_t timer{};
    control::Reply reply;
};

// Loop + server + the methods the tests call.
struct Harness {
    TempDir dir;
    std::string path;
    uv_loop_t loop{};
    uv_timer_t tick{};
    std::unique_ptr<control::ControlServer> server;
    std::vector<control::Reply> held;
    std::vector<std::weak_ptr<control::Connection>> conns_seen;
    int note_calls = 0;
    json note_params;

    explicit Harness(control::Limits limits = {}, bool listen = true) {
        ::signal(SIGPIPE, SIG_IGN);
        path = dir.path + "/run/control.sock";
        REQUIRE(uv_loop_init(&loop) == 0);
        // Wakes UV_RUN_ONCE regularly so run_until can re-check its predicate.
        uv_timer_init(&loop, &tick);
        uv_timer_start(
            &tick, [](uv_timer_t*) {}, 2, 2);
        server = std::make_unique<control::ControlServer>(&loop, limits);
        add_methods();
        if (listen) REQUIRE(server->listen_unix(path) == "");
    }

    ~Harness() {
        bool closed = false;
        server->close([&] { closed = true; });
        run_until([&] { return closed; });
        server.reset();
        held.clear();
        uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
        uv_run(&loop, UV_RUN_DEFAULT);
        CHECK(uv_loop_close(&loop) == 0);
    }

    void add_methods() {
        server->add_method("ping", [this](const json&, control::Reply r, const auto& c) {
            conns_seen.push_back(c);
            r.result({{"pong", true}});
        });
        server->add_method("echo",
                           [](const json& p, control::Reply r, const auto&) { r.result(p); });
        server->add_method("fail", [](const json&, control::Reply, const auto&) {
            throw rpc::RpcError(rpc::invalid_params, "params.location: expected a string");
        });
        server->add_method("need_location", [](const json& p, control::Reply r, const auto&) {
            r.result({{"location", rpc::require_string(p, "location")}});
        });
        server->add_method("unknown_loc", [](const json&, control::Reply, const auto&) {
            throw rpc::unknown_location_error("analytics");
        });
        server->add_method("boom", [](const json&, control::Reply, const auto&) {
            throw std::runtime_error("kaboom");
        });
        server->add_method("forget", [](const json&, control::Reply, const auto&) {});
        server->add_method("reply_then_throw", [](const json&, control::Reply r, const auto&) {
            r.result("first");
            throw rpc::RpcError(rpc::internal_error, "too late");
        });
        server->add_method("note", [this](const json& p, control::Reply r, const auto&) {
            ++note_calls;
            note_params = p;
            r.result("ignored"); // a notification's reply must not be sent
        });
        server->add_method("hold", [this](const json&, control::Reply r, const auto&) {
            held.push_back(std::move(r));
        });
        server->add_method("subscribe", [this](const json&, control::Reply r, const auto& c) {
            c->set_subscriber(true);
            conns_seen.push_back(c);
            r.result({{"subscribed", true}});
        });
        server->add_method("later", [this](const json& p, control::Reply r, const auto&) {
            auto* l = new Later;
            l->reply = std::move(r);
            uv_timer_init(&loop, &l->timer);
            l->timer.data = l;
            uv_timer_start(
                &l->timer,
                [](uv_timer_t* t) {
                    auto* lt = static_cast<Later*>(t->data);
                    lt->reply.result({{"late", true}});
                    uv_close(reinterpret_cast<uv_handle_t*>(t),
                             [](uv_handle_t* h) { delete static_cast<Later*>(h->data); });
                },
                p.value("ms", 10), 0);
        });
    }

    bool run_until(const std::function<bool()>& pred, std::vector<Client*> clients = {},
                   int timeout_ms = 5000) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        for (;;) {
            for (auto* c : clients)
                c->pump();
            if (pred()) return true;
            if (std::chrono::steady_clock::now() > deadline) return false;
            uv_run(&loop, UV_RUN_ONCE);
        }
    }

    json read(Client& c) {
        REQUIRE(run_until([&] { return c.has_line() || c.eof; }, {&c}));
        REQUIRE(c.has_line());
        return json::parse(c.take_line());
    }

    json call(Client& c, const json& id, const std::string& method, json params = json::object()) {
        c.send_json({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}});
        return read(c);
    }

    void wait_eof(Client& c) {
        REQUIRE(run_until([&] { return c.eof; }, {&c}));
    }
};

void check_error(const json& reply, int code, const json& id = nullptr) {
    INFO(reply.dump());
    REQUIRE(reply.contains("error"));
    CHECK(reply["jsonrpc"] == "2.0");
    CHECK(reply["error"]["code"] == code);
    CHECK(reply["error"]["message"].is_string());
    CHECK(reply["id"] == id);
    CHECK_FALSE(reply.contains("result"));
}

void check_pong(const json& reply, const json& id) {
    INFO(reply.dump());
    CHECK(reply["jsonrpc"] == "2.0");
    CHECK(reply["id"] == id);
    CHECK(reply["result"] == json{{"pong", true}});
}

} // namespace

// ---- rpc helpers -----------------------------------------------------------

TEST_CASE("rpc: message builders and lines", "[control][rpc]") {
    auto r = rpc::make_result(7, {{"a", 1}});
    CHECK(r == json{{"jsonrpc", "2.0"}, {"id", 7}, {"result", {{"a", 1}}}});
    auto e =
        rpc::make_error("x", {rpc::unknown_revision, "unknown revision: a-1", {{"id", "a-1"}}});
    CHECK(e["error"] ==
          json{{"code", -32002}, {"message", "unknown revision: a-1"}, {"data", {{"id", "a-1"}}}});
    auto e2 = rpc::make_error(nullptr, {rpc::internal_error, "x", nullptr});
    CHECK_FALSE(e2["error"].contains("data"));
    CHECK(e2["id"].is_null());
    auto n = rpc::make_notification("event", {{"k", 1}});
    CHECK_FALSE(n.contains("id"));
    CHECK(n["method"] == "event");
    auto q = rpc::make_request(1, "ping", json::object());
    CHECK(q["params"] == json::object());

    std::string line = rpc::to_line(json{{"text", std::string("bad \xff utf8")}});
    REQUIRE(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    CHECK(json::parse(line)["text"] == "bad \xEF\xBF\xBD utf8");

    CHECK(rpc::parse_error == -32700);
    CHECK(rpc::invalid_request == -32600);
    CHECK(rpc::method_not_found == -32601);
    CHECK(rpc::invalid_params == -32602);
    CHECK(rpc::internal_error == -32603);
    CHECK(rpc::unknown_location == -32001);
    CHECK(rpc::shutting_down == -32003);
    CHECK(rpc::too_many_connections == -32004);
    CHECK(rpc::unknown_location_error("a").error().data == json{{"location", "a"}});
    CHECK(rpc::shutting_down_error().error().code == -32003);
}

namespace {
std::string failure_message(const std::function<void()>& f) {
    try {
        f();
    } catch (const rpc::RpcError& e) {
        CHECK(e.error().code == rpc::invalid_params);
        return e.what();
    }
    FAIL("no rpc::RpcError thrown");
    return "";
}
} // namespace

TEST_CASE("rpc: param helpers name the path", "[control][rpc]") {
    json p = json::parse(R"({
        "location": "analytics", "n": 3, "f": 1.5, "whole": 100.0, "b": true, "nul": null,
        "deps": {"path": "/x", "sha256": 5},
        "env": {"A": "1", "B": 2},
        "args": ["a", "b", 3],
        "future_field": {"ignored": true}
    })");
    CHECK(rpc::require_string(p, "location") == "analytics");
    CHECK(failure_message([&] { rpc::require_string(p, "n"); }) ==
          "params.n: expected a string, got a number");
    CHECK(failure_message([&] { rpc::require_string(p, "missing"); }) ==
          "params.missing: missing (expected a string)");
    CHECK(failure_message([&] { rpc::require_string(p, "nul"); }) ==
          "params.nul: missing (expected a string)");
    CHECK_FALSE(rpc::optional_string(p, "missing"));
    CHECK_FALSE(rpc::optional_string(p, "nul"));
    CHECK(failure_message([&] { rpc::optional_string(p, "b"); }) ==
          "params.b: expected a string, got a boolean");

    const json& deps = rpc::require_object(p, "deps");
    CHECK(rpc::require_string(deps, "path", "params.deps") == "/x");
    CHECK(failure_message([&] { rpc::require_string(deps, "sha256", "params.deps"); }) ==
          "params.deps.sha256: expected a string, got a number");
    CHECK(rpc::join_path(rpc::join_path("params", "deps"), "sha256") == "params.deps.sha256");
    CHECK(failure_message([&] { rpc::require_object(p, "location"); }) ==
          "params.location: expected an object, got a string");
    CHECK(rpc::optional_object(p, "missing") == nullptr);
    CHECK(rpc::optional_object(p, "deps") == &p["deps"]);
    CHECK(failure_message([&] { rpc::optional_object(p, "args"); }) ==
          "params.args: expected an object, got an array");
    CHECK(failure_message([&] { rpc::require_string(json::array(), "x", "params.entry"); }) ==
          "params.entry: expected an object, got an array");

    CHECK(rpc::optional_bool(p, "b") == true);
    CHECK(failure_message([&] { rpc::optional_bool(p, "n"); }) ==
          "params.n: expected a boolean, got a number");
    CHECK(rpc::optional_number(p, "f") == 1.5);
    CHECK(rpc::optional_number(p, "n") == 3.0);
    CHECK_FALSE(rpc::optional_number(p, "missing"));
    CHECK(failure_message([&] { rpc::optional_number(p, "location"); }) ==
          "params.location: expected a number, got a string");
    CHECK(rpc::optional_integer(p, "n", 0, 10) == 3);
    CHECK(rpc::optional_integer(p, "whole", 0, 10000) == 100);
    CHECK(failure_message([&] { rpc::optional_integer(p, "f", 0, 10); }) ==
          "params.f: expected an integer, got a fraction");
    CHECK(failure_message([&] { rpc::optional_integer(p, "n", 5, 10); }) ==
          "params.n: must be between 5 and 10");
    CHECK(failure_message([&] {
              rpc::optional_integer(json{{"t", 1e300}}, "t", 0, 10);
          }) == "params.t: must be between 0 and 10");
    CHECK(failure_message([&] {
              rpc::optional_integer(json{{"t", -1}}, "t", 0, 10);
          }) == "params.t: must be between 0 and 10");

    CHECK(failure_message([&] { rpc::optional_string_map(p, "env"); }) ==
          "params.env.B: expected a string, got a number");
    auto env = rpc::optional_string_map(json{{"env", {{"A", "1"}, {"B", ""}}}}, "env");
    REQUIRE(env);
    CHECK(env->at("A") == "1");
    CHECK(env->at("B").empty());
    CHECK(failure_message([&] { rpc::optional_string_map(p, "args"); }) ==
          "params.args: expected an object of strings, got an array");

    CHECK(failure_message([&] { rpc::optional_string_array(p, "args", "params.entry"); }) ==
          "params.entry.args[2]: expected a string, got a number");
    auto args = rpc::optional_string_array(json{{"args", {"--x", "y"}}}, "args");
    REQUIRE(args);
    CHECK(*args == std::vector<std::string>{"--x", "y"});
    CHECK_FALSE(rpc::optional_string_array(p, "missing"));
    CHECK(failure_message([&] { rpc::optional_string_array(p, "location"); }) ==
          "params.location: expected an array of strings, got a string");
}

// ---- control server ------------------------------------------------------------

TEST_CASE("control: request round trip", "[control]") {
    Harness h;
    Client c(h.path);
    check_pong(h.call(c, 1, "ping"), 1);
    check_pong(h.call(c, "abc", "ping"), "abc");
    // params omitted and params null both mean {}.
    c.send(R"({"jsonrpc":"2.0","id":3,"method":"echo"})"
           "\n");
    CHECK(h.read(c)["result"] == json::object());
    c.send(R"({"jsonrpc":"2.0","id":4,"method":"echo","params":null})"
           "\n");
    CHECK(h.read(c)["result"] == json::object());
    // Unknown fields in the request are tolerated.
    c.send(R"({"jsonrpc":"2.0","id":5,"method":"echo","params":{"x":[1,2]},"extra":1})"
           "\n");
    CHECK(h.read(c)["result"] == json{{"x", {1, 2}}});
    CHECK(h.server->connections() == 1);
}

TEST_CASE("control: framing: CRLF, blank lines, batching and split writes", "[control]") {
    Harness h;
    Client c(h.path);
    c.send("\n\r\n   \n"
           R"({"jsonrpc":"2.0","id":1,"method":"ping"})"
           "\r\n"
           R"({"jsonrpc":"2.0","id":2,"method":"ping"})"
           "\n"
           R"({"jsonrpc":"2.0","id":3,"met)");
    check_pong(h.read(c), 1);
    check_pong(h.read(c), 2);
    // The rest of request 3 arrives after the server has seen the first part.
    REQUIRE(h.run_until([&] { return false; }, {&c}, 20) == false);
    CHECK_FALSE(c.has_line());
    c.send(R"(hod":"ping"})"
           "\n");
    check_pong(h.read(c), 3);
}

TEST_CASE("control: parse error keeps the connection usable", "[control]") {
    Harness h;
    Client c(h.path);
    c.send("{\"jsonrpc\":\n");
    auto e = h.read(c);
    check_error(e, rpc::parse_error);
    CHECK(e["error"]["message"].get<std::string>().find("parse error") != std::string::npos);
    // Invalid UTF-8 is a parse error too, and the reply is still valid JSON.
    c.send("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}\n");
    check_error(h.read(c), rpc::parse_error);
    check_pong(h.call(c, 2, "ping"), 2);
}

TEST_CASE("control: invalid requests get -32600", "[control]") {
    Harness h;
    Client c(h.path);
    struct Case {
        const char* line;
        json id;
        const char* message;
    };
    const Case cases[] = {
        {"42", nullptr, "request must be a JSON object"},
        {R"("ping")", nullptr, "request must be a JSON object"},
        {R"([{"jsonrpc":"2.0","id":1,"method":"ping"}])", nullptr,
         "batch requests are not supported"},
        {R"({"jsonrpc":"2.0","id":1})", 1, "method must be a string"},
        {R"({"jsonrpc":"2.0","method":7})", nullptr, "method must be a string"},
        {R"({"jsonrpc":"1.0","id":2,"method":"ping"})", 2, R"(jsonrpc must be "2.0")"},
        {R"({"id":3,"method":"ping"})", 3, R"(jsonrpc must be "2.0")"},
        {R"({"jsonrpc":2.0,"id":"s","method":"ping"})", "s", R"(jsonrpc must be "2.0")"},
        {R"({"jsonrpc":"2.0","id":true,"method":"ping"})", nullptr,
         "id must be a number or a string"},
        {R"({"jsonrpc":"2.0","id":null,"method":"ping"})", nullptr,
         "id must be a number or a string"},
        {R"({"jsonrpc":"2.0","id":{},"method":"ping"})", nullptr,
         "id must be a number or a string"},
    };
    for (const auto& k : cases) {
        INFO(k.line);
        c.send(std::string(k.line) + "\n");
        auto e = h.read(c);
        check_error(e, rpc::invalid_request, k.id);
        CHECK(e["error"]["message"] == k.message);
    }
    std::string deep = R"({"jsonrpc":"2.0","id":9,"method":"echo","params":{"x":)" +
                       std::string(100, '[') + std::string(100, ']') + "}}";
    c.send(deep + "\n");
    auto e = h.read(c);
    check_error(e, rpc::invalid_request);
    CHECK(e["error"]["message"] == "request nesting exceeds 64 levels");
    // Brackets inside strings do not count as nesting.
    c.send(R"({"jsonrpc":"2.0","id":10,"method":"echo","params":{"s":")" + std::string(100, '[') +
           "\\\"" + std::string(100, '{') + "\"}}\n");
    CHECK(h.read(c)["result"]["s"].get<std::string>().size() == 201);

    c.send(R"({"jsonrpc":"2.0","id":4,"method":"ping","params":[1]})"
           "\n");
    e = h.read(c);
    check_error(e, rpc::invalid_params, 4);
    CHECK(e["error"]["message"] == "params: expected an object, got array");
    check_pong(h.call(c, 5, "ping"), 5);
}

TEST_CASE("control: unknown method gets -32601 naming it", "[control]") {
    Harness h;
    Client c(h.path);
    auto e = h.call(c, 1, "no.such.method");
    check_error(e, rpc::method_not_found, 1);
    CHECK(e["error"]["message"].get<std::string>().find("no.such.method") != std::string::npos);
}

TEST_CASE("control: handler failures become error replies", "[control]") {
    Harness h;
    Client c(h.path);
    auto e = h.call(c, 1, "fail");
    check_error(e, rpc::invalid_params, 1);
    CHECK(e["error"]["message"] == "params.location: expected a string");

    e = h.call(c, 2, "need_location", {{"location", 5}});
    check_error(e, rpc::invalid_params, 2);
    CHECK(e["error"]["message"] == "params.location: expected a string, got a number");
    CHECK(h.call(c, 3, "need_location", {{"location", "a"}})["result"]["location"] == "a");

    e = h.call(c, 4, "unknown_loc");
    check_error(e, rpc::unknown_location, 4);
    CHECK(e["error"]["data"] == json{{"location", "analytics"}});

    e = h.call(c, 5, "boom");
    check_error(e, rpc::internal_error, 5);
    CHECK(e["error"]["message"] == "kaboom");

    e = h.call(c, 6, "forget");
    check_error(e, rpc::internal_error, 6);
    CHECK(e["error"]["message"].get<std::string>().find("forget") != std::string::npos);

    // An answer given before the throw stands, and nothing else is sent.
    CHECK(h.call(c, 7, "reply_then_throw")["result"] == "first");
    check_pong(h.call(c, 8, "ping"), 8);
}

TEST_CASE("control: notifications get no reply", "[control]") {
    Harness h;
    Client c(h.path);
    c.send(R"({"jsonrpc":"2.0","method":"note","params":{"x":1}})"
           "\n");
    c.send(R"({"jsonrpc":"2.0","method":"fail"})"
           "\n");
    c.send(R"({"jsonrpc":"2.0","method":"forget"})"
           "\n");
    c.send(R"({"jsonrpc":"2.0","method":"no.such.method"})"
           "\n");
    c.send(R"({"jsonrpc":"2.0","method":"ping","params":[1]})"
           "\n");
    // The first line back must be the answer to the request that follows.
    check_pong(h.call(c, 7, "ping"), 7);
    CHECK(h.note_calls == 1);
    CHECK(h.note_params == json{{"x", 1}});
    CHECK(c.in.empty());
}

TEST_CASE("control: over-long lines are refused once and skipped", "[control]") {
    control::Limits lim;
    lim.max_line = 64;
    Harness h(lim);
    Client c(h.path);
    const std::string too_long_msg = "request line exceeds 64 bytes";

    // In one write, followed by a valid request.
    c.send(R"({"jsonrpc":"2.0","id":1,"method":"echo","params":{"pad":")" + std::string(100, 'x') +
           "\"}}\n"
           R"({"jsonrpc":"2.0","id":2,"method":"ping"})"
           "\n");
    auto e = h.read(c);
    check_error(e, rpc::invalid_request);
    CHECK(e["error"]["message"] == too_long_msg);
    check_pong(h.read(c), 2);

    // Spread over several writes: still one error, and the request after works.
    c.send(std::string(50, 'y'));
    REQUIRE_FALSE(h.run_until([&] { return false; }, {&c}, 20));
    c.send(std::string(50, 'y'));
    REQUIRE_FALSE(h.run_until([&] { return false; }, {&c}, 20));
    c.send(std::string(5000, 'y'));
    REQUIRE_FALSE(h.run_until([&] { return false; }, {&c}, 20));
    c.send(std::string(50, 'y') + "\n"
                                  R"({"jsonrpc":"2.0","id":3,"method":"ping"})"
                                  "\n");
    e = h.read(c);
    check_error(e, rpc::invalid_request);
    CHECK(e["error"]["message"] == too_long_msg);
    check_pong(h.read(c), 3);

    // Exactly max_line bytes (plus "\r\n") is accepted.
    std::string exact = R"({"jsonrpc":"2.0","id":4,"method":"ping"})";
    exact.insert(1, 64 - exact.size(), ' ');
    REQUIRE(exact.size() == 64);
    c.send(exact + "\r\n");
    check_pong(h.read(c), 4);
    // One more byte is not.
    c.send(" " + exact + "\n");
    check_error(h.read(c), rpc::invalid_request);
    check_pong(h.call(c, 5, "ping"), 5);
}

TEST_CASE("control: async replies arrive later, in any order", "[control]") {
    Harness h;
    Client c(h.path);
    c.send_json({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "later"}, {"params", {{"ms", 30}}}});
    c.send_json({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "ping"}});
    check_pong(h.read(c), 2);
    auto r = h.read(c);
    CHECK(r["id"] == 1);
    CHECK(r["result"] == json{{"late", true}});
}

TEST_CASE("control: a held reply outlives its connection harmlessly", "[control]") {
    Harness h;
    {
        Client c(h.path);
        c.send(R"({"jsonrpc":"2.0","id":1,"method":"hold"})"
               "\n");
        REQUIRE(h.run_until([&] { return h.held.size() == 1; }, {&c}));
        CHECK(h.held[0].pending());
    }
    REQUIRE(h.run_until([&] { return h.server->connections() == 0; }));
    h.held[0].result({{"too", "late"}}); // no-op, must not crash
    CHECK_FALSE(h.held[0].pending());
    h.held.clear();

    // A held reply dropped unanswered sends -32603 while the connection lives.
    Client c(h.path);
    c.send(R"({"jsonrpc":"2.0","id":2,"method":"hold"})"
           "\n");
    REQUIRE(h.run_until([&] { return h.held.size() == 1; }, {&c}));
    h.held.clear();
    auto e = h.read(c);
    check_error(e, rpc::internal_error, 2);
    CHECK(e["error"]["message"].get<std::string>().find("hold") != std::string::npos);
}

TEST_CASE("control: peer EOF flushes queued replies, then closes", "[control]") {
    Harness h;
    Client c(h.path);
    // The last request lacks its '\n'; it still counts.
    c.send(R"({"jsonrpc":"2.0","id":1,"method":"ping"})"
           "\n"
           R"({"jsonrpc":"2.0","id":2,"method":"ping"})");
    REQUIRE(::shutdown(c.fd.get(), SHUT_WR) == 0);
    check_pong(h.read(c), 1);
    check_pong(h.read(c), 2);
    h.wait_eof(c);
    REQUIRE(h.run_until([&] { return h.server->connections() == 0; }));
}

TEST_CASE("control: connection limit", "[control]") {
    control::Limits lim;
    lim.max_connections = 2;
    Harness h(lim);
    auto a = std::make_unique<Client>(h.path);
    Client b(h.path);
    check_pong(h.call(*a, 1, "ping"), 1);
    check_pong(h.call(b, 1, "ping"), 1);
    CHECK(h.server->connections() == 2);

    Client over(h.path);
    auto e = h.read(over);
    check_error(e, rpc::too_many_connections);
    h.wait_eof(over);
    CHECK(h.server->connections() == 2);
    check_pong(h.call(*a, 2, "ping"), 2);
    check_pong(h.call(b, 2, "ping"), 2);

    a.reset();
    REQUIRE(h.run_until([&] { return h.server->connections() == 1; }));
    Client d(h.path);
    check_pong(h.call(d, 1, "ping"), 1);
}

TEST_CASE("control: idle timeout spares subscribers and pending requests", "[control]") {
    control::Limits lim;
    lim.idle_timeout_ms = 40;
    Harness h(lim);
    Client sub(h.path);
    CHECK(h.call(sub, 1, "subscribe")["result"]["subscribed"] == true);
    Client idle1(h.path);
    h.wait_eof(idle1);
    // Another full timeout after the first one closed: the subscriber has
    // now been idle for well over twice the limit.
    Client idle2(h.path);
    h.wait_eof(idle2);
    CHECK_FALSE(sub.eof);
    check_pong(h.call(sub, 2, "ping"), 2);

    // A request still being answered keeps its connection alive.
    Client slow(h.path);
    slow.send_json({{"jsonrpc", "2.0"}, {"id", 1}, {"method", "later"}, {"params", {{"ms", 150}}}});
    auto r = h.read(slow);
    CHECK(r["result"] == json{{"late", true}});
    // ... and afterwards the idle clock runs again.
    h.wait_eof(slow);

    // Clearing the subscription subjects the connection to the timeout again.
    REQUIRE(!h.conns_seen.empty());
    auto conn = h.conns_seen.front().lock();
    REQUIRE(conn);
    CHECK(conn->subscriber());
    conn->set_subscriber(false);
    h.wait_eof(sub);
    CHECK_FALSE(conn->open());
}

TEST_CASE("control: socket file mode, parent directory, stale and foreign files", "[control]") {
    mode_t old_umask = ::umask(077);
    Harness h({}, false);
    std::string nested = h.dir.path + "/a/b/control.sock";
    REQUIRE(h.server->listen_unix(nested) == "");
    ::umask(old_umask);
    struct stat st {};
    REQUIRE(::lstat(nested.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    REQUIRE(::stat((h.dir.path + "/a/b").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);
    REQUIRE(::stat((h.dir.path + "/a").c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0755);
    Client c(nested);
    check_pong(h.call(c, 1, "ping"), 1);

    // A second server must not steal a live socket.
    control::ControlServer other(&h.loop);
    std::string err = other.listen_unix(nested);
    CHECK(err.find("another process is listening") != std::string::npos);
    CHECK(err.find(nested) != std::string::npos);
    check_pong(h.call(c, 2, "ping"), 2);

    // Nor replace something that is not a socket.
    std::string file = h.dir.path + "/regular";
    std::ofstream(file) << "keep me";
    err = other.listen_unix(file);
    CHECK(err.find(file) != std::string::npos);
    CHECK(err.find("not a socket") != std::string::npos);
    std::ifstream in(file);
    std::string content;
    std::getline(in, content);
    CHECK(content == "keep me");

    std::string long_path = h.dir.path + "/" + std::string(120, 'p');
    err = other.listen_unix(long_path);
    CHECK(err.find("too long") != std::string::npos);

    // A socket file nobody listens on (a crashed hearth) is replaced.
    std::string stale = h.dir.path + "/stale.sock";
    {
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        auto addr = unix_addr(stale);
        mode_t saved = ::umask(022);
        int rc = ::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        ::umask(saved);
        REQUIRE(rc == 0);
    }
    REQUIRE(::lstat(stale.c_str(), &st) == 0);
    REQUIRE((st.st_mode & 07777) != 0600); // made under the default umask, unlike ours
    REQUIRE(other.listen_unix(stale) == "");
    REQUIRE(::lstat(stale.c_str(), &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    other.add_method("ping", [](const json&, control::Reply r, const auto&) {
        r.result({{"pong", true}});
    });
    Client s(stale);
    check_pong(h.call(s, 1, "ping"), 1);
    CHECK(other.listen_unix(stale).find("already listening") != std::string::npos);

    bool closed = false;
    other.close([&] { closed = true; });
    REQUIRE(h.run_until([&] { return closed; }, {&s}));
    CHECK(::lstat(stale.c_str(), &st) != 0); // unlinked
    h.wait_eof(s);
}

TEST_CASE("control: close() shuts everything and unlinks the socket", "[control]") {
    Harness h;
    Client c(h.path);
    check_pong(h.call(c, 1, "ping"), 1);
    c.send(R"({"jsonrpc":"2.0","id":2,"method":"hold"})"
           "\n");
    REQUIRE(h.run_until([&] { return h.held.size() == 1; }, {&c}));
    int calls = 0;
    h.server->close([&] { ++calls; });
    CHECK(h.server->connections() == 0);
    REQUIRE(h.run_until([&] { return calls == 1; }, {&c}));
    struct stat st {};
    CHECK(::lstat(h.path.c_str(), &st) != 0);
    h.wait_eof(c);
    h.held[0].result(1); // no-op after close
    CHECK(h.server->listen_unix(h.path).find("closed") != std::string::npos);
    // Closing again calls back at once: nothing is open any more.
    h.server->close([&] { ++calls; });
    CHECK(calls == 2);
}

TEST_CASE("control: a reader that never reads is dropped; others keep working", "[control]") {
    control::Limits lim;
    lim.max_pending_output = 64 * 1024;
    Harness h(lim);
    Client slow(h.path);
    Client other(h.path);
    CHECK(h.call(slow, 1, "subscribe")["result"]["subscribed"] == true);
    REQUIRE(h.conns_seen.size() == 1);
    std::weak_ptr<control::Connection> weak = h.conns_seen[0];
    auto conn = weak.lock();
    REQUIRE(conn);
    CHECK(conn->open());

    const json blob = {{"blob", std::string(4000, 'z')}};
    int sent = 0;
    bool dropped = false;
    // The client never reads; the kernel buffer fills, then the queue grows.
    for (int i = 0; i < 10000 && !dropped; ++i) {
        if (!conn->notify("event", blob)) {
            dropped = true;
            break;
        }
        ++sent;
        CHECK(conn->pending_output() <= lim.max_pending_output);
        if (i % 16 == 0) uv_run(&h.loop, UV_RUN_NOWAIT); // let the loop flush
    }
    CHECK(dropped);
    CHECK(sent > 10); // it was accepting output for a while
    CHECK_FALSE(conn->open());
    CHECK_FALSE(conn->notify("event", blob));
    conn.reset();
    REQUIRE(h.run_until([&] { return h.server->connections() == 1 && weak.expired(); }, {&other}));
    check_pong(h.call(other, 1, "ping"), 1);
    // The dropped client sees what was sent before the cut, then EOF.
    h.wait_eof(slow);
}

TEST_CASE("control: destroying an open server is safe once the loop runs on", "[control]") {
    ::signal(SIGPIPE, SIG_IGN);
    TempDir dir;
    std::string path = dir.path + "/control.sock";
    uv_loop_t loop{};
    REQUIRE(uv_loop_init(&loop) == 0);
    control::Reply held;
    auto server = std::make_unique<control::ControlServer>(&loop);
    server->add_method("hold",
                       [&](const json&, control::Reply r, const auto&) { held = std::move(r); });
    REQUIRE(server->listen_unix(path) == "");
    Client c(path);
    c.send(R"({"jsonrpc":"2.0","id":1,"method":"hold"})"
           "\n");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!held.pending() && std::chrono::steady_clock::now() < deadline)
        uv_run(&loop, UV_RUN_NOWAIT);
    REQUIRE(held.pending());
    server.reset();                // no close(): the internals must outlive their libuv handles
    uv_run(&loop, UV_RUN_DEFAULT); // returns once every handle is closed
    held.result(1);                // the connection is gone: no-op
    c.pump();
    CHECK(c.eof);
    CHECK(c.in.empty());
    struct stat st {};
    CHECK(::lstat(path.c_str(), &st) != 0);
    CHECK(uv_loop_close(&loop) == 0);
}

// hearthctl: argument parsing, output formatting, and the JSON-RPC Client
// against a small fake daemon run in a thread.

#include "ctl/client.hpp"
#include "ctl/ctl.hpp"
#include "util/fd.hpp"
#include "util/names.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

using hearth::CallError;
using hearth::Client;
using hearth::Fd;
using nlohmann::json;
namespace ctl = hearth::ctl;
using namespace std::chrono_literals;

namespace {

// The daemon side of a connection, driven by a test script in a thread.
// Never uses Catch2 macros (they are not thread-safe): scripts record what
// they saw and the test checks it after join.
class Peer {
public:
    explicit Peer(Fd fd) : fd_(std::move(fd)) {}

    // Next request line as JSON; null on EOF, timeout (5 s) or bad JSON.
    json read_request() {
        for (;;) {
            auto nl = buf_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                raw_lines.push_back(line);
                json j = json::parse(line, nullptr, false);
                return j.is_discarded() ? json() : j;
            }
            pollfd p{fd_.get(), POLLIN, 0};
            if (::poll(&p, 1, 5000) <= 0) return json();
            char chunk[4096];
            ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
            if (n <= 0) return json();
            buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }
    void send_raw(const std::string& s) {
        std::size_t off = 0;
        while (off < s.size()) {
            ssize_t n = ::send(fd_.get(), s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return;
            off += static_cast<std::size_t>(n);
        }
    }
    void send(const json& j) { send_raw(j.dump() + "\n"); }
    void reply(const json& req, const json& result) {
        send({{"jsonrpc", "2.0"}, {"id", req.value("id", json())}, {"result", result}});
    }
    void error(const json& req, int code, const std::string& message, json data = nullptr) {
        json e = {{"code", code}, {"message", message}};
        if (!data.is_null()) e["data"] = data;
        send({{"jsonrpc", "2.0"}, {"id", req.value("id", json())}, {"error", e}});
    }
    void notify(const std::string& method, const json& params) {
        send({{"jsonrpc", "2.0"}, {"method", method}, {"params", params}});
    }
    void close() { fd_.reset(); }

    std::vector<std::string> raw_lines;

private:
    Fd fd_;
    std::string buf_;
};

// A Client connected to a Peer running `script` in a thread (socketpair).
struct PairFixture {
    std::optional<Client> client;
    std::thread thread;

    explicit PairFixture(std::function<void(Peer&)> script) {
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
        client.emplace(Fd(sv[0]));
        thread = std::thread([script = std::move(script), fd = sv[1]]() mutable {
            Peer peer{Fd(fd)};
            script(peer);
        });
    }
    // Hanging up first lets a script blocked in read_request() finish.
    ~PairFixture() {
        client.reset();
        join();
    }
    void join() {
        if (thread.joinable()) thread.join();
    }
};

// A listening Unix socket in a fresh temp dir; accepts one connection and
// runs `script` on it in a thread.
struct ServerFixture {
    std::string dir, path;
    Fd listener;
    std::thread thread;

    explicit ServerFixture(std::function<void(Peer&)> script) {
        char tmpl[] = "/tmp/hearth-ctl-test-XXXXXX";
        if (!::mkdtemp(tmpl)) std::abort();
        dir = tmpl;
        path = dir + "/control.sock";
        listener.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
            ::listen(listener.get(), 4) != 0)
            std::abort();
        int lfd = listener.get();
        thread = std::thread([script = std::move(script), lfd]() mutable {
            pollfd p{lfd, POLLIN, 0};
            if (::poll(&p, 1, 5000) <= 0) return;
            Peer peer{Fd(::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC))};
            script(peer);
        });
    }
    ~ServerFixture() {
        if (thread.joinable()) thread.join();
        ::unlink(path.c_str());
        ::rmdir(dir.c_str());
    }
};

// Captures a FILE* stream into a string.
struct Capture {
    char* buf = nullptr;
    std::size_t size = 0;
    std::FILE* f = ::open_memstream(&buf, &size);
    ~Capture() {
        if (f) std::fclose(f);
        std::free(buf);
    }
    std::string str() {
        std::fflush(f);
        return std::string(buf, size);
    }
};

// `env_socket`: the value of HEARTH_SOCKET, or nullptr when it is unset.
ctl::ParseResult parse(std::vector<std::string> argv, const char* env_socket = nullptr) {
    hearth::cli::Env env;
    if (env_socket) env["HEARTH_SOCKET"] = env_socket;
    return ctl::parse_args(argv, env);
}

json revision(const std::string& id, const std::string& state) {
    return {{"id", id}, {"location", "analytics"}, {"state", state}, {"runtime", "native"}};
}

} // namespace

// ---------------------------------------------------------------------------
// Argument parsing

TEST_CASE("parse_args: a full deploy command line", "[ctl]") {
    auto r =
        parse({"--json",    "deploy", "analytics", "--deps",       "d.pex", "--source=/abs/s.pex",
               "--runtime", "pex",    "--module",  "app.main",     "--arg", "--x",
               "--arg=-v",  "--env",  "A=1",       "--env",        "B=x=y", "--env",
               "A=2",       "--cwd",  "/srv",      "--min-uptime", "0.5",   "--wait",
               "--timeout", "5"});
    REQUIRE(r.ok());
    const ctl::Args& a = r.args;
    CHECK(a.command == "deploy");
    CHECK(a.location == "analytics");
    CHECK(a.json);
    CHECK(a.wait);
    CHECK(a.deps == "d.pex");
    CHECK(a.source == "/abs/s.pex");
    CHECK(a.runtime == "pex");
    CHECK(a.module == "app.main");
    CHECK(a.args == std::vector<std::string>{"--x", "-v"});
    REQUIRE(a.env.size() == 3);
    CHECK(a.env[1] == std::make_pair(std::string("B"), std::string("x=y")));
    CHECK(a.cwd == "/srv");
    REQUIRE(a.min_uptime_s);
    CHECK(*a.min_uptime_s == Approx(0.5));
    CHECK(a.timeout_s == Approx(5));
    CHECK(a.socket == ctl::kDefaultSocket);
}

TEST_CASE("parse_args: socket resolution and global options after the command", "[ctl]") {
    CHECK(parse({"status"}).args.socket == "/run/hearth/control.sock");
    CHECK(parse({"status"}, "").args.socket == "/run/hearth/control.sock");
    CHECK(parse({"status"}, "/tmp/h.sock").args.socket == "/tmp/h.sock");
    CHECK(parse({"status", "--socket", "/x.sock"}, "/tmp/h.sock").args.socket == "/x.sock");
    // HEARTH_SOCKET is the only variable hearthctl reads.
    const hearth::cli::Env others = {{"HEARTH_JSON", "1"},
                                     {"HEARTH_TIMEOUT", "bogus"},
                                     {"HEARTH_STATE_DIR", "/s"},
                                     {"HEARTH_LOCATION", "x"}};
    auto o = ctl::parse_args({"status"}, others);
    REQUIRE(o.ok());
    CHECK_FALSE(o.args.json);
    CHECK(o.args.timeout_s == ctl::kDefaultTimeoutS);
    CHECK(o.args.socket == ctl::kDefaultSocket);

    auto r = parse({"status", "web", "--json", "--timeout=0"});
    REQUIRE(r.ok());
    CHECK(r.args.location == "web");
    CHECK(r.args.json);
    CHECK(r.args.timeout_s == 0);
    CHECK(r.args.timeout_s != ctl::kDefaultTimeoutS);

    auto l = parse({"logs", "web", "-f", "--tail", "0", "--id", "web-2"});
    REQUIRE(l.ok());
    CHECK(l.args.follow);
    CHECK(l.args.tail == 0);
    CHECK(l.args.id == "web-2");
    CHECK_FALSE(parse({"logs", "web"}).args.tail.has_value());

    // Everything after "--" is positional.
    auto e = parse({"events", "--", "web"});
    REQUIRE(e.ok());
    CHECK(e.args.location == "web");
}

TEST_CASE("parse_args: --help and --version win anywhere", "[ctl]") {
    CHECK(parse({"deploy", "--help"}).args.help);
    CHECK(parse({"-h"}).args.help);
    CHECK(parse({"--bogus", "-V"}).args.version);
    CHECK(parse({"--version"}).ok());
    // ...but not when they are the value of another option.
    auto r = parse({"deploy", "x", "--arg", "--help"});
    CHECK_FALSE(r.args.help);
    CHECK(r.error == "deploy: missing --deps FILE|URL");
}

TEST_CASE("parse_args: each usage error is one line naming the problem", "[ctl]") {
    struct Case {
        std::vector<std::string> argv;
        std::string error;
    };
    std::vector<Case> cases = {
        {{}, "missing command (see 'hearthctl --help')"},
        {{"frobnicate"}, "unknown command 'frobnicate' (see 'hearthctl --help')"},
        {{"status", "--bogus"}, "unknown option '--bogus'"},
        {{"status", "-x"}, "unknown option '-x'"},
        {{"status", "--socket"}, "option '--socket' requires a value"},
        {{"status", "--json=yes"}, "option '--json' does not take a value"},
        {{"status", "--wait"}, "option '--wait' is not valid for 'status'"},
        {{"stop", "web", "-f"}, "option '-f' is not valid for 'stop'"},
        {{"ping", "extra"}, "ping: unexpected argument 'extra'"},
        {{"status", "a", "b"}, "status: unexpected argument 'b'"},
        {{"logs"}, "logs: missing LOCATION"},
        {{"remove", "Web"}, "remove: invalid LOCATION 'Web': expected ^[a-z0-9][a-z0-9_.-]{0,62}$"},
        {{"status", "--timeout", "-1"},
         "--timeout: expected a non-negative number of seconds, got '-1'"},
        {{"status", "--timeout", "1e3"},
         "--timeout: expected a non-negative number of seconds, got '1e3'"},
        {{"status", "--socket="}, "--socket: empty value"},
        {{"logs", "web", "--tail", "10001"},
         "logs: --tail: expected an integer from 0 to 10000, got '10001'"},
        {{"deploy", "web", "--source", "s"}, "deploy: missing --deps FILE|URL"},
        {{"deploy", "web", "--deps", "d"}, "deploy: missing --source FILE|URL"},
        {{"deploy", "web", "--deps", "https://x/d.pex", "--source", "s"},
         "deploy: --deps is a URL, so --deps-sha256 is required"},
        {{"deploy", "web", "--deps", "d", "--source", "file:///s.pex"},
         "deploy: --source is a URL, so --source-sha256 is required"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--deps-sha256", "abc"},
         "deploy: --deps-sha256: expected 64 hex characters, got 'abc'"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--runtime", "docker"},
         "deploy: --runtime: expected 'native' or 'pex', got 'docker'"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--env", "=v"},
         "deploy: --env: expected K=V with a non-empty K, got '=v'"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--env", "NOVALUE"},
         "deploy: --env: expected K=V with a non-empty K, got 'NOVALUE'"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--arg", "x"},
         "deploy: --arg requires --module"},
        {{"deploy", "web", "--deps", "d", "--source", "s", "--min-uptime", "soon"},
         "deploy: --min-uptime: expected a non-negative number of seconds, got 'soon'"},
    };
    for (const auto& c : cases) {
        INFO("argv: " << json(c.argv).dump());
        auto r = parse(c.argv);
        CHECK_FALSE(r.ok());
        CHECK(r.error == c.error);
        CHECK(r.error.find('\n') == std::string::npos);
    }
    // A URL with its digest is fine; the digest is lowercased.
    auto ok = parse({"deploy", "web", "--deps", "https://x/d.pex", "--deps-sha256",
                     std::string(64, 'A'), "--source", "s"});
    REQUIRE(ok.ok());
    CHECK(ok.args.deps_sha256 == std::string(64, 'a'));
}

TEST_CASE("small parsers", "[ctl]") {
    CHECK(hearth::valid_location_name("analytics"));
    CHECK(hearth::valid_location_name("a"));
    CHECK(hearth::valid_location_name("0a_b.c-d"));
    CHECK(hearth::valid_location_name(std::string(63, 'a')));
    CHECK_FALSE(hearth::valid_location_name(std::string(64, 'a')));
    CHECK_FALSE(hearth::valid_location_name(""));
    CHECK_FALSE(hearth::valid_location_name("-a"));
    CHECK_FALSE(hearth::valid_location_name("a/b"));

    auto kv = ctl::parse_env_assignment("PATH=/bin:/usr/bin");
    REQUIRE(kv);
    CHECK(kv->first == "PATH");
    CHECK(kv->second == "/bin:/usr/bin");
    auto empty = ctl::parse_env_assignment("EMPTY=");
    REQUIRE(empty);
    CHECK(empty->second.empty());
    CHECK_FALSE(ctl::parse_env_assignment("=x"));
    CHECK_FALSE(ctl::parse_env_assignment("X"));

    CHECK(ctl::parse_seconds("5") == 5.0);
    CHECK(ctl::parse_seconds("0.25") == 0.25);
    CHECK(ctl::parse_seconds(".5") == 0.5);
    CHECK_FALSE(ctl::parse_seconds(""));
    CHECK_FALSE(ctl::parse_seconds("."));
    CHECK_FALSE(ctl::parse_seconds("inf"));
    CHECK_FALSE(ctl::parse_seconds("1.2.3"));
    CHECK_FALSE(ctl::parse_seconds("+1"));

    CHECK(ctl::looks_like_url("https://example.com/a.pex"));
    CHECK(ctl::looks_like_url("file:///tmp/a.pex"));
    CHECK_FALSE(ctl::looks_like_url("/tmp/a.pex"));
    CHECK_FALSE(ctl::looks_like_url("dir/x://y"));
    CHECK_FALSE(ctl::looks_like_url("://x"));
}

// ---------------------------------------------------------------------------
// Formatting

TEST_CASE("format_duration", "[ctl]") {
    CHECK(ctl::format_duration(-3) == "0s");
    CHECK(ctl::format_duration(0.9) == "0s");
    CHECK(ctl::format_duration(59.9) == "59s");
    CHECK(ctl::format_duration(65) == "1m05s");
    CHECK(ctl::format_duration(3600 + 180) == "1h03m");
    CHECK(ctl::format_duration(26 * 3600.0) == "1d02h");
    CHECK(ctl::format_duration(3 * 86400 + 4 * 3600 + 59) == "3d04h");
}

TEST_CASE("parse_timestamp", "[ctl]") {
    auto t = ctl::parse_timestamp("1970-01-02T00:00:01.500Z");
    REQUIRE(t);
    CHECK(*t == Approx(86401.5));
    CHECK(ctl::parse_timestamp("2026-11-22T10:00:00Z"));
    CHECK_FALSE(ctl::parse_timestamp("2026-11-22 10:00:00Z"));
    CHECK_FALSE(ctl::parse_timestamp("2026-11-22T10:00:00"));
    CHECK_FALSE(ctl::parse_timestamp("2026-13-22T10:00:00Z"));
    CHECK_FALSE(ctl::parse_timestamp("2026-11-22T10:00:00.Z"));
}

TEST_CASE("format_table aligns columns without trailing spaces", "[ctl]") {
    std::string t = ctl::format_table({{"A", "BB", "C"}, {"long-cell", "x", ""}, {"é", "yy", "z"}});
    CHECK(t == "A          BB  C\n"
               "long-cell  x\n"
               "é          yy  z\n");
    CHECK(ctl::format_table({}).empty());
}

TEST_CASE("status_rows builds the status table", "[ctl]") {
    const double now = 86400.0 + 3600 + 65; // 1970-01-02T01:01:05Z
    json status = {{"hearth", {{"version", "0.1.0"}}},
                   {"locations",
                    json::array({
                        {{"location", "analytics"},
                         {"active", "analytics-3"},
                         {"revisions", json::array({
                                           {{"id", "analytics-4"},
                                            {"state", "failed"},
                                            {"runtime", "pex"},
                                            {"state_since", "1970-01-02T01:00:00Z"},
                                            {"reason", "exited"},
                                            {"deps", {{"cache_hit", true}}},
                                            {"source", {{"cache_hit", false}}}},
                                           {{"id", "analytics-3"},
                                            {"state", "ready"},
                                            {"runtime", "native"},
                                            {"pid", 1234},
                                            {"state_since", "1970-01-02T01:00:00.000Z"},
                                            {"deps", {{"cache_hit", true}}},
                                            {"source", {{"cache_hit", true}}}},
                                       })}},
                        {{"location", "empty"}, {"active", nullptr}, {"revisions", json::array()}},
                    })}};
    auto rows = ctl::status_rows(status, now);
    REQUIRE(rows.size() == 4);
    CHECK(rows[0] == std::vector<std::string>{"LOCATION", "ID", "STATE", "PID", "UPTIME", "RUNTIME",
                                              "CACHE", "MEM", "RESTARTS", "REASON"});
    CHECK(rows[1] == std::vector<std::string>{"analytics", "analytics-4", "failed", "-", "-", "pex",
                                              "hit/miss", "-", "-", "exited"});
    CHECK(rows[2] == std::vector<std::string>{"analytics", "analytics-3*", "ready", "1234", "1m05s",
                                              "native", "hit/hit", "-", "-", "-"});
    CHECK(rows[3] ==
          std::vector<std::string>{"empty", "-", "-", "-", "-", "-", "-", "-", "-", "-"});
    CHECK(ctl::status_rows(json::object(), now).size() == 1);
}

TEST_CASE("format_event and format_log_line", "[ctl]") {
    json ev = {{"ts", "T"},
               {"location", "web"},
               {"id", "web-1"},
               {"previous", "loading"},
               {"state", "failed"},
               {"reason", "exited"},
               {"message", "exit code 3\nmore"}};
    CHECK(ctl::format_event(ev) == "T web web-1 loading -> failed exited: exit code 3 more");
    json first = {{"ts", "T"},
                  {"location", "web"},
                  {"id", "web-1"},
                  {"previous", nullptr},
                  {"state", "pending"}};
    CHECK(ctl::format_event(first) == "T web web-1 - -> pending");
    CHECK(ctl::format_log_line({{"ts", "T"}, {"stream", "stderr"}, {"text", "boom"}}) ==
          "T stderr boom");
}

TEST_CASE("deploy_params: paths, digests, entry, env", "[ctl]") {
    std::vector<std::string> hashed;
    ctl::Hasher fake = [&](const std::string& path,
                           std::string& err) -> std::optional<std::string> {
        hashed.push_back(path);
        if (path.find("missing") != std::string::npos) {
            err = "open " + path + ": No such file or directory";
            return std::nullopt;
        }
        return std::string(64, 'f');
    };
    auto r = parse({"deploy", "web", "--deps", "./d.pex", "--source", "file:///s.pex",
                    "--source-sha256", std::string(64, 'b'), "--module", "m", "--arg", "1", "--env",
                    "A=1", "--env", "A=2", "--min-uptime", "2"});
    REQUIRE(r.ok());
    auto built = ctl::deploy_params(r.args, nullptr, "/work", fake);
    REQUIRE(built.ok());
    const json* p = &*built.params;
    CHECK(hashed == std::vector<std::string>{"/work/d.pex"});
    CHECK((*p)["location"] == "web");
    CHECK((*p)["deps"] == json{{"path", "/work/d.pex"}, {"sha256", std::string(64, 'f')}});
    CHECK((*p)["source"] == json{{"url", "file:///s.pex"}, {"sha256", std::string(64, 'b')}});
    CHECK((*p)["entry"] == json{{"module", "m"}, {"args", {"1"}}});
    CHECK((*p)["env"] == json{{"A", "2"}});
    CHECK((*p)["min_uptime_s"] == 2.0);
    CHECK_FALSE(p->contains("runtime"));
    CHECK_FALSE(p->contains("cwd"));

    // A given digest for a local file skips hashing.
    hashed.clear();
    auto given = parse({"deploy", "web", "--deps", "/a/d.pex", "--deps-sha256",
                        std::string(64, 'c'), "--source", "/a/s.pex"});
    REQUIRE(given.ok());
    REQUIRE(ctl::deploy_params(given.args, nullptr, "/", fake).ok());
    CHECK(hashed == std::vector<std::string>{"/a/s.pex"});

    auto missing = parse({"deploy", "web", "--deps", "/missing.pex", "--source", "/s.pex"});
    REQUIRE(missing.ok());
    auto bad = ctl::deploy_params(missing.args, nullptr, "/", fake);
    CHECK_FALSE(bad.ok());
    CHECK(bad.status == ctl::exit_failed);
    CHECK(bad.error == "--deps: open /missing.pex: No such file or directory");
}

// ---------------------------------------------------------------------------
// Client

TEST_CASE("Client::call returns the matching reply and queues notifications", "[ctl]") {
    json first, second;
    PairFixture fx([&](Peer& peer) {
        first = peer.read_request();
        peer.notify("event", {{"id", "web-1"}, {"state", "fetching"}});
        peer.send({{"jsonrpc", "2.0"}, {"id", 999}, {"result", "stale"}}); // dropped
        peer.notify("log", {{"text", "hello"}});
        peer.reply(first, {{"pong", true}});
        second = peer.read_request();
        peer.reply(second, {{"version", "x"}});
    });
    auto r = fx.client->call("ping", json::object(), 5s);
    REQUIRE(r.ok());
    CHECK(r.value() == json{{"pong", true}});
    CHECK(fx.client->pending_notifications() == 2);
    auto r2 = fx.client->call("version", nullptr, 5s);
    REQUIRE(r2.ok());
    CHECK(r2.value()["version"] == "x");
    fx.join();

    CHECK(first["jsonrpc"] == "2.0");
    CHECK(first["method"] == "ping");
    CHECK(first["params"] == json::object());
    REQUIRE(first["id"].is_number_integer());
    REQUIRE(second["id"].is_number_integer());
    CHECK(second["id"] != first["id"]);
    CHECK_FALSE(second.contains("params"));

    auto n1 = fx.client->next_notification(1s);
    REQUIRE(n1.ok());
    CHECK(n1.value()["method"] == "event");
    CHECK(n1.value()["params"]["state"] == "fetching");
    auto n2 = fx.client->next_notification(1s);
    REQUIRE(n2.ok());
    CHECK(n2.value()["method"] == "log");
    // The peer has closed: no more notifications.
    auto n3 = fx.client->next_notification(1s);
    REQUIRE_FALSE(n3.ok());
    CHECK(n3.error().kind == CallError::Kind::closed);
}

TEST_CASE("Client::call turns error replies into rpc failures", "[ctl]") {
    PairFixture fx([&](Peer& peer) {
        json req = peer.read_request();
        peer.error(req, -32001, "unknown location 'web'", {{"location", "web"}});
        req = peer.read_request();
        // Errors the daemon cannot attribute carry id null.
        peer.send({{"jsonrpc", "2.0"},
                   {"id", nullptr},
                   {"error", {{"code", -32004}, {"message", "too many connections"}}}});
    });
    auto r = fx.client->call("status", {{"location", "web"}}, 5s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == CallError::Kind::rpc);
    CHECK(r.error().code == -32001);
    CHECK(r.error().message == "unknown location 'web'");
    CHECK(r.error().data == json{{"location", "web"}});
    CHECK(fx.client->usable());

    auto r2 = fx.client->call("ping", json::object(), 5s);
    REQUIRE_FALSE(r2.ok());
    CHECK(r2.error().kind == CallError::Kind::rpc);
    CHECK(r2.error().code == -32004);
}

TEST_CASE("Client: connection closed mid-call is an error value", "[ctl]") {
    PairFixture fx([&](Peer& peer) {
        peer.read_request();
        peer.send_raw("{\"jsonrpc\":\"2.0\",\"id\":1,");
        peer.close();
    });
    auto r = fx.client->call("ping", json::object(), 5s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == CallError::Kind::closed);
    CHECK(r.error().message == "connection closed by hearth mid-message");
    CHECK_FALSE(fx.client->usable());
    // Every later call fails at once with the same reason.
    auto again = fx.client->call("ping", json::object(), 5s);
    REQUIRE_FALSE(again.ok());
    CHECK(again.error().kind == CallError::Kind::closed);
}

TEST_CASE("Client: a timed-out call leaves the connection usable", "[ctl]") {
    std::atomic<bool> timed_out{false};
    PairFixture fx([&](Peer& peer) {
        json late = peer.read_request();
        while (!timed_out)
            std::this_thread::sleep_for(5ms);
        peer.reply(late, "late"); // must not be taken as the next call's reply
        json next = peer.read_request();
        peer.reply(next, "fresh");
        peer.read_request(); // stay connected until the client hangs up
    });
    auto r = fx.client->call("stop", {{"location", "web"}}, 50ms);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().kind == CallError::Kind::timeout);
    CHECK(fx.client->usable());
    timed_out = true;
    auto r2 = fx.client->call("ping", json::object(), 5s);
    REQUIRE(r2.ok());
    CHECK(r2.value() == "fresh");

    auto n = fx.client->next_notification(20ms);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().kind == CallError::Kind::timeout);
}

TEST_CASE("Client: protocol violations", "[ctl]") {
    SECTION("not JSON") {
        PairFixture fx([&](Peer& peer) {
            peer.read_request();
            peer.send_raw("hello\n");
        });
        auto r = fx.client->call("ping", json::object(), 5s);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == CallError::Kind::protocol);
        CHECK_FALSE(fx.client->usable());
    }
    SECTION("a line over the size bound") {
        PairFixture fx([&](Peer& peer) {
            peer.read_request();
            peer.send_raw(std::string(8192, 'x'));
        });
        fx.client->set_max_line(1024);
        auto r = fx.client->call("ping", json::object(), 5s);
        REQUIRE_FALSE(r.ok());
        CHECK(r.error().kind == CallError::Kind::protocol);
        CHECK(r.error().message == "hearth sent a line longer than 1024 bytes");
    }
}

TEST_CASE("Client: the interrupt flag ends a wait", "[ctl]") {
    PairFixture fx([&](Peer& peer) { peer.read_request(); });
    volatile std::sig_atomic_t flag = 1;
    fx.client->set_interrupt_flag(&flag);
    auto n = fx.client->next_notification(hearth::kNoTimeout);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().kind == CallError::Kind::interrupted);
    fx.client->set_interrupt_flag(nullptr);
    fx.client.reset(); // closes: the peer sees EOF
}

TEST_CASE("Client::connect", "[ctl]") {
    SECTION("to a listening socket") {
        std::string method;
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            method = req.value("method", "");
            peer.reply(req, {{"pong", true}});
        });
        auto c = Client::connect(srv.path, 2s);
        REQUIRE(c.ok());
        auto r = c.value().call("ping", json::object(), 5s);
        REQUIRE(r.ok());
        srv.thread.join();
        CHECK(method == "ping");
    }
    SECTION("nothing there") {
        auto c = Client::connect("/nonexistent/hearth/control.sock", 1s);
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().kind == CallError::Kind::connect);
        CHECK(c.error().message == "cannot connect to /nonexistent/hearth/control.sock: No such "
                                   "file or directory (is hearth running?)");
    }
    SECTION("path too long") {
        auto c = Client::connect("/" + std::string(200, 'a'), 1s);
        REQUIRE_FALSE(c.ok());
        CHECK(c.error().kind == CallError::Kind::connect);
        CHECK(c.error().message.rfind("socket path too long", 0) == 0);
    }
}

// ---------------------------------------------------------------------------
// Whole commands against a fake daemon

namespace {

struct RunResult {
    int status;
    std::string out, err;
};

RunResult run_ctl(const std::string& socket, std::vector<std::string> argv) {
    argv.push_back("--socket");
    argv.push_back(socket);
    argv.push_back("--timeout");
    argv.push_back("5");
    auto parsed = ctl::parse_args(argv);
    if (!parsed.ok()) return {ctl::exit_usage, "", parsed.error};
    Capture out, err;
    int status = ctl::run(parsed.args, out.f, err.f);
    return {status, out.str(), err.str()};
}

// Writes `content` to a temp file; removed on destruction.
struct TempFile {
    std::string path;
    explicit TempFile(const std::string& content) {
        char tmpl[] = "/tmp/hearth-ctl-pex-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) std::abort();
        if (::write(fd, content.data(), content.size()) != static_cast<ssize_t>(content.size()))
            std::abort();
        ::close(fd);
        path = tmpl;
    }
    ~TempFile() { ::unlink(path.c_str()); }
};

const std::string kShaAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

} // namespace

TEST_CASE("hearthctl deploy --wait subscribes first and follows to ready", "[ctl]") {
    TempFile deps("abc"), source("abc");
    std::vector<json> requests;
    ServerFixture srv([&](Peer& peer) {
        json sub = peer.read_request();
        requests.push_back(sub);
        peer.reply(sub, {{"subscribed", true}});
        json dep = peer.read_request();
        requests.push_back(dep);
        // Events may overtake the reply; the old revision's are ignored.
        peer.notify("event", {{"ts", "T1"},
                              {"location", "web"},
                              {"id", "web-2"},
                              {"previous", nullptr},
                              {"state", "pending"}});
        peer.reply(dep, {{"location", "web"}, {"id", "web-2"}});
        peer.notify("event", {{"ts", "T2"},
                              {"location", "web"},
                              {"id", "web-1"},
                              {"previous", "ready"},
                              {"state", "stopping"}});
        peer.notify("event", {{"ts", "T3"},
                              {"location", "web"},
                              {"id", "web-2"},
                              {"previous", "loading"},
                              {"state", "ready"},
                              {"revision", revision("web-2", "ready")}});
        peer.read_request(); // waits for the client to hang up
    });
    auto r = run_ctl(srv.path,
                     {"deploy", "web", "--deps", deps.path, "--source", source.path, "--wait"});
    srv.thread.join();
    CHECK(r.err.empty());
    CHECK(r.status == ctl::exit_ok);
    CHECK(r.out == "T1 web web-2 - -> pending\nT3 web web-2 loading -> ready\n");
    REQUIRE(requests.size() == 2);
    CHECK(requests[0]["method"] == "events.subscribe");
    CHECK(requests[0]["params"] == json{{"location", "web"}});
    CHECK(requests[1]["method"] == "deploy");
    CHECK(requests[1]["params"]["deps"] == json{{"path", deps.path}, {"sha256", kShaAbc}});
    CHECK(requests[1]["params"]["source"]["sha256"] == kShaAbc);
}

TEST_CASE("hearthctl deploy --wait reports a failure with exit 1", "[ctl]") {
    TempFile deps("abc"), source("abc");
    ServerFixture srv([&](Peer& peer) {
        json sub = peer.read_request();
        // First deploy of a location the daemon does not know yet.
        if (sub["params"].contains("location")) {
            peer.error(sub, -32001, "unknown location 'web'", {{"location", "web"}});
            sub = peer.read_request();
        }
        peer.reply(sub, {{"subscribed", true}});
        json dep = peer.read_request();
        peer.reply(dep, {{"location", "web"}, {"id", "web-1"}});
        json rev = revision("web-1", "failed");
        rev["exit_code"] = 3;
        rev["stderr_tail"] = {"Traceback (most recent call last):", "ValueError: boom"};
        peer.notify("event", {{"ts", "T"},
                              {"location", "web"},
                              {"id", "web-1"},
                              {"previous", "loading"},
                              {"state", "failed"},
                              {"reason", "exited"},
                              {"message", "process exited with code 3"},
                              {"revision", rev}});
        peer.read_request();
    });
    auto r = run_ctl(srv.path, {"deploy", "web", "--deps", deps.path, "--source", source.path,
                                "--wait", "--json"});
    srv.thread.join();
    CHECK(r.status == ctl::exit_failed);
    json line = json::parse(r.out, nullptr, false);
    REQUIRE(line.is_object());
    CHECK(line["state"] == "failed");
    CHECK(r.err == "hearthctl: deploy: web-1 failed: exited: process exited with code 3\n"
                   "  exit code: 3\n"
                   "  stderr (last 2 lines):\n"
                   "    Traceback (most recent call last):\n"
                   "    ValueError: boom\n");
}

TEST_CASE("hearthctl status, errors and lost connections", "[ctl]") {
    SECTION("table") {
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            json rev = revision("web-1", "failed");
            rev["reason"] = "no_interpreter";
            peer.reply(req, {{"hearth", json::object()},
                             {"locations",
                              {{{"location", "web"}, {"active", nullptr}, {"revisions", {rev}}}}}});
        });
        auto r = run_ctl(srv.path, {"status"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_ok);
        CHECK(r.out ==
              "LOCATION  ID     STATE   PID  UPTIME  RUNTIME  CACHE  MEM  RESTARTS  REASON\n"
              "web       web-1  failed  -    -       native   -      -    -         "
              "no_interpreter\n");
    }
    SECTION("daemon error: one line, exit 1") {
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            peer.error(req, -32001, "unknown location 'web'", {{"location", "web"}});
        });
        auto r = run_ctl(srv.path, {"status", "web"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_failed);
        CHECK(r.out.empty());
        CHECK(r.err == "hearthctl: status: unknown location 'web' (code -32001)\n");
    }
    SECTION("connection lost: exit 3") {
        ServerFixture srv([&](Peer& peer) {
            peer.read_request();
            peer.close();
        });
        auto r = run_ctl(srv.path, {"stop", "web"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_unavailable);
        CHECK(r.err == "hearthctl: stop: connection closed by hearth\n");
    }
    SECTION("cannot connect: exit 3") {
        auto r = run_ctl("/nonexistent/control.sock", {"ping"});
        CHECK(r.status == ctl::exit_unavailable);
        CHECK(r.err.rfind("hearthctl: ping: cannot connect to /nonexistent/control.sock", 0) == 0);
    }
}

TEST_CASE("hearthctl logs -f prints the tail then follows", "[ctl]") {
    json params;
    ServerFixture srv([&](Peer& peer) {
        json req = peer.read_request();
        params = req["params"];
        peer.reply(req, {{"id", "web-1"},
                         {"lines", {{{"ts", "T1"}, {"stream", "stdout"}, {"text", "one"}}}},
                         {"dropped", 2}});
        peer.notify("log", {{"location", "web"},
                            {"id", "web-1"},
                            {"ts", "T2"},
                            {"stream", "stderr"},
                            {"text", "two"}});
        peer.close(); // following ends when the connection does
    });
    auto r = run_ctl(srv.path, {"logs", "web", "-f", "--tail", "5"});
    srv.thread.join();
    CHECK(params == json{{"location", "web"}, {"tail", 5}, {"follow", true}});
    CHECK(r.out == "T1 stdout one\nT2 stderr two\n");
    CHECK(r.err == "hearthctl: logs: 2 older lines were dropped (log buffer overflow)\n"
                   "hearthctl: logs: connection closed by hearth\n");
    CHECK(r.status == ctl::exit_unavailable);
}

// ---------------------------------------------------------------------------
// Session 2: backoff, progress, --params, cache, status detail

TEST_CASE("hearthctl deploy --wait: backoff before ready is a failure", "[ctl]") {
    TempFile deps("abc"), source("abc");
    ServerFixture srv([&](Peer& peer) {
        json sub = peer.read_request();
        peer.reply(sub, {{"subscribed", true}});
        json dep = peer.read_request();
        peer.reply(dep, {{"location", "web"}, {"id", "web-2"}});
        peer.notify("event", {{"type", "progress"},
                              {"ts", "T1"},
                              {"location", "web"},
                              {"id", "web-2"},
                              {"artifact", "deps"},
                              {"fetched_bytes", 10},
                              {"total_bytes", nullptr},
                              {"state", "fetching"}});
        peer.notify("event", {{"type", "something-new"}, {"id", "web-2"}, {"state", "failed"}});
        peer.notify("event", {{"type", "state"},
                              {"ts", "T2"},
                              {"location", "web"},
                              {"id", "web-2"},
                              {"previous", "starting"},
                              {"state", "loading"}});
        json rev = revision("web-2", "backoff");
        rev["exit_code"] = 1;
        rev["restarts"] = 0;
        rev["next_attempt_at"] = "2999-01-01T00:00:00Z";
        peer.notify("event", {{"type", "state"},
                              {"ts", "T3"},
                              {"location", "web"},
                              {"id", "web-2"},
                              {"previous", "loading"},
                              {"state", "backoff"},
                              {"reason", "exited"},
                              {"message", "process exited with code 1"},
                              {"revision", rev}});
        peer.read_request();
    });
    auto r = run_ctl(srv.path,
                     {"deploy", "web", "--deps", deps.path, "--source", source.path, "--wait"});
    srv.thread.join();
    CHECK(r.status == ctl::exit_failed);
    // Progress goes to a terminal only; the unknown event type is skipped.
    CHECK(r.out == "T2 web web-2 starting -> loading\n"
                   "T3 web web-2 loading -> backoff exited: process exited with code 1\n");
    CHECK(r.err.rfind("hearthctl: deploy: web-2 is in backoff after exited: process exited with "
                      "code 1\n"
                      "  hearth will retry at 2999-01-01T00:00:00Z (in ",
                      0) == 0);
    CHECK(r.err.find("; hearthctl does not wait for restarts\n  exit code: 1\n") !=
          std::string::npos);
}

TEST_CASE("hearthctl deploy --params merges the file under the flags", "[ctl]") {
    TempFile deps("abc");
    TempFile params(json{
        {"location", "analytics"},
        {"deps", {{"path", deps.path}}},
        {"source", {{"url", "https://x/s.pex"}, {"sha256", std::string(64, 'b')}}},
        {"limits", {{"memory", "1Gi"}, {"pids", 10}}},
        {"restart",
         "never"}}.dump());
    std::vector<json> requests;
    ServerFixture srv([&](Peer& peer) {
        json sub = peer.read_request();
        requests.push_back(sub);
        peer.reply(sub, {{"subscribed", true}});
        json dep = peer.read_request();
        requests.push_back(dep);
        peer.reply(dep, {{"location", "analytics"}, {"id", "analytics-1"}});
        peer.notify("event", {{"type", "state"},
                              {"ts", "T"},
                              {"location", "analytics"},
                              {"id", "analytics-1"},
                              {"previous", "loading"},
                              {"state", "ready"}});
        peer.read_request();
    });
    auto r = run_ctl(srv.path, {"deploy", "--params", params.path, "--memory", "256Mi", "--cpus",
                                "1.5", "--stop-signal", "INT", "--wait"});
    srv.thread.join();
    CHECK(r.err.empty());
    CHECK(r.status == ctl::exit_ok);
    REQUIRE(requests.size() == 2);
    CHECK(requests[0]["params"] == json{{"location", "analytics"}});
    CHECK(requests[1]["params"] ==
          json{{"location", "analytics"},
               {"deps", {{"path", deps.path}, {"sha256", kShaAbc}}},
               {"source", {{"url", "https://x/s.pex"}, {"sha256", std::string(64, 'b')}}},
               {"limits", {{"memory", "256Mi"}, {"pids", 10}, {"cpus", 1.5}}},
               {"restart", "never"},
               {"stop", {{"signal", "INT"}}}});
}

TEST_CASE("hearthctl deploy --params: bad files are usage errors before connecting", "[ctl]") {
    // The socket does not exist: reaching connect() would be exit 3.
    auto missing =
        run_ctl("/nonexistent/control.sock", {"deploy", "--params", "/nonexistent/params.json"});
    CHECK(missing.status == ctl::exit_usage);
    CHECK(missing.err ==
          "hearthctl: deploy: --params: cannot read /nonexistent/params.json: No such file or "
          "directory\n");

    TempFile array("[1]");
    auto not_object = run_ctl("/nonexistent/control.sock", {"deploy", "--params", array.path});
    CHECK(not_object.status == ctl::exit_usage);
    CHECK(not_object.err == "hearthctl: deploy: --params: " + array.path +
                                " must hold a JSON object of deploy params, not an array\n");

    TempFile no_source(
        json{{"location", "web"}, {"deps", {{"url", "https://x/d"}, {"sha256", kShaAbc}}}}.dump());
    auto incomplete = run_ctl("/nonexistent/control.sock", {"deploy", "--params", no_source.path});
    CHECK(incomplete.status == ctl::exit_usage);
    CHECK(incomplete.err ==
          "hearthctl: deploy: missing --source FILE|URL (or \"source\" in --params)\n");
}

TEST_CASE("hearthctl cache ls and cache gc", "[ctl]") {
    SECTION("ls") {
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            peer.reply(req, {{"budget_bytes", 1073741824},
                             {"used_bytes", 2097152},
                             {"entries",
                              {{{"kind", "blob"},
                                {"sha256", std::string(64, 'e')},
                                {"bytes", 2097152},
                                {"last_used", "bogus"},
                                {"pinned_by", {"web-1"}}}}}});
        });
        auto r = run_ctl(srv.path, {"cache", "ls"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_ok);
        CHECK(r.out == "KIND  SHA256        SIZE  LAST-USED  PINNED-BY\n"
                       "blob  eeeeeeeeeeee  2MiB  -          web-1\n"
                       "used 2 MiB of budget 1 GiB (1 entry, 2 MiB pinned)\n");
    }
    SECTION("gc --target, --json prints the raw result") {
        json seen;
        json result = {{"evicted", json::array()}, {"freed_bytes", 0}, {"used_bytes", 5}};
        ServerFixture srv([&](Peer& peer) {
            seen = peer.read_request();
            peer.reply(seen, result);
        });
        auto r = run_ctl(srv.path, {"cache", "gc", "--target", "1Mi", "--json"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_ok);
        CHECK(seen["method"] == "cache.gc");
        CHECK(seen["params"] == json{{"target_bytes", 1048576}});
        CHECK(json::parse(r.out) == result);
    }
    SECTION("gc without --target sends no target") {
        json seen;
        ServerFixture srv([&](Peer& peer) {
            seen = peer.read_request();
            peer.reply(seen,
                       {{"evicted",
                         {{{"kind", "tree"}, {"sha256", std::string(64, 'a')}, {"bytes", 1024}}}},
                        {"freed_bytes", 1024},
                        {"used_bytes", 0}});
        });
        auto r = run_ctl(srv.path, {"cache", "gc"});
        srv.thread.join();
        CHECK(seen["params"] == json::object());
        CHECK(r.out == "evicted tree aaaaaaaaaaaa 1 KiB\nfreed 1 KiB; used now 0 B\n");
    }
}

TEST_CASE("hearthctl events prints progress lines; status LOCATION adds details", "[ctl]") {
    SECTION("events") {
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            peer.reply(req, {{"subscribed", true}});
            peer.notify("event", {{"type", "progress"},
                                  {"ts", "T"},
                                  {"location", "web"},
                                  {"id", "web-1"},
                                  {"artifact", "source"},
                                  {"fetched_bytes", 512},
                                  {"total_bytes", 2048},
                                  {"state", "fetching"}});
            peer.notify("event", {{"type", "mystery"}});
            peer.close();
        });
        auto r = run_ctl(srv.path, {"events"});
        srv.thread.join();
        CHECK(r.out == "T web web-1 progress source 512 B/2 KiB (25%)\n- - - mystery\n");
        CHECK(r.status == ctl::exit_unavailable);
    }
    SECTION("status web") {
        ServerFixture srv([&](Peer& peer) {
            json req = peer.read_request();
            json rev = revision("web-1", "ready");
            rev["restarts"] = 0;
            rev["limits"] = {{"memory", 1048576}};
            rev["cgroup"] = {{"driver", "v2"},
                             {"enforcement", "enforced"},
                             {"path", "/sys/fs/cgroup/h/web-1"},
                             {"memory_current", 524288}};
            peer.reply(req, {{"hearth", json::object()},
                             {"locations",
                              {{{"location", "web"}, {"active", "web-1"}, {"revisions", {rev}}}}}});
        });
        auto r = run_ctl(srv.path, {"status", "web"});
        srv.thread.join();
        CHECK(r.status == ctl::exit_ok);
        CHECK(
            r.out ==
            "LOCATION  ID      STATE  PID  UPTIME  RUNTIME  CACHE  MEM          RESTARTS  REASON\n"
            "web       web-1*  ready  -    -       native   -      512KiB/1MiB  0         -\n"
            "\n"
            "web-1 (active):\n"
            "  state     ready\n"
            "  cgroup    v2, enforced, /sys/fs/cgroup/h/web-1\n"
            "  limits    memory 1 MiB\n"
            "  usage     memory 512 KiB\n"
            "  restarts  0\n");
    }
}

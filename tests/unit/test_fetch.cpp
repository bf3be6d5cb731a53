#include "store/fetch.hpp"
#include "store/sha256.hpp"
#include "store/store.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <netinet/in.h>
#include <optional>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <string>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

using namespace hearth;
using namespace std::chrono_literals;

namespace {

// A loopback HTTP server in a child Python process. Paths (any query string
// is ignored, so tests can carry fake credentials in it):
//   /bytes/N                 200, Content-Length N, pattern bytes
//   /nolength/N              200, no Content-Length, body ends at close
//   /status/C                status C with a small body
//   /flaky/KEY/F/N           500 for the first F requests of KEY, then /bytes/N
//   /truncate/KEY/F/N        first F requests of KEY send half the body and close
//   /stall                   headers and 10 body bytes, then nothing
//   /silent                  reads the request, never answers
//   /slow/N                  N bytes, 1000 every 20 ms
//   /redirect/K/N[/LOC]      K > 0: 302 to /redirect/K-1/N (plus ?sig=topsecretvalue)
//                            K = 0: /bytes/N, or /status/404 if LOC is "missing"
//   /huge                    Content-Length 10^12, no body
//   /hits/KEY                body: how many requests KEY got so far
constexpr const char* server_script = R"PY(
import http.server, socketserver, sys, threading, time

hits = {}
lock = threading.Lock()

def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def count(self, key):
        with lock:
            hits[key] = hits.get(key, 0) + 1
            return hits[key]
    def body(self, code, data, length=True, extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        if length:
            self.send_header("Content-Length", str(len(data)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        p = path.strip("/").split("/")
        if p[0] != "hits":
            self.count(path)
        if p[0] == "bytes":
            self.body(200, pattern(int(p[1])))
        elif p[0] == "nolength":
            self.body(200, pattern(int(p[1])), length=False)
        elif p[0] == "status":
            self.body(int(p[1]), b"error body\n")
        elif p[0] == "flaky":
            key = "flaky/" + p[1]
            if self.count(key) <= int(p[2]):
                self.body(500, b"try again\n")
            else:
                self.body(200, pattern(int(p[3])))
        elif p[0] == "truncate":
            key = "truncate/" + p[1]
            data = pattern(int(p[3]))
            if self.count(key) <= int(p[2]):
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
            else:
                self.body(200, data)
        elif p[0] == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(pattern(10))
            self.wfile.flush()
            time.sleep(60)
        elif p[0] == "silent":
            time.sleep(60)
        elif p[0] == "slow":
            n = int(p[1])
            data = pattern(n)
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for i in range(0, n, 1000):
                self.wfile.write(data[i : i + 1000])
                self.wfile.flush()
                time.sleep(0.02)
        elif p[0] == "redirect":
            k, n = int(p[1]), int(p[2])
            tail = "/" + p[3] if len(p) > 3 else ""
            if k > 0:
                loc = "/redirect/%d/%d%s?sig=topsecretvalue" % (k - 1, n, tail)
                self.body(302, b"", extra=[("Location", loc)])
            elif tail == "/missing":
                self.body(404, b"gone\n")
            else:
                self.body(200, pattern(n))
        elif p[0] == "huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.flush()
            time.sleep(5)
        elif p[0] == "hits":
            with lock:
                n = hits.get("/" + "/".join(p[1:]), 0) + hits.get("/".join(p[1:]), 0)
            self.body(200, str(n).encode())
        else:
            self.body(400, b"unknown\n")

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    def handle_error(self, request, client_address):
        pass  # clients hanging up mid-body is what several tests do

srv = S(("127.0.0.1", 0), H)
print("PORT", srv.server_address[1], flush=True)
srv.serve_forever()
)PY";

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>((i * 7 + 3) % 251);
    return s;
}

class TestServer {
public:
    TestServer() {
        int out[2];
        REQUIRE(::pipe(out) == 0);
        pid_t parent = ::getpid();
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) ::_exit(1);
            ::dup2(out[1], 1);
            ::close(out[0]);
            ::close(out[1]);
            ::execlp("python3", "python3", "-c", server_script, static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(out[1]);
        FILE* f = ::fdopen(out[0], "r");
        REQUIRE(f != nullptr);
        char line[64] = {};
        bool got = std::fgets(line, sizeof line, f) != nullptr;
        std::fclose(f);
        REQUIRE(got);
        REQUIRE(std::sscanf(line, "PORT %d", &port_) == 1);
    }
    ~TestServer() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    TestServer(const TestServer&) = delete;
    TestServer& operator=(const TestServer&) = delete;

    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    int port() const { return port_; }

private:
    pid_t pid_ = -1;
    int port_ = 0;
};

struct MemorySink : FetchSink {
    std::string data;
    int resets = 0;
    int writes = 0;
    bool refuse = false;
    std::function<void()> on_write;
    bool write(const void* p, std::size_t n) override {
        if (refuse) return false;
        ++writes;
        data.append(static_cast<const char*>(p), n);
        if (on_write) on_write();
        return true;
    }
    bool reset() override {
        ++resets;
        data.clear();
        return true;
    }
    std::string error() const override { return refuse ? "disk full (test)" : ""; }
};

// Options that keep failing tests quick.
FetchOptions quick() {
    FetchOptions o;
    o.connect_timeout = 2s;
    o.stall_timeout = 3s;
    o.retry_delay = 20ms;
    o.retry_delay_max = 100ms;
    o.max_attempts = 3;
    return o;
}

struct Harness {
    uv_loop_t loop{};
    std::unique_ptr<Fetcher> fetcher;

    Harness() {
        // Tests talk to 127.0.0.1 only; a proxy from the environment would
        // send them elsewhere.
        for (const char* v :
             {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
            ::unsetenv(v);
        REQUIRE(uv_loop_init(&loop) == 0);
        fetcher = std::make_unique<Fetcher>(&loop);
    }
    ~Harness() {
        fetcher.reset();
        uv_run(&loop, UV_RUN_DEFAULT);    // close callbacks of polls and timers
        CHECK(uv_loop_close(&loop) == 0); // every handle was closed
    }

    // Runs the loop until `pred` holds; false after `limit`.
    bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 20s) {
        uv_timer_t guard{};
        uv_timer_init(&loop, &guard);
        uv_timer_start(
            &guard, [](uv_timer_t*) {}, 5, 5); // wakes UV_RUN_ONCE
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!pred() && std::chrono::steady_clock::now() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
        uv_close(reinterpret_cast<uv_handle_t*>(&guard), nullptr);
        uv_run(&loop, UV_RUN_NOWAIT);
        return pred();
    }

    FetchResult fetch(const std::string& url, const FetchOptions& o,
                      std::shared_ptr<FetchSink> sink, FetchProgressFn progress = {}) {
        std::optional<FetchResult> r;
        int calls = 0;
        fetcher->start(url, o, std::move(sink), std::move(progress), [&](const FetchResult& res) {
            ++calls;
            r = res;
        });
        REQUIRE(run_until([&] { return r.has_value(); }));
        CHECK(calls == 1);
        return *r;
    }

    std::string hits(const TestServer& s, const std::string& key) {
        auto sink = std::make_shared<MemorySink>();
        auto r = fetch(s.url("/hits/" + key), quick(), sink);
        REQUIRE(r.ok());
        return sink->data;
    }
};

// Captures hearth's log output for the lifetime of the object.
struct LogCapture {
    std::ostringstream out;
    std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
    LogCapture() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
        auto logger = std::make_shared<spdlog::logger>("fetch-test", sink);
        logger->set_level(spdlog::level::trace);
        spdlog::set_default_logger(logger);
    }
    ~LogCapture() { spdlog::set_default_logger(previous); }
    std::string text() const { return out.str(); }
};

void check_no_secret(const std::string& s) {
    CHECK(s.find("secret") == std::string::npos);
    CHECK(s.find("Signature") == std::string::npos);
    CHECK(s.find("topsecretvalue") == std::string::npos);
}

void check_no_secret(const FetchResult& r) {
    INFO(r.message);
    check_no_secret(r.message);
    check_no_secret(r.url);
    check_no_secret(r.effective_url);
}

const std::string secret_query = "?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=secret";

} // namespace

TEST_CASE("redact_url drops query, fragment and userinfo", "[fetch]") {
    CHECK(redact_url("https://bucket.s3.amazonaws.com/a/b.pex?X-Amz-Signature=secret") ==
          "https://bucket.s3.amazonaws.com/a/b.pex");
    CHECK(redact_url("https://user:pw@host:8443/p?q=1#frag") == "https://host:8443/p");
    CHECK(redact_url("http://host/p#frag") == "http://host/p");
    CHECK(redact_url("http://host?x=1") == "http://host");
    CHECK(redact_url("http://host") == "http://host");
    CHECK(redact_url("http://[::1]:80/x?y") == "http://[::1]:80/x");
    // An unescaped '?' in a password must not leave half of it behind.
    CHECK(redact_url("http://user:pa?ss@host/x") == "http://host/x");
    CHECK(redact_url("http://host/a@b/c?d") == "http://host/a@b/c");
    CHECK(redact_url("not a url?token=secret") == "not a url");
    CHECK(redact_url("") == "");
    CHECK(std::string(fetch_error_kind_name(FetchErrorKind::too_large)) == "too_large");
}

TEST_CASE("fetch delivers the exact bytes and reports progress", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    std::vector<FetchProgress> progress;
    auto o = quick();
    o.progress_interval = 0ms;
    auto r = h.fetch(server.url("/bytes/300000" + secret_query), o, sink,
                     [&](const FetchProgress& p) { progress.push_back(p); });
    INFO(r.message);
    REQUIRE(r.ok());
    CHECK(r.message.empty());
    CHECK(r.http_status == 200);
    CHECK(r.attempts == 1);
    CHECK(r.bytes == 300000);
    CHECK(r.url == server.url("/bytes/300000"));
    CHECK(sink->resets == 0);
    CHECK(sink->data == pattern(300000));
    REQUIRE(!progress.empty());
    std::uint64_t last = 0;
    for (const auto& p : progress) {
        CHECK(p.total_known);
        CHECK(p.total == 300000);
        CHECK(p.bytes >= last);
        CHECK(p.attempt == 1);
        last = p.bytes;
    }
    CHECK(last == 300000);
    CHECK(h.fetcher->in_flight() == 0);
}

TEST_CASE("fetch rate-limits progress callbacks", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    int calls = 0;
    auto o = quick();
    o.progress_interval = 200ms;
    auto start = std::chrono::steady_clock::now();
    auto r = h.fetch(server.url("/slow/30000"), o, sink, [&](const FetchProgress&) { ++calls; });
    auto elapsed = std::chrono::steady_clock::now() - start;
    REQUIRE(r.ok());
    CHECK(sink->writes >= 10); // 30 chunks 20 ms apart: many writes...
    CHECK(calls >= 1);         // ...but at most one progress call per 200 ms
    CHECK(calls <= 1 + elapsed / 200ms);
}

TEST_CASE("fetch does not retry a 404 and names status and URL without the query", "[fetch]") {
    TestServer server;
    Harness h;
    LogCapture logs;
    auto sink = std::make_shared<MemorySink>();
    auto r = h.fetch(server.url("/status/404" + secret_query), quick(), sink);
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::http_status);
    CHECK(r.http_status == 404);
    CHECK(r.attempts == 1);
    CHECK(r.message.find("HTTP 404") != std::string::npos);
    CHECK(r.message.find(server.url("/status/404")) != std::string::npos);
    CHECK(r.message.find("1 attempt") != std::string::npos);
    CHECK(r.message.find('?') == std::string::npos);
    check_no_secret(r);
    CHECK(sink->data.empty()); // an error body never reaches the sink
    CHECK(h.hits(server, "status/404") == "1");
    check_no_secret(logs.text());
}

TEST_CASE("fetch retries 5xx and succeeds", "[fetch]") {
    TestServer server;
    Harness h;
    LogCapture logs;
    auto sink = std::make_shared<MemorySink>();
    auto o = quick();
    o.max_attempts = 4;
    auto r = h.fetch(server.url("/flaky/a/2/5000" + secret_query), o, sink);
    INFO(r.message);
    REQUIRE(r.ok());
    CHECK(r.attempts == 3);
    CHECK(sink->resets == 2);
    CHECK(sink->data == pattern(5000));
    CHECK(h.hits(server, "flaky/a") == "3");
    // The retries were logged, with the redacted URL only.
    CHECK(logs.text().find("will retry") != std::string::npos);
    CHECK(logs.text().find(server.url("/flaky/a/2/5000")) != std::string::npos);
    check_no_secret(logs.text());
}

TEST_CASE("fetch gives up on 5xx after max_attempts with backoff", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    auto o = quick();
    o.max_attempts = 3;
    o.retry_delay = 100ms;
    o.retry_delay_max = 1s;
    auto start = std::chrono::steady_clock::now();
    auto r = h.fetch(server.url("/flaky/b/100/10" + secret_query), o, sink);
    auto elapsed = std::chrono::steady_clock::now() - start;
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::http_status);
    CHECK(r.http_status == 500);
    CHECK(r.attempts == 3);
    CHECK(r.message.find("HTTP 500") != std::string::npos);
    CHECK(r.message.find("3 attempts") != std::string::npos);
    check_no_secret(r);
    CHECK(elapsed >= 300ms); // 100 ms + 200 ms of backoff
    CHECK(h.hits(server, "flaky/b") == "3");
}

TEST_CASE("fetch retries a truncated body into a fresh blob", "[fetch]") {
    TestServer server;
    Harness h;
    char tmpl[] = "/tmp/hearth-fetch-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl;
    {
        Store store(dir, StoreOptions{false});
        REQUIRE(store.open().ok());
        auto sink = std::make_shared<BlobSink>(store);
        REQUIRE(sink->writer().ok());
        auto r = h.fetch(server.url("/truncate/c/1/200000" + secret_query), quick(), sink);
        INFO(r.message);
        REQUIRE(r.ok());
        CHECK(r.attempts == 2);
        CHECK(sink->writer().size() == 200000);
        Sha256 hash;
        hash.update(pattern(200000));
        std::string hex = hash.finish_hex();
        auto c = sink->writer().commit(hex, r.url);
        INFO(c.error);
        REQUIRE(c.ok());
        std::ifstream f(store.blob_path(hex), std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        CHECK(ss.str() == pattern(200000));
        // The first attempt's temp file is gone: only the blob remains.
        int temps = 0;
        for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir + "/tmp"))
            ++temps;
        CHECK(temps == 0);
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("fetch times out a stalled body within bounds", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    auto o = quick();
    o.stall_timeout = 300ms;
    o.max_attempts = 1;
    auto start = std::chrono::steady_clock::now();
    auto r = h.fetch(server.url("/stall" + secret_query), o, sink);
    auto elapsed = std::chrono::steady_clock::now() - start;
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::timeout);
    CHECK(r.attempts == 1);
    CHECK(r.message.find("no data received") != std::string::npos);
    CHECK(r.message.find(server.url("/stall")) != std::string::npos);
    check_no_secret(r);
    CHECK(sink->data == pattern(10));
    CHECK(elapsed >= 280ms);
    CHECK(elapsed < 3s);
}

TEST_CASE("fetch retries a server that never answers", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    auto o = quick();
    o.stall_timeout = 200ms;
    o.max_attempts = 2;
    o.retry_delay = 10ms;
    auto start = std::chrono::steady_clock::now();
    auto r = h.fetch(server.url("/silent"), o, sink);
    auto elapsed = std::chrono::steady_clock::now() - start;
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::timeout);
    CHECK(r.attempts == 2);
    CHECK(r.http_status == 0);
    CHECK(elapsed >= 400ms);
    CHECK(elapsed < 4s);
    CHECK(h.hits(server, "silent") == "2");
}

TEST_CASE("fetch follows redirects and redacts where they lead", "[fetch]") {
    TestServer server;
    Harness h;
    LogCapture logs;
    {
        auto sink = std::make_shared<MemorySink>();
        auto r = h.fetch(server.url("/redirect/2/1000" + secret_query), quick(), sink);
        INFO(r.message);
        REQUIRE(r.ok());
        CHECK(sink->data == pattern(1000));
        CHECK(r.effective_url == server.url("/redirect/0/1000"));
        check_no_secret(r);
    }
    {
        auto sink = std::make_shared<MemorySink>();
        auto r = h.fetch(server.url("/redirect/1/10/missing" + secret_query), quick(), sink);
        INFO(r.message);
        CHECK(r.kind == FetchErrorKind::http_status);
        CHECK(r.http_status == 404);
        CHECK(r.attempts == 1);
        CHECK(r.message.find("from " + server.url("/redirect/0/10/missing")) != std::string::npos);
        check_no_secret(r);
    }
    {
        auto sink = std::make_shared<MemorySink>();
        auto o = quick();
        o.max_redirects = 5;
        auto r = h.fetch(server.url("/redirect/6/10" + secret_query), o, sink);
        INFO(r.message);
        CHECK(r.kind == FetchErrorKind::http_status);
        CHECK(r.attempts == 1);
        CHECK(r.message.find("edirect") != std::string::npos);
        check_no_secret(r);
        CHECK(h.hits(server, "redirect/1/10") == "1"); // the 5th hop, refused
        CHECK(h.hits(server, "redirect/0/10") == "0");
    }
    check_no_secret(logs.text());
}

TEST_CASE("fetch refuses bodies over max_bytes", "[fetch]") {
    TestServer server;
    Harness h;
    auto o = quick();
    o.max_bytes = 4000;
    SECTION("with Content-Length: refused before any body byte") {
        auto sink = std::make_shared<MemorySink>();
        auto r = h.fetch(server.url("/bytes/5000" + secret_query), o, sink);
        INFO(r.message);
        CHECK(r.kind == FetchErrorKind::too_large);
        CHECK(r.attempts == 1);
        CHECK(r.message.find("Content-Length 5000") != std::string::npos);
        CHECK(sink->data.empty());
        check_no_secret(r);
    }
    SECTION("huge Content-Length") {
        auto sink = std::make_shared<MemorySink>();
        auto start = std::chrono::steady_clock::now();
        auto r = h.fetch(server.url("/huge"), o, sink);
        INFO(r.message);
        CHECK(r.kind == FetchErrorKind::too_large);
        CHECK(r.message.find("Content-Length 1000000000000 exceeds") != std::string::npos);
        CHECK(std::chrono::steady_clock::now() - start < 2s); // did not wait for the body
    }
    SECTION("without Content-Length: stopped as soon as the limit is passed") {
        auto sink = std::make_shared<MemorySink>();
        auto r = h.fetch(server.url("/nolength/50000" + secret_query), o, sink);
        INFO(r.message);
        CHECK(r.kind == FetchErrorKind::too_large);
        CHECK(r.attempts == 1);
        CHECK(sink->data.size() <= 4000);
        CHECK(r.message.find("limit of 4000 bytes") != std::string::npos);
        check_no_secret(r);
    }
    SECTION("exactly the limit is fine") {
        auto sink = std::make_shared<MemorySink>();
        auto r = h.fetch(server.url("/nolength/4000"), o, sink);
        INFO(r.message);
        REQUIRE(r.ok());
        CHECK(sink->data == pattern(4000));
    }
}

TEST_CASE("fetch cancel from a sink stops the transfer", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    std::optional<FetchResult> result;
    FetchHandle handle;
    int writes_after_cancel = 0;
    bool cancelled = false;
    sink->on_write = [&] {
        if (cancelled) {
            ++writes_after_cancel;
            return;
        }
        if (sink->data.size() >= 3000) {
            CHECK(handle.cancel());
            CHECK_FALSE(handle.cancel()); // only once
            cancelled = true;
        }
    };
    auto start = std::chrono::steady_clock::now();
    handle = h.fetcher->start(server.url("/slow/1000000" + secret_query), quick(), sink, {},
                              [&](const FetchResult& r) { result = r; });
    CHECK(handle.active());
    REQUIRE(h.run_until([&] { return result.has_value(); }, 10s));
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    CHECK(cancelled);
    CHECK(result->kind == FetchErrorKind::cancelled);
    CHECK(writes_after_cancel == 0);
    CHECK_FALSE(handle.active());
    CHECK_FALSE(handle.cancel());
    check_no_secret(*result);
    CHECK(h.fetcher->in_flight() == 0);
}

TEST_CASE("fetch cancel from the loop finishes synchronously", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    std::optional<FetchResult> result;
    auto handle = h.fetcher->start(server.url("/slow/1000000"), quick(), sink, {},
                                   [&](const FetchResult& r) { result = r; });
    REQUIRE(h.run_until([&] { return sink->data.size() >= 2000; }, 10s));
    CHECK_FALSE(result.has_value());
    std::size_t before = sink->data.size();
    CHECK(handle.cancel());
    REQUIRE(result.has_value()); // done ran inside cancel()
    CHECK(result->kind == FetchErrorKind::cancelled);
    CHECK(result->message.find("cancelled") != std::string::npos);
    CHECK(h.fetcher->in_flight() == 0);
    // The loop keeps running without further writes.
    h.run_until([] { return false; }, 100ms);
    CHECK(sink->data.size() == before);
}

TEST_CASE("fetch cancel during backoff", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    std::optional<FetchResult> result;
    auto o = quick();
    o.retry_delay = 10s;
    o.retry_delay_max = 10s;
    auto handle = h.fetcher->start(server.url("/flaky/d/5/10"), o, sink, {},
                                   [&](const FetchResult& r) { result = r; });
    REQUIRE(h.run_until([&] { return sink->resets == 1; }, 5s)); // first attempt failed
    CHECK(handle.cancel());
    REQUIRE(result.has_value());
    CHECK(result->kind == FetchErrorKind::cancelled);
    CHECK(result->attempts == 1);
}

TEST_CASE("fetch retries refused connections, then reports a network error", "[fetch]") {
    // A port that was just free: nothing listens on it.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    ::close(fd);
    std::string url =
        "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/x.pex" + secret_query;

    Harness h;
    auto sink = std::make_shared<MemorySink>();
    auto o = quick();
    o.max_attempts = 3;
    o.retry_delay = 30ms;
    auto start = std::chrono::steady_clock::now();
    auto r = h.fetch(url, o, sink);
    auto elapsed = std::chrono::steady_clock::now() - start;
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::network);
    CHECK(r.attempts == 3);
    CHECK(sink->resets == 2);
    CHECK(elapsed >= 90ms); // 30 + 60 ms of backoff
    CHECK(r.message.find("3 attempts") != std::string::npos);
    CHECK(r.message.find("/x.pex") != std::string::npos);
    check_no_secret(r);
}

TEST_CASE("fetch rejects non-http URLs without calling back inside start", "[fetch]") {
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    std::optional<FetchResult> result;
    h.fetcher->start("ftp://127.0.0.1/x.pex?token=secret", quick(), sink, {},
                     [&](const FetchResult& r) { result = r; });
    CHECK_FALSE(result.has_value());
    REQUIRE(h.run_until([&] { return result.has_value(); }, 5s));
    INFO(result->message);
    CHECK(result->kind == FetchErrorKind::invalid_url);
    CHECK(result->attempts == 1);
    CHECK(result->message.find("ftp://127.0.0.1/x.pex") != std::string::npos);
    check_no_secret(*result);
}

TEST_CASE("fetch reports a sink failure without retrying", "[fetch]") {
    TestServer server;
    Harness h;
    auto sink = std::make_shared<MemorySink>();
    sink->refuse = true;
    auto r = h.fetch(server.url("/bytes/1000"), quick(), sink);
    INFO(r.message);
    CHECK(r.kind == FetchErrorKind::sink);
    CHECK(r.attempts == 1);
    CHECK(r.message.find("disk full (test)") != std::string::npos);
}

TEST_CASE("fetch runs transfers concurrently on one loop", "[fetch]") {
    TestServer server;
    Harness h;
    constexpr int n = 6;
    std::vector<std::shared_ptr<MemorySink>> sinks;
    std::vector<std::optional<FetchResult>> results(n);
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
        sinks.push_back(std::make_shared<MemorySink>());
        // Each takes about 0.4 s alone; in sequence they would take 2.4 s.
        h.fetcher->start(server.url("/slow/20000?i=" + std::to_string(i)), quick(), sinks.back(),
                         {}, [&results, i](const FetchResult& r) { results[i] = r; });
    }
    CHECK(h.fetcher->in_flight() == n);
    REQUIRE(h.run_until([&] {
        for (auto& r : results)
            if (!r) return false;
        return true;
    }));
    CHECK(std::chrono::steady_clock::now() - start < 1800ms);
    for (int i = 0; i < n; ++i) {
        INFO(results[i]->message);
        CHECK(results[i]->ok());
        CHECK(sinks[i]->data == pattern(20000));
    }
}

TEST_CASE("fetch starts another fetch from a done callback", "[fetch]") {
    TestServer server;
    Harness h;
    auto first = std::make_shared<MemorySink>();
    auto second = std::make_shared<MemorySink>();
    std::optional<FetchResult> r2;
    h.fetcher->start(server.url("/bytes/100"), quick(), first, {}, [&](const FetchResult& r) {
        CHECK(r.ok());
        h.fetcher->start(server.url("/bytes/200"), quick(), second, {},
                         [&](const FetchResult& r_) { r2 = r_; });
    });
    REQUIRE(h.run_until([&] { return r2.has_value(); }));
    CHECK(r2->ok());
    CHECK(first->data == pattern(100));
    CHECK(second->data == pattern(200));
}

TEST_CASE("fetcher destroyed with transfers in flight closes everything", "[fetch]") {
    TestServer server;
    auto h = std::make_unique<Harness>();
    auto sink = std::make_shared<MemorySink>();
    bool done = false;
    FetchHandle handle = h->fetcher->start(server.url("/slow/1000000"), quick(), sink, {},
                                           [&](const FetchResult&) { done = true; });
    REQUIRE(h->run_until([&] { return sink->data.size() > 1000; }, 10s));
    h->fetcher.reset();
    CHECK_FALSE(done);
    CHECK_FALSE(handle.active());
    CHECK_FALSE(handle.cancel());
    CHECK(sink.use_count() == 1); // the Fetcher let go of the sink
    h.reset();                    // runs the loop dry and checks uv_loop_close
}

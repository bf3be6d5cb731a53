#include "control/rpc.hpp"
#include "health/metadata.hpp"
#include "init/init.hpp"
#include "init/spawn.hpp"
#include "store/sha256.hpp"
#include "util/fs.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <pthread.h>
#include <sys/stat.h>
#include <thread>
#include <uv.h>

using namespace hearth;
using namespace hearth::health;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string field_error(const json& obj) {
    try {
        parse_metadata_params(obj);
    } catch (const rpc::RpcError& f) {
        CHECK(f.error().code == rpc::invalid_params);
        return f.error().message;
    }
    return "";
}

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-meta-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// A loop with a running Init (the only reaper). SIGCHLD is blocked in this
// thread so the signalfd sees it; a timer also raises SIGCHLD at this thread
// now and then, in case a thread of another test without the mask took the
// process-directed one.
struct LoopFixture {
    uv_loop_t loop{};
    sigset_t old_mask{};
    std::unique_ptr<Init> init;
    uv_timer_t nudge{};

    LoopFixture() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        ::pthread_sigmask(SIG_BLOCK, &set, &old_mask);
        REQUIRE(uv_loop_init(&loop) == 0);
        init = std::make_unique<Init>(&loop, 1.0);
        REQUIRE(init->start() == "");
        uv_timer_init(&loop, &nudge);
        uv_timer_start(
            &nudge, [](uv_timer_t*) { ::pthread_kill(::pthread_self(), SIGCHLD); }, 50, 50);
        uv_unref(reinterpret_cast<uv_handle_t*>(&nudge));
    }
    ~LoopFixture() {
        uv_close(reinterpret_cast<uv_handle_t*>(&nudge), nullptr);
        init->close();
        uv_run(&loop, UV_RUN_NOWAIT);
        init.reset();
        uv_loop_close(&loop);
        ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    }

    // Runs the loop until `flag` is set or `limit` passes.
    void run_until(const bool& flag, std::chrono::milliseconds limit) {
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!flag && std::chrono::steady_clock::now() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
    }

    MetadataRecord run(std::vector<std::string> argv, const std::string& state_dir,
                       std::uint64_t timeout_ms = 10000, std::uint64_t max_bytes = 1 << 20,
                       std::function<bool()> oom = nullptr) {
        MetadataRun r;
        const char* path = std::getenv("PATH");
        auto resolved = resolve_executable(argv[0], path ? path : "");
        r.request.path = resolved.error ? argv[0] : resolved.path;
        r.request.argv = std::move(argv);
        r.timeout_ms = timeout_ms;
        r.max_bytes = max_bytes;
        r.state_dir = state_dir;
        r.oom_killed = std::move(oom);
        bool finished = false;
        MetadataRecord out;
        run_metadata(&loop, *init, std::move(r), [&](MetadataRecord rec) {
            out = std::move(rec);
            finished = true;
        });
        run_until(finished, std::chrono::seconds(30));
        REQUIRE(finished);
        return out;
    }
};

bool process_gone(pid_t pid) {
    for (int i = 0; i < 200; ++i) {
        auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
        if (!stat) return true;
        auto close = stat->rfind(')');
        if (close != std::string::npos && close + 2 < stat->size() &&
            ((*stat)[close + 2] == 'Z' || (*stat)[close + 2] == 'X'))
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

std::string sha256_of(std::string_view s) {
    Sha256 h;
    h.update(s);
    return h.finish_hex();
}

} // namespace

TEST_CASE("metadata params: argv and module forms with defaults", "[metadata]") {
    auto a = parse_metadata_params(json{{"argv", {"python3", "-m", "app.defs"}}});
    CHECK(a.argv == std::vector<std::string>{"python3", "-m", "app.defs"});
    CHECK_FALSE(a.module);
    CHECK(a.timeout_s == 300);
    CHECK(a.max_bytes == 16ull << 20);
    CHECK(a.timeout_ms() == 300000);

    auto m = parse_metadata_params(json{
        {"module", "app.defs"}, {"args", {"--json"}}, {"timeout_s", 2.5}, {"max_bytes", "1Mi"}});
    REQUIRE(m.module);
    CHECK(*m.module == "app.defs");
    CHECK(m.args == std::vector<std::string>{"--json"});
    CHECK(m.timeout_ms() == 2500);
    CHECK(m.max_bytes == 1u << 20);
    // Its JSON form parses back to the same command.
    auto again = parse_metadata_params(m.to_json());
    CHECK(again.module == m.module);
    CHECK(again.args == m.args);
    CHECK(again.timeout_s == m.timeout_s);
    CHECK(again.max_bytes == m.max_bytes);
    CHECK(parse_metadata_params(a.to_json()).argv == a.argv);

    CHECK(parse_metadata_params(json{{"module", "x"}, {"max_bytes", 4096}}).max_bytes == 4096);
}

TEST_CASE("metadata params: errors name the field", "[metadata]") {
    CHECK(field_error(json::array()) == "params.metadata: expected an object");
    CHECK(field_error(json::object()) == "params.metadata: needs \"argv\" or \"module\"");
    CHECK(field_error(json{{"argv", {"a"}}, {"module", "m"}}) ==
          "params.metadata: give either \"argv\" or \"module\", not both");
    CHECK(field_error(json{{"argv", json::array()}}) == "params.metadata.argv: must not be empty");
    CHECK(field_error(json{{"argv", {""}}}) == "params.metadata.argv[0]: must not be empty");
    CHECK(field_error(json{{"argv", {"a", 3}}}).rfind("params.metadata.argv[1]:", 0) == 0);
    CHECK(field_error(json{{"argv", "python3 x"}}).rfind("params.metadata.argv:", 0) == 0);
    CHECK(field_error(json{{"argv", {"a"}}, {"args", {"b"}}}).rfind("params.metadata.args:", 0) ==
          0);
    CHECK(field_error(json{{"module", ""}}) == "params.metadata.module: must not be empty");
    CHECK(field_error(json{{"module", 5}}).rfind("params.metadata.module:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"args", {1}}}).rfind("params.metadata.args[0]:", 0) ==
          0);
    CHECK(field_error(json{{"module", "m"}, {"timeout_s", 0}})
              .rfind("params.metadata.timeout_s:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"timeout_s", -1}})
              .rfind("params.metadata.timeout_s:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"timeout_s", "5"}})
              .rfind("params.metadata.timeout_s:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"max_bytes", 0}})
              .rfind("params.metadata.max_bytes:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"max_bytes", "lots"}})
              .rfind("params.metadata.max_bytes:", 0) == 0);
    CHECK(field_error(json{{"module", "m"}, {"max_bytes", "2Gi"}})
              .rfind("params.metadata.max_bytes:", 0) == 0);
    CHECK(field_error(json{{"argv", {std::string("a\0b", 3)}}}) ==
          "params.metadata.argv[0]: contains a NUL byte");
}

TEST_CASE("metadata: one JSON document, nothing else", "[metadata]") {
    CHECK_FALSE(check_json_document("{\"a\": [1, 2, {\"b\": null}]}"));
    CHECK_FALSE(check_json_document("  \n{\"a\": 1}\n\n"));
    CHECK_FALSE(check_json_document("42"));
    CHECK_FALSE(check_json_document("\"text\""));

    auto garbage = check_json_document("{\"a\": 1} x");
    REQUIRE(garbage);
    CHECK(garbage->position == 10);
    CHECK_FALSE(garbage->message.empty());

    auto two = check_json_document("{\"a\": 1}\n{\"b\": 2}\n");
    REQUIRE(two);
    CHECK(two->position == 10);

    auto cut = check_json_document("{\"a\": [1, 2");
    REQUIRE(cut);
    CHECK(cut->position == 12);

    CHECK(check_json_document(""));
    CHECK(check_json_document("   "));
    CHECK(check_json_document("\"\xff\xfe\""));
    CHECK(check_json_document("{'a': 1}"));

    // Deep nesting is validated without recursion.
    std::string deep(200000, '[');
    deep += std::string(200000, ']');
    CHECK_FALSE(check_json_document(deep));
    deep.pop_back();
    CHECK(check_json_document(deep));
}

TEST_CASE("metadata: exit classification order", "[metadata]") {
    OneshotResult r;
    r.started = true;
    r.wait_status = 0; // exited 0
    r.err = "warning: x\n";
    auto pending = classify_metadata_exit(r, false, 100, 1000, 12.5);
    CHECK(pending.state == MetadataState::pending);
    CHECK(pending.exit_code == 0);
    CHECK_FALSE(pending.signal);
    CHECK(pending.duration_ms == 12.5);
    CHECK(pending.stderr_tail == "warning: x\n");

    r.wait_status = 3 << 8; // exited 3
    auto exited = classify_metadata_exit(r, false, 100, 1000, 1);
    CHECK(exited.state == MetadataState::error);
    CHECK(exited.detail == "exited");
    CHECK(exited.exit_code == 3);
    CHECK(exited.message == "metadata command exited with code 3");

    r.out_overflow = true; // too_large wins over the exit it caused
    r.wait_status = SIGKILL;
    auto large = classify_metadata_exit(r, false, 100, 1000, 1);
    CHECK(large.detail == "too_large");
    CHECK(large.max_bytes == 100u);
    CHECK(large.signal == SIGKILL);

    auto oom = classify_metadata_exit(r, true, 100, 1000, 1); // OOM wins over too_large
    CHECK(oom.state == MetadataState::error);
    CHECK(oom.detail == "oom_killed");
    CHECK(oom.oom_killed);

    r.timed_out = true; // the timeout wins over everything that followed the kill
    auto timeout = classify_metadata_exit(r, true, 100, 1500, 1);
    CHECK(timeout.state == MetadataState::timeout);
    CHECK(timeout.detail.empty());
    CHECK(timeout.message.find("1.5 s") != std::string::npos);
    CHECK(timeout.message.find("metadata.timeout_s") != std::string::npos);

    OneshotResult failed;
    failed.error = "cannot execute 'nope': No such file or directory";
    failed.spawn_exit_code = 127;
    auto spawn = classify_metadata_exit(failed, false, 100, 1000, 0);
    CHECK(spawn.state == MetadataState::error);
    CHECK(spawn.detail == "exited");
    CHECK(spawn.exit_code == 127);
    CHECK(spawn.message.find("No such file") != std::string::npos);
}

TEST_CASE("metadata: record JSON form", "[metadata]") {
    MetadataRecord none;
    CHECK(metadata_record_to_json(none) == json{{"state", "none"}});
    MetadataRecord pending;
    pending.state = MetadataState::pending;
    CHECK(metadata_record_to_json(pending) == json{{"state", "pending"}});

    MetadataRecord ok;
    ok.state = MetadataState::ok;
    ok.sha256 = std::string(64, 'a');
    ok.bytes = 9;
    ok.duration_ms = 20;
    ok.exit_code = 0;
    json j = metadata_record_to_json(ok);
    CHECK(j["state"] == "ok");
    CHECK(j["sha256"] == std::string(64, 'a'));
    CHECK(j["bytes"] == 9);
    CHECK(j["duration_ms"] == 20.0);
    CHECK_FALSE(j.contains("detail"));
    CHECK_FALSE(j.contains("stderr_tail"));

    MetadataRecord err;
    err.state = MetadataState::error;
    err.detail = "exited";
    err.signal = SIGSEGV;
    err.stderr_tail = "Traceback";
    err.error = json{{"type", "ImportError"}, {"message", "no module"}};
    j = metadata_record_to_json(err);
    CHECK(j["detail"] == "exited");
    CHECK(j["signal"] == SIGSEGV);
    CHECK(j["signal_name"] == "SIGSEGV");
    CHECK_FALSE(j.contains("exit_code"));
    CHECK(j["oom_killed"] == false);
    CHECK(j["stderr_tail"] == "Traceback");
    CHECK(j["error"]["type"] == "ImportError");
    CHECK_FALSE(j.contains("sha256"));

    MetadataRecord bad;
    bad.state = MetadataState::error;
    bad.detail = "invalid_json";
    bad.position = 10;
    bad.bytes = 11;
    j = metadata_record_to_json(bad);
    CHECK(j["position"] == 10);
}

TEST_CASE("metadata: store is content-addressed and idempotent", "[metadata]") {
    TempDir dir;
    MetadataRecord pending;
    pending.state = MetadataState::pending;
    std::string doc = "{\"assets\": [\"a\", \"b\"]}\n";
    auto rec = store_metadata_document(dir.path, doc, pending);
    REQUIRE(rec.state == MetadataState::ok);
    CHECK(rec.sha256 == sha256_of(doc));
    CHECK(rec.bytes == doc.size());
    std::string path = dir.path + "/metadata/sha256/" + rec.sha256 + ".json";
    CHECK(metadata_document_path(dir.path, rec.sha256) == path);
    CHECK(read_file(path).value() == doc);
    CHECK(read_metadata_document(dir.path, rec.sha256).value() == doc);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    // Again: same file, nothing else left in the directory.
    auto again = store_metadata_document(dir.path, doc, pending);
    CHECK(again.sha256 == rec.sha256);
    int entries = 0;
    for (const auto& e : fs::directory_iterator(dir.path + "/metadata/sha256")) {
        (void)e;
        ++entries;
    }
    CHECK(entries == 1);

    auto missing = read_metadata_document(dir.path, std::string(64, '0'));
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::not_found);

    auto invalid = store_metadata_document(dir.path, "[1, 2", pending);
    CHECK(invalid.state == MetadataState::error);
    CHECK(invalid.detail == "invalid_json");
    CHECK(invalid.position == 6u); // one past the end: end of input

    // An unwritable state directory is hearth's failure, reported as such.
    auto blocked = store_metadata_document("/proc/hearth-no-such-dir", doc, pending);
    CHECK(blocked.state == MetadataState::error);
    CHECK(blocked.detail == "store_error");
}

TEST_CASE("metadata: documents no longer referenced are pruned", "[metadata]") {
    TempDir dir;
    MetadataRecord pending;
    pending.state = MetadataState::pending;
    auto a = store_metadata_document(dir.path, "[1]", pending);
    auto b = store_metadata_document(dir.path, "[2]", pending);
    REQUIRE(a.state == MetadataState::ok);
    REQUIRE(b.state == MetadataState::ok);
    std::string other = dir.path + "/metadata/sha256/" + a.sha256 + ".json.tmp-abcdef";
    REQUIRE(write_file_atomic(other, "in progress", 0644));
    CHECK(prune_metadata_documents(dir.path, {a.sha256}) == 1);
    CHECK(read_metadata_document(dir.path, a.sha256).value() == "[1]");
    CHECK_FALSE(read_metadata_document(dir.path, b.sha256));
    CHECK(fs::exists(other));
    CHECK(prune_metadata_documents(dir.path, {a.sha256}) == 0);
    CHECK(prune_metadata_documents(dir.path + "/nowhere", {}) == 0);
}

TEST_CASE("metadata run: ok stores stdout as received", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    auto rec = fx.run({"/bin/sh", "-c", "printf '{\"jobs\": [1, 2]}\\n'; echo note >&2"}, dir.path);
    REQUIRE(rec.state == MetadataState::ok);
    std::string expected = "{\"jobs\": [1, 2]}\n";
    CHECK(rec.sha256 == sha256_of(expected));
    CHECK(rec.bytes == expected.size());
    CHECK(rec.exit_code == 0);
    CHECK(rec.stderr_tail == "note\n");
    CHECK(rec.duration_ms > 0);
    CHECK(read_metadata_document(dir.path, rec.sha256).value() == expected);

    auto py = fx.run({"python3", "-c", "import json; print(json.dumps({'k': list(range(5))}))"},
                     dir.path);
    REQUIRE(py.state == MetadataState::ok);
    CHECK(read_metadata_document(dir.path, py.sha256).value() == "{\"k\": [0, 1, 2, 3, 4]}\n");
}

TEST_CASE("metadata run: invalid JSON gives the position", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    auto rec = fx.run({"/bin/sh", "-c", "printf '{\"a\": 1} trailing'"}, dir.path);
    CHECK(rec.state == MetadataState::error);
    CHECK(rec.detail == "invalid_json");
    CHECK(rec.position == 12u); // "tra" is read before the lexer gives up
    CHECK(rec.bytes == 17);
    CHECK(rec.exit_code == 0);
    CHECK_FALSE(fs::exists(dir.path + "/metadata/sha256"));

    auto empty = fx.run({"/bin/true"}, dir.path);
    CHECK(empty.detail == "invalid_json");
    CHECK(empty.message == "metadata command wrote nothing to stdout");
}

TEST_CASE("metadata run: too large stdout stops the command", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    auto start = std::chrono::steady_clock::now();
    // Would write forever; only the overflow kill ends it before the timeout.
    auto rec = fx.run({"python3", "-c",
                       "import sys\nsys.stdout.write('[' + '1,' * 1000)\nsys.stdout.flush()\n"
                       "while True: sys.stdout.write('1,' * 1000)"},
                      dir.path, 20000, 1000);
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
    CHECK(rec.state == MetadataState::error);
    CHECK(rec.detail == "too_large");
    CHECK(rec.max_bytes == 1000u);
    CHECK(rec.signal == SIGKILL);
    CHECK(rec.message.find("metadata.max_bytes") != std::string::npos);
}

TEST_CASE("metadata run: exit code, signal and stderr tail", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    auto rec = fx.run({"/bin/sh", "-c", "echo '{}'; echo 'Traceback: boom' >&2; exit 3"}, dir.path);
    CHECK(rec.state == MetadataState::error);
    CHECK(rec.detail == "exited");
    CHECK(rec.exit_code == 3);
    CHECK(rec.stderr_tail == "Traceback: boom\n");

    auto sig = fx.run({"/bin/sh", "-c", "kill -TERM $$"}, dir.path);
    CHECK(sig.detail == "exited");
    CHECK(sig.signal == SIGTERM);
    CHECK_FALSE(sig.exit_code);
    CHECK(metadata_record_to_json(sig)["signal_name"] == "SIGTERM");

    // Only the end of a long stderr is kept.
    auto tail = fx.run({"python3", "-c",
                        "import sys\nsys.stderr.write('x' * 100000)\nsys.stderr.write('END\\n')\n"
                        "sys.exit(1)"},
                       dir.path);
    CHECK(tail.exit_code == 1);
    CHECK(tail.stderr_tail.size() == metadata_stderr_tail_bytes);
    CHECK(tail.stderr_tail.substr(tail.stderr_tail.size() - 4) == "END\n");

    auto missing = fx.run({"/nonexistent/hearth-metadata"}, dir.path);
    CHECK(missing.state == MetadataState::error);
    CHECK(missing.detail == "exited");
    CHECK(missing.exit_code == 127);
}

TEST_CASE("metadata run: the caller's OOM verdict", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    int asked = 0;
    auto rec = fx.run({"/bin/sh", "-c", "kill -KILL $$"}, dir.path, 10000, 1 << 20, [&] {
        ++asked;
        return true;
    });
    CHECK(asked == 1);
    CHECK(rec.state == MetadataState::error);
    CHECK(rec.detail == "oom_killed");
    CHECK(rec.oom_killed);
    CHECK(rec.signal == SIGKILL);

    auto fine =
        fx.run({"/bin/sh", "-c", "echo '[]'"}, dir.path, 10000, 1 << 20, [] { return false; });
    CHECK(fine.state == MetadataState::ok);
}

TEST_CASE("metadata run: timeout kills the whole tree", "[metadata][process]") {
    LoopFixture fx;
    TempDir dir;
    std::string pidfile = dir.path + "/escaped.pid";
    auto start = std::chrono::steady_clock::now();
    // The grandchild leaves the process group (setsid), so killing the group
    // alone would leave it running, holding stdout open.
    auto rec = fx.run({"/bin/sh", "-c",
                       "setsid /bin/sh -c 'echo $$ > " + pidfile +
                           "; exec sleep 60' & echo started >&2; sleep 60"},
                      dir.path, 700);
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(elapsed < std::chrono::seconds(5));
    CHECK(rec.state == MetadataState::timeout);
    CHECK(rec.signal == SIGKILL);
    CHECK(rec.stderr_tail == "started\n");
    CHECK(rec.duration_ms >= 690);
    CHECK(rec.message.find("0.7 s") != std::string::npos);
    auto text = read_file(pidfile);
    REQUIRE(text);
    pid_t escaped = static_cast<pid_t>(std::stol(*text));
    REQUIRE(escaped > 0);
    CHECK(process_gone(escaped));
}

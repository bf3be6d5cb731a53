#include "daemon/state_file.hpp"
#include "util/fs.hpp"
#include "util/uv_util.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <sys/stat.h>
#include <uv.h>

using namespace hearth;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-state-test-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(path))
            out.push_back(e.path().filename().string());
        std::sort(out.begin(), out.end());
        return out;
    }
};

DesiredState sample() {
    DesiredState s;
    s.locations["analytics"] = DesiredLocation{
        json{{"location", "analytics"},
             {"deps", {{"path", "/srv/deps.pex"}, {"sha256", std::string(64, 'a')}}},
             {"env", {{"DB_PASSWORD", "hunter2"}, {"MODE", "prod"}}},
             {"limits", {{"memory", "512Mi"}}}},
        false};
    s.locations["etl-2"] = DesiredLocation{json{{"location", "etl-2"}}, true};
    return s;
}

mode_t mode_of(const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 07777;
}

std::chrono::system_clock::time_point fixed_time() {
    // 2026-12-03T13:00:00Z
    return std::chrono::system_clock::time_point(std::chrono::seconds(1796302800));
}

struct Loop {
    uv_loop_t loop{};
    Loop() { REQUIRE(uv_loop_init(&loop) == 0); }
    ~Loop() {
        drain();
        uv_loop_close(&loop);
    }
    void run_until(const std::function<bool()>& done) {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (!done() && std::chrono::steady_clock::now() < deadline)
            uv_run(&loop, UV_RUN_ONCE);
        REQUIRE(done());
    }
    void drain() {
        while (blocking_jobs_in_flight() > 0)
            uv_run(&loop, UV_RUN_ONCE);
        uv_run(&loop, UV_RUN_NOWAIT);
    }
};

} // namespace

TEST_CASE("state file: JSON round trip", "[state_file]") {
    DesiredState s = sample();
    json j = desired_state_to_json(s);
    CHECK(j["version"] == 1);
    CHECK(j["locations"]["etl-2"]["stopped"] == true);
    CHECK(j["locations"]["analytics"]["params"]["env"]["DB_PASSWORD"] == "hunter2");
    auto back = desired_state_from_json(j);
    REQUIRE(back);
    CHECK(*back == s);

    auto empty = desired_state_from_json(desired_state_to_json(DesiredState{}));
    REQUIRE(empty);
    CHECK(empty->locations.empty());

    // A missing "stopped" means serving.
    auto lenient = desired_state_from_json(
        json{{"version", 1}, {"locations", {{"a", {{"params", json::object()}}}}}});
    REQUIRE(lenient);
    CHECK_FALSE(lenient->locations.at("a").stopped);
}

TEST_CASE("state file: structural errors name what is wrong", "[state_file]") {
    auto err = [](const json& j) {
        auto r = desired_state_from_json(j);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::invalid_argument);
        return r.error().message;
    };
    CHECK(err(json::array()) == "expected a JSON object");
    CHECK(err(json{{"locations", json::object()}}) == "\"version\" is missing or not an integer");
    CHECK(err(json{{"version", 2}, {"locations", json::object()}}) ==
          "version 2 is not supported (expected 1)");
    CHECK(err(json{{"version", 1}}) == "\"locations\" is missing or not an object");
    CHECK(err(json{{"version", 1}, {"locations", {{"Bad Name", {{"params", json::object()}}}}}}) ==
          "locations.Bad Name: invalid location name");
    CHECK(err(json{{"version", 1}, {"locations", {{"a", {{"params", 3}}}}}}) ==
          "locations.a.params: missing or not an object");
    CHECK(err(json{{"version", 1},
                   {"locations", {{"a", {{"params", json::object()}, {"stopped", "no"}}}}}}) ==
          "locations.a.stopped: expected true or false");
}

TEST_CASE("state file: written 0600 and loaded back", "[state_file]") {
    TempDir dir;
    const std::string path = dir.path + "/state.json";
    CHECK(state_file_path(dir.path) == path);
    // An older, wider file and a permissive umask change nothing.
    REQUIRE(write_file_atomic(path, "old", 0644));
    mode_t old_umask = ::umask(0);
    Status st = write_state_file(dir.path, sample());
    ::umask(old_umask);
    REQUIRE(st);
    CHECK(mode_of(path) == 0600);
    CHECK(dir.names() == std::vector<std::string>{"state.json"}); // no temporary left

    auto loaded = load_state_file(dir.path);
    CHECK(loaded.found);
    CHECK(loaded.problem.empty());
    CHECK(loaded.set_aside.empty());
    CHECK(loaded.state == sample());
}

TEST_CASE("state file: no file is an empty state", "[state_file]") {
    TempDir dir;
    auto loaded = load_state_file(dir.path);
    CHECK_FALSE(loaded.found);
    CHECK(loaded.state.locations.empty());
    CHECK(loaded.set_aside.empty());
    CHECK(dir.names().empty());
}

TEST_CASE("state file: corrupt and truncated files are set aside", "[state_file]") {
    TempDir dir;
    const std::string path = dir.path + "/state.json";
    const std::string aside = path + ".corrupt-20261203T130000Z";

    REQUIRE(write_file_atomic(path, "{not json at all", 0600));
    auto corrupt = load_state_file(dir.path, fixed_time());
    CHECK(corrupt.found);
    CHECK(corrupt.state.locations.empty());
    CHECK(corrupt.problem == "not valid JSON");
    CHECK(corrupt.set_aside == aside);
    CHECK_FALSE(fs::exists(path));
    CHECK(read_file(aside).value() == "{not json at all");

    // A write cut short: valid JSON up to a point. Same second: a suffix.
    REQUIRE(write_state_file(dir.path, sample()));
    std::string full = read_file(path).value();
    REQUIRE(write_file_atomic(path, full.substr(0, full.size() / 2), 0600));
    auto truncated = load_state_file(dir.path, fixed_time());
    CHECK(truncated.state.locations.empty());
    CHECK(truncated.set_aside == aside + "-1");
    CHECK(read_file(aside + "-1").value() == full.substr(0, full.size() / 2));

    // Valid JSON of the wrong shape, and an empty file.
    REQUIRE(write_file_atomic(path, "{\"version\": 9, \"locations\": {}}", 0600));
    auto future = load_state_file(dir.path, fixed_time());
    CHECK(future.problem == "version 9 is not supported (expected 1)");
    CHECK(future.set_aside == aside + "-2");
    REQUIRE(write_file_atomic(path, "", 0600));
    auto empty = load_state_file(dir.path, fixed_time());
    CHECK(empty.problem == "the file is empty");
    CHECK_FALSE(fs::exists(path));

    // After setting aside, a fresh state can be written and read again.
    REQUIRE(write_state_file(dir.path, sample()));
    CHECK(load_state_file(dir.path).state == sample());
}

TEST_CASE("state file: an unreadable state.json is set aside too", "[state_file]") {
    TempDir dir;
    fs::create_directory(dir.path + "/state.json"); // read(2) fails with EISDIR
    auto loaded = load_state_file(dir.path, fixed_time());
    CHECK(loaded.found);
    CHECK_FALSE(loaded.problem.empty());
    CHECK(loaded.state.locations.empty());
    CHECK(loaded.set_aside == dir.path + "/state.json.corrupt-20261203T130000Z");
}

TEST_CASE("state file: env values are redacted for display", "[state_file]") {
    json params = sample().locations.at("analytics").params;
    json shown = redact_env(params);
    CHECK(shown["env"] == json{"DB_PASSWORD", "MODE"});
    CHECK(shown.dump().find("hunter2") == std::string::npos);
    CHECK(shown["deps"] == params["deps"]);
    CHECK(params["env"]["DB_PASSWORD"] == "hunter2"); // the original is untouched
    CHECK(redact_env(json{{"location", "x"}}) == json{{"location", "x"}});
    CHECK(redact_env(json{{"env", "A=secret"}})["env"] == json::array());
    CHECK(redact_env(json("text")) == json("text"));
}

TEST_CASE("state writer: a burst costs at most two writes, the last state wins", "[state_file]") {
    TempDir dir;
    Loop l;
    int version = 0;
    int snapshots = 0;
    StateWriter writer(&l.loop, dir.path, [&] {
        ++snapshots;
        DesiredState s;
        s.locations["loc"] = DesiredLocation{json{{"n", version}}, false};
        return s;
    });
    CHECK(writer.idle());
    for (int i = 1; i <= 50; ++i) {
        version = i;
        writer.changed();
    }
    CHECK_FALSE(writer.idle());
    bool flushed = false;
    writer.flush([&] { flushed = true; });
    l.run_until([&] { return flushed; });
    CHECK(writer.idle());
    CHECK(writer.writes() == 2);
    CHECK(snapshots == 2);
    CHECK_FALSE(writer.last_error());
    auto loaded = load_state_file(dir.path);
    CHECK(loaded.state.locations.at("loc").params["n"] == 50);
    CHECK(mode_of(dir.path + "/state.json") == 0600);

    // One change when idle: one write.
    version = 51;
    writer.changed();
    flushed = false;
    writer.flush([&] { flushed = true; });
    l.run_until([&] { return flushed; });
    CHECK(writer.writes() == 3);
    CHECK(load_state_file(dir.path).state.locations.at("loc").params["n"] == 51);

    // Nothing pending: flush answers at once.
    bool now = false;
    writer.flush([&] { now = true; });
    CHECK(now);
}

TEST_CASE("state writer: a change during a write schedules exactly one more", "[state_file]") {
    TempDir dir;
    Loop l;
    int version = 1;
    StateWriter writer(&l.loop, dir.path, [&] {
        DesiredState s;
        s.locations["loc"] = DesiredLocation{json{{"n", version}}, false};
        return s;
    });
    writer.changed(); // write 1 in flight
    bool first_done = false;
    writer.flush([&] { first_done = true; });
    version = 2;
    writer.changed(); // dirty
    version = 3;
    writer.changed(); // still one more, not two
    l.run_until([&] { return first_done; });
    CHECK(writer.writes() == 2);
    CHECK(load_state_file(dir.path).state.locations.at("loc").params["n"] == 3);
}

TEST_CASE("state writer: failures are reported and retried on the next change", "[state_file]") {
    TempDir dir;
    Loop l;
    std::string state_dir = dir.path + "/missing";
    StateWriter writer(&l.loop, state_dir, [] { return DesiredState{}; });
    writer.changed();
    bool flushed = false;
    writer.flush([&] { flushed = true; });
    l.run_until([&] { return flushed; });
    REQUIRE(writer.last_error());
    CHECK(writer.last_error()->code == Errc::not_found);

    fs::create_directory(state_dir);
    writer.changed();
    flushed = false;
    writer.flush([&] { flushed = true; });
    l.run_until([&] { return flushed; });
    CHECK_FALSE(writer.last_error());
    CHECK(fs::exists(state_dir + "/state.json"));
}

TEST_CASE("state writer: destroyed with a write in flight", "[state_file]") {
    TempDir dir;
    Loop l;
    {
        StateWriter writer(&l.loop, dir.path, [] { return sample(); });
        writer.changed();
        writer.changed();
    }
    l.drain(); // the pool job finishes; its completion is ignored
    CHECK(load_state_file(dir.path).state == sample());
}

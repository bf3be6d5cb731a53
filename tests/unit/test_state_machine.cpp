// The revision state machine (daemon/revisions.hpp) on a real libuv loop,
// with fakes for everything it drives (seams.hpp, IsolationApi): no root, no
// cgroupfs, no interpreter. Each fake answers asynchronously, through the
// loop, as the real ones do; some hold their answer until the test releases
// it, to stop a revision in that phase.

#include "daemon/barrier.hpp"
#include "daemon/download_sink.hpp"
#include "daemon/events.hpp"
#include "daemon/revisions.hpp"
#include "daemon/seams.hpp"
#include "isolation/isolation.hpp"
#include "store/sha256.hpp"
#include "store/store.hpp"
#include "util/uv_util.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sys/wait.h>
#include <uv.h>

using namespace hearth;

namespace {

const std::string hex_deps(64, 'd');
const std::string hex_source(64, 'e');

// Runs functions on the loop's next turn, in order (a 0 ms timer).
class Poster {
public:
    explicit Poster(uv_loop_t* loop) : timer_(loop) {}
    void post(std::function<void()> fn) {
        queue_.push_back(std::move(fn));
        timer_.start(0, [this] { run(); });
    }

private:
    void run() {
        auto batch = std::move(queue_);
        queue_.clear();
        for (auto& fn : batch)
            fn();
    }
    Timer timer_;
    std::deque<std::function<void()>> queue_;
};

class FakeCgroup final : public cgroup::Cgroup {
public:
    explicit FakeCgroup(std::string name) : Cgroup(std::move(name), true) {}
    cgroup::Usage usage() const override {
        cgroup::Usage u;
        u.memory_current = 4096;
        u.cpu_usage_usec = 7;
        u.pids_current = 1;
        return u;
    }
    cgroup::OomCounters oom_counters() const override { return {}; }
    std::optional<bool> populated() const override { return false; }
    std::vector<pid_t> pids() const override { return {}; }
    cgroup::KillResult kill_all(std::chrono::milliseconds) override { return {}; }
    cgroup::Removal remove() override {
        cgroup::Removal r;
        r.removed = true;
        return r;
    }
};

// Processes: spawn() hands out pids; exit(pid, status) reaps one.
class FakeProcesses final : public ProcessHost {
public:
    explicit FakeProcesses(Poster& poster) : poster_(poster) {}
    SpawnResult spawn(const SpawnRequest& req) override {
        SpawnResult r;
        r.pid = next_pid_++;
        alive.insert(r.pid);
        commands.push_back(req.argv);
        envs.push_back(req.env.value_or(std::vector<std::string>{}));
        return r;
    }
    void watch(pid_t pid, std::function<void(int)> cb) override { watchers_[pid] = std::move(cb); }
    bool shutting_down() const override { return false; }

    // The process ends with `wait_status`, reaped on the next loop turn.
    void exit(pid_t pid, int wait_status) {
        if (!alive.erase(pid)) return;
        poster_.post([this, pid, wait_status] {
            auto it = watchers_.find(pid);
            if (it == watchers_.end()) return;
            auto cb = std::move(it->second);
            watchers_.erase(it);
            cb(wait_status);
        });
    }

    std::set<pid_t> alive;
    std::vector<std::vector<std::string>> commands;
    std::vector<std::vector<std::string>> envs;

private:
    Poster& poster_;
    pid_t next_pid_ = 40000;
    std::map<pid_t, std::function<void(int)>> watchers_;
};

// Cgroups that exist only here; signals and kills end fake processes.
class FakeIsolation final : public IsolationApi {
public:
    FakeIsolation(Poster& poster, FakeProcesses& processes)
        : poster_(poster), processes_(processes) {}
    const std::string& driver_name() const override { return name_; }
    bool is_none() const override { return false; }
    void create(const std::string& name, const std::string&, const cgroup::Limits&,
                Created done) override {
        poster_.post([this, name, done = std::move(done)] {
            ++live_cgroups;
            done(std::make_shared<FakeCgroup>(name), "");
        });
    }
    std::vector<int> cpus_of(const std::string&) const override { return {}; }
    bool cpus_exclusive(const std::string&) const override { return false; }
    void release_cpus(const std::string&) override {}
    void move_cpus(const std::string&, cgroup::Cgroup*, pid_t) override {}
    void move_self() override {}
    void watch(const std::string&, const cgroup::Cgroup*, pid_t,
               std::optional<std::uint64_t>) override {}
    void unwatch(const std::string&) override {}
    void signal_all(const cgroup::Cgroup*, pid_t session, int sig) override {
        signals.push_back(sig);
        if (!ignore_term) processes_.exit(session, sig); // killed by `sig`
    }
    void kill_all(std::shared_ptr<cgroup::Cgroup>, pid_t session, std::chrono::milliseconds,
                  std::function<void(cgroup::KillResult)> done) override {
        processes_.exit(session, SIGKILL);
        poster_.post([done = std::move(done)] { done({}); });
    }
    void remove(std::shared_ptr<cgroup::Cgroup> cg,
                std::function<void(cgroup::Removal)> done) override {
        poster_.post([this, cg, done = std::move(done)] {
            --live_cgroups;
            done(cg->remove());
        });
    }
    cgroup::Usage watchdog_usage(const std::string&) const override { return {}; }

    int live_cgroups = 0;
    bool ignore_term = false;
    std::vector<int> signals;

private:
    std::string name_ = "fake";
    Poster& poster_;
    FakeProcesses& processes_;
};

// Store jobs that succeed on the next loop turn, or wait for release().
class FakeArtifacts final : public Artifacts {
public:
    explicit FakeArtifacts(Poster& poster) : poster_(poster) {}
    void store_blob(const ArtifactSpec& a, ArtifactDone done) override {
        answer(hold_blobs, a.sha256, std::move(done));
    }
    void store_tree(const std::string& sha256, ArtifactDone done) override {
        answer(hold_trees, sha256, std::move(done));
    }
    void make_room(std::function<void(bool, std::string)> done) override {
        poster_.post([done = std::move(done)] { done(true, ""); });
    }
    void collect() override { ++collections; }

    // Answers every held job (ok), on the next loop turn.
    void release() {
        auto held = std::move(held_);
        held_.clear();
        for (auto& [hex, done] : held)
            reply(hex, std::move(done));
    }

    bool hold_blobs = false;
    bool hold_trees = false;
    std::string fail_tree; // a tree that fails bad_archive
    int collections = 0;

private:
    void answer(bool hold, const std::string& hex, ArtifactDone done) {
        if (hold)
            held_.emplace_back(hex, std::move(done));
        else
            reply(hex, std::move(done));
    }
    void reply(const std::string& hex, ArtifactDone done) {
        poster_.post([this, hex, done = std::move(done)] {
            ArtifactOutcome out;
            out.ok = hex != fail_tree;
            out.reason = out.ok ? "" : reason::bad_archive;
            out.message = out.ok ? "" : "corrupt";
            out.status.tree = "/nonexistent/" + hex;
            done(out);
        });
    }
    Poster& poster_;
    std::vector<std::pair<std::string, ArtifactDone>> held_;
};

// Plans /bin/true for every revision, or fails the ones named, or holds.
class FakePreparer final : public Preparer {
public:
    explicit FakePreparer(Poster& poster) : poster_(poster) {}
    void prepare(const Revision& rev,
                 std::function<void(Result<LaunchPlanned, StepFailure>)> done) override {
        std::string id = rev.id;
        if (hold) return held_.push_back(std::move(done));
        poster_.post([this, id, done = std::move(done)] { reply(id, done); });
    }
    void release() {
        auto held = std::move(held_);
        held_.clear();
        for (auto& done : held)
            poster_.post([this, done] { reply("", done); });
    }

    bool hold = false;
    std::set<std::string> fail_ids;

private:
    void reply(const std::string& id,
               const std::function<void(Result<LaunchPlanned, StepFailure>)>& done) {
        if (fail_ids.count(id)) return done(StepFailure{reason::no_interpreter, "none found"});
        LaunchPlanned p;
        p.python = "/usr/bin/python3";
        p.command = {"/bin/true", id};
        p.cwd = "/";
        done(std::move(p));
    }
    Poster& poster_;
    std::vector<std::function<void(Result<LaunchPlanned, StepFailure>)>> held_;
};

struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/hearth-sm-XXXXXX";
        path = ::mkdtemp(tmpl);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

// One state machine on its own loop, with its fakes and a record of events.
struct Harness {
    uv_loop_t loop{};
    TempDir dir;
    std::unique_ptr<Poster> poster;
    std::unique_ptr<FakeProcesses> processes;
    std::unique_ptr<FakeIsolation> isolation;
    std::unique_ptr<FakeArtifacts> artifacts;
    std::unique_ptr<FakePreparer> preparer;
    Events events;
    std::unique_ptr<Revisions> revisions;
    std::vector<std::pair<std::string, std::string>> states; // (id, state) in order

    Harness() {
        uv_loop_init(&loop);
        poster = std::make_unique<Poster>(&loop);
        processes = std::make_unique<FakeProcesses>(*poster);
        isolation = std::make_unique<FakeIsolation>(*poster, *processes);
        artifacts = std::make_unique<FakeArtifacts>(*poster);
        preparer = std::make_unique<FakePreparer>(*poster);
        events.listen([this](const nlohmann::json& e) {
            if (e["type"] == "state") states.emplace_back(e["id"], e["state"]);
        });
        Revisions::Config config;
        config.state_dir = dir.path;
        config.usage_interval_ms = 20;
        revisions = std::make_unique<Revisions>(&loop, config, *artifacts, *isolation, *processes,
                                                *preparer, events, nullptr);
        revisions->start();
    }
    ~Harness() {
        // Pool jobs (usage samples, scratch removal) report to the state
        // machine: let them finish first.
        revisions->stop_sampling();
        while (blocking_jobs_in_flight() > 0)
            uv_run(&loop, UV_RUN_ONCE);
        revisions.reset();
        preparer.reset();
        artifacts.reset();
        isolation.reset();
        processes.reset();
        poster.reset();
        // Closes the handles.
        while (uv_loop_alive(&loop))
            uv_run(&loop, UV_RUN_ONCE);
        uv_loop_close(&loop);
    }

    // Runs the loop until `pred` holds; false after `timeout_ms`.
    bool run_until(const std::function<bool()>& pred, std::uint64_t timeout_ms = 5000) {
        bool expired = false;
        Timer deadline(&loop);
        deadline.start(timeout_ms, [&] { expired = true; });
        while (!pred() && !expired)
            uv_run(&loop, UV_RUN_ONCE);
        return pred();
    }

    DeploySpec spec(const std::string& location) {
        DeploySpec s;
        s.location = location;
        s.deps = {"/x/deps.pex", "", hex_deps};
        s.source = {"/x/source.pex", "", hex_source};
        s.min_uptime_s = 0.05;
        s.stop.grace_s = 5;
        return s;
    }
    Revision& deploy(DeploySpec s) { return revisions->deploy(std::move(s), {}); }

    Revision* rev(const std::string& id) { return revisions->find(id); }
    std::string state_of(const std::string& id) {
        Revision* r = rev(id);
        return r ? state_name(r->state) : "gone";
    }
    bool in(const std::string& id, State s) {
        Revision* r = rev(id);
        return r && r->state == s && !r->ending;
    }
    std::vector<std::string> states_of(const std::string& id) const {
        std::vector<std::string> out;
        for (const auto& [i, s] : states)
            if (i == id) out.push_back(s);
        return out;
    }
};

int exited_with(int code) {
    return code << 8; // WIFEXITED, WEXITSTATUS == code
}

} // namespace

TEST_CASE("deploy, ready, crash, backoff, restart", "[state-machine]") {
    Harness h;
    DeploySpec s = h.spec("app");
    s.restart.policy = RestartPolicy::on_failure;
    std::string id = h.deploy(std::move(s)).id;
    CHECK(id == "app-1");
    REQUIRE(h.run_until([&] { return h.in(id, State::ready); }));
    CHECK(h.states_of(id) == std::vector<std::string>{"pending", "fetching", "extracting",
                                                      "starting", "loading", "ready"});
    Revision* r = h.rev(id);
    CHECK(h.revisions->find_location("app")->active == id);
    CHECK(r->command == std::vector<std::string>{"/bin/true", id});
    CHECK(r->process_running);
    CHECK(h.isolation->live_cgroups == 1);
    // A first usage sample right after the spawn: figures at once.
    REQUIRE(h.run_until([&] { return h.rev(id)->usage_sampled_at.has_value(); }));
    CHECK(h.rev(id)->usage.memory_current == 4096u);

    pid_t first = r->pid;
    h.processes->exit(first, exited_with(3));
    REQUIRE(h.run_until([&] { return h.in(id, State::backoff); }));
    r = h.rev(id);
    CHECK(r->reason == reason::exited);
    CHECK(r->message == "process exited with code 3");
    CHECK(r->backoff_s == restart_backoff_initial_s);
    CHECK(r->next_attempt_at.has_value());
    CHECK(h.revisions->find_location("app")->active.empty() == false); // still the serving one

    // The backoff (1 s) passes; a new process, in a new cgroup.
    REQUIRE(h.run_until([&] { return h.in(id, State::ready); }, 4000));
    r = h.rev(id);
    CHECK(r->restarts == 1);
    CHECK(r->pid != first);
    CHECK(h.processes->commands.size() == 2);
    CHECK(h.isolation->live_cgroups == 1);
    auto seen = h.states_of(id);
    std::vector<std::string> tail(seen.end() - 4, seen.end());
    CHECK(tail == std::vector<std::string>{"backoff", "starting", "loading", "ready"});
}

TEST_CASE("a crash with restart never fails the revision", "[state-machine]") {
    Harness h;
    DeploySpec s = h.spec("app");
    s.restart.policy = RestartPolicy::never;
    std::string id = h.deploy(std::move(s)).id;
    REQUIRE(h.run_until([&] { return h.in(id, State::ready); }));
    h.processes->exit(h.rev(id)->pid, SIGSEGV);
    REQUIRE(h.run_until([&] { return h.in(id, State::failed); }));
    CHECK(h.rev(id)->reason == reason::exited);
    CHECK(h.rev(id)->restarts == 0);
    CHECK(h.isolation->live_cgroups == 0);
    CHECK(h.revisions->find_location("app")->active.empty());
}

TEST_CASE("a failed redeploy keeps the old revision serving", "[state-machine]") {
    Harness h;
    std::string old_id = h.deploy(h.spec("app")).id;
    REQUIRE(h.run_until([&] { return h.in(old_id, State::ready); }));

    SECTION("the new one fails before it starts") {
        h.preparer->fail_ids.insert("app-2");
        std::string new_id = h.deploy(h.spec("app")).id;
        REQUIRE(h.run_until([&] { return h.in(new_id, State::failed); }));
        CHECK(h.rev(new_id)->reason == reason::no_interpreter);
    }
    SECTION("the new one's archive is bad") {
        DeploySpec s = h.spec("app");
        s.source.sha256 = std::string(64, 'f');
        h.artifacts->fail_tree = s.source.sha256;
        std::string new_id = h.deploy(std::move(s)).id;
        REQUIRE(h.run_until([&] { return h.in(new_id, State::failed); }));
        CHECK(h.rev(new_id)->reason == reason::bad_archive);
        CHECK(h.rev(new_id)->message == "source: corrupt");
    }
    SECTION("the new one crashes before its min uptime") {
        DeploySpec s = h.spec("app");
        s.min_uptime_s = 10;
        s.restart.policy = RestartPolicy::never;
        std::string new_id = h.deploy(std::move(s)).id;
        REQUIRE(h.run_until([&] { return h.in(new_id, State::loading); }));
        h.processes->exit(h.rev(new_id)->pid, exited_with(1));
        REQUIRE(h.run_until([&] { return h.in(new_id, State::failed); }));
        CHECK(h.rev(new_id)->reason == reason::exited);
    }
    // The old one was never touched.
    CHECK(h.state_of(old_id) == "ready");
    CHECK(h.revisions->find_location("app")->active == old_id);
    CHECK(h.isolation->signals.empty());
    CHECK(h.processes->alive.count(h.rev(old_id)->pid) == 1);

    // A good one then replaces it, blue/green: the old one stops after.
    std::string good = h.deploy(h.spec("app")).id;
    REQUIRE(h.run_until([&] { return h.in(good, State::ready) && h.in(old_id, State::stopped); }));
    CHECK(h.revisions->find_location("app")->active == good);
    CHECK(h.rev(old_id)->message == "replaced by " + good);
    CHECK(h.isolation->signals == std::vector<int>{SIGTERM});
}

TEST_CASE("stop during each phase", "[state-machine]") {
    auto phase = GENERATE(State::fetching, State::extracting, State::starting, State::loading,
                          State::ready, State::backoff);
    CAPTURE(state_name(phase));
    Harness h;
    DeploySpec s = h.spec("app");
    s.restart.policy = RestartPolicy::always;
    if (phase == State::fetching) h.artifacts->hold_blobs = true;
    if (phase == State::extracting) h.artifacts->hold_trees = true;
    if (phase == State::starting) h.preparer->hold = true;
    if (phase == State::loading) s.min_uptime_s = 10;
    std::string id = h.deploy(std::move(s)).id;
    if (phase == State::backoff) {
        REQUIRE(h.run_until([&] { return h.in(id, State::ready); }));
        h.processes->exit(h.rev(id)->pid, exited_with(1));
    }
    REQUIRE(h.run_until([&] { return h.in(id, phase); }));
    // Let pending cgroup creation and the first samples land.
    h.run_until([] { return false; }, 30);
    REQUIRE(h.state_of(id) == state_name(phase));

    std::optional<std::vector<std::string>> stopped;
    h.revisions->stop_location(*h.revisions->find_location("app"), std::nullopt, "by test",
                               [&](std::vector<std::string> ids) { stopped = std::move(ids); });
    REQUIRE(h.run_until([&] { return stopped.has_value(); }));
    CHECK(*stopped == std::vector<std::string>{id});
    Revision* r = h.rev(id);
    CHECK(state_name(r->state) == std::string("stopped"));
    CHECK(r->message == "by test");
    CHECK_FALSE(r->process_running);
    CHECK(h.processes->alive.empty());
    bool had_process = phase == State::loading || phase == State::ready;
    CHECK(h.isolation->signals == (had_process ? std::vector<int>{SIGTERM} : std::vector<int>{}));
    auto seen = h.states_of(id);
    CHECK(seen.back() == "stopped");
    CHECK(seen[seen.size() - 2] == (had_process ? "stopping" : state_name(phase)));

    // Work still in flight for it finds it stopped and drops out.
    std::size_t spawned = h.processes->commands.size();
    h.artifacts->release();
    h.preparer->release();
    h.run_until([] { return false; }, 1200); // past a backoff's restart too
    CHECK(h.state_of(id) == "stopped");
    CHECK(h.processes->commands.size() == spawned);
    CHECK(h.isolation->live_cgroups == 0);
    CHECK(h.states_of(id) == seen);
}

TEST_CASE("stop_all waits for every revision", "[state-machine]") {
    Harness h;
    std::string a = h.deploy(h.spec("a")).id;
    std::string b = h.deploy(h.spec("b")).id;
    REQUIRE(h.run_until([&] { return h.in(a, State::ready) && h.in(b, State::ready); }));
    h.isolation->ignore_term = true; // they stop only once killed after the grace
    h.rev(b)->spec.stop.grace_s = 0.05;
    h.rev(a)->spec.stop.grace_s = 0.05;
    bool done = false;
    h.revisions->stop_all([&] { done = true; });
    CHECK_FALSE(done);
    REQUIRE(h.run_until([&] { return done; }));
    CHECK(h.state_of(a) == "stopped");
    CHECK(h.state_of(b) == "stopped");
    CHECK(h.revisions->process_groups().empty());
}

TEST_CASE("a download's sink writes and hashes on its own thread", "[download-sink]") {
    TempDir dir;
    Store store(dir.path + "/store");
    REQUIRE(store.open().ok());
    std::string body;
    for (int i = 0; i < 200000; ++i)
        body += std::to_string(i * 7919) + "\n";
    Sha256 hash;
    hash.update(body);
    std::string hex = hash.finish_hex();

    // A queue of 64 KiB: write() must wait for the writer now and then.
    DownloadSink sink(store, 64 << 10);
    SECTION("every byte arrives, in order") {
        for (std::size_t at = 0; at < body.size(); at += 16384)
            REQUIRE(sink.write(body.data() + at, std::min<std::size_t>(16384, body.size() - at)));
        REQUIRE(sink.finish());
        CHECK(sink.writer().size() == body.size());
        StoreResult r = sink.writer().commit(hex, "test");
        CHECK(r.ok());
        CHECK(store.has_blob(hex));
    }
    SECTION("a retry starts the body again") {
        REQUIRE(sink.write("garbage", 7));
        REQUIRE(sink.reset());
        REQUIRE(sink.write(body.data(), body.size()));
        REQUIRE(sink.finish());
        CHECK(sink.writer().commit(hex, "test").ok());
    }
    SECTION("other bytes do not commit") {
        REQUIRE(sink.write(body.data(), body.size() - 1));
        REQUIRE(sink.finish());
        CHECK(sink.writer().commit(hex, "test").status == StoreStatus::digest_mismatch);
        CHECK_FALSE(store.has_blob(hex));
    }
}

TEST_CASE("a barrier runs its continuation once, after every branch and the seal",
          "[state-machine]") {
    int ran = 0;
    SECTION("branches first, then the seal") {
        Barrier b([&] { ++ran; });
        auto one = b.add();
        auto two = b.add();
        one();
        two();
        one(); // a second call counts once
        CHECK(ran == 0);
        b.seal();
        CHECK(ran == 1);
        b.seal();
        CHECK(ran == 1);
    }
    SECTION("nothing to wait for") {
        Barrier b([&] { ++ran; });
        b.seal();
        CHECK(ran == 1);
    }
    SECTION("a branch that never arrives holds it") {
        Barrier b([&] { ++ran; });
        auto one = b.add();
        auto dropped = b.add();
        b.seal();
        one();
        CHECK(ran == 0);
    }
}

namespace {
std::string env_value(const std::vector<std::string>& env, const std::string& name) {
    for (const auto& e : env)
        if (e.rfind(name + "=", 0) == 0) return e.substr(name.size() + 1);
    return "";
}
} // namespace

TEST_CASE("each revision has its own PORT and runtime directory", "[state-machine]") {
    Harness h;
    std::string a = h.deploy(h.spec("app")).id;
    REQUIRE(h.run_until([&] { return h.in(a, State::ready); }));
    DeploySpec s = h.spec("app");
    s.min_uptime_s = 10; // stays loading beside the serving one
    std::string b = h.deploy(std::move(s)).id;
    REQUIRE(h.run_until([&] { return h.in(b, State::loading); }));
    Revision* ra = h.rev(a);
    Revision* rb = h.rev(b);
    CHECK(ra->port != 0);
    CHECK(rb->port != 0);
    CHECK(ra->port != rb->port);
    CHECK(ra->runtime_dir != rb->runtime_dir);
    CHECK(std::filesystem::is_directory(rb->runtime_dir));
    REQUIRE(h.processes->envs.size() == 2);
    CHECK(env_value(h.processes->envs[1], "PORT") == std::to_string(rb->port));
    CHECK(env_value(h.processes->envs[1], "HEARTH_RUNTIME_DIR") == rb->runtime_dir);
    CHECK(env_value(h.processes->envs[1], "NOTIFY_SOCKET").empty());
    auto j = rb->to_json();
    CHECK(j["endpoint"]["port"] == rb->port);
    CHECK(j["readiness"]["state"] == "pending");
    CHECK(j["readiness"]["kind"] == "none");
    CHECK(j["process"]["state"] == "running");
    std::string dir = rb->runtime_dir;
    bool stopped = false;
    h.revisions->stop(*rb, "test", [&] { stopped = true; });
    REQUIRE(h.run_until([&] { return stopped; }));
    REQUIRE(h.run_until([&] { return !std::filesystem::exists(dir); }));
}

TEST_CASE("a missed readiness deadline fails readiness_timeout, no restart", "[state-machine]") {
    Harness h;
    DeploySpec s = h.spec("app");
    s.restart.policy = RestartPolicy::always;
    s.readiness.kind = health::ProbeKind::notify;
    s.readiness.timeout_s = 0.2;
    std::string id = h.deploy(std::move(s)).id;
    REQUIRE(h.run_until([&] { return h.in(id, State::loading); }));
    Revision* r = h.rev(id);
    CHECK(env_value(h.processes->envs[0], "NOTIFY_SOCKET") == r->runtime_dir + "/notify");
    CHECK(std::filesystem::exists(r->runtime_dir + "/notify"));
    REQUIRE(h.run_until([&] { return h.in(id, State::failed); }));
    r = h.rev(id);
    CHECK(r->reason == reason::readiness_timeout);
    CHECK(r->message.find("budget of 0.2 s") != std::string::npos);
    CHECK(r->message.find("readiness.timeout_s") != std::string::npos);
    CHECK(r->restarts == 0);
    CHECK(h.processes->alive.empty());
    auto j = r->to_json();
    CHECK(j["readiness"]["state"] == "failed");
    CHECK(j["process"]["state"] == "exited");
    CHECK(j["process"]["signal"] == "SIGKILL");
}

TEST_CASE("a load error reported in load_error.json fails load_error", "[state-machine]") {
    Harness h;
    DeploySpec s = h.spec("app");
    s.min_uptime_s = 10;
    s.restart.policy = RestartPolicy::never;
    std::string id = h.deploy(std::move(s)).id;
    REQUIRE(h.run_until([&] { return h.in(id, State::loading); }));
    Revision* r = h.rev(id);
    {
        std::ofstream f(r->runtime_dir + "/load_error.json");
        f << R"({"type": "KeyError", "message": "'x'", "frames": [{"file": "app/main.py", "line": 3, "function": "<module>"}]})";
    }
    h.processes->exit(r->pid, exited_with(1));
    REQUIRE(h.run_until([&] { return h.in(id, State::failed); }));
    r = h.rev(id);
    CHECK(r->reason == reason::load_error);
    REQUIRE(r->load_error.has_value());
    CHECK((*r->load_error)["type"] == "KeyError");
    CHECK((*r->load_error)["frames"][0]["line"] == 3);
    auto j = r->to_json();
    CHECK(j["error"]["type"] == "KeyError");
    CHECK(j["exit_code"] == 1);
}

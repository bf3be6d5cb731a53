#include "daemon/daemon.hpp"

#include "util/fs.hpp"
#include "util/log.hpp"

#include <csignal>
#include <unistd.h>

namespace hearth {

namespace {

DeployPolicy policy_from(const Options& o) {
    DeployPolicy p;
    p.default_limits.memory_max = o.default_memory;
    p.default_limits.cpu_quota = o.default_cpus;
    p.default_limits.pids_max = o.default_pids;
    p.max_limits.memory_max = o.max_memory;
    p.max_limits.cpu_quota = o.max_cpus;
    p.max_limits.pids_max = o.max_pids;
    p.default_stop.signal = SIGTERM;
    p.default_stop.grace_s = o.grace_s;
    p.default_user = o.user;
    p.default_group = o.group;
    p.cpu_placement = o.cpu_spread;
    return p;
}

} // namespace

SpawnResult Daemon::InitProcesses::spawn(const SpawnRequest& request) {
    return hearth::spawn(request);
}

void Daemon::InitProcesses::watch(pid_t pid, std::function<void(int)> cb) {
    init_.watch(pid, std::move(cb));
}

Daemon::Daemon(uv_loop_t* loop, const Options& options, Init& init)
    : loop_(loop), options_(options), init_(init), store_(options.state_dir),
      policy_(policy_from(options)), isolation_(loop, options), server_(loop),
      interpreters_(loop, init, options.python), store_jobs_(loop, store_, options),
      processes_(init) {}

Daemon::~Daemon() = default;

std::string Daemon::start() {
    auto started_at = std::chrono::steady_clock::now();
    if (Status made = make_dirs(options_.state_dir); !made) return made.error().message;
    if (StoreResult opened = store_.open(); !opened.ok()) return opened.error;
    if (std::string err = store_jobs_.size_budget(); !err.empty()) return err;
    for (const char* sub : {"lib", "logs", "scratch", "pycache", "pex-root"})
        if (Status made = make_dirs(options_.state_dir + "/" + sub); !made)
            return made.error().message;
    boot_script_path_ = options_.state_dir + "/lib/hearth_boot.py";
    if (Status written =
            write_file_atomic(boot_script_path_, boot_script_text, 0644, /*skip_if_equal=*/true);
        !written)
        return written.error().message;
    // Scratch directories of revisions from an earlier run are garbage.
    if (Status removed = remove_all(options_.state_dir + "/scratch"); !removed)
        log::warn("cannot remove old scratch directories", {{"error", removed.error().message}});
    if (Status made = make_dirs(options_.state_dir + "/scratch"); !made)
        return made.error().message;

    // Capacity is read once (a few small files): status and the deploy-time
    // check use this figure, and hearth's own limits do not change under it.
    capacity_ = health::read_capacity();
    log::info("capacity", {{"memory_bytes", capacity_.memory_bytes},
                           {"memory_source", capacity_.memory_source},
                           {"cpus", capacity_.cpus},
                           {"cpus_source", capacity_.cpus_source}});
    // A corrupt state.json is set aside here (with a log line): hearth
    // starts empty rather than refusing to start.
    LoadedState loaded = load_state_file(options_.state_dir);

    isolation_.start();
    forwarder_ = std::make_unique<StdoutForwarder>(STDOUT_FILENO);
    preparer_ = std::make_unique<LaunchPreparer>(loop_, interpreters_, options_.state_dir,
                                                 boot_script_path_);
    Revisions::Config config;
    config.state_dir = options_.state_dir;
    config.runtime_root = options_.run_dir + "/revisions";
    config.port_range = options_.port_range;
    config.init = &init_;
    revisions_ = std::make_unique<Revisions>(loop_, config, store_jobs_, isolation_, processes_,
                                             *preparer_, events_, forwarder_.get());
    Revisions& revisions = *revisions_;
    desired_ = std::make_unique<DesiredStateKeeper>(loop_, options_.state_dir, revisions);
    DesiredStateKeeper& desired = *desired_;
    // A revision that becomes ready (or ends) may change which params serve.
    events_.listen([&desired](const nlohmann::json& params) {
        if (params.value("type", "") == "state") desired.poke();
    });
    isolation_.on_oom = [&revisions](const std::string& name, const cgroup::OomChange& change) {
        revisions.on_oom_kill(name, change);
    };
    isolation_.on_watchdog = [&revisions](const std::string& name, std::uint64_t rss,
                                          std::uint64_t limit) {
        revisions.on_watchdog_kill(name, rss, limit);
    };
    isolation_.on_cpus_changed = [&revisions] { revisions.move_to_cpus(); };
    // The GC keeps what live revisions use and what a restart would need.
    store_jobs_.pins = [&revisions, &desired] {
        std::set<ObjectKey> pins = revisions.pinned_objects();
        pins.merge(desired.pinned_objects());
        return pins;
    };
    store_jobs_.on_progress = [&revisions](const std::string& hex, const FetchProgress& p) {
        revisions.on_fetch_progress(hex, p.bytes,
                                    p.total_known ? std::optional(p.total) : std::nullopt);
    };
    revisions.start();

    methods_ = std::make_unique<MethodContext>(
        MethodContext{loop_, options_, init_, policy_, revisions, store_jobs_, events_, isolation_,
                      started_at, desired, capacity_});
    register_methods(server_, *methods_);
    restore_locations(*methods_, loaded);
    if (auto err = server_.listen_unix(options_.run_dir + "/control.sock"); !err.empty())
        return err;
    log::info("control socket listening", {{"path", options_.run_dir + "/control.sock"}});
    // Probe interpreters in the background soon after start: a version
    // manager's shims can take seconds, which the first deploy should not
    // wait for, while the main command and the socket come first.
    interpreters_.probe_soon(100);
    return {};
}

void Daemon::stop_all(std::function<void()> done) {
    // Probe results no longer matter, and a slow version-manager shim must
    // not hold up the exit.
    interpreters_.cancel();
    if (!revisions_) return done();
    // The desired state is on disk before anything is stopped: a shutdown
    // keeps it (stopping revisions changes nothing in it).
    desired_->flush(
        [this, done = std::move(done)]() mutable { revisions_->stop_all(std::move(done)); });
}

std::vector<pid_t> Daemon::process_groups() const {
    return revisions_ ? revisions_->process_groups() : std::vector<pid_t>{};
}

void Daemon::remove_own_cgroups() {
    isolation_.remove_own_directories();
}

void Daemon::before_exit() {
    if (revisions_) {
        revisions_->stop_sampling();
        revisions_->drain_output();
    }
    if (forwarder_) forwarder_->flush_and_stop(std::chrono::milliseconds(2000));
    server_.close(nullptr);
}

} // namespace hearth

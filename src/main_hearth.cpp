// hearth: argument parsing and wiring only; the work lives in the library.

#include "daemon/daemon.hpp"
#include "daemon/options.hpp"
#include "init/init.hpp"
#include "init/sdnotify.hpp"
#include "init/spawn.hpp"
#include "util/log.hpp"
#include "util/uv_util.hpp"
#include "version.hpp"

#include <cstdio>
#include <cstdlib>
#include <unistd.h> // environ
#include <uv.h>

namespace {

// Everything that lives on the loop, in one scope so that it is destroyed
// before the loop is.
int run(uv_loop_t* loop, const hearth::Options& opts) {
    using namespace hearth;
    Init init(loop, opts.grace_s);
    if (auto err = init.start(); !err.empty()) {
        log::error("cannot start", {{"error", err}});
        return 1;
    }
    Daemon daemon(loop, opts, init);
    if (auto err = daemon.start(); !err.empty()) {
        // A supervisor that cannot take deploys must say so loudly rather
        // than run half-blind: the container's restart policy takes over.
        log::error("cannot start", {{"error", err}});
        init.close();
        return 1;
    }
    init.set_stop_hook([&daemon](std::function<void()> done) { daemon.stop_all(std::move(done)); });
    init.set_managed_groups([&daemon] { return daemon.process_groups(); });
    init.set_before_exit([&daemon] { daemon.before_exit(); });
    log::info("hearth started",
              {{"version", HEARTH_VERSION}, {"pid", static_cast<long>(getpid())}});
    if (!opts.command.empty()) init.start_main(opts.command, opts.main_env);
    sdnotify::send("READY=1");

    uv_run(loop, UV_RUN_DEFAULT);
    // Shutdown stopped the loop; background jobs (scratch removal, a store
    // job of a revision stopped mid-fetch) may still be running on the pool
    // and use the objects below, so wait for their completions first.
    while (blocking_jobs_in_flight() > 0)
        uv_run(loop, UV_RUN_ONCE);
    daemon.remove_own_cgroups();
    return init.exit_code();
}

} // namespace

int main(int argc, char** argv) {
    using namespace hearth;
    auto parsed = parse_options(argc, argv, cli::environment(environ, kEnvPrefix));
    if (!parsed) {
        std::fprintf(stderr, "hearth: %s (see hearth --help)\n", parsed.error().message.c_str());
        return 2;
    }
    Options& opts = parsed.value();
    if (opts.help) {
        std::fputs(usage().c_str(), stdout);
        return 0;
    }
    if (opts.version) {
        std::printf("hearth %s\n", HEARTH_VERSION);
        return 0;
    }

    log::setup(opts.log_format, opts.log_level);
    // Before the loop exists: no thread may start with the signals unblocked.
    Init::prepare_process();
    // The main command gets hearth's environment as hearth received it
    // (minus NOTIFY_SOCKET, which prepare_process took).
    if (!opts.command.empty()) opts.main_env = current_environment();
    // libarchive calls mktime() for every zip header; with TZ unset glibc
    // stats /etc/localtime under a global lock each time, which halves the
    // speed of parallel extraction. Revisions get a clean environment anyway.
    ::setenv("TZ", ":/etc/localtime", 0);

    uv_loop_t loop;
    uv_loop_init(&loop);
    // The loop is not run again after run(): handles that were still active
    // (a probe's pipes, say) would call back into destroyed objects. Their
    // memory goes with the process.
    return run(&loop, opts);
}

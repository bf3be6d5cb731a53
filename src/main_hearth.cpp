// hearth: argument parsing and wiring only; the work lives in the library.

#include "init.hpp"
#include "log.hpp"
#include "options.hpp"
#include "sdnotify.hpp"
#include "version.hpp"

#include <uv.h>

#include <cstdio>

int main(int argc, char** argv) {
    using namespace hearth;
    auto parsed = parse_options(argc, argv);
    if (auto* error = std::get_if<std::string>(&parsed)) {
        std::fprintf(stderr, "hearth: %s\nTry 'hearth --help' for more information.\n",
                     error->c_str());
        return 2;
    }
    Options& opts = std::get<Options>(parsed);
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

    uv_loop_t loop;
    uv_loop_init(&loop);
    Init init(&loop, opts.grace_s);
    if (auto err = init.start(); !err.empty()) {
        log::error("cannot start", {{"error", err}});
        return 1;
    }
    log::info("hearth started", {{"version", HEARTH_VERSION}, {"pid", static_cast<long>(getpid())}});
    if (!opts.command.empty()) init.start_main(opts.command);
    sdnotify::send("READY=1");

    uv_run(&loop, UV_RUN_DEFAULT);
    return init.exit_code();
}

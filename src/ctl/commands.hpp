#pragma once
// hearthctl's commands: each one connects to hearth, sends its requests
// (hearth-protocol(7)) and prints the results (ctl/format.hpp) or, with
// --json, hearth's JSON. The behaviour and exit statuses are hearthctl(1)'s.

#include "ctl/args.hpp"

#include <cstdio>

namespace hearth {

// Entry point of the hearthctl binary: parses argv (and HEARTH_SOCKET from
// the environment), runs the command with stdout/stderr, returns the
// process exit status (see ctl::Exit).
int ctl_main(int argc, char** argv);

namespace ctl {

// Runs the parsed command (args must come from a successful parse_args).
// Writes results to `out`, diagnostics to `err`, returns an Exit status;
// `--params -` reads `in`. Blocking. For `events` and `logs -f` it installs
// a SIGINT/SIGTERM handler that ends the follow cleanly (exit 0) and
// restores the old one on return. The `deploy --wait` progress line is
// drawn only when `err` is a terminal. Never throws: an unexpected
// exception is reported on `err` as an internal error (exit_failed).
int run(const Args& args, std::FILE* out, std::FILE* err, std::FILE* in = stdin);

} // namespace ctl
} // namespace hearth

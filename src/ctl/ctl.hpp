#pragma once
// hearthctl: the command-line client of the control socket. The behaviour
// and output formats are documented in hearthctl(1); the wire protocol in
// hearth-protocol(7).
//
// Split so the pure parts can be unit-tested without a daemon:
//   ctl/args.hpp           the command line (util/cli.hpp's parser) and exit statuses
//   ctl/format.hpp         tables and lines for people, tolerant JSON reads
//   ctl/deploy_params.hpp  the deploy request from flags and --params
//   ctl/wait.hpp           deploy --wait: verdicts and the failure report
//   ctl/commands.hpp       run() and ctl_main(): the I/O, through ctl/client.hpp
// Nothing here throws to the caller, logs, or uses libuv.

#include "ctl/args.hpp"
#include "ctl/commands.hpp"
#include "ctl/deploy_params.hpp"
#include "ctl/format.hpp"
#include "ctl/wait.hpp"

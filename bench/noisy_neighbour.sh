#!/bin/bash
# Benchmark: a latency-sensitive revision beside noisy neighbours.
#
#   bench/noisy_neighbour.sh [BUILD_DIR]   (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/noisy_neighbour.sh   uses that binary, no build
#   REQUESTS=1000 INTERVAL_US=1000 ROUNDS=8 SERVER_MODES=shared,slice,exclusive \
#       bench/noisy_neighbour.sh
#
# One hearth (auto driver, --cgroup-parent /hearth-bench-noisy_neighbour-<pid>,
# an ordinary child, not PID 1) runs the workload `serve`: a TCP server that
# answers each line. A python client outside hearth (its own process) sends
# REQUESTS requests over one connection, one every INTERVAL_US (so a phase
# lasts REQUESTS x INTERVAL_US: 1 s, ten CFS periods), timing each round
# trip, in five conditions:
#   alone                      only the server runs;
#   cpu hog (cpus 0.5)         beside two busy processes limited to 0.5 CPU
#                              (hearth confines them to one CPU, see
#                              --cpu-placement in hearth(8));
#   memory hogs (OOM)          beside memory hogs (limits.memory 64Mi)
#                              deployed one after the other for as long as the
#                              client runs, each OOM-killed;
#   cpu hog + memory hogs      both;
#   idle cpu hog + memory hogs both, the CPU hog at limits.cpu_weight "idle";
# and each of them with the server in three placements (SERVER_MODES):
#   shared                     an ordinary revision (no limits);
#   slice                      limits {"cpu_slice_us": 100}: an ordinary
#                              revision with a 0.1 ms scheduler slice;
#   exclusive                  limits {"cpus": 1, "cpu_exclusive": true}: a CPU
#                              of its own, everything else on the rest.
# ROUNDS rounds of all of them (short phases, many rounds: the noise of a
# shared VM, bursts of a few seconds, then hits each condition alike; the
# placement that goes first rotates). Two latencies per request:
#   round trip       as the client sees it. The client runs on the same two
#                    CPUs as the neighbours, outside hearth, so part of this
#                    tail is the client's own wait for a CPU; the bench
#                    measures that too (schedstat: per request, and the share
#                    of the slowest 1% of round trips);
#   the server's own from the kernel's receive timestamp of the request
#   part             (SO_TIMESTAMPNS) to the answer written: what hearth's
#                    placement of the revision decides.
# Reports per placement p50/p99/max over all requests, failed requests
# (errors or wrong answers), each p99 against the same placement alone (the
# issue's aim: within 1.25x) and against the shared server alone, pooled
# and as the median over rounds of each round's own p99 ratio (robust to a
# noise burst in a few phases), the host's steal time in the phases, and an
# "aim:" line per placement and metric; for each memory hog, the time from
# the OOM kill to the oom_killed event reaching a subscriber: the kill time
# is when the kernel's own notification reaches the bench (its own v1 eventfd on
# memory.oom_control, or v2 inotify on memory.events; the first wakeup that
# reads oom_kill above 0), and, as a cross-check, the hog's last heartbeat
# (written after each 4 MiB it touched). The bench blocks on those instead
# of polling, so it takes no CPU from the server it measures. Every process
# is stopped by pid or through hearth. Last, for context, the machine's own
# wakeup latency with the bench idle (see `wakeup` in
# bench/isolation_bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/isolation_lib.sh
. bench/isolation_lib.sh
REQUESTS=${REQUESTS:-1000}
ROUNDS=${ROUNDS:-8}
INTERVAL_US=${INTERVAL_US:-1000}
SERVER_MODES=${SERVER_MODES:-shared,slice,exclusive}

make_fixtures
PORT=$("$SYSPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log "starting hearth (parent $CG_PARENT); server port $PORT"
start_hearth noisy --cgroup-parent "$CG_PARENT"
DRIVER=$("$HEARTHCTL" --socket "$SOCK" --json ping | "$SYSPY" -c 'import json,sys; print(json.load(sys.stdin)["cgroup_driver"])')
log "driver $DRIVER; $ROUNDS rounds of five conditions x server placements $SERVER_MODES, $REQUESTS requests every $INTERVAL_US us"
"$SYSPY" "$HELPER" noisy --socket "$SOCK" --deps "$DEPS" --source "$SOURCE" --port "$PORT" \
    --requests "$REQUESTS" --interval-us "$INTERVAL_US" --rounds "$ROUNDS" --server-modes "$SERVER_MODES" --memory-mount "$MEMORY_MOUNT" --parent "$CG_PARENT" \
    --workdir "$TMP" --out "$TMP/noisy.json"
"$SYSPY" "$HELPER" report-noisy "$TMP/noisy.json"
# Context for the table: how late this machine wakes a sleeping thread with
# nothing of the bench running (idle vCPUs of a VM wake late).
"$SYSPY" "$HELPER" wakeup --seconds 5
grep -ciE 'oom' "$TMP/noisy/hearth.log" | sed 's/^/hearth log lines mentioning OOM: /'
echo "driver $DRIVER; kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); binary: $HEARTH"

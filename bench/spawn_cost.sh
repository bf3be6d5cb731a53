#!/bin/bash
# Benchmark: what cgroup placement adds to a deploy's path to exec.
#
#   bench/spawn_cost.sh [BUILD_DIR]        (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/spawn_cost.sh   uses that binary, no build
#   RUNS=40 bench/spawn_cost.sh            rounds (default 30, after 3 warm-up rounds)
#
# Two hearth daemons (ordinary children, not PID 1), the same binary: one
# with the driver this machine offers (`auto`: hybrid, v1 or v2) under
# --cgroup-parent /hearth-bench-spawn_cost-<pid>, one with --cgroup-driver
# none. Each round deploys the workload `hold` to both, in alternating order,
# with the same limits (memory 256Mi, cpus 1, pids 256; the none driver keeps
# only the memory limit, by its watchdog), the deps already in the store, and
# times from just before the deploy request:
#   exec      -> user code began (the workload stamps time.time() first thing;
#                includes the interpreter's start-up, the same for both)
#   spawn     -> the `loading` event (hearth spawned the process)
#   starting  -> hearth's own timings_ms.starting (cgroup creation, limits,
#                placement, fork/exec)
# and reports medians (and p90 of exec). Every revision is stopped after its
# round; hearth daemons are stopped by pid; the cgroup parent is removed.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/isolation_lib.sh
. bench/isolation_lib.sh
RUNS=${RUNS:-30}

make_fixtures
log "starting hearth (auto driver, parent $CG_PARENT) and hearth (--cgroup-driver none)"
start_hearth cg --cgroup-parent "$CG_PARENT"
SOCK_CG=$SOCK
start_hearth none --cgroup-driver none
SOCK_NONE=$SOCK
DRIVER=$("$HEARTHCTL" --socket "$SOCK_CG" --json ping | "$SYSPY" -c 'import json,sys; print(json.load(sys.stdin)["cgroup_driver"])')
log "auto driver here: $DRIVER"

log "$RUNS rounds (+3 warm-up), alternating"
"$SYSPY" "$HELPER" spawn --target "$DRIVER=$SOCK_CG" --target "none=$SOCK_NONE" \
    --deps "$DEPS" --source "$SOURCE" --runs "$RUNS" --warmup 3 \
    --limits '{"memory":"256Mi","cpus":1,"pids":256}' --stamp-dir "$TMP" --out "$TMP/spawn.json"
"$SYSPY" "$HELPER" report-spawn "$TMP/spawn.json"
echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); binary: $HEARTH"

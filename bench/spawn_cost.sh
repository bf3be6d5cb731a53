#!/bin/bash
# Benchmark: what cgroup placement adds to a deploy's path to exec.
#
#   bench/spawn_cost.sh [BUILD_DIR]        (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/spawn_cost.sh   uses that binary, no build
#   RUNS=40 bench/spawn_cost.sh            rounds (default 30, after 3 warm-up rounds)
#
# Hearth daemons (ordinary children, not PID 1), the same binary: one with
# the driver this machine offers (`auto`: hybrid, v1 or v2) under
# --cgroup-parent /hearth-bench-spawn_cost-<pid>/auto, one with
# --cgroup-driver none, and on a hybrid machine a third in a mount namespace
# without the cgroup2 mount, so that it runs the pure v1 driver. Each round
# deploys the workload `hold` to each, in an order that rotates per round,
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
driver_of() { "$HEARTHCTL" --socket "$1" --json ping | "$SYSPY" -c 'import json,sys; print(json.load(sys.stdin)["cgroup_driver"])'; }
log "starting hearth (auto driver, parent $CG_PARENT/auto) and hearth (--cgroup-driver none)"
start_hearth cg --cgroup-parent "$CG_PARENT/auto"
SOCK_CG=$SOCK
start_hearth none --cgroup-driver none
SOCK_NONE=$SOCK
DRIVER=$(driver_of "$SOCK_CG")
log "auto driver here: $DRIVER"
TARGETS=(--target "$DRIVER=$SOCK_CG" --target "none=$SOCK_NONE")
if [ "$DRIVER" = hybrid ]; then
    # Pure v1 as well: a third hearth in a mount namespace of its own
    # without the cgroup2 mount (private propagation: the machine keeps it),
    # so its auto driver finds only the v1 hierarchies.
    cat >"$TMP/hearth-v1" <<EOS
#!/bin/sh
exec unshare -m --propagation private sh -c 'umount -l "\$0" && exec "\$@"' "$UNIFIED_MOUNT" "$HEARTH" "\$@"
EOS
    chmod +x "$TMP/hearth-v1"
    HEARTH_AUTO=$HEARTH
    HEARTH=$TMP/hearth-v1 start_hearth v1 --cgroup-parent "$CG_PARENT/v1"
    HEARTH=$HEARTH_AUTO
    V1_DRIVER=$(driver_of "$SOCK")
    log "hearth without the cgroup2 mount: driver $V1_DRIVER"
    TARGETS+=(--target "$V1_DRIVER=$SOCK")
fi

log "$RUNS rounds (+3 warm-up), order rotating"
"$SYSPY" "$HELPER" spawn "${TARGETS[@]}" \
    --deps "$DEPS" --source "$SOURCE" --runs "$RUNS" --warmup 3 \
    --limits '{"memory":"256Mi","cpus":1,"pids":256}' --stamp-dir "$TMP" --out "$TMP/spawn.json"
"$SYSPY" "$HELPER" report-spawn "$TMP/spawn.json"
echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); binary: $HEARTH"

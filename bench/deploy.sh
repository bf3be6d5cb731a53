#!/bin/bash
# Benchmark of hearth's deploy fast path and of its native launcher.
#
#   bench/deploy.sh [BUILD_DIR]              (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/deploy.sh   uses that binary, no build
#   PEX_SRC=/tmp/pexsrc bench/deploy.sh      also measures the real pex runtime (c)
#   REPS=15 ROUNDS=30 bench/deploy.sh        deploys per measurement / launch rounds
#   PYTHON=/usr/bin/python3.11 bench/deploy.sh   hearth --python PYTHON (default: hearth
#                                            picks from PATH, as in production)
#
# Measures, in one run (medians, with p25/p75):
#  (1) fast path: deps.pex already in the store (a first deploy warmed it), a
#      new ~1 MB source.pex per deploy (one file changed, so a new sha256).
#      From sending `deploy` on the control socket to the `loading` event
#      (process spawned) and to the first line the user code prints, with
#      hearth's per-phase timings_ms (pending, fetching, extracting, starting).
#      When /dev/shm is a tmpfs, a second hearth with its state dir there is
#      deployed to alternately with the first (state under /tmp): the
#      difference is the filesystem's share (inode creation, fsync/syncfs).
#  (2) launch of an entry that imports 20 small pure-Python packages and
#      prints one line, spawn -> that line (and -> exit):
#      (a)  hearth's native runtime: its boot script run with exactly the
#           command line and environment hearth gave a live revision (read
#           from /proc), and end to end through hearth (deploy -> line);
#      (b)  the bare interpreter importing the same packages from one plain
#           directory on PYTHONPATH (b' : from 20 directories, as many
#           sys.path entries as the native runtime has);
#      (c)  the pex runtime, `PEX_PATH=deps.pex python source.pex`, on real
#           pex files built by the pex tool from PEX_SRC (skipped without);
#      plus a baseline: the same interpreter printing one line with `-c`.
#      overhead(X) = median(X) - median(baseline).
#      Each variant is timed twice: by a round-robin runner (variants
#      interleaved; spawn -> first stdout line and -> exit) and by hyperfine
#      (spawn -> exit, under `env -i` with the variant's environment).
# Everything runs the interpreter hearth picks (`python` in status), with
# PYTHONDONTWRITEBYTECODE and PYTHONUNBUFFERED unset and every bytecode cache
# warmed first. pex's output and code stay in a temporary directory.
# Every process it starts is stopped by pid; state and run dirs are temporary.
set -euo pipefail
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED

cd "$(dirname "$0")/.."
SOURCE_ROOT=$PWD
REPS=${REPS:-15}
ROUNDS=${ROUNDS:-30}
MIN_UPTIME=0.3
SYSPY=/usr/bin/python3 # runs the helpers, mkpex.py and the pex tool (not measured)
HELPER=$SOURCE_ROOT/bench/deploy_bench.py
MKPEX=$SOURCE_ROOT/tests/fixtures/mkpex.py

# shellcheck source=bench/build_lib.sh
. bench/build_lib.sh
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

if ! command -v hyperfine >/dev/null; then
    log "installing hyperfine"
    [ "$(id -u)" = 0 ] || { echo "need root to install hyperfine" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
HYPERFINE=$(type -P hyperfine)

# ------------------------------------------------------------------ build
bench_hearth "${1:-}"

TMP=$(mktemp -d /tmp/hearth-bench-deploy.XXXXXX)
SHM=
PIDS=() # hearth daemons still running
# stop_pid PID: TERM (hearth stops its revisions), KILL after 10 s.
stop_pid() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    rm -rf "$TMP" ${SHM:+"$SHM"}
    remove_bench_cgroups
}
trap cleanup EXIT
# shellcheck source=bench/cgroup_parent.sh
. bench/cgroup_parent.sh
mkdir -p "$TMP/cwd" "$TMP/pex-root"
SOCK=$TMP/run/control.sock          # the measured hearth: state on disk, under /tmp
SHM_SOCK=                           # a second one with its state on tmpfs, if any
ctl() { "$HEARTHCTL" --socket "$SOCK" "$@"; }

# ------------------------------------------------------------------ inputs
log "generating 20 packages, the entry and the ~1 MB fast-path code"
PKGS=$("$SYSPY" "$HELPER" gen "$TMP/gen")
dist_args=()
for p in $PKGS; do dist_args+=(--dist "${p//_/-}==1.0:$TMP/gen/dists/$p"); done
"$SYSPY" "$MKPEX" deps "$TMP/deps.pex" "${dist_args[@]}"
"$SYSPY" "$MKPEX" source "$TMP/entry.pex" --code "$TMP/gen/entry" --entry hb_entry

pex_args=()
if [ -n "${PEX_SRC:-}" ]; then
    log "building real pex files with the pex tool from $PEX_SRC"
    "$SYSPY" -m pip wheel -q --no-deps --no-build-isolation --no-index -w "$TMP/wheels" \
        "$TMP"/gen/projects/* >/dev/null
    reqs=()
    for p in $PKGS; do reqs+=("${p//_/-}"); done
    PEX_ROOT=$TMP/pex-build-root PYTHONPATH=$PEX_SRC "$SYSPY" -m pex --no-pypi -f "$TMP/wheels" \
        "${reqs[@]}" -o "$TMP/real-deps.pex" >/dev/null
    PEX_ROOT=$TMP/pex-build-root PYTHONPATH=$PEX_SRC "$SYSPY" -m pex -D "$TMP/gen/entry" \
        -m hb_entry -o "$TMP/real-source.pex" >/dev/null
    PEX_VERSION=$(PYTHONPATH=$PEX_SRC "$SYSPY" -m pex --version)
    pex_args=(--pex-deps "$TMP/real-deps.pex" --pex-source "$TMP/real-source.pex"
        --pex-root "$TMP/pex-root")
else
    log "(c) pex runtime SKIPPED: no PEX_SRC given (a pex source tree, see doc/pex-format.md)"
fi

# ------------------------------------------------------------------ hearth
# start_hearth STATE_DIR RUN_DIR NAME: starts hearth in the background and
# waits for its socket. Each hearth needs a cgroup parent of its own (at start
# it takes whatever is under its parent's envs/ for leftovers of its own).
HEARTH_OPTS=()
[ -n "${PYTHON:-}" ] && HEARTH_OPTS+=(--python "$PYTHON")
start_hearth() {
    "$HEARTH" --state-dir "$1" --run-dir "$2" --cgroup-parent "$CG_PARENT/$3" "${HEARTH_OPTS[@]}" \
        >>"$TMP/hearth.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 200); do
        "$HEARTHCTL" --socket "$2/control.sock" ping >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/hearth.out" >&2; exit 1; }
        sleep 0.05
    done
    "$HEARTHCTL" --socket "$2/control.sock" ping >/dev/null
}

log "starting hearth"
start_hearth "$TMP/state" "$TMP/run" disk
targets=(--target "disk=$SOCK")
# A second hearth with its store on tmpfs, deployed to alternately with the
# first: the difference is what the filesystem (inode creation, fsync and
# syncfs on a shared disk) costs, apart from hearth's own work.
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    SHM=$(mktemp -d /dev/shm/hearth-bench-deploy.XXXXXX)
    log "starting a second hearth with its state dir on tmpfs ($SHM)"
    start_hearth "$SHM/state" "$SHM/run" tmpfs
    SHM_SOCK=$SHM/run/control.sock
    targets+=(--target "tmpfs=$SHM_SOCK")
fi

# The first deploy: deps cold (fetch + extract), interpreter chosen.
log "first deploy (cold: warms the store with deps.pex)"
"$SYSPY" "$HELPER" deploys "${targets[@]}" --location native20 --deps "$TMP/deps.pex" \
    --source "$TMP/entry.pex" --module hb_entry --arg=--hold --reps 1 --warmup 0 \
    --min-uptime "$MIN_UPTIME" --out "$TMP/cold.json"

log "(2) end to end: $REPS deploys of the cached deps + entry"
"$SYSPY" "$HELPER" deploys --target "disk=$SOCK" --location native20 --deps "$TMP/deps.pex" \
    --source "$TMP/entry.pex" --module hb_entry --arg=--hold --reps "$REPS" --warmup 2 \
    --min-uptime "$MIN_UPTIME" --out "$TMP/e2e.json"

log "(1) fast path: $REPS deploys, each with a new ~1 MB source.pex"
"$SYSPY" "$HELPER" deploys "${targets[@]}" --location fastpath --deps "$TMP/deps.pex" \
    --code "$TMP/gen/fastcode" --entry fastapp.main --mkpex "$MKPEX" --workdir "$TMP" \
    --reps "$REPS" --warmup 2 --min-uptime "$MIN_UPTIME" --out "$TMP/fast.json"
ctl stop fastpath >/dev/null
if [ -n "$SHM_SOCK" ]; then
    log "stopping the tmpfs hearth (pid ${PIDS[1]})"
    stop_pid "${PIDS[1]}"
    PIDS=("${PIDS[0]}")
fi

status=$(ctl --json status native20)
read -r PY NATIVE_PID < <(printf '%s' "$status" | "$SYSPY" -c '
import json, sys
loc = json.load(sys.stdin)["locations"][0]
rev = next(r for r in loc["revisions"] if r["id"] == loc["active"])
print(rev["python"], rev["pid"])')
log "hearth picked $PY; native revision pid $NATIVE_PID"

log "(2) launches: $ROUNDS round-robin rounds, then hyperfine"
"$SYSPY" "$HELPER" spec --pid "$NATIVE_PID" --gen "$TMP/gen" --cwd "$TMP/cwd" \
    "${pex_args[@]}" --out "$TMP/spec.json"
"$SYSPY" "$HELPER" launch "$TMP/spec.json" --rounds "$ROUNDS" --warmup 3 \
    --hyperfine "$HYPERFINE" --hf-runs "$ROUNDS" --hf-warmup 5 --out "$TMP/launch.json"

ctl stop native20 >/dev/null
log "stopping hearth (pid ${PIDS[0]})"
stop_pid "${PIDS[0]}"
PIDS=()

"$SYSPY" "$HELPER" report --cold "$TMP/cold.json" --fast "$TMP/fast.json" --e2e "$TMP/e2e.json" \
    --launch "$TMP/launch.json" --min-uptime "$MIN_UPTIME" \
    --source-pex "$TMP/source-fastpath.pex"
echo
echo "interpreter: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])')), the one hearth picked"
echo "native command: $("$SYSPY" -c 'import json,sys; v=json.load(open(sys.argv[1]))["variants"][1]; print(" ".join(v["argv"]))' "$TMP/spec.json")"
[ -n "${PEX_VERSION:-}" ] && echo "pex: $PEX_VERSION (from $PEX_SRC), run with PEX_ROOT in a temporary directory"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) CPUs; hyperfine $("$HYPERFINE" --version | cut -d' ' -f2)"
echo "binary: $HEARTH"

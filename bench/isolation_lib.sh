# shellcheck shell=bash
# shellcheck disable=SC2034,SC2013 # globals for the sourcing scripts; pids are words
# Shared by bench/spawn_cost.sh and bench/noisy_neighbour.sh (sourced after
# `cd` to the source root and `set -euo pipefail`): the build, temporary
# dirs, hearth daemons started and stopped by pid, the workload fixtures, and
# removal of the bench's cgroup directories (--cgroup-parent
# /hearth-bench-<name>-<pid>, in every hierarchy) on exit.
SOURCE_ROOT=$PWD
SYSPY=/usr/bin/python3
HELPER=$SOURCE_ROOT/bench/isolation_bench.py
MKPEX=$SOURCE_ROOT/tests/fixtures/mkpex.py
unset PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED

# shellcheck source=bench/build_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/build_lib.sh"
[ "$(id -u)" = 0 ] || { echo "needs root (cgroupfs)" >&2; exit 1; }

bench_hearth "${1:-}"

BENCH_NAME=$(basename "$0" .sh)
# shellcheck source=bench/cgroup_parent.sh
. "$(dirname "${BASH_SOURCE[0]}")/cgroup_parent.sh"
TMP=$(mktemp -d "/tmp/hearth-bench-$BENCH_NAME.XXXXXX")
chmod 755 "$TMP"
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
    set +e
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    remove_bench_cgroups
    rm -rf "$TMP"
}
trap cleanup EXIT

# start_hearth NAME HEARTH-ARGS...: a daemon with state and run dirs under
# $TMP/NAME (not PID 1: an ordinary child, as bench/deploy.sh runs it); waits
# for its socket. Sets SOCK.
start_hearth() {
    local name=$1
    shift
    mkdir -p "$TMP/$name"
    "$HEARTH" --state-dir "$TMP/$name/state" --run-dir "$TMP/$name/run" --python "$SYSPY" \
        "$@" >>"$TMP/$name/hearth.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    SOCK=$TMP/$name/run/control.sock
    for _ in $(seq 200); do
        "$HEARTHCTL" --socket "$SOCK" ping >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name/hearth.log" >&2; exit 1; }
        sleep 0.05
    done
    "$HEARTHCTL" --socket "$SOCK" ping >/dev/null
}

# make_fixtures: $TMP/sample/deps.pex (DEPS) and $TMP/workloads.pex (SOURCE,
# module hearth_workloads = tests/fixtures/workloads.py).
make_fixtures() {
    "$SYSPY" "$MKPEX" sample "$TMP/sample" >/dev/null
    mkdir -p "$TMP/code"
    cp "$SOURCE_ROOT/tests/fixtures/workloads.py" "$TMP/code/hearth_workloads.py"
    "$SYSPY" "$MKPEX" source "$TMP/workloads.pex" --code "$TMP/code" --entry hearth_workloads >/dev/null
    DEPS=$TMP/sample/deps.pex
    SOURCE=$TMP/workloads.pex
}

#!/bin/bash
# Benchmark of hearth's init layer against tini and supervisord.
#
#   bench/init.sh [BUILD_DIR]        (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/init.sh   uses that binary, no build
#   RUNS=500 bench/init.sh           more runs (default 300, at least 200)
#
# Measures, in one run:
#   1. start-up + exit wall time (hyperfine, medians): `hearth -- true`,
#      `tini -- true`, bare `true`, plus variants that split hearth's cost:
#      `hearth --version` (loading and static initialisation only, no event
#      loop, no fork), `--log-level warn` (logging), `--python` (one given
#      interpreter instead of probing every python on PATH);
#   2. idle RSS (VmRSS, after 1 s) of a hearth daemon, of tini running `sleep`
#      (tini only) and of supervisord running one `sleep` program (supervisord
#      only);
#   3. where hearth's start-up goes: the dynamic loader's statistics
#      (LD_DEBUG=statistics) and the shared libraries it maps.
# Installs tini, supervisor and hyperfine with apt-get when missing (root).
# Every process it starts is stopped by pid; state and run dirs are temporary.
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-300}
[ "$RUNS" -ge 200 ] || RUNS=200
WARMUP=20

# shellcheck source=bench/build_lib.sh
. bench/build_lib.sh

# ------------------------------------------------------------------ tools
missing=()
command -v tini >/dev/null || missing+=(tini)
command -v supervisord >/dev/null || missing+=(supervisor)
command -v hyperfine >/dev/null || missing+=(hyperfine)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || { echo "need root to install ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# type -P: the files, not the shell builtins (true is one).
TINI=$(type -P tini)
SUPERVISORD=$(type -P supervisord)
TRUE=$(type -P true)
SLEEP=$(type -P sleep)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

# ------------------------------------------------------------------ build
bench_hearth "${1:-}"

TMP=$(mktemp -d /tmp/hearth-bench.XXXXXX)
STARTED=()
cleanup() {
    local p
    for p in "${STARTED[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$TMP"
    # A hearth killed by signal (idle measurement) leaves its cgroup tree.
    remove_bench_cgroups
}
trap cleanup EXIT
# shellcheck source=bench/cgroup_parent.sh
. bench/cgroup_parent.sh
mkdir -p "$TMP/state" "$TMP/run"
HEARTH_ARGS=(--state-dir "$TMP/state" --run-dir "$TMP/run" --cgroup-parent "$CG_PARENT")
HEARTH_CMD="$HEARTH ${HEARTH_ARGS[*]}" # for hyperfine (paths without spaces)

# ------------------------------------------------------- 1. start-up time
log "hyperfine: $RUNS runs each, $WARMUP warm-up runs"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --style basic \
    --export-json "$TMP/times.json" \
    -n 'true' "$TRUE" \
    -n 'tini -- true' "$TINI -- $TRUE" \
    -n 'hearth -- true' "$HEARTH_CMD -- $TRUE" \
    -n 'hearth --log-level warn -- true' "$HEARTH_CMD --log-level warn -- $TRUE" \
    -n "hearth --python $PY -- true" "$HEARTH_CMD --python $PY -- $TRUE" \
    -n 'hearth --version' "$HEARTH --version" \
    >/dev/null 2>"$TMP/hyperfine.err" || { cat "$TMP/hyperfine.err" >&2; exit 1; }

# ------------------------------------------------------------ 2. idle RSS
vmrss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$1/status"; }

# measure_idle NAME CMD...: runs CMD in the background, records its VmRSS
# after 1 s, then stops it with TERM (KILL after 10 s), and its children.
declare -A RSS
measure_idle() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    sleep 1 # the measurement point itself, not a synchronisation
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$TMP/$name.out" >&2
        echo "$name exited early" >&2
        exit 1
    fi
    RSS[$name]=$(vmrss_kb "$pid")
    if [ "$name" = hearth ]; then
        grep -v '^$' /proc/"$pid"/maps | awk '$6 ~ /\.so/ { print $6 }' | sort -u >"$TMP/maps.txt"
        THREADS=$(awk '$1 == "Threads:" { print $2 }' "/proc/$pid/status")
    fi
    # Its children (supervisord's sleep) would outlive a KILLed parent:
    # remember them to kill them by pid afterwards.
    local kids
    kids=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local k
    for k in $kids; do
        kill -KILL "$k" 2>/dev/null || true
    done
}

cat >"$TMP/supervisord.conf" <<EOF
[supervisord]
nodaemon=true
logfile=$TMP/supervisord.log
pidfile=$TMP/supervisord.pid
childlogdir=$TMP
[program:sleep]
command=$SLEEP 3600
autorestart=false
EOF

log "idle RSS"
measure_idle hearth "$HEARTH" "${HEARTH_ARGS[@]}"
measure_idle tini "$TINI" -- "$SLEEP" 3600
measure_idle supervisord "$SUPERVISORD" -c "$TMP/supervisord.conf"

# --------------------------------------------------- 3. start-up breakdown
LD_DEBUG=statistics "$HEARTH" --version 2>"$TMP/ld-stats.txt" >/dev/null || true
LD_DEBUG=statistics "$TRUE" 2>"$TMP/ld-stats-true.txt" || true

# ------------------------------------------------------------------ report
"$PY" - "$TMP/times.json" "$PY" "${RSS[hearth]}" "${RSS[tini]}" "${RSS[supervisord]}" <<'PY'
import json, sys
times = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ms = {k: v["median"] * 1000 for k, v in times.items()}
base, tini = ms["true"], ms["tini -- true"]
print(f"\nStart-up and exit, wall time ({len(times['true']['times'])} runs each, medians)")
print(f"{'command':34} {'median ms':>10} {'min ms':>8} {'x true':>8} {'x tini':>8}")
for name in times:
    r = times[name]
    print(f"{name:34} {ms[name]:10.3f} {r['min'] * 1000:8.3f} "
          f"{ms[name] / base:8.2f} {ms[name] / tini:8.2f}")
py = sys.argv[2]
rss = {"hearth (daemon)": int(sys.argv[3]), "tini -- sleep (tini only)": int(sys.argv[4]),
       "supervisord + 1 sleep (supervisord only)": int(sys.argv[5])}
h = rss["hearth (daemon)"]
print("\nIdle RSS after 1 s (VmRSS)")
print(f"{'process':42} {'KiB':>8} {'x hearth':>9}")
for name, kb in rss.items():
    print(f"{name:42} {kb:8d} {kb / h:9.2f}")
print("\nhearth's start-up split (medians):")
print(f"  exec of a trivial program (true):           {base:7.3f} ms")
print(f"  + loading libraries, static init (--version): {ms['hearth --version'] - base:+7.3f} ms")
print(f"  + daemon start-up, loop, fork/exec, reap, exit: "
      f"{ms['hearth -- true'] - ms['hearth --version'] - base:+7.3f} ms "
      f"(the child's own exec of true: ~{base:.3f} ms)")
print(f"  of which probing every python on PATH (vs --python {py}): "
      f"{ms['hearth -- true'] - ms[f'hearth --python {py} -- true']:+7.3f} ms")
print(f"  of which logging at info (vs --log-level warn): "
      f"{ms['hearth -- true'] - ms['hearth --log-level warn -- true']:+7.3f} ms")
PY

echo
echo "Dynamic loader statistics (LD_DEBUG=statistics):"
echo "  hearth --version:"
sed -n 's/^ *[0-9]*: *//p' "$TMP/ld-stats.txt" | grep -E 'total startup time|time needed for relocation|final number of relocations:' | sed 's/^/    /' || true
echo "  true:"
sed -n 's/^ *[0-9]*: *//p' "$TMP/ld-stats-true.txt" | grep -E 'total startup time|final number of relocations:' | sed 's/^/    /' || true
echo
echo "Shared libraries mapped by a running hearth daemon ($(wc -l <"$TMP/maps.txt"), threads: $THREADS):"
sed 's/^/  /' "$TMP/maps.txt"
echo
echo "ldd $HEARTH ($(ldd "$HEARTH" | wc -l) entries):"
ldd "$HEARTH" | sed 's/ (0x[0-9a-f]*)//; s/^[[:space:]]*/  /'
echo
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "binary: $HEARTH ($(stat -c %s "$HEARTH") bytes); hyperfine $(hyperfine --version | cut -d' ' -f2), tini $(tini --version | cut -d' ' -f3), supervisord $("$SUPERVISORD" --version)"

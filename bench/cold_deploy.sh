#!/bin/bash
# Benchmark of a cold deploy over HTTP: hearth vs curl + sha256sum + bsdtar.
#
#   bench/cold_deploy.sh [BUILD_DIR]      (default: build-bench, set up if missing)
#   HEARTH=/path/to/hearth bench/cold_deploy.sh   uses that binary, no build
#   N=9 bench/cold_deploy.sh              runs per variant and filesystem (default 5)
#   BENCH_DIR=... MB=... ENTRIES=...      as bench/extract.sh (the archive is shared)
#
# The deps.pex of bench/extract.sh (>= 70 MB, >= 10k entries; built once and
# cached under BENCH_DIR) is served by tests/fixtures/httpd.py on loopback.
# On disk (BENCH_DIR) and on tmpfs (/dev/shm) separately, N rounds, the two
# variants alternating which goes first:
#   hearth    a hearth daemon with a FRESH state dir (started before the
#             clock starts) deploys deps from the URL (sha256 given) and a
#             small local source.pex; measured on the client's monotonic
#             clock from sending `deploy` to the event of the revision
#             leaving `extracting` (fetch + verify + publish + extract + the
#             store's fsync/syncfs); hearth's own timings_ms per phase are
#             reported too.
#   baseline  curl -sf -o deps.pex URL; sha256sum -c; bsdtar -xf into a fresh
#             dir, one after another on the same filesystem. "baseline+sync"
#             adds `sync -f` (syncfs) at the end, the durability hearth's
#             store pays for.
# Prints medians (min, max) and the ratios baseline/hearth.
# Installs nothing: a missing tool is named with its Debian package.
set -euo pipefail

cd "$(dirname "$0")/.."
SOURCE_ROOT=$PWD
N=${N:-5}
MB=${MB:-72}
ENTRIES=${ENTRIES:-12000}
BENCH_DIR=${BENCH_DIR:-/var/tmp/hearth-bench-extract}
SYSPY=/usr/bin/python3
[ -x "$SYSPY" ] || SYSPY=$(command -v python3)
MKPEX=$SOURCE_ROOT/tests/fixtures/mkpex.py
HTTPD=$SOURCE_ROOT/tests/fixtures/httpd.py
export TZ=${TZ:-:/etc/localtime}

# shellcheck source=bench/build_lib.sh
. bench/build_lib.sh

missing=()
command -v curl >/dev/null || missing+=("curl (Debian package curl)")
command -v bsdtar >/dev/null || missing+=("bsdtar (Debian package libarchive-tools)")
command -v sha256sum >/dev/null || missing+=("sha256sum (Debian package coreutils)")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'bench/cold_deploy.sh: missing: %s\n' "${missing[@]}" >&2
    exit 1
fi
CURL=$(type -P curl)
BSDTAR=$(type -P bsdtar)

# ------------------------------------------------------------------ build
bench_hearth "${1:-}"

# ------------------------------------------------------------------ inputs
mkdir -p "$BENCH_DIR"
ARCHIVE=$BENCH_DIR/big-${MB}m-${ENTRIES}.pex
if [ ! -f "$ARCHIVE" ]; then
    log "building $ARCHIVE (mkpex.py big --mb $MB --entries $ENTRIES; cached for later runs)"
    "$SYSPY" "$MKPEX" big "$ARCHIVE.tmp" --mb "$MB" --entries "$ENTRIES"
    mv "$ARCHIVE.tmp" "$ARCHIVE"
fi
DEPS_SHA=$(sha256sum "$ARCHIVE" | cut -d' ' -f1)
A_BYTES=$(stat -c %s "$ARCHIVE")

TMP=$(mktemp -d /tmp/hearth-bench-cold.XXXXXX)
TMPFS_DIR=
PIDS=()
stop_pid() { # TERM, then KILL after 10 s
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
wipe() { [ -e "$1" ] && { chmod -R u+w "$1" 2>/dev/null || true; rm -rf "$1"; }; return 0; }
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop_pid "$p"; done
    wipe "$TMP"
    [ -n "$TMPFS_DIR" ] && wipe "$TMPFS_DIR"
    wipe "$BENCH_DIR/cold-work"
    remove_bench_cgroups
    return 0
}
trap cleanup EXIT
# shellcheck source=bench/cgroup_parent.sh
. bench/cgroup_parent.sh

# A small source.pex whose entry just sleeps.
mkdir -p "$TMP/code/coldapp"
: >"$TMP/code/coldapp/__init__.py"
printf 'import time\nwhile True:\n    time.sleep(3600)\n' >"$TMP/code/coldapp/main.py"
"$SYSPY" "$MKPEX" source "$TMP/source.pex" --code "$TMP/code" --entry coldapp.main
SRC_SHA=$(sha256sum "$TMP/source.pex" | cut -d' ' -f1)

# The server: serves BENCH_DIR (the archive).
"$SYSPY" "$HTTPD" --root "$BENCH_DIR" --port-file "$TMP/httpd.port" --log "$TMP/access.log" &
PIDS+=("$!")
for _ in $(seq 100); do [ -s "$TMP/httpd.port" ] && break; sleep 0.05; done
[ -s "$TMP/httpd.port" ] || { echo "the HTTP server did not start" >&2; exit 1; }
URL=http://127.0.0.1:$(cat "$TMP/httpd.port")/$(basename "$ARCHIVE")
"$CURL" -sf -o /dev/null "$URL" || { echo "cannot fetch $URL" >&2; exit 1; }

# The client: deploy, then wait for the revision to leave `extracting`.
cat >"$TMP/client.py" <<'PY'
import json, socket, sys, time
sock, url, dsha, src, ssha = sys.argv[1:6]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock)
f = s.makefile("rb")
def send(i, method, params):
    s.sendall((json.dumps({"jsonrpc": "2.0", "id": i, "method": method, "params": params}) + "\n").encode())
def reply(i):
    for raw in f:
        m = json.loads(raw)
        if m.get("id") == i:
            if "error" in m:
                sys.exit("%s" % m["error"])
            return m["result"]
    sys.exit("connection closed")
send(1, "events.subscribe", {"location": "cold"})
reply(1)
t0 = time.monotonic()
send(2, "deploy", {"location": "cold", "deps": {"url": url, "sha256": dsha},
                   "source": {"path": src, "sha256": ssha}, "min_uptime_s": 0.1})
rid = None
pending = []
for raw in f:
    m = json.loads(raw)
    if m.get("id") == 2:
        if "error" in m:
            sys.exit("deploy: %s" % m["error"])
        rid = m["result"]["id"]
        continue
    if m.get("method") != "event":
        continue
    p = m["params"]
    if p.get("type", "state") != "state" or p.get("state") in ("pending", "fetching", "extracting"):
        continue
    t1 = time.monotonic()
    if rid is not None and p.get("id") != rid:
        continue
    if p["state"] == "failed":
        sys.exit("deploy failed: %s: %s" % (p.get("reason"), p.get("message")))
    t = p.get("revision", {}).get("timings_ms", {})
    print(json.dumps({"wall_ms": (t1 - t0) * 1000, "timings_ms": t,
                      "cache_hit": p.get("revision", {}).get("deps", {}).get("cache_hit")}))
    send(3, "shutdown", {})
    break
PY

declare -A FS_WORK
FILESYSTEMS=()
if [ "$(stat -f -c %T "$BENCH_DIR")" != tmpfs ]; then
    FS_WORK[disk]=$BENCH_DIR/cold-work
    FILESYSTEMS+=(disk)
fi
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    TMPFS_DIR=$(mktemp -d /dev/shm/hearth-bench-cold.XXXXXX)
    FS_WORK[tmpfs]=$TMPFS_DIR
    FILESYSTEMS+=(tmpfs)
fi
[ ${#FILESYSTEMS[@]} -gt 0 ] || { echo "no filesystem to run on" >&2; exit 1; }

RESULTS=$TMP/results
: >"$RESULTS"
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$t"; }

run_hearth() { # WORK
    local work=$1 state=$1/state run=$1/run pid out
    wipe "$work"
    mkdir -p "$state" "$run"
    "$HEARTH" --state-dir "$state" --run-dir "$run" --python "$SYSPY" --cgroup-parent "$CG_PARENT" \
        >>"$TMP/hearth.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 200); do [ -S "$run/control.sock" ] && break; sleep 0.02; done
    [ -S "$run/control.sock" ] || { tail -n 20 "$TMP/hearth.log" >&2; exit 1; }
    sync
    out=$("$SYSPY" "$TMP/client.py" "$run/control.sock" "$URL" "$DEPS_SHA" "$TMP/source.pex" "$SRC_SHA") ||
        { tail -n 20 "$TMP/hearth.log" >&2; exit 1; }
    stop_pid "$pid"
    PIDS=("${PIDS[0]}")
    echo "$2 hearth $out" >>"$RESULTS"
    wipe "$work"
}

run_baseline() { # WORK FS
    local work=$1 t0 t1 t2
    wipe "$work"
    mkdir -p "$work"
    sync
    t0=$(now_us)
    "$CURL" -sf -o "$work/deps.pex" "$URL"
    echo "$DEPS_SHA  $work/deps.pex" | sha256sum -c --quiet -
    mkdir "$work/tree"
    "$BSDTAR" -xf "$work/deps.pex" -C "$work/tree"
    t1=$(now_us)
    sync -f "$work/tree"
    t2=$(now_us)
    echo "$2 baseline {\"wall_ms\": $(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)), \"sync_ms\": $(((t2 - t1) / 1000))}" >>"$RESULTS"
    wipe "$work"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for fs in "${FILESYSTEMS[@]}"; do
    log "$fs: warm-up, then $N rounds (hearth and the baseline alternate going first)"
    run_baseline "${FS_WORK[$fs]}" warmup
    run_hearth "${FS_WORK[$fs]}" warmup
    for ((i = 0; i < N; i++)); do
        if ((i % 2 == 0)); then
            run_hearth "${FS_WORK[$fs]}" "$fs"
            run_baseline "${FS_WORK[$fs]}" "$fs"
        else
            run_baseline "${FS_WORK[$fs]}" "$fs"
            run_hearth "${FS_WORK[$fs]}" "$fs"
        fi
    done
done

"$SYSPY" - "$RESULTS" <<'PY'
import collections, json, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    fs, variant, data = line.split(" ", 2)
    if fs == "warmup":
        continue
    rows[(fs, variant)].append(json.loads(data))
def stat(v):
    return "%8.0f %8.0f %8.0f" % (statistics.median(v), min(v), max(v))
for fs in ("disk", "tmpfs"):
    h = rows.get((fs, "hearth"))
    b = rows.get((fs, "baseline"))
    if not h or not b:
        continue
    print()
    print("%s (%d runs each; ms: median, min, max)" % (fs, len(h)))
    hw = [r["wall_ms"] for r in h]
    bw = [r["wall_ms"] for r in b]
    bs = [r["wall_ms"] + r["sync_ms"] for r in b]
    print("  %-36s %s" % ("hearth: deploy -> left extracting", stat(hw)))
    for phase in ("pending", "fetching", "extracting"):
        v = [r["timings_ms"].get(phase) for r in h if r["timings_ms"].get(phase) is not None]
        if v:
            print("  %-36s %s" % ("  timings_ms." + phase, stat(v)))
    print("  %-36s %s" % ("curl + sha256sum + bsdtar", stat(bw)))
    print("  %-36s %s" % ("curl + sha256sum + bsdtar + sync -f", stat(bs)))
    mh = statistics.median(hw)
    print("  baseline / hearth = %.2fx   (baseline+sync) / hearth = %.2fx"
          % (statistics.median(bw) / mh, statistics.median(bs) / mh))
    hits = {r.get("cache_hit") for r in h}
    if hits != {False}:
        print("  WARNING: deps cache_hit values %s (expected a cold store every run)" % sorted(map(str, hits)))
PY
echo
echo "archive: $A_BYTES bytes, $URL (tests/fixtures/httpd.py on loopback)"
echo "hearth: fresh state dir per run; the store fsyncs the blob and syncfs's the tree"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) CPUs"
echo "binary: $HEARTH"

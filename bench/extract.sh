#!/bin/bash
# Benchmark of hearth's zip extraction against bsdtar and unzip.
#
#   bench/extract.sh [BUILD_DIR]          (default: build-bench, set up if missing)
#   EXTRACT_BENCH=/path/hearth-extract-bench bench/extract.sh   uses that binary, no build
#   N=9 bench/extract.sh                  runs per tool and filesystem (default 5)
#   BENCH_DIR=/var/tmp/x bench/extract.sh where the archive is cached and the disk
#                                         runs extract (default /var/tmp/hearth-bench-extract)
#   MB=72 ENTRIES=12000 bench/extract.sh  size of the generated deps.pex
#
# One deps.pex of >= 70 MB and >= 10k entries (tests/fixtures/mkpex.py big:
# Python-like text plus ~30% incompressible "native" files), built once and
# cached under BENCH_DIR. Then, on tmpfs (/dev/shm, the archive copied there)
# and on disk (BENCH_DIR) separately, N rounds; each round runs every tool
# once into a fresh directory on that filesystem, in an order rotated from
# round to round (so drift and write-back from the previous run hit all
# alike):
#   hearth    hearth's extractor (src/store/extract.cpp) as a store tree gets it:
#             read-only files, archive mtimes, one reader per CPU (as the
#             daemon runs it), through bench/extract_bench.cpp
#   hearth-1  the same with one reader
#   bsdtar    bsdtar -xf ARCHIVE -C DIR   (libarchive-tools)
#   unzip     unzip -q ARCHIVE -d DIR     (unzip)
# Every run is timed as a whole process (start to exit: wall clock, and the
# CPU time, user + system, which a loaded machine distorts less); the output
# directory is removed and, on disk, `sync` run between runs, untimed.
# All tools run with TZ=:/etc/localtime, which hearth sets for itself (glibc
# would otherwise stat /etc/localtime for every zip header's mktime()).
# Prints per filesystem: median, min and max seconds per tool, and the
# ratios median(bsdtar)/median(hearth) and median(unzip)/median(hearth)
# (the aims: >= 1.5 and >= 2).
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
export TZ=${TZ:-:/etc/localtime}

# shellcheck source=bench/build_lib.sh
. bench/build_lib.sh

missing=()
command -v bsdtar >/dev/null || missing+=("bsdtar (Debian package libarchive-tools)")
command -v unzip >/dev/null || missing+=("unzip (Debian package unzip)")
if [ ${#missing[@]} -gt 0 ]; then
    printf 'bench/extract.sh: missing: %s\n' "${missing[@]}" >&2
    exit 1
fi
BSDTAR=$(type -P bsdtar)
UNZIP=$(type -P unzip)

# ------------------------------------------------------------------ build
if [ -z "${EXTRACT_BENCH:-}" ]; then
    build=${1:-build-bench}
    bench_build "$build" bench/hearth-extract-bench
    EXTRACT_BENCH=$SOURCE_ROOT/$build/bench/hearth-extract-bench
fi
[ -x "$EXTRACT_BENCH" ] || { echo "no hearth-extract-bench at $EXTRACT_BENCH" >&2; exit 1; }

# ------------------------------------------------------------------ archive
mkdir -p "$BENCH_DIR"
ARCHIVE=$BENCH_DIR/big-${MB}m-${ENTRIES}.pex
if [ ! -f "$ARCHIVE" ]; then
    log "building $ARCHIVE (mkpex.py big --mb $MB --entries $ENTRIES; cached for later runs)"
    "$SYSPY" "$MKPEX" big "$ARCHIVE.tmp" --mb "$MB" --entries "$ENTRIES"
    mv "$ARCHIVE.tmp" "$ARCHIVE"
fi
read -r A_BYTES A_ENTRIES A_FILES A_UNCOMP < <("$SYSPY" -c '
import os, sys, zipfile
z = zipfile.ZipFile(sys.argv[1]).infolist()
print(os.path.getsize(sys.argv[1]), len(z), sum(1 for i in z if not i.is_dir()), sum(i.file_size for i in z))' "$ARCHIVE")
if [ "$A_BYTES" -lt 70000000 ] || [ "$A_ENTRIES" -lt 10000 ]; then
    echo "bench/extract.sh: $ARCHIVE has $A_BYTES bytes and $A_ENTRIES entries (want >= 70 MB, >= 10k)" >&2
    exit 1
fi

# ------------------------------------------------------------------ filesystems
TMPFS_DIR=
cleanup() {
    [ -n "$TMPFS_DIR" ] && { chmod -R u+w "$TMPFS_DIR" 2>/dev/null || true; rm -rf "$TMPFS_DIR"; }
    [ -d "$BENCH_DIR/work" ] && { chmod -R u+w "$BENCH_DIR/work" 2>/dev/null || true; rm -rf "$BENCH_DIR/work"; }
    return 0
}
trap cleanup EXIT
declare -A FS_ARCHIVE FS_WORK
FILESYSTEMS=()
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    TMPFS_DIR=$(mktemp -d /dev/shm/hearth-bench-extract.XXXXXX)
    cp "$ARCHIVE" "$TMPFS_DIR/deps.pex"
    FS_ARCHIVE[tmpfs]=$TMPFS_DIR/deps.pex
    FS_WORK[tmpfs]=$TMPFS_DIR
    FILESYSTEMS+=(tmpfs)
else
    log "no writable tmpfs at /dev/shm: tmpfs runs skipped"
fi
DISK_FS=$(stat -f -c %T "$BENCH_DIR")
if [ "$DISK_FS" = tmpfs ]; then
    log "BENCH_DIR $BENCH_DIR is on tmpfs: disk runs skipped (set BENCH_DIR to a disk directory)"
else
    mkdir -p "$BENCH_DIR/work"
    FS_ARCHIVE[disk]=$ARCHIVE
    FS_WORK[disk]=$BENCH_DIR/work
    FILESYSTEMS+=(disk)
fi
[ ${#FILESYSTEMS[@]} -gt 0 ] || { echo "bench/extract.sh: no filesystem to run on" >&2; exit 1; }

TOOLS=(hearth hearth-1 bsdtar unzip)
RESULTS=$(mktemp /tmp/hearth-bench-extract-results.XXXXXX)
trap 'cleanup; rm -f "$RESULTS"' EXIT

# run_tool TOOL ARCHIVE DEST: extracts; returns the tool's status.
run_tool() {
    case $1 in
    hearth) "$EXTRACT_BENCH" "$2" "$3" >/dev/null ;;
    hearth-1) "$EXTRACT_BENCH" --threads 1 "$2" "$3" >/dev/null ;;
    bsdtar) mkdir "$3" && "$BSDTAR" -xf "$2" -C "$3" ;;
    unzip)
        # unzip exits 1 for warnings; a pex's "#!" line before the zip is one.
        local rc=0
        "$UNZIP" -q "$2" -d "$3" >/dev/null 2>&1 || rc=$?
        [ "$rc" -le 1 ]
        ;;
    esac
}

clear_dest() {
    if [ -e "$1" ]; then
        chmod -R u+w "$1" 2>/dev/null || true
        rm -rf "$1"
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "archive: $ARCHIVE ($A_BYTES bytes, $A_ENTRIES entries, $A_FILES files, $A_UNCOMP bytes uncompressed)"
for fs in "${FILESYSTEMS[@]}"; do
    archive=${FS_ARCHIVE[$fs]}
    dest=${FS_WORK[$fs]}/out
    # Warm-up (untimed): page cache of the archive and the binaries, and a
    # check that every tool produces the same number of files.
    for tool in "${TOOLS[@]}"; do
        clear_dest "$dest"
        run_tool "$tool" "$archive" "$dest" || { echo "bench/extract.sh: $tool failed on $fs" >&2; exit 1; }
        files=$(find "$dest" -type f | wc -l)
        if [ "$files" != "$A_FILES" ]; then
            echo "bench/extract.sh: $tool extracted $files files, the archive has $A_FILES" >&2
            exit 1
        fi
    done
    clear_dest "$dest"
    log "$fs: $N rounds of ${TOOLS[*]} (rotated order)"
    for ((i = 0; i < N; i++)); do
        for ((k = 0; k < ${#TOOLS[@]}; k++)); do
            tool=${TOOLS[$(((k + i) % ${#TOOLS[@]}))]}
            clear_dest "$dest"
            [ "$fs" = disk ] && sync
            # bash's `time`: wall, user and system seconds of the tool's processes.
            TIMEFORMAT='%R %U %S'
            if ! times=$({ time run_tool "$tool" "$archive" "$dest" 2>/dev/null; } 2>&1); then
                echo "bench/extract.sh: $tool failed on $fs" >&2
                exit 1
            fi
            echo "$fs $tool $times" >>"$RESULTS"
        done
    done
    clear_dest "$dest"
done

"$SYSPY" - "$RESULTS" <<'PY'
import collections, statistics, sys
wall = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    fs, tool, r, u, s = line.split()
    wall[(fs, tool)].append(float(r))
    cpu[(fs, tool)].append(float(u) + float(s))
order = ["hearth", "hearth-1", "bsdtar", "unzip"]
for fs in ("tmpfs", "disk"):
    if not any(k[0] == fs for k in wall):
        continue
    print()
    print("%s (%d runs each; seconds per extraction)" % (fs, len(wall[(fs, "hearth")])))
    print("  %-9s %8s %8s %8s   %8s" % ("tool", "median", "min", "max", "cpu(med)"))
    med, cmed = {}, {}
    for tool in order:
        v = wall[(fs, tool)]
        med[tool] = statistics.median(v)
        cmed[tool] = statistics.median(cpu[(fs, tool)])
        print("  %-9s %8.3f %8.3f %8.3f   %8.3f" % (tool, med[tool], min(v), max(v), cmed[tool]))
    h = med["hearth"]
    print("  wall: bsdtar / hearth = %.2fx (aim >= 1.5x)   unzip / hearth = %.2fx (aim >= 2x)"
          % (med["bsdtar"] / h, med["unzip"] / h))
    print("  wall: bsdtar / hearth-1 = %.2fx   unzip / hearth-1 = %.2fx   (one reader)"
          % (med["bsdtar"] / med["hearth-1"], med["unzip"] / med["hearth-1"]))
    print("  cpu (user+sys): bsdtar / hearth = %.2fx   unzip / hearth = %.2fx"
          % (cmed["bsdtar"] / cmed["hearth"], cmed["unzip"] / cmed["hearth"]))
PY
echo
echo "archive: $A_BYTES bytes, $A_ENTRIES entries ($A_FILES files, $A_UNCOMP bytes uncompressed), mkpex.py big --mb $MB --entries $ENTRIES"
echo "hearth readers: $(nproc) (one per CPU, as the daemon); disk: $DISK_FS at $BENCH_DIR; TZ=$TZ for every tool"
echo "bsdtar: $("$BSDTAR" --version | head -n 1); unzip: $("$UNZIP" -v | head -n 1 | cut -c1-40)"
echo "load average: $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end, on $(nproc) CPUs"
echo "binary: $EXTRACT_BENCH"

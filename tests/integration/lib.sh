# shellcheck shell=bash
# Shared helpers for hearth's black-box integration tests.
#
# Every tests/integration/*.sh sources this file first:
#
#     . "$(dirname "$0")/lib.sh"
#
# Environment (set by meson, see tests/meson.build):
#   HEARTH, HEARTHCTL                 the binaries under test
#   HEARTH_SOURCE_ROOT, HEARTH_BUILD_ROOT
#   HEARTH_TESTS_MUST_WORK=1          a missing prerequisite fails instead of skipping
#   HEARTH_TEST_KEEP=1                keep the per-test temp dir (its path is printed)
#
# Conventions:
#   - exit 0 pass, 77 skipped, anything else failed (meson's convention).
#   - Synchronise by polling a condition with a deadline (wait_until), never by
#     a fixed sleep. A fixed window is only acceptable to prove that something
#     does NOT happen, and then it must be short and explained.
#   - Every process a test starts in the background goes through start_bg,
#     start_hearth_pid1 or start_hearth_subreaper (or track_pid). The test
#     runs as a child subreaper, so whatever its processes leave behind stays
#     in its tree. The exit trap kills, by pid, the test's descendants and the
#     tracked pids that still name the same process (start time checked), and
#     nothing else.
#   - fail/skip exit the current shell: call them from the test's main shell,
#     not from inside $(...) or a pipeline, where they would only end a subshell.

set -euo pipefail

# Re-run the test as a child subreaper (through python's prctl, then exec:
# same pid). Then a process that hearth left behind when it exited, or that
# escaped its tree, comes back to the test rather than to the system's init,
# and the exit trap still finds it among the test's own descendants.
if [ -z "${HEARTH_TEST_SUBREAPER:-}" ]; then
    for _py in /usr/bin/python3 python3; do
        if command -v "$_py" >/dev/null 2>&1; then
            export HEARTH_TEST_SUBREAPER=1
            exec "$_py" -c '
import ctypes, os, sys
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
os.execv("/bin/bash", ["bash"] + sys.argv[1:])' "$0" "$@"
        fi
    done
    unset _py
fi
unset HEARTH_TEST_SUBREAPER # keep it out of hearth's and its children's environment

TEST_NAME=$(basename "$0" .sh)

# ---------------------------------------------------------------- reporting

note() { printf '# %s\n' "$*" >&2; }

fail() {
    printf 'FAIL: %s: %s\n' "$TEST_NAME" "$*" >&2
    exit 1
}

# skip REASON: exit 77, or fail when the environment promises everything works
# (CI sets HEARTH_TESTS_MUST_WORK=1 so that a skipped root test cannot hide).
skip() {
    if [ "${HEARTH_TESTS_MUST_WORK:-0}" = 1 ]; then
        printf 'FAIL: %s: prerequisite missing (HEARTH_TESTS_MUST_WORK=1): %s\n' \
            "$TEST_NAME" "$*" >&2
        exit 1
    fi
    printf 'SKIP: %s: %s\n' "$TEST_NAME" "$*" >&2
    exit 77
}

# ------------------------------------------------------------- prerequisites

need_root() {
    [ "$(id -u)" = 0 ] || skip "needs root"
}

# A PID namespace with its own /proc is what hearth gets in a container.
need_pidns() {
    need_cmd unshare
    unshare --pid --fork --mount-proc true >/dev/null 2>&1 ||
        skip "cannot create a PID namespace (unshare --pid --fork --mount-proc)"
}

# has_cap NAME: whether this shell has capability NAME (e.g. sys_resource) in
# its effective set. Root in a container may lack some (this matters for
# oom_score_adj below 0, which needs sys_resource in the initial namespace).
has_cap() {
    local bit eff
    case $1 in
    chown) bit=0 ;; dac_override) bit=1 ;; kill) bit=5 ;; setgid) bit=6 ;;
    setuid) bit=7 ;; net_admin) bit=12 ;; sys_chroot) bit=18 ;; sys_ptrace) bit=19 ;;
    sys_admin) bit=21 ;; sys_nice) bit=23 ;; sys_resource) bit=24 ;;
    *) fail "has_cap: unknown capability '$1'" ;;
    esac
    eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/self/status)
    (((16#$eff >> bit) & 1))
}

need_cap() {
    local c
    for c in "$@"; do
        has_cap "$c" || skip "needs capability CAP_${c^^}"
    done
}

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "needs command '$c'"
    done
}

# Sets PYTHON to the system interpreter (stdlib only), preferring the
# distribution's over a user-installed one.
need_python() {
    if [ -x /usr/bin/python3 ]; then
        PYTHON=/usr/bin/python3
    elif command -v python3 >/dev/null 2>&1; then
        PYTHON=$(command -v python3)
    else
        skip "needs python3"
    fi
}

[ -n "${HEARTH:-}" ] || fail "HEARTH is not set (run through 'meson test')"
[ -x "$HEARTH" ] || fail "HEARTH=$HEARTH is not executable"
HEARTH_REAL=$(readlink -f "$HEARTH")

# ------------------------------------------------------------------ temp dir

TEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/hearth-$TEST_NAME.XXXXXX")
chmod 755 "$TEST_TMP"

# ---------------------------------------------------------------- assertions

assert_eq() { # EXPECTED ACTUAL [WHAT]
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$1', got '$2'"
}

assert_ne() { # UNEXPECTED ACTUAL [WHAT]
    [ "$1" != "$2" ] || fail "${3:-value}: expected anything but '$1'"
}

assert_contains() { # HAYSTACK NEEDLE [WHAT]
    case "$1" in
    *"$2"*) ;;
    *) fail "${3:-output} does not contain '$2'; it is: $(printf '%q' "$1")" ;;
    esac
}

assert_not_contains() { # HAYSTACK NEEDLE [WHAT]
    case "$1" in
    *"$2"*) fail "${3:-output} contains '$2'; it is: $(printf '%q' "$1")" ;;
    *) ;;
    esac
}

assert_match() { # STRING ERE [WHAT]
    [[ $1 =~ $2 ]] || fail "${3:-value} does not match /$2/: $(printf '%q' "$1")"
}

assert_ge() { # A B [WHAT]: integers, A >= B
    [ "$1" -ge "$2" ] || fail "${3:-value}: expected >= $2, got $1"
}

assert_lt() { # A B [WHAT]: integers, A < B
    [ "$1" -lt "$2" ] || fail "${3:-value}: expected < $2, got $1"
}

# Number of lines in a string ("" has 0 lines; a missing final newline counts).
line_count() {
    if [ -z "$1" ]; then echo 0; else printf '%s\n' "$1" | wc -l; fi
}

assert_lines() { # TEXT N [WHAT]
    local n
    n=$(line_count "$1")
    [ "$n" -eq "$2" ] || fail "${3:-output}: expected $2 line(s), got $n: $(printf '%q' "$1")"
}

# ------------------------------------------------------------------- time

now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

# _seconds_to_ms S: "2" -> 2000, "0.5" -> 500, "1.25" -> 1250.
_seconds_to_ms() {
    local whole=${1%%.*} frac=0
    [ -n "$whole" ] || whole=0
    if [[ $1 == *.* ]]; then
        frac=${1#*.}000
        frac=$((10#${frac:0:3}))
    fi
    echo $((whole * 1000 + frac))
}

# poll_until TIMEOUT_S CMD...: runs CMD every 20 ms until it succeeds (return
# 0) or TIMEOUT_S seconds (may be fractional) have passed (return 1).
poll_until() {
    local timeout=$1
    shift
    local deadline=$(($(now_ms) + $(_seconds_to_ms "$timeout")))
    while true; do
        if "$@"; then return 0; fi
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.02
    done
}

# wait_until TIMEOUT_S WHAT CMD...: like poll_until, but fails the test on
# timeout, naming WHAT.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    poll_until "$timeout" "$@" || fail "timed out after ${timeout}s waiting for: $what"
}

file_nonempty() { [ -s "$1" ]; }
file_has_line() { [ -f "$1" ] && grep -qxF -- "$2" "$1"; }

# ------------------------------------------------------------- /proc helpers

# _stat_fields PID: sets the array STAT to /proc/PID/stat fields 3.. (so
# STAT[0] is the state, STAT[1] ppid, STAT[2] pgrp, STAT[3] session,
# STAT[19] start time). Returns 1 if the process is gone. The comm field may
# hold spaces and parentheses, so split after the last ')'.
_stat_fields() {
    local line
    line=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$line" ] || return 1
    read -r -a STAT <<<"${line##*) }"
}

proc_state() { _stat_fields "$1" && echo "${STAT[0]}"; }
proc_ppid() { _stat_fields "$1" && echo "${STAT[1]}"; }
proc_pgrp() { _stat_fields "$1" && echo "${STAT[2]}"; }
proc_session() { _stat_fields "$1" && echo "${STAT[3]}"; }
proc_starttime() { _stat_fields "$1" && echo "${STAT[19]}"; }

# Exists and is not a zombie.
proc_running() {
    _stat_fields "$1" || return 1
    [ "${STAT[0]}" != Z ] && [ "${STAT[0]}" != X ]
}
proc_gone() { ! proc_running "$1"; }

# proc_status_field PID NAME: value of "NAME:" in /proc/PID/status.
proc_status_field() {
    awk -v k="$2:" '$1 == k { $1 = ""; sub(/^[ \t]+/, ""); print; exit }' "/proc/$1/status"
}

proc_children() {
    cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
}

proc_descendants() {
    local c
    for c in $(proc_children "$1"); do
        echo "$c"
        proc_descendants "$c"
    done
}

proc_exe() { readlink "/proc/$1/exe" 2>/dev/null || true; }

# Host pids of every process (zombies included) in the PID namespace of PID.
pidns_members() {
    local ns p
    ns=$(readlink "/proc/$1/ns/pid") || return 1
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
    done
    return 0
}

pidns_count() { pidns_members "$1" | wc -l; }

pidns_zombies() {
    local p n=0
    for p in $(pidns_members "$1"); do
        [ "$(proc_state "$p")" = Z ] && n=$((n + 1))
    done
    echo "$n"
}

# sig_mask_has MASK_HEX SIGNUM: whether bit SIGNUM-1 is set in a SigBlk-style
# mask from /proc/PID/status.
sig_mask_has() {
    local hex=$1 sig=$2
    # Masks are 16 hex digits; bash arithmetic is 64-bit signed, fine for bits.
    (((16#$hex >> (sig - 1)) & 1))
}

# Signal numbers as the kernel (and glibc) number them.
signum() { kill -l "$1"; }

# ------------------------------------------------------------ process control

_TRACKED=() # "pid:starttime"

# track_pid PID: the exit trap will kill PID (and its descendants) if it still
# names the process it named now.
track_pid() {
    local st
    st=$(proc_starttime "$1") || return 0
    _TRACKED+=("$1:$st")
}

_is_tracked_process() { # PID STARTTIME
    [ "$(proc_starttime "$1" 2>/dev/null)" = "$2" ]
}

# start_bg CMD...: runs CMD in the background, tracked; sets BG_PID.
start_bg() {
    "$@" &
    BG_PID=$!
    track_pid "$BG_PID"
}

# run_cmd [--timeout S] [--stdin FILE] CMD...: runs CMD in the foreground with
# a timeout; sets RUN_RC, RUN_OUT, RUN_ERR (stdout and stderr contents, final
# newline stripped). A timeout fails the test.
run_cmd() {
    local timeout=60 stdin=/dev/null
    while true; do
        case $1 in
        --timeout) timeout=$2; shift 2 ;;
        --stdin) stdin=$2; shift 2 ;;
        *) break ;;
        esac
    done
    RUN_RC=0
    timeout -k 5 "$timeout" "$@" <"$stdin" >"$TEST_TMP/run.out" 2>"$TEST_TMP/run.err" || RUN_RC=$?
    RUN_OUT=$(cat "$TEST_TMP/run.out")
    RUN_ERR=$(cat "$TEST_TMP/run.err")
    if [ "$RUN_RC" = 124 ]; then
        printf '%s\n' "$RUN_ERR" | tail -n 20 >&2
        fail "timed out after ${timeout}s: $*"
    fi
    return 0
}

# ------------------------------------------------------------------- hearth

# Where hearth keeps its state and run dirs during a test.
HEARTH_STATE_DIR=$TEST_TMP/state
HEARTH_RUN_DIR=$TEST_TMP/run
mkdir -p "$HEARTH_STATE_DIR" "$HEARTH_RUN_DIR"

# Optional: commands placed before hearth (or before unshare) on the command
# line, e.g. HEARTH_WRAP=(env NOTIFY_SOCKET=/x). Each must exec the next (keep
# its pid), as env, nice, setpriv or a python os.execv wrapper do.
HEARTH_WRAP=()
# Optional: file for hearth's stdin (default /dev/null).
HEARTH_STDIN=/dev/null

hearth_args() { # extra hearth args...: the full hearth command line
    printf '%s\0' "$HEARTH" --state-dir "$HEARTH_STATE_DIR" --run-dir "$HEARTH_RUN_DIR" \
        --cgroup-parent "$HEARTH_CGROUP_PARENT" "$@"
}

# Every hearth a test starts keeps its revision cgroups under a parent named
# for the test (a later --cgroup-parent overrides it), never under the
# machine's own cgroups; the exit trap removes it from every hierarchy.
HEARTH_CGROUP_PARENT=/hearth-test-$TEST_NAME-$$

# cgroup_mounts: mount points of the cgroup (v1) and cgroup2 hierarchies.
cgroup_mounts() {
    awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5; break } }' \
        /proc/self/mountinfo | sort -u
}

# remove_cgroup_tree PARENT: kills every process in PARENT (relative to each
# hierarchy's root) and below, then removes the directories, deepest first.
remove_cgroup_tree() {
    local parent=$1 mnt dir pid round
    for mnt in $(cgroup_mounts); do
        dir=$mnt$parent
        [ -d "$dir" ] || continue
        for round in 1 2 3 4 5; do
            for pid in $(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null); do
                kill -KILL "$pid" 2>/dev/null
            done
            find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
            [ -d "$dir" ] || break
            sleep 0.1
        done
        [ -d "$dir" ] && note "could not remove cgroup $dir"
    done
    return 0
}

_hearth_has_signalfd() {
    local fd
    for fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:[signalfd]" ] && return 0
    done
    return 1
}

# Hearth is exec'd and reads its signals: from now on a signal sent to it is
# never lost (before prepare_process a PID 1 drops signals it has no handler
# for).
_hearth_ready() {
    [ "$(proc_exe "$HEARTH_PID")" = "$HEARTH_REAL" ] && _hearth_has_signalfd "$HEARTH_PID"
}

_launcher_alive() { proc_running "$HEARTH_LAUNCHER_PID"; }

_start_hearth() { # MODE ARGS...
    local mode=$1
    shift
    local -a cmd
    mapfile -d '' cmd < <(hearth_args "$@")
    if [ "$mode" = pid1 ]; then
        cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    fi
    HEARTH_STDOUT=$TEST_TMP/hearth.out
    HEARTH_STDERR=$TEST_TMP/hearth.err
    "${HEARTH_WRAP[@]}" "${cmd[@]}" <"$HEARTH_STDIN" >"$HEARTH_STDOUT" 2>"$HEARTH_STDERR" &
    HEARTH_LAUNCHER_PID=$!
    track_pid "$HEARTH_LAUNCHER_PID"
    HEARTH_PID=
    HEARTH_RC=
    local deadline=$(($(now_ms) + 10000))
    while true; do
        if [ "$mode" = pid1 ]; then
            [ -n "$HEARTH_PID" ] || HEARTH_PID=$(proc_children "$HEARTH_LAUNCHER_PID" | head -n 1)
        else
            HEARTH_PID=$HEARTH_LAUNCHER_PID
        fi
        if [ -n "$HEARTH_PID" ] && _hearth_ready; then break; fi
        if ! _launcher_alive; then
            local rc=0
            wait "$HEARTH_LAUNCHER_PID" || rc=$?
            fail "hearth ($mode) exited (status $rc) before it was seen ready"
        fi
        [ "$(now_ms)" -lt "$deadline" ] || fail "hearth ($mode) not ready after 10 s"
        sleep 0.02
    done
    [ "$mode" = pid1 ] && track_pid "$HEARTH_PID"
    if [ "$mode" = pid1 ]; then
        local nspid
        nspid=$(proc_status_field "$HEARTH_PID" NSpid)
        [ "${nspid##*[[:space:]]}" = 1 ] || fail "hearth is not PID 1 in its namespace (NSpid: $nspid)"
    fi
    return 0
}

# start_hearth_pid1 [HEARTH ARGS...] [-- CMD...]: starts hearth in the
# background as PID 1 of a new PID namespace (with its own /proc), its state
# and run dirs under TEST_TMP, stdout/stderr in HEARTH_STDOUT/HEARTH_STDERR.
# Returns once hearth reads its signals. Sets HEARTH_PID (hearth's pid as seen
# from here: send it signals) and HEARTH_LAUNCHER_PID (unshare, our child).
start_hearth_pid1() { _start_hearth pid1 "$@"; }

# start_hearth_subreaper [HEARTH ARGS...] [-- CMD...]: same, but hearth runs
# as an ordinary child of the test (so a child subreaper, not PID 1).
# HEARTH_PID = HEARTH_LAUNCHER_PID.
start_hearth_subreaper() { _start_hearth subreaper "$@"; }

# The control socket of the hearth started by start_hearth_*; hearthctl finds
# it through HEARTH_SOCKET.
HEARTH_SOCKET=$HEARTH_RUN_DIR/control.sock
export HEARTH_SOCKET

# wait_hearth_listening [TIMEOUT_S]: waits until hearth's control socket exists.
# shellcheck disable=SC2120 # the timeout is optional
wait_hearth_listening() {
    wait_until "${1:-10}" "hearth's control socket $HEARTH_SOCKET" test -S "$HEARTH_SOCKET"
}

# run_ctl ARGS...: runs hearthctl against the test's hearth (see run_cmd for
# RUN_RC, RUN_OUT, RUN_ERR).
run_ctl() {
    [ -n "${HEARTHCTL:-}" ] || fail "HEARTHCTL is not set"
    run_cmd --timeout "${CTL_TIMEOUT:-60}" "$HEARTHCTL" --socket "$HEARTH_SOCKET" "$@"
}

# The main command: hearth's child in a process group of its own. Empty until
# it exists.
hearth_main_pid() {
    local c
    for c in $(proc_children "$HEARTH_PID"); do
        if [ "$(proc_pgrp "$c")" = "$c" ]; then
            echo "$c"
            return 0
        fi
    done
    return 0
}

_main_execed() {
    MAIN_PID=$(hearth_main_pid)
    [ -n "$MAIN_PID" ] && proc_running "$MAIN_PID" && [ "$(proc_exe "$MAIN_PID")" != "$HEARTH_REAL" ]
}

# wait_main_started [TIMEOUT_S]: waits until the main command has been exec'd
# (hearth's group-leader child no longer runs hearth's binary); sets MAIN_PID.
# shellcheck disable=SC2120 # the timeout is optional
wait_main_started() {
    wait_until "${1:-10}" "hearth's main command to start" _main_execed
}

signal_hearth() { # SIGNAL
    [ -n "${HEARTH_PID:-}" ] || fail "signal_hearth: hearth not started"
    proc_running "$HEARTH_PID" || fail "signal_hearth $1: hearth (pid $HEARTH_PID) is not running"
    kill -s "$1" "$HEARTH_PID"
}

# wait_hearth_exit [TIMEOUT_S]: waits for hearth (and its launcher) to exit;
# sets HEARTH_RC. Fails the test on timeout.
wait_hearth_exit() {
    local timeout=${1:-30}
    wait_until "$timeout" "hearth (pid $HEARTH_PID) to exit" \
        proc_gone "$HEARTH_LAUNCHER_PID"
    HEARTH_RC=0
    wait "$HEARTH_LAUNCHER_PID" || HEARTH_RC=$?
}

# Dumps hearth's stderr (for a failing test's log).
show_hearth_log() {
    if [ -n "${HEARTH_STDERR:-}" ] && [ -s "$HEARTH_STDERR" ]; then
        echo "--- hearth stderr ($HEARTH_STDERR) ---" >&2
        tail -n 50 "$HEARTH_STDERR" >&2
    fi
}

# ------------------------------------------------------------------ cleanup

# _tree_of PID: appends PID's descendants to _TREE, using builtins only (no
# subshell of ours may show up in, or vanish from, the tree being read).
_tree_of() {
    local -a queue=("$1") kids
    local p f k
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}
        queue=("${queue[@]:1}")
        for f in /proc/"$p"/task/*/children; do
            [ -r "$f" ] || continue
            kids=()
            read -r -a kids <"$f" || true
            for k in "${kids[@]}"; do
                _TREE+=("$k")
                queue+=("$k")
            done
        done
    done
}

_cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    local entry pid st round
    # Everything below this shell was started by this test (directly, or by
    # hearth, or adopted by us as subreaper): freeze it, twice so that
    # processes forked meanwhile are caught, then kill it. Tracked pids are
    # added in case one left our tree, after checking they are still the same
    # process.
    local -a victims=()
    for entry in "${_TRACKED[@]}"; do
        pid=${entry%%:*}
        st=${entry#*:}
        _is_tracked_process "$pid" "$st" && victims+=("$pid")
    done
    for round in 1 2; do
        _TREE=()
        _tree_of $$
        for pid in "${victims[@]}"; do _tree_of "$pid"; done
        victims+=("${_TREE[@]}")
        for pid in "${victims[@]}"; do kill -STOP "$pid" 2>/dev/null; done
    done
    for pid in "${victims[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    # Reap our children (and adopted orphans) so that none stays a zombie.
    wait 2>/dev/null
    remove_cgroup_tree "$HEARTH_CGROUP_PARENT"
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
        show_hearth_log
    fi
    if [ "${HEARTH_TEST_KEEP:-0}" = 1 ]; then
        note "kept $TEST_TMP"
    else
        rm -rf "$TEST_TMP"
    fi
    exit "$rc"
}

trap _cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

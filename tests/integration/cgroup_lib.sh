# shellcheck shell=bash
# shellcheck disable=SC2034 # the globals set here are read by the tests
# Helpers for the cgroup and restart integration tests (cgroup_*.sh,
# restart_*.sh). Not a test itself. Source it instead of deploy_lib.sh:
#
#     . "$(dirname "$0")/cgroup_lib.sh"
#
# It sources deploy_lib.sh (and so lib.sh: see there for the conventions) and
# sets:
#   CG_PARENT     /hearth-test-<test>-<pid>: the --cgroup-parent every test
#                 passes, relative to each hierarchy's root. The machine's own
#                 cgroups are never touched: the exit trap kills, by pid, what
#                 is left in the test's directories and removes them in every
#                 hierarchy (deepest first), then runs lib.sh's cleanup.
#   CG_UNIFIED    the cgroup2 mount point ("" when there is none)
#   CG_V1         controller -> v1 mount point (memory, cpu, cpuacct, pids,
#                 freezer; only those mounted read-write)
#   CG_MODE       what hearth's auto driver should find: v1, v2, hybrid, none
#   WORKLOADS     the source pex of tests/fixtures/workloads.py (module
#                 hearth_workloads) after make_workloads

# shellcheck source=deploy_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/deploy_lib.sh"

CG_PARENT=/hearth-test-$TEST_NAME-$$
WORKLOADS_PY=${HEARTH_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/fixtures/workloads.py
[ -f "$WORKLOADS_PY" ] || fail "fixture $WORKLOADS_PY is missing"

# ------------------------------------------------------------- hierarchies

CG_UNIFIED=
declare -A CG_V1=()
CG_ALL_MOUNTS=() # every read-write cgroup/cgroup2 mount point (for cleanup)

# mountinfo: ... mount-point(5) options(6) ... - fstype source super-options
while read -r line; do
    left=${line%% - *}
    right=${line#* - }
    read -r -a lf <<<"$left"
    read -r -a rf <<<"$right"
    mnt=${lf[4]}
    case ",${lf[5]}," in *,ro,*) continue ;; esac
    case ${rf[0]} in
    cgroup2)
        [ -n "$CG_UNIFIED" ] || CG_UNIFIED=$mnt
        CG_ALL_MOUNTS+=("$mnt")
        ;;
    cgroup)
        CG_ALL_MOUNTS+=("$mnt")
        for c in memory cpu cpuacct pids freezer; do
            case ",${rf[2]}," in *,"$c",*) CG_V1[$c]=$mnt ;; esac
        done
        ;;
    esac
done </proc/self/mountinfo
unset line left right lf rf mnt c

if [ -n "${CG_V1[memory]:-}${CG_V1[cpu]:-}${CG_V1[pids]:-}" ]; then
    if [ -n "$CG_UNIFIED" ]; then CG_MODE=hybrid; else CG_MODE=v1; fi
elif [ -n "$CG_UNIFIED" ]; then
    CG_MODE=v2
else
    CG_MODE=none
fi

# Whether cgroupfs at MOUNT accepts a new directory (root in a container
# often sees it read-only, or writable but not delegated).
_cg_writable() {
    local probe=$1/hearth-probe-$TEST_NAME-$$
    mkdir "$probe" 2>/dev/null || return 1
    rmdir "$probe"
}

# need_cgroups [CONTROLLER...]: skips unless cgroupfs is there and writable,
# with the named controllers (memory, cpu, pids) usable: a v1 hierarchy or
# enabled in the cgroup2 root's cgroup.controllers.
# shellcheck disable=SC2120 # the controllers are optional
need_cgroups() {
    [ "$CG_MODE" != none ] || skip "no read-write cgroup filesystem"
    local m c
    for m in "$CG_UNIFIED" "${CG_V1[@]}"; do
        [ -z "$m" ] || _cg_writable "$m" || skip "cgroupfs at $m is not writable"
    done
    for c in "$@"; do
        [ -n "${CG_V1[$c]:-}" ] && continue
        if [ -n "$CG_UNIFIED" ] && grep -qw "$c" "$CG_UNIFIED/cgroup.controllers"; then
            continue
        fi
        skip "no usable $c controller (neither v1 nor cgroup2)"
    done
}

# cg_mount_of CONTROLLER: where CONTROLLER's files live ("unified" for the
# cgroup2 mount itself).
cg_mount_of() {
    if [ "$1" = unified ]; then
        echo "$CG_UNIFIED"
    elif [ -n "${CG_V1[$1]:-}" ]; then
        echo "${CG_V1[$1]}"
    else
        echo "$CG_UNIFIED"
    fi
}

# cg_env_dirs NAME: the existing directories of revision cgroup NAME
# (<mount><CG_PARENT>/envs/NAME) in every hierarchy, one per line.
cg_env_dirs() {
    local m
    for m in "${CG_ALL_MOUNTS[@]}"; do
        [ -d "$m$CG_PARENT/envs/$1" ] && echo "$m$CG_PARENT/envs/$1"
    done
    return 0
}

cg_env_gone() { [ -z "$(cg_env_dirs "$1")" ]; }

# cg_procs DIR: the pids in DIR/cgroup.procs (as seen from here).
cg_procs() { cat "$1/cgroup.procs" 2>/dev/null || true; }

# ------------------------------------------------------------------ cleanup

# _cg_test_dirs: every directory of the test's tree, deepest first.
_cg_test_dirs() {
    local m
    for m in "${CG_ALL_MOUNTS[@]}"; do
        [ -d "$m$CG_PARENT" ] && find "$m$CG_PARENT" -depth -type d 2>/dev/null
    done
    return 0
}

_cg_exit() {
    local rc=$?
    set +e
    # hearth first (by pid, if it is still the process we started): as PID 1
    # of its namespace its death takes every revision process with it, and it
    # cannot restart anything meanwhile.
    local entry pid st d n
    for entry in "${_TRACKED[@]}"; do
        pid=${entry%%:*}
        st=${entry#*:}
        [ "$pid" = "${HEARTH_PID:-}" ] && _is_tracked_process "$pid" "$st" && kill -KILL "$pid" 2>/dev/null
    done
    # What is still in the test's cgroups was started by this test (through
    # hearth, or placed there by the test itself): kill it by pid, then remove
    # the directories, deepest first, while they empty.
    for n in $(seq 50); do
        local left=0
        while read -r d; do
            [ -n "$d" ] || continue
            for pid in $(cg_procs "$d"); do
                kill -KILL "$pid" 2>/dev/null
            done
            rmdir "$d" 2>/dev/null || left=1
        done < <(_cg_test_dirs)
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    if [ -n "$(_cg_test_dirs)" ]; then
        printf 'WARNING: %s: could not remove test cgroups:\n%s\n' "$TEST_NAME" "$(_cg_test_dirs)" >&2
    fi
    (exit "$rc")
    _cleanup
}
trap _cg_exit EXIT

# ------------------------------------------------------------------ hearth

# start_cg_hearth [HEARTH ARGS...]: start_deploy_hearth with the test's
# --cgroup-parent.
start_cg_hearth() {
    start_deploy_hearth --cgroup-parent "$CG_PARENT" "$@"
}

# ---------------------------------------------------------------- fixtures

# make_workloads: the sample deps (SAMPLE_DEPS) and the workloads source pex
# (WORKLOADS, module hearth_workloads).
make_workloads() {
    make_sample
    local dir=$FIX/code-workloads
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$WORKLOADS_PY" "$dir/hearth_workloads.py"
    WORKLOADS=$FIX/workloads.pex
    make_source "$WORKLOADS" "$dir" hearth_workloads
}

# deploy_args MODE [key=value...]: the hearthctl deploy arguments running
# workload MODE (sets DARGS).
deploy_args() {
    DARGS=(--deps "$SAMPLE_DEPS" --source "$WORKLOADS" --module hearth_workloads)
    local a
    for a in "$@"; do DARGS+=(--arg "$a"); done
}

# ---------------------------------------------------------------- status

# rev_json LOCATION ID: the revision's status object.
rev_json() {
    status_of "$1"
    jget "$STATUS" "next(x for x in j['locations'][0]['revisions'] if x['id'] == '$2')"
}

# host_pid_of LOCATION ID: the host pid of the revision's main process
# (status reports it as hearth's namespace sees it).
host_pid_of() {
    local nspid
    nspid=$(rev_get "$1" "$2" "r.get('pid')")
    [ "$nspid" != null ] || return 0
    host_pid "$nspid"
}

# host_pids_marked FIXED-STRING: host pids, anywhere in hearth's PID
# namespace, of running processes whose command line contains the string.
host_pids_marked() {
    local p
    for p in $(pidns_members "$HEARTH_PID"); do
        proc_running "$p" || continue
        case "$(cmdline_of "$p")" in *"$1"*) echo "$p" ;; esac
    done
    return 0
}

# hearth_log_has ERE: whether hearth's stderr has a line matching ERE
# (case-insensitive).
hearth_log_has() { grep -qiE -- "$1" "$HEARTH_STDERR"; }

# float_cmp EXPR: evaluates a python boolean expression (for fractional
# comparisons); returns 0 when true.
float_cmp() { "$PYTHON" -c "import sys; sys.exit(0 if ($1) else 1)"; }

# rpc METHOD PARAMS_JSON: one request over the raw control socket; RPC_OUT is
# the whole response object (compact JSON).
rpc() {
    RPC_OUT=$("$PYTHON" - "$HEARTH_SOCKET" "$1" "$2" <<'PY'
import json, socket, sys
path, method, params = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(path)
s.sendall((json.dumps({"jsonrpc": "2.0", "id": 7, "method": method,
                       "params": json.loads(params)}) + "\n").encode())
f = s.makefile("rb")
for raw in f:
    msg = json.loads(raw)
    if msg.get("id") == 7:
        print(json.dumps(msg, sort_keys=True, separators=(",", ":")))
        break
PY
) || fail "rpc $1 failed"
}

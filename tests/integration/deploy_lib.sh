# shellcheck shell=bash
# shellcheck disable=SC2034 # the globals set here are read by the tests
# Helpers for the deploy-slice integration tests (deploy_*.sh, protocol_*.sh).
# They drive hearth only through hearthctl (--json, parsed with python3) and
# the raw control socket. Source this instead of lib.sh:
#
#     . "$(dirname "$0")/deploy_lib.sh"
#
# It sources lib.sh (see there for the conventions), checks the prerequisites
# every deploy test shares, and sets:
#   PYTHON      the system interpreter (stdlib only) for fixtures and parsing
#   MKPEX       tests/fixtures/mkpex.py
#   FIX         $TEST_TMP/fixtures, where the fixture helpers write

# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Store trees are read-only (0555 directories): only root can both run
# hearth as PID 1 in a PID namespace and remove the store afterwards.
need_root
need_pidns
need_python
[ -n "${HEARTHCTL:-}" ] || fail "HEARTHCTL is not set (run through 'meson test')"
[ -x "$HEARTHCTL" ] || fail "HEARTHCTL=$HEARTHCTL is not executable"
MKPEX=${HEARTH_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/fixtures/mkpex.py
[ -f "$MKPEX" ] || fail "fixture builder $MKPEX is missing"
FIX=$TEST_TMP/fixtures
mkdir -p "$FIX"

# ------------------------------------------------------------------- hearth

# start_deploy_hearth [HEARTH ARGS...]: hearth as PID 1 of a new PID
# namespace, offering only $PYTHON (probing every python on PATH can take
# seconds when version-manager shims are there), listening on its socket.
# shellcheck disable=SC2120 # the arguments are optional
start_deploy_hearth() {
    start_hearth_pid1 --python "$PYTHON" "$@"
    wait_hearth_listening
}

# finish_deploy_hearth: ends the test's hearth through `hearthctl shutdown`
# and checks that it exits 0 (also keeps bash from reporting a killed job).
finish_deploy_hearth() {
    run_ctl shutdown
    assert_eq 0 "$RUN_RC" "hearthctl shutdown exit code ($RUN_ERR)"
    wait_hearth_exit 30
    assert_eq 0 "$HEARTH_RC" "hearth's exit code after shutdown"
}

# ------------------------------------------------------------------ JSON

# jget JSON EXPR: evaluates the python expression EXPR with `j` bound to the
# parsed JSON and prints the value: strings raw, None/True/False as
# null/true/false, other values as compact JSON. On any error prints
# "<jget error: ...>" (so an assertion on it fails readably) and returns 1.
jget() {
    "$PYTHON" - "$1" "$2" <<'PY'
import json, sys
try:
    j = json.loads(sys.argv[1])
    v = eval(sys.argv[2], {"json": json, "j": j})
except Exception as e:
    print("<jget error: %s: %r>" % (type(e).__name__, e))
    sys.exit(1)
if isinstance(v, str):
    print(v)
else:
    print(json.dumps(v, separators=(",", ":"), sort_keys=True))
PY
}

# ---------------------------------------------------------------- hearthctl

# ctl_ok ARGS...: hearthctl --json ARGS, which must exit 0; RUN_OUT is the result.
ctl_ok() {
    run_ctl --json "$@"
    [ "$RUN_RC" = 0 ] || fail "hearthctl $* exited $RUN_RC: $RUN_ERR"
}

# status_of LOCATION: sets STATUS to the `status LOCATION` result.
status_of() {
    ctl_ok status "$1"
    STATUS=$RUN_OUT
}

# rev_get LOCATION ID EXPR: EXPR over the revision `r` (its status object;
# also `loc`, the location object) of a fresh status.
rev_get() {
    status_of "$1"
    jget "$STATUS" "(lambda loc: (lambda r: $3)(next(x for x in loc['revisions'] if x['id'] == '$2')))(j['locations'][0])"
}

# active_of LOCATION: the location's active revision id ("null" if none).
active_of() {
    status_of "$1"
    jget "$STATUS" "j['locations'][0]['active']"
}

# Whether revision ID of LOCATION is in STATE now (for wait_until).
rev_in_state() { # LOCATION ID STATE
    local s
    s=$(rev_get "$1" "$2" "r['state']") || return 1
    [ "$s" = "$3" ]
}

wait_rev_state() { # LOCATION ID STATE [TIMEOUT_S]
    wait_until "${4:-20}" "$2 to be $3" rev_in_state "$1" "$2" "$3"
}

# deploy_wait LOCATION ARGS...: `hearthctl --json deploy LOCATION ARGS --wait`
# (with --min-uptime $DEPLOY_MIN_UPTIME, default 0.2, unless ARGS name one).
# Sets DEPLOY_RC, DEPLOY_OUT, DEPLOY_ERR, DEPLOY_ID, DEPLOY_STATE and
# DEPLOY_REV (the revision object of the last event printed).
deploy_wait() {
    local loc=$1
    shift
    local -a extra=()
    case " $* " in
    *" --min-uptime "*) ;;
    *) extra=(--min-uptime "${DEPLOY_MIN_UPTIME:-0.2}") ;;
    esac
    run_ctl --json deploy "$loc" "$@" "${extra[@]}" --wait
    DEPLOY_RC=$RUN_RC
    DEPLOY_OUT=$RUN_OUT
    DEPLOY_ERR=$RUN_ERR
    local last
    last=$(printf '%s\n' "$RUN_OUT" | tail -n 1)
    DEPLOY_ID=$(jget "$last" "j['id']") || DEPLOY_ID=
    DEPLOY_STATE=$(jget "$last" "j['state']") || DEPLOY_STATE=
    DEPLOY_REV=$(jget "$last" "j['revision']") || DEPLOY_REV=
}

# deploy_ready LOCATION ARGS...: deploy_wait, and the revision must be ready.
deploy_ready() {
    deploy_wait "$@"
    if [ "$DEPLOY_RC" != 0 ] || [ "$DEPLOY_STATE" != ready ]; then
        fail "deploy $1 did not become ready (hearthctl exit $DEPLOY_RC, state '$DEPLOY_STATE'): $DEPLOY_ERR; last event: $DEPLOY_REV"
    fi
}

# deploy_failed LOCATION ARGS...: deploy_wait, and the revision must fail
# (hearthctl exits 1, state failed). Unless ARGS name a restart policy, the
# deploy asks for none, so that a crash ends in `failed` rather than backoff.
deploy_failed() {
    local -a policy=()
    case " $* " in
    *" --restart "*) ;;
    *) policy=(--restart never) ;;
    esac
    deploy_wait "$@" "${policy[@]}"
    assert_eq 1 "$DEPLOY_RC" "hearthctl deploy --wait exit code for a failing deploy ($DEPLOY_ERR)"
    assert_eq failed "$DEPLOY_STATE" "final state of $DEPLOY_ID"
}

# ------------------------------------------------------------------- logs

# logs_text LOCATION [ID]: "STREAM TEXT" per line of the revision's history.
logs_text() {
    local -a idopt=()
    [ -n "${2:-}" ] && idopt=(--id "$2")
    ctl_ok logs "$1" "${idopt[@]}" --tail 10000
    jget "$RUN_OUT" "'\n'.join(l['stream'] + ' ' + l['text'] for l in j['lines'])"
}

logs_have() { # LOCATION ID|"" LINE: whether "STREAM TEXT" LINE is in the logs
    local text
    text=$(logs_text "$1" "$2") || return 1
    grep -qxF -- "$3" <<<"$text"
}

wait_log_line() { # LOCATION ID|"" "STREAM TEXT" [TIMEOUT_S]
    wait_until "${4:-20}" "log line '$3' of $1 ${2:-}" logs_have "$1" "$2" "$3"
}

# log_count LOCATION ID|"" FIXED-STRING: how many log lines contain it.
log_count() {
    local text
    text=$(logs_text "$1" "$2") || return 1
    grep -cF -- "$3" <<<"$text" || true
}

# Whether more than N log lines contain FIXED-STRING (for wait_until).
log_count_above() { # LOCATION ID|"" FIXED-STRING N
    [ "$(log_count "$1" "$2" "$3")" -gt "$4" ]
}

# Whether `status LOCATION` succeeds, i.e. hearth knows the location.
location_known() {
    run_ctl --json status "$1"
    [ "$RUN_RC" = 0 ]
}

# Whether FILE has at least N lines.
file_lines_ge() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }

# ------------------------------------------------------------------ pids

# host_pid NSPID: the pid, as seen from here, of hearth's child that is
# NSPID in hearth's PID namespace (status reports pids as hearth sees them;
# revision processes are hearth's children). Empty if there is none.
host_pid() {
    local p line
    for p in $(proc_children "$HEARTH_PID"); do
        while read -r line; do
            case $line in
            NSpid:*)
                if [ "${line##*[[:space:]]}" = "$1" ]; then
                    echo "$p"
                    return 0
                fi
                break
                ;;
            esac
        done 2>/dev/null <"/proc/$p/status" || true
    done
    return 0
}

# cmdline_of HOSTPID: the command line, arguments separated by spaces.
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# environ_has HOSTPID K=V: whether the process's environment has exactly K=V.
environ_has() { tr '\0' '\n' <"/proc/$1/environ" | grep -qxF -- "$2"; }

# wait_bg PID [TIMEOUT_S]: waits (bounded) for a background child of this
# shell started with start_bg to exit; sets BG_RC to its exit status.
wait_bg() {
    wait_until "${2:-10}" "background process $1 to exit" proc_gone "$1"
    BG_RC=0
    wait "$1" || BG_RC=$?
}

# pids_running_cmd FIXED-STRING: host pids of hearth's descendants (its
# namespace) whose command line contains FIXED-STRING, zombies excluded.
pids_running_cmd() {
    local p
    for p in $(proc_descendants "$HEARTH_PID"); do
        proc_running "$p" || continue
        case "$(cmdline_of "$p")" in *"$1"*) echo "$p" ;; esac
    done
    return 0
}

process_with_cmd() { [ -n "$(pids_running_cmd "$1")" ]; }
no_process_with_cmd() { [ -z "$(pids_running_cmd "$1")" ]; }

# ------------------------------------------------------------------ fixtures

# make_sample [--raw-wheels]: the demo's deps.pex and source.pex in
# $FIX/sample (sets SAMPLE_DEPS, SAMPLE_SOURCE).
# shellcheck disable=SC2120 # the argument is optional
make_sample() {
    "$PYTHON" "$MKPEX" sample "$FIX/sample" "$@" || fail "mkpex sample failed"
    SAMPLE_DEPS=$FIX/sample/deps.pex
    SAMPLE_SOURCE=$FIX/sample/source.pex
}

# write_file PATH CONTENT: creates PATH (and its parents) with CONTENT.
write_file() {
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" >"$1"
}

# make_source OUT CODE_DIR ENTRY [MKPEX SOURCE ARGS...]: a source pex of the
# files under CODE_DIR with entry point ENTRY.
make_source() {
    local out=$1 code=$2 entry=$3
    shift 3
    "$PYTHON" "$MKPEX" source "$out" --code "$code" --entry "$entry" "$@" ||
        fail "mkpex source $out failed"
}

# make_app OUT MODULE PYTHON_SOURCE: a source pex whose only module is
# app/MODULE.py (plus app/__init__.py), entry point app.MODULE.
make_app() {
    local out=$1 mod=$2 src=$3
    local dir
    dir=$FIX/code-$(basename "$out" .pex)
    rm -rf "$dir"
    write_file "$dir/app/__init__.py" ""
    write_file "$dir/app/$mod.py" "$src"
    make_source "$out" "$dir" "app.$mod"
}

# make_ticker OUT LABEL: a source pex for the sample deps whose entry
# module prints "LABEL started: hello, LABEL" (through the deps' greet), then
# "LABEL tick N" every 0.2 s, forever.
make_ticker() {
    make_app "$1" main "import sys, time
import greet
print('$2 started: ' + greet.hello('$2'), flush=True)
n = 0
while True:
    n += 1
    print('$2 tick %d' % n, flush=True)
    time.sleep(0.2)"
}

# make_deps OUT [MKPEX DEPS ARGS...]
make_deps() {
    local out=$1
    shift
    "$PYTHON" "$MKPEX" deps "$out" "$@" || fail "mkpex deps $out failed"
}

# pex_edit OUT IN PYCODE: copies pex IN to OUT (same shebang, same entries
# in the same order), running PYCODE with `info` (the PEX-INFO dict) and
# `entries` (a list of [zipfile.ZipInfo, bytes], editable in place) first.
pex_edit() {
    "$PYTHON" - "$1" "$2" "$3" <<'PY' || fail "pex_edit $2 -> $1 failed"
import io, json, sys, zipfile
out, src, code = sys.argv[1:4]
with open(src, "rb") as f:
    data = f.read()
shebang = data[: data.index(b"\n") + 1]
entries = []
with zipfile.ZipFile(io.BytesIO(data)) as zf:
    for zi in zf.infolist():
        entries.append([zi, zf.read(zi)])
info = None
for e in entries:
    if e[0].filename == "PEX-INFO":
        info = json.loads(e[1])
exec(code, {"info": info, "entries": entries, "zipfile": zipfile, "json": json})
with open(out, "wb") as f:
    f.write(shebang)
    with zipfile.ZipFile(f, "w") as zf:
        for zi, body in entries:
            if zi.filename == "PEX-INFO":
                body = json.dumps(info, sort_keys=True, separators=(",", ":")).encode()
            new = zipfile.ZipInfo(zi.filename, date_time=zi.date_time)
            new.create_system = zi.create_system
            new.external_attr = zi.external_attr
            new.compress_type = zi.compress_type
            zf.writestr(new, body)
PY
}

# sha256_of FILE
sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# --------------------------------------------------------------- events

_EVENT_RECORDER='
import json, socket, sys
path, out, loc = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(path)
params = {"location": loc} if loc else {}
s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": "events.subscribe",
                       "params": params}) + "\n").encode())
f = s.makefile("rb")
with open(out, "a") as o:
    for raw in f:
        msg = json.loads(raw)
        if msg.get("id") == 1:
            if msg.get("result") != {"subscribed": True}:
                sys.exit("events.subscribe failed: %r" % msg)
            open(out + ".subscribed", "w").close()
        elif msg.get("method") == "event":
            o.write(json.dumps(msg["params"], sort_keys=True) + "\n")
            o.flush()
'

# start_event_recorder FILE [LOCATION]: subscribes to events over the raw
# socket in the background and appends each event notification's params to
# FILE, one JSON object per line, as they arrive. Returns once hearth has
# accepted the subscription, so no later state change can be missed.
start_event_recorder() {
    : >"$1"
    rm -f "$1.subscribed"
    start_bg "$PYTHON" -c "$_EVENT_RECORDER" "$HEARTH_SOCKET" "$1" "${2:-}"
    wait_until 10 "events.subscribe to be accepted" test -e "$1.subscribed"
}

# event_lines FILE: "ID PREVIOUS->STATE" per recorded event (PREVIOUS "-"
# when null), in arrival order.
event_lines() {
    "$PYTHON" -c '
import json, sys
for raw in open(sys.argv[1]):
    e = json.loads(raw)
    print("%s %s->%s" % (e["id"], e["previous"] or "-", e["state"]))' "$1"
}

# line_no TEXT LINE: the 1-based number of the first line of TEXT equal to
# LINE, or 0.
line_no() {
    local n
    n=$(grep -nxF -- "$2" <<<"$1" | head -n 1 | cut -d: -f1)
    echo "${n:-0}"
}

#!/bin/bash
# Configuration from the environment (hearth(8), ENVIRONMENT):
#  A. hearth started with no option at all, configured only by HEARTH_*
#     variables (state dir, run dir, cgroup parent, log format and level,
#     grace), as PID 1: each setting takes effect; HEARTH_* variables that
#     are not options (reserved names, HEARTH_VERSION, hearthctl's
#     HEARTH_SOCKET) are ignored. hearthctl finds the socket through
#     HEARTH_SOCKET alone, and its --socket wins over the variable.
#  B. a flag wins over its variable.
#  C. a bad variable is a usage error (exit 2) whose one line names it, and
#     nothing is started; --help still works.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns
need_python

# Only the environment configures hearth here: no --state-dir, --run-dir or
# --cgroup-parent from lib.sh's default command line.
hearth_args() { printf '%s\0' "$HEARTH" "$@"; }

env_state=$TEST_TMP/env-state
env_run=$TEST_TMP/env-run
env_vars=(
    HEARTH_STATE_DIR="$env_state"
    HEARTH_RUN_DIR="$env_run"
    HEARTH_CGROUP_PARENT="$HEARTH_CGROUP_PARENT"
    HEARTH_LOG_FORMAT=json
    HEARTH_LOG_LEVEL=debug
    HEARTH_GRACE=1
    # Not options: ignored (a bad value here would be a usage error).
    HEARTH_VERSION=not-a-version
    HEARTH_HELP=1
    HEARTH_LOCATION=Not/A/Location
    HEARTH_REVISION=x
    HEARTH_SOCKET=/nonexistent/hearthctl-only.sock
)

# --- A: everything from the environment
ready=$TEST_TMP/a-ready
HEARTH_WRAP=(env "${env_vars[@]}")
start_hearth_pid1 -- /bin/sh -c 'trap "" TERM; echo x > "$1"; exec sleep 600' sh "$ready"
wait_until 10 "A: main command to ignore TERM" file_nonempty "$ready"
wait_until 10 "A: control socket in HEARTH_RUN_DIR" test -S "$env_run/control.sock"
[ ! -e "$HEARTH_RUN_DIR/control.sock" ] || fail "A: socket also in lib.sh's default run dir"
[ -e "$env_state/lock" ] || fail "A: no store lock in HEARTH_STATE_DIR ($(ls -A "$env_state"))"

# hearthctl: the socket from HEARTH_SOCKET alone, then --socket over a bad one.
run_cmd env HEARTH_SOCKET="$env_run/control.sock" "$HEARTHCTL" ping
assert_eq 0 "$RUN_RC" "A: hearthctl ping with HEARTH_SOCKET (stderr: $RUN_ERR)"
assert_contains "$RUN_OUT" "pong from hearth" "A: ping output"
run_cmd env HEARTH_SOCKET=/nonexistent/x.sock "$HEARTHCTL" --socket "$env_run/control.sock" ping
assert_eq 0 "$RUN_RC" "A: hearthctl --socket wins over HEARTH_SOCKET (stderr: $RUN_ERR)"
run_cmd env HEARTH_SOCKET=/nonexistent/x.sock "$HEARTHCTL" ping
assert_eq 3 "$RUN_RC" "A: hearthctl with only a wrong HEARTH_SOCKET"
assert_contains "$RUN_ERR" "/nonexistent/x.sock" "A: hearthctl names the socket it tried"

# Log format and level: every line of stderr is a JSON object, debug lines
# included; the cgroup parent shows in the driver's log line.
t0=$(now_ms)
signal_hearth TERM
wait_hearth_exit 30
elapsed=$(($(now_ms) - t0))
# HEARTH_GRACE=1: the main command, which ignores TERM, is KILLed after 1 s
# (the default grace would be 10 s).
assert_eq 137 "$HEARTH_RC" "A: exit code (main command KILLed after the grace)"
assert_ge "$elapsed" 1000 "A: ms from TERM to exit"
assert_lt "$elapsed" 5000 "A: ms from TERM to exit"
python3 - "$HEARTH_STDERR" "$HEARTH_CGROUP_PARENT" <<'EOF' || fail "A: hearth's log does not show the settings"
import json, sys
path, parent = sys.argv[1], sys.argv[2]
lines = [l for l in open(path, encoding="utf-8").read().splitlines() if l]
assert lines, "no log lines"
records = []
for l in lines:
    try:
        records.append(json.loads(l))
    except ValueError:
        sys.exit("not a JSON log line: %r" % l)
levels = {r.get("level") for r in records}
assert "debug" in levels, "no debug line with HEARTH_LOG_LEVEL=debug: %s" % sorted(levels)
drivers = [r for r in records if r.get("msg") == "cgroup driver ready"]
if drivers and drivers[0].get("driver") != "none":
    assert parent in drivers[0].get("envs", ""), drivers[0]
EOF

# --- B: the flag wins over the variable
flag_run=$TEST_TMP/flag-run
HEARTH_WRAP=(env "${env_vars[@]}" HEARTH_RUN_DIR="$TEST_TMP/env-run-b")
start_hearth_subreaper --run-dir "$flag_run" --log-format text
wait_until 10 "B: control socket in --run-dir" test -S "$flag_run/control.sock"
[ ! -e "$TEST_TMP/env-run-b/control.sock" ] || fail "B: socket in HEARTH_RUN_DIR despite --run-dir"
signal_hearth TERM
wait_hearth_exit 20
assert_eq 0 "$HEARTH_RC" "B: daemon exit code"
first=$(head -n 1 "$HEARTH_STDERR")
case $first in
'{'*) fail "B: --log-format text lost to HEARTH_LOG_FORMAT=json: $first" ;;
esac

# --- C: bad variables
marker=$TEST_TMP/must-not-run
bad_env() { # VAR=VALUE NEEDLE: hearth must refuse to start, naming VAR
    run_cmd env "$1" "$HEARTH" -- /bin/sh -c "touch $marker"
    assert_eq 2 "$RUN_RC" "C: exit code for $1"
    assert_eq "" "$RUN_OUT" "C: stdout for $1"
    assert_lines "$RUN_ERR" 1 "C: stderr for $1"
    assert_contains "$RUN_ERR" "$2" "C: message for $1"
    [ ! -e "$marker" ] || fail "C: main command ran despite $1"
}
bad_env HEARTH_GRACE=soon "HEARTH_GRACE: expected seconds from 0 to 86400, got 'soon'"
bad_env HEARTH_STATE_DIR=relative "HEARTH_STATE_DIR: expected an absolute path, got 'relative'"
bad_env HEARTH_LOG_FORMAT=xml "HEARTH_LOG_FORMAT: unknown format 'xml'"
bad_env HEARTH_PYTHON=/usr/bin/python3:python3 "HEARTH_PYTHON: expected an absolute path"
run_cmd env HEARTH_GRACE=soon "$HEARTH" --help
assert_eq 0 "$RUN_RC" "C: --help despite a bad variable"
assert_contains "$RUN_OUT" "HEARTH_GRACE" "C: --help lists the variable"

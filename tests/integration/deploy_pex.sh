#!/bin/bash
# deploy -> ready with the pex runtime (--runtime pex): hearth runs
# `PYTHON <source tree>` with PEX_PATH=<deps tree> and PEX_ROOT in the state
# dir (launch.hpp); the pex's own __main__.py then runs the entry point.
# Status shows the state, the pid, the python and that command; the logs hold
# the sample app's stdout and stderr; hearth's stdout has them prefixed.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
deps_sha=$(sha256_of "$SAMPLE_DEPS")
source_sha=$(sha256_of "$SAMPLE_SOURCE")

deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --runtime pex
assert_eq analytics-1 "$DEPLOY_ID" "revision id"

status_of analytics
rev=$(jget "$STATUS" "j['locations'][0]['revisions'][0]")
assert_eq analytics-1 "$(jget "$STATUS" "j['locations'][0]['active']")" "active revision"
assert_eq ready "$(jget "$rev" "j['state']")" "state"
assert_eq pex "$(jget "$rev" "j['runtime']")" "runtime"
assert_eq "$PYTHON" "$(jget "$rev" "j['python']")" "python"
source_tree=$HEARTH_STATE_DIR/trees/sha256/$source_sha
deps_tree=$HEARTH_STATE_DIR/trees/sha256/$deps_sha
assert_eq "[\"$PYTHON\",\"$source_tree\"]" "$(jget "$rev" "j['command']")" "command"
[ -f "$source_tree/__main__.py" ] || fail "the source tree $source_tree has no __main__.py"

nspid=$(jget "$rev" "j['pid']")
assert_match "$nspid" '^[0-9]+$' "pid"
hpid=$(host_pid "$nspid")
[ -n "$hpid" ] || fail "no process with pid $nspid in hearth's PID namespace"
proc_running "$hpid" || fail "revision process $nspid is not running"
assert_eq "$(readlink -f "$PYTHON")" "$(proc_exe "$hpid")" "executable of the revision process"
assert_contains "$(cmdline_of "$hpid")" "$source_tree" "/proc/$hpid/cmdline"
environ_has "$hpid" "PEX_PATH=$deps_tree" || fail "PEX_PATH is not the deps tree"
environ_has "$hpid" "PEX_ROOT=$HEARTH_STATE_DIR/pex-root" || fail "PEX_ROOT is not in the state dir"
# The native runtime's variables have no business here.
if tr '\0' '\n' <"/proc/$hpid/environ" | grep -q '^HEARTH_SYS_PATH='; then
    fail "the pex runtime got HEARTH_SYS_PATH"
fi

# The entry point from PEX-INFO (app.main) ran: its output proves it.
wait_log_line analytics "" "stdout [0001] hello, hearth"
logs=$(logs_text analytics)
assert_contains "$logs" "stdout sample app started: hello, hearth argv=[]" "logs"
assert_contains "$logs" "stderr sample app stderr: pid $nspid" "logs"
wait_until 10 "prefixed lines on hearth's stdout" \
    file_has_line "$HEARTH_STDOUT" "[analytics] sample app started: hello, hearth argv=[]"
wait_until 10 "the app's stderr line, prefixed, on hearth's stdout" \
    file_has_line "$HEARTH_STDOUT" "[analytics] sample app stderr: pid $nspid"

# With --module the pex runtime runs that module (PEX_MODULE) with the args.
deploy_ready other --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --runtime pex \
    --module app.main --arg --flag
opid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$opid" ] || fail "no process for other-1"
environ_has "$opid" PEX_MODULE=app.main || fail "PEX_MODULE is not app.main"
wait_log_line other "" "stdout sample app started: hello, hearth argv=['--flag']"

finish_deploy_hearth

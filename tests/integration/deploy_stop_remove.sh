#!/bin/bash
# stop replies once the revisions have stopped (their processes are gone by
# then), with the ids it stopped; a second stop stops nothing; --id stops one
# revision; a revision that ignores SIGTERM is killed after --grace; a stop
# during loading makes `deploy --wait` fail. remove stops everything and
# forgets the location: status/logs/stop of it are then unknown-location
# errors (hearthctl exit 1, code -32001).
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth --grace 1
make_sample
make_ticker "$FIX/ticker.pex" tick
make_app "$FIX/stubborn.pex" main 'import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring TERM", flush=True)
while True:
    time.sleep(0.1)'

# ---- stop all of a location
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"
pid1=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$pid1" ] || fail "no process for analytics-1"
ctl_ok stop analytics
assert_eq '{"stopped":["analytics-1"]}' "$(jget "$RUN_OUT" "j")" "stop result"
# The reply comes when it has stopped: no waiting here.
proc_gone "$pid1" || fail "analytics-1's process still exists when stop replied"
r=$(rev_get analytics analytics-1 "r")
assert_eq "stopped null" "$(jget "$r" "'%s %s' % (j['state'], json.dumps(j.get('pid')))")" "state and pid after stop"
assert_eq SIGTERM "$(jget "$r" "j.get('signal')")" "signal that ended analytics-1"
assert_contains "$(jget "$r" "j.get('message', '')")" "request" "stop message"
assert_eq null "$(active_of analytics)" "active after stop"
# Its scratch dir (TMPDIR) goes away with it.
wait_until 10 "analytics-1's scratch dir to be removed" test ! -e "$HEARTH_STATE_DIR/scratch/analytics-1"
run_ctl stop analytics
assert_eq 0 "$RUN_RC" "second stop exit code"
assert_eq "nothing was running" "$RUN_OUT" "second stop output"

# ---- stop one revision by id; unknown id
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/ticker.pex"
assert_eq analytics-2 "$DEPLOY_ID" "next revision"
deploy_ready other --deps "$SAMPLE_DEPS" --source "$FIX/ticker.pex"
other_pid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
run_ctl stop analytics --id analytics-2
assert_eq 0 "$RUN_RC" "stop --id exit code ($RUN_ERR)"
assert_eq "stopped analytics-2" "$RUN_OUT" "stop --id output"
proc_running "$other_pid" || fail "stopping analytics-2 stopped another location's process"
run_ctl stop analytics --id analytics-9
assert_eq 1 "$RUN_RC" "stop of an unknown revision: exit code"
assert_contains "$RUN_ERR" "(code -32002)" "stop of an unknown revision: error"

# ---- a revision that ignores SIGTERM: killed after the 1 s grace
deploy_ready stubborn --deps "$SAMPLE_DEPS" --source "$FIX/stubborn.pex"
wait_log_line stubborn "" "stdout ignoring TERM"
spid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
t0=$(now_ms)
ctl_ok stop stubborn
elapsed=$(($(now_ms) - t0))
proc_gone "$spid" || fail "the stubborn revision's process survived stop"
assert_ge "$elapsed" 900 "ms for stop to return (grace 1 s before SIGKILL)"
assert_lt "$elapsed" 5000 "ms for stop to return (grace 1 s before SIGKILL)"
assert_eq "stopped SIGKILL" "$(rev_get stubborn stubborn-1 "r['state'] + ' ' + r.get('signal', '')")" "stubborn-1 after stop"

# ---- stop while loading: deploy --wait reports the failure
start_bg timeout 60 "$HEARTHCTL" --socket "$HEARTH_SOCKET" deploy slow --deps "$SAMPLE_DEPS" \
    --source "$FIX/ticker.pex" --min-uptime 30 --wait >"$TEST_TMP/slow.out" 2>"$TEST_TMP/slow.err"
waiter=$BG_PID
wait_until 20 "location slow to exist" location_known slow
wait_rev_state slow slow-1 loading
ctl_ok stop slow
wait_bg "$waiter"
assert_eq 1 "$BG_RC" "deploy --wait exit code when the revision is stopped before ready"
assert_contains "$(cat "$TEST_TMP/slow.err")" "slow-1" "deploy --wait stderr"

# ---- remove
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/ticker.pex"
apid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
ctl_ok remove analytics
assert_eq "analytics [\"$DEPLOY_ID\"]" "$(jget "$RUN_OUT" "j['removed'] + ' ' + json.dumps(j['stopped'])")" "remove result"
proc_gone "$apid" || fail "$DEPLOY_ID's process still exists when remove replied"
run_ctl status analytics
assert_eq 1 "$RUN_RC" "status of a removed location: exit code"
assert_contains "$RUN_ERR" "hearthctl: status:" "status of a removed location: error"
assert_contains "$RUN_ERR" "(code -32001)" "status of a removed location: error"
for cmd in logs stop remove; do
    run_ctl "$cmd" analytics
    assert_eq 1 "$RUN_RC" "$cmd of a removed location: exit code"
    assert_contains "$RUN_ERR" "(code -32001)" "$cmd of a removed location: error"
done
ctl_ok status
assert_eq "other slow stubborn" "$(jget "$RUN_OUT" "' '.join(l['location'] for l in j['locations'])")" \
    "locations after remove"
run_ctl remove other
assert_eq 0 "$RUN_RC" "remove other: exit code"
assert_eq "stopped other-1"$'\n'"removed other" "$RUN_OUT" "remove output"
proc_gone "$other_pid" || fail "other-1's process still exists when remove replied"

# A removed location can be deployed again from scratch.
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/ticker.pex"

finish_deploy_hearth

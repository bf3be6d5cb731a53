#!/bin/bash
# Redeploy with the same deps and a changed source: the deps come from the
# cache (deps.cache_hit true, source.cache_hit false). Blue/green: the new
# revision starts beside the old one, the old one keeps running and stays
# active until the new one is ready, and only then is it stopped; `active`
# switches. Checked in status, in /proc and in the order of the events.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
make_ticker "$FIX/a.pex" blue
make_ticker "$FIX/b.pex" green

deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/a.pex"
assert_eq analytics-1 "$DEPLOY_ID" "first revision"
assert_eq "false false" "$(jget "$DEPLOY_REV" "'%s %s' % (json.dumps(j['deps']['cache_hit']), json.dumps(j['source']['cache_hit']))")" \
    "cache hits of the first deploy"
pid1=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$pid1" ] || fail "no process for analytics-1"
wait_log_line analytics analytics-1 "stdout blue started: hello, blue"

start_event_recorder "$TEST_TMP/events.jsonl" analytics

# The new revision needs 3 s of uptime: a window to look at both.
# Without --wait and --json, hearthctl prints the new revision id.
run_ctl deploy analytics --deps "$SAMPLE_DEPS" --source "$FIX/b.pex" --min-uptime 3
assert_eq 0 "$RUN_RC" "hearthctl deploy exit code ($RUN_ERR)"
assert_eq analytics-2 "$RUN_OUT" "hearthctl deploy output"
wait_rev_state analytics analytics-2 loading
status_of analytics
# The new one loads (if it is already 'ready', the machine was too slow for
# the 3 s window) while the old one serves.
assert_eq "loading" "$(jget "$STATUS" "[r for r in j['locations'][0]['revisions'] if r['id'] == 'analytics-2'][0]['state']")" \
    "analytics-2 state while it loads"
assert_eq analytics-1 "$(jget "$STATUS" "j['locations'][0]['active']")" "active while the new revision loads"
assert_eq ready "$(jget "$STATUS" "[r for r in j['locations'][0]['revisions'] if r['id'] == 'analytics-1'][0]['state']")" \
    "analytics-1 state while the new revision loads"
proc_running "$pid1" || fail "analytics-1's process is gone before analytics-2 is ready"
pid2=$(host_pid "$(jget "$STATUS" "[r for r in j['locations'][0]['revisions'] if r['id'] == 'analytics-2'][0]['pid']")")
if [ -z "$pid2" ] || ! proc_running "$pid2"; then fail "analytics-2's process is not running"; fi
# Both really run side by side: each keeps writing.
wait_log_line analytics analytics-2 "stdout green tick 2"
n1=$(log_count analytics analytics-1 "blue tick")
wait_until 5 "analytics-1 to keep ticking while analytics-2 loads" \
    log_count_above analytics analytics-1 "blue tick" "$n1"
assert_eq loading "$(rev_get analytics analytics-2 "r['state']")" \
    "analytics-2 state after both ticked (3 s window too short for this machine?)"
assert_eq analytics-1 "$(active_of analytics)" "active after both ticked"
rev2=$(rev_get analytics analytics-2 "r")
assert_eq "true false" "$(jget "$rev2" "'%s %s' % (json.dumps(j['deps']['cache_hit']), json.dumps(j['source']['cache_hit']))")" \
    "cache hits of the redeploy (deps.cache_hit, source.cache_hit)"
assert_eq "$(sha256_of "$FIX/b.pex")" "$(jget "$rev2" "j['source']['sha256']")" "redeploy source digest"

# Then the switch.
wait_rev_state analytics analytics-2 ready
wait_rev_state analytics analytics-1 stopped
wait_until 10 "analytics-1's process to exit" proc_gone "$pid1"
proc_running "$pid2" || fail "analytics-2's process died in the switch"
assert_eq analytics-2 "$(active_of analytics)" "active after the switch"
assert_contains "$(rev_get analytics analytics-1 "r.get('message', '')")" "analytics-2" "analytics-1's stop message"
assert_eq "null" "$(rev_get analytics analytics-1 "r.get('pid')")" "pid of the stopped analytics-1"

# The table: the active revision starred, its cache column deps/source.
run_ctl status analytics
# (MEM and RESTARTS sit between CACHE and REASON; a detail block follows.)
assert_match "$RUN_OUT" $'\n''analytics +analytics-2\* +ready +[0-9]+ +[0-9a-z]+ +native +hit/miss +[^ ]+ +0 +-'$'\n' "status table"
assert_match "$RUN_OUT" $'\n''analytics +analytics-1 +stopped +- +- +native +miss/miss +- +0 +-('$'\n''|$)' "status table"

# Order: analytics-1 stopped only after analytics-2 was ready.
wait_until 10 "the stop events of analytics-1" grep -q '"state": "stopped"' "$TEST_TMP/events.jsonl"
events=$(event_lines "$TEST_TMP/events.jsonl")
ready2=$(line_no "$events" "analytics-2 loading->ready")
stopping1=$(line_no "$events" "analytics-1 ready->stopping")
stopped1=$(line_no "$events" "analytics-1 stopping->stopped")
if [ "$ready2" -eq 0 ] || [ "$stopping1" -le "$ready2" ] || [ "$stopped1" -le "$stopping1" ]; then
    fail "expected analytics-2 ready, then analytics-1 stopping, then stopped; events: $events"
fi
assert_eq 0 "$(line_no "$events" "analytics-1 ready->failed")" "analytics-1 must not fail"

# The old revision's logs stay readable by id.
assert_contains "$(logs_text analytics analytics-1)" "stdout blue tick 1" "analytics-1 logs after it stopped"
assert_contains "$(logs_text analytics)" "stdout green tick 1" "logs of the active revision"

finish_deploy_hearth

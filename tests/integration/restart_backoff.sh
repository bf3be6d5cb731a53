#!/bin/bash
# Restart policy and backoff (one revision, restarted in place):
#  - on-failure, a process that exits 1 after 0.2 s: the `restarts` counter
#    rises, state `backoff` is visible with next_attempt_at, backoff_s and the
#    last failure (reason exited, exit_code 1); the gaps between starts are
#    ~1 s, ~2 s, ~4 s (the backoff plus the 0.2 s run: each gap within
#    [0.8 x backoff, 1.5 x backoff + 0.5 s]); events go backoff -> starting;
#    the id stays the same; stop during backoff ends it without a restart.
#  - max_restarts 2: failed (reason exited) after the 3rd failure, no 4th start.
#  - never: failed at once, one start.
#  - always: an exit 0 is restarted too; on-failure does not restart it.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"

start_cg_hearth --grace 1
make_workloads

# starts_of FILE: the start times (seconds) the workload recorded.
starts_of() { sed -n 's/^start //p' "$1" 2>/dev/null; }
nstarts() { starts_of "$1" | wc -l; }
starts_ge() { [ "$(nstarts "$1")" -ge "$2" ]; }

# ---- on-failure, unlimited: watch three backoffs
S1=$TEST_TMP/starts.onfail
EV=$TEST_TMP/events.onfail
start_event_recorder "$EV" crash
deploy_args crash code=1 after=0.2 starts="$S1"
ctl_ok deploy crash "${DARGS[@]}" --restart on-failure --min-uptime 5
assert_eq crash-1 "$(jget "$RUN_OUT" "j['id']")" "deploy result id"

# While waiting for the 4th start, sample status to catch a backoff state.
BACKOFF_SEEN=
sample_backoff() {
    local r
    r=$(rev_json crash crash-1) || return 1
    if [ "$(jget "$r" "j['state']")" = backoff ] && [ -z "$BACKOFF_SEEN" ]; then
        BACKOFF_SEEN=$r
    fi
    starts_ge "$S1" 4
}
wait_until 20 "the 4th start of crash-1" sample_backoff
[ -n "$BACKOFF_SEEN" ] || fail "status never showed crash-1 in state backoff"
b=$BACKOFF_SEEN
assert_eq "exited 1" "$(jget "$b" "'%s %s' % (j.get('reason'), j.get('exit_code'))")" "last failure while in backoff"
assert_match "$(jget "$b" "j['next_attempt_at']")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$' "next_attempt_at"
float_cmp "$(jget "$b" "j['backoff_s']") in (1, 2, 4)" || fail "backoff_s $(jget "$b" "j['backoff_s']") is not 1, 2 or 4"
assert_ge "$(jget "$b" "j['restarts']")" 0 "restarts while in backoff"
assert_eq null "$(jget "$b" "json.dumps(j.get('pid'))")" "pid while in backoff"

mapfile -t st < <(starts_of "$S1")
for n in 1 2 3; do
    expect=$((1 << (n - 1)))
    gap=$("$PYTHON" -c "print('%.3f' % (${st[$n]} - ${st[$((n - 1))]}))")
    note "gap before start $((n + 1)): $gap s (backoff $expect s)"
    float_cmp "0.8 * $expect <= $gap <= 1.5 * $expect + 0.5" ||
        fail "gap before start $((n + 1)) is $gap s; expected ${expect} s backoff (within [0.8x, 1.5x + 0.5 s])"
done
r=$(rev_json crash crash-1)
assert_ge "$(jget "$r" "j['restarts']")" 3 "restarts after the 4th start"
ids=$("$PYTHON" -c '
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
print(" ".join(sorted({e["id"] for e in evs if e.get("type", "state") == "state"})))' "$EV")
assert_eq crash-1 "$ids" "revision ids in the events (a restart reuses the revision)"
lines=$(event_lines "$EV")
assert_contains "$lines" "crash-1 backoff->starting" "events"
assert_match "$lines" "crash-1 (loading|ready)->backoff" "events"

# Stop while in backoff (or starting): stopped, and no further start.
wait_until 10 "crash-1 in backoff again" rev_in_state crash crash-1 backoff
n_before=$(nstarts "$S1")
ctl_ok stop crash
assert_eq stopped "$(rev_get crash crash-1 "r['state']")" "state after stop during backoff"
# The pending backoff was 8 s; a restart would show up as a new start line.
# Short window, only to see that nothing happens.
sleep 1
assert_eq "$n_before" "$(nstarts "$S1")" "starts after stop during backoff"
assert_eq stopped "$(rev_get crash crash-1 "r['state']")" "state a second after stop"

# ---- max_restarts 2: failed after the 3rd failure
S2=$TEST_TMP/starts.max
deploy_args crash code=1 after=0.2 starts="$S2"
ctl_ok deploy limited "${DARGS[@]}" --restart on-failure --max-restarts 2 --min-uptime 5
wait_rev_state limited limited-1 failed 20
r=$(rev_json limited limited-1)
assert_eq "exited 1 2" "$(jget "$r" "'%s %s %s' % (j['reason'], j['exit_code'], j['restarts'])")" \
    "reason, exit code and restarts of the revision that ran out of restarts"
assert_eq 3 "$(nstarts "$S2")" "starts with max_restarts 2"
assert_eq null "$(jget "$r" "json.dumps(j.get('next_attempt_at'))")" "next_attempt_at of a failed revision"

# ---- never: failed at once
S3=$TEST_TMP/starts.never
deploy_args crash code=1 after=0.2 starts="$S3"
deploy_failed never "${DARGS[@]}" --restart never --min-uptime 5
assert_eq "exited 1 0" "$(jget "$DEPLOY_REV" "'%s %s %s' % (j['reason'], j['exit_code'], j['restarts'])")" "restart never"
assert_eq 1 "$(nstarts "$S3")" "starts with restart never"
assert_not_contains "$DEPLOY_OUT" '"backoff"' "events of a restart-never revision"

# ---- always: exit 0 restarts too; on-failure does not
S4=$TEST_TMP/starts.always
deploy_args crash code=0 after=0.2 starts="$S4"
ctl_ok deploy always "${DARGS[@]}" --restart always --min-uptime 5
wait_until 10 "the second start under restart always" starts_ge "$S4" 2
assert_ge "$(rev_get always always-1 "r['restarts']")" 1 "restarts under restart always"
ctl_ok stop always

S5=$TEST_TMP/starts.clean
deploy_args crash code=0 after=0.2 starts="$S5"
ctl_ok deploy clean "${DARGS[@]}" --restart on-failure --min-uptime 5
ended() { local s; s=$(rev_get clean clean-1 "r['state']"); [ "$s" = failed ] || [ "$s" = stopped ]; }
wait_until 10 "clean-1 to end" ended
r=$(rev_json clean clean-1)
assert_eq "0 0" "$(jget "$r" "'%s %s' % (j['restarts'], j.get('exit_code'))")" "restarts and exit code of an exit 0 under on-failure"
sleep 1.3 # past the first backoff (1 s): no second start
assert_eq 1 "$(nstarts "$S5")" "starts of an exit 0 under on-failure"
finish_deploy_hearth

#!/bin/bash
# A revision that allocates past limits.memory (64Mi) is OOM-killed by the
# kernel inside its own cgroup: the revision fails with reason oom_killed
# (not `exited`, even though its process died of SIGKILL) and an `oom` object
# (limit, peak, oom_kills, source kernel); with `restart: never` it stays
# failed. The whole revision goes, not only the process the kernel picked: a
# small child of the hog is gone too. A neighbour revision in another location
# is untouched (still ready, same pid). hearth logs the OOM, and the
# revision's cgroup directories are removed in every hierarchy. Last, an
# OOM-killed revision with restart on-failure and max_restarts 1 goes to
# backoff, is restarted once, and then fails for good as oom_killed.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups memory

start_cg_hearth --grace 2
make_workloads
LIMIT=$((64 << 20))

deploy_args hold
deploy_ready calm "${DARGS[@]}" --restart never --memory 256Mi
calm_pid=$(rev_get calm calm-1 "r['pid']")
calm_host=$(host_pid "$calm_pid")
[ -n "$calm_host" ] || fail "no host pid for calm-1 (pid $calm_pid in hearth's namespace)"

deploy_args hog step_mb=4 pause=0.01 mb=1024 sidekick=4646.1 beat="$TEST_TMP/beat"
deploy_failed hog "${DARGS[@]}" --memory 64Mi --restart never --min-uptime 10
rev=$DEPLOY_REV
assert_eq "hog-1 oom_killed" "$(jget "$rev" "'%s %s' % (j['id'], j['reason'])")" "failed revision and reason"
assert_contains "$DEPLOY_ERR" "oom_killed" "hearthctl deploy --wait stderr"
# The `failed` event must not have been preceded by a failure reported as a
# plain exit (containerd's old race: exit seen before the OOM).
assert_not_contains "$(grep '"hog-1"' <<<"$DEPLOY_OUT" | grep -v '"oom_killed"' || true)" '"failed"' \
    "events of hog-1 (a failed state without oom_killed)"

oom=$(jget "$rev" "j.get('oom')")
[ "$oom" != null ] || fail "no oom object in the failed revision: $rev"
assert_eq "$LIMIT" "$(jget "$oom" "j['limit']")" "oom.limit"
assert_eq kernel "$(jget "$oom" "j['source']")" "oom.source"
peak=$(jget "$oom" "j['peak']")
# The kernel charged the hog up to the limit before killing it: the peak is
# near the limit (a bit below, because the interpreter itself is charged too
# and the last 4 MiB step is what did not fit) and never above it.
float_cmp "$peak >= 0.75 * $LIMIT and $peak <= $LIMIT" ||
    fail "oom.peak $peak is not within [0.75, 1] x the limit $LIMIT"
assert_ge "$(jget "$oom" "j['oom_kills']")" 1 "oom.oom_kills"
assert_eq 0 "$(jget "$rev" "j['restarts']")" "restarts with restart never"
assert_eq "$LIMIT" "$(jget "$rev" "j['limits']['memory']")" "limits.memory in the revision"

# The hog did allocate (so the kill was the limit, not something else) and
# did not get past the limit.
last_mb=$(tail -n 1 "$TEST_TMP/beat" | cut -d' ' -f1)
assert_ge "$last_mb" 32 "MiB the hog reported before it died"
assert_lt "$last_mb" 65 "MiB the hog reported before it died"

# Stays failed: no restart shows up.
assert_eq "failed null" "$(rev_get hog hog-1 "'%s %s' % (r['state'], json.dumps(r.get('pid')))")" \
    "hog-1 state and pid after the OOM"

# The whole revision went: the hog's sleeping child too.
poll_until 5 no_process_with_cmd "sleep 4646.1" ||
    fail "the hog's child (sleep 4646.1) outlived the OOM-killed revision: pids $(pids_running_cmd 'sleep 4646.1' | tr '\n' ' ')"

# The neighbour is untouched.
assert_eq "ready $calm_pid" "$(rev_get calm calm-1 "'%s %s' % (r['state'], r['pid'])")" "neighbour state and pid"
proc_running "$calm_host" || fail "the neighbour's process $calm_host is gone"
assert_eq calm-1 "$(active_of calm)" "neighbour still active"

# hearth's log says so.
wait_until 5 "hearth's log to mention the OOM of hog-1" hearth_log_has 'oom.*hog-1|hog-1.*oom'

# The revision's cgroup is gone in every hierarchy (the neighbour's stays).
path=$(jget "$rev" "j.get('cgroup', {}).get('path') or ''")
name=hog-1
[ -n "$path" ] && name=$(basename "$path")
wait_until 5 "the cgroup directories of $name to be removed" cg_env_gone "$name"
calm_path=$(rev_get calm calm-1 "r['cgroup']['path']")
[ -d "$calm_path" ] || fail "the neighbour's cgroup $calm_path is gone"

# An OOM-killed revision follows its restart policy like any other failure:
# with on-failure it goes to backoff (reason oom_killed, next_attempt_at),
# is started again in a fresh cgroup after ~1 s and is OOM-killed again;
# max_restarts 1 then fails it for good, still as oom_killed.
deploy_args hog step_mb=4 pause=0.01 mb=1024
ctl_ok deploy again "${DARGS[@]}" --memory 64Mi --min-uptime 10 \
    --restart on-failure --max-restarts 1 --restart-window 60
BACKOFF_SEEN=
sample_oom_backoff() {
    local r
    r=$(rev_json again again-1) || return 1
    if [ "$(jget "$r" "j['state']")" = backoff ] && [ -z "$BACKOFF_SEEN" ]; then BACKOFF_SEEN=$r; fi
    [ "$(jget "$r" "j['state']")" = failed ]
}
wait_until 20 "again-1 to be OOM-killed, restarted, OOM-killed again and failed" sample_oom_backoff
[ -n "$BACKOFF_SEEN" ] || fail "status never showed the OOM-killed again-1 in backoff"
assert_eq "oom_killed" "$(jget "$BACKOFF_SEEN" "j.get('reason')")" "reason while in backoff"
assert_match "$(jget "$BACKOFF_SEEN" "j['next_attempt_at']")" '^[0-9]{4}-' "next_attempt_at while in backoff"
r=$(rev_json again again-1)
assert_eq "oom_killed 1" "$(jget "$r" "'%s %s' % (j['reason'], j['restarts'])")" "final reason and restarts"
assert_contains "$(jget "$r" "j['message']")" "not restarted" "final message"
assert_eq 2 "$(grep 'revision process started' "$HEARTH_STDERR" | grep -c 'again-1')" \
    "starts of again-1 in hearth's log (first + one restart)"
[ "$(jget "$r" "j.get('oom')")" != null ] || fail "no oom object after the restart: $r"

ctl_ok stop calm
wait_until 5 "the neighbour's cgroup to be removed after stop" cg_env_gone "$(basename "$calm_path")"
finish_deploy_hearth

#!/bin/bash
# `--cgroup-driver none`: no cgroup is made anywhere (not even under the
# given --cgroup-parent), hearth says its enforcement is degraded, and
# limits.memory is kept by the userspace watchdog: a hog allocating past
# 64Mi is killed (the whole revision, its small child too) and fails with
# reason oom_killed and oom.source "watchdog"; oom.peak is what the watchdog
# saw (past the limit). The watchdog's memory_current is the RSS sum, and a
# neighbour without a limit is left alone.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"

start_cg_hearth --grace 1 --cgroup-driver none
make_workloads
LIMIT=$((64 << 20))

ctl_ok ping
assert_eq none "$(jget "$RUN_OUT" "j['cgroup_driver']")" "ping cgroup_driver"
ctl_ok status; STATUS=$RUN_OUT
hcg=$(jget "$STATUS" "j['hearth']['cgroup']")
assert_eq "none degraded" "$(jget "$hcg" "'%s %s' % (j['driver'], j['enforcement'])")" "status hearth.cgroup"
assert_ne "[]" "$(jget "$hcg" "j.get('degraded', [])")" "status hearth.cgroup.degraded"

deploy_args hold
deploy_ready calm "${DARGS[@]}" --restart never --min-uptime 0.3
calm_pid=$(rev_get calm calm-1 "r['pid']")

deploy_args hog step_mb=2 pause=0.02 mb=1024 sidekick=4949.1 beat="$TEST_TMP/beat"
deploy_failed hog "${DARGS[@]}" --memory 64Mi --restart never --min-uptime 10
rev=$DEPLOY_REV
assert_eq oom_killed "$(jget "$rev" "j['reason']")" "reason"
oom=$(jget "$rev" "j.get('oom')")
[ "$oom" != null ] || fail "no oom object: $rev"
assert_eq "watchdog $LIMIT" "$(jget "$oom" "'%s %s' % (j['source'], j['limit'])")" "oom.source and oom.limit"
peak=$(jget "$oom" "j['peak']")
assert_ge "$peak" "$LIMIT" "oom.peak (the watchdog kills past the limit)"
# It polls every 100 ms: at 100 MiB/s the hog gets at most some tens of MiB
# past the limit before it is killed.
last_mb=$(tail -n 1 "$TEST_TMP/beat" | cut -d' ' -f1)
assert_lt "$last_mb" 200 "MiB the hog reached before the watchdog killed it"
assert_ge "$last_mb" 50 "MiB the hog reached"
cg=$(jget "$rev" "j.get('cgroup')")
assert_eq "none degraded" "$(jget "$cg" "'%s %s' % (j['driver'], j['enforcement'])")" "revision cgroup driver and enforcement"
assert_contains "$(jget "$cg" "' | '.join(j.get('degraded', []))")" memory "revision cgroup.degraded"
poll_until 5 no_process_with_cmd "sleep 4949.1" ||
    fail "the hog's child (sleep 4949.1) outlived the watchdog kill"
assert_eq "failed 0" "$(rev_get hog hog-1 "'%s %s' % (r['state'], r['restarts'])")" "hog-1 after the kill"

# The neighbour is untouched; its memory_current is an RSS sum.
assert_eq "ready $calm_pid" "$(rev_get calm calm-1 "'%s %s' % (r['state'], r['pid'])")" "neighbour"
mc=$(rev_get calm calm-1 "r['cgroup'].get('memory_current')")
{ [[ $mc =~ ^[0-9]+$ ]] && [ "$mc" -ge $((1 << 20)) ]; } || fail "neighbour's memory_current (watchdog RSS) is '$mc'"

# No cgroup was made anywhere.
for m in "${CG_ALL_MOUNTS[@]}"; do
    [ ! -e "$m$CG_PARENT" ] || fail "driver none created $m$CG_PARENT"
done
finish_deploy_hearth

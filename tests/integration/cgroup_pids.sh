#!/bin/bash
# limits.pids 16 bounds a fork bomb: its fork() calls start failing (EAGAIN)
# while the revision stays up and bounded (pids_current <= 16 in status, and
# in the kernel's own count); stopping it ends every process it made and
# removes its cgroup. The bomb has a safety cap of 200 children, so a missing
# limit fails the test instead of hurting the machine.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups pids

start_cg_hearth --grace 1
make_workloads
REPORT=$TEST_TMP/bomb.report

deploy_args forkbomb max=200 report="$REPORT"
deploy_ready bomb "${DARGS[@]}" --pids 16 --restart never --min-uptime 0.5

# last_report_field KEY: KEY's value in the bomb's newest report line.
last_report_field() {
    tail -n 1 "$REPORT" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"
}
bomb_blocked() { [ "$(last_report_field failed)" -gt 0 ] 2>/dev/null; }
wait_until 15 "the fork bomb's fork() to fail" bomb_blocked
assert_eq EAGAIN "$(last_report_field errno)" "errno of the failing fork()"
forks=$(last_report_field forks)
# The bomb itself is one of the 16; a few slots may be held by children that
# are still being created, never more.
[ "$forks" -le 15 ] || fail "the bomb made $forks children under a limit of 16 pids"
assert_ge "$forks" 8 "children the bomb made before the limit"

rev=$(rev_json bomb bomb-1)
assert_eq ready "$(jget "$rev" "j['state']")" "state of the bounded bomb"
assert_eq 16 "$(jget "$rev" "j['limits']['pids']")" "limits.pids"
cur=$(jget "$rev" "j['cgroup']['pids_current']")
{ [ "$cur" -le 16 ] && [ "$cur" -ge 8 ]; } || fail "cgroup.pids_current is $cur, expected 8..16"

path=$(jget "$rev" "j['cgroup']['path']")
name=$(basename "$path")
pdir=$(cg_mount_of pids)$CG_PARENT/envs/$name
[ -d "$pdir" ] || fail "no pids cgroup $pdir"
if [ -f "$pdir/pids.max" ]; then
    assert_eq 16 "$(cat "$pdir/pids.max")" "$pdir/pids.max"
    kcur=$(cat "$pdir/pids.current")
    [ "$kcur" -le 16 ] || fail "the kernel counts $kcur pids in $pdir"
fi

# Every process of the revision (host pids), to check after the stop.
mapfile -t members < <(cg_procs "$pdir")
assert_ge "${#members[@]}" 8 "processes in $pdir/cgroup.procs"
starts=()
for p in "${members[@]}"; do starts+=("$p:$(proc_starttime "$p" || echo gone)"); done

ctl_ok stop bomb
assert_eq '{"stopped":["bomb-1"]}' "$(jget "$RUN_OUT" "j")" "stop result"
any_member_left() {
    local e
    for e in "${starts[@]}"; do
        proc_running "${e%%:*}" && [ "$(proc_starttime "${e%%:*}")" = "${e#*:}" ] && return 0
    done
    return 1
}
no_member_left() { ! any_member_left; }
poll_until 5 no_member_left || fail "processes of the stopped bomb still run"
wait_until 5 "the bomb's cgroup to be removed" cg_env_gone "$name"
assert_eq stopped "$(rev_get bomb bomb-1 "r['state']")" "state after stop"
finish_deploy_hearth

#!/bin/bash
# limits.cpus 0.2 holds a busy loop near 20% of one CPU: over about 3 s the
# revision's cpu_usage_usec (status) grows by 0.1 to 0.3 s per second of wall
# time, and the kernel's quota is what was asked (20000 us per 100000 us).
# "500m" is accepted for half a CPU.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups cpu

start_cg_hearth --grace 1
make_workloads

deploy_args spin
deploy_ready spin "${DARGS[@]}" --cpus 0.2 --restart never --min-uptime 0.3
rev=$(rev_json spin spin-1)
assert_eq 0.2 "$(jget "$rev" "j['limits']['cpus']")" "limits.cpus"
name=$(basename "$(jget "$rev" "j['cgroup']['path']")")
cdir=$(cg_mount_of cpu)$CG_PARENT/envs/$name
if [ -f "$cdir/cpu.cfs_quota_us" ]; then
    assert_eq "20000 100000" "$(cat "$cdir/cpu.cfs_quota_us") $(cat "$cdir/cpu.cfs_period_us")" \
        "cfs quota and period in $cdir"
elif [ -f "$cdir/cpu.max" ]; then
    assert_eq "20000 100000" "$(cat "$cdir/cpu.max")" "$cdir/cpu.max"
else
    fail "no cpu quota file in $cdir"
fi

# usage_at: "USEC MS" read around one status call (the midpoint of the call's
# wall time stands for when the counter was read).
usage_at() {
    local t0 t1 u
    t0=$(now_ms)
    u=$(rev_get spin spin-1 "r['cgroup']['cpu_usage_usec']")
    t1=$(now_ms)
    echo "$u $(((t0 + t1) / 2))"
}
# Past the first period or two (the quota is enforced per 100 ms period).
sleep 0.3
read -r u0 w0 < <(usage_at)
sleep 3
read -r u1 w1 < <(usage_at)
ratio=$("$PYTHON" -c "print('%.3f' % (($u1 - $u0) / 1000.0 / ($w1 - $w0)))")
note "cpu share over $((w1 - w0)) ms: $ratio (usage $u0 -> $u1 us)"
float_cmp "0.1 <= $ratio <= 0.3" || fail "cpu share $ratio of one CPU is outside [0.1, 0.3] under cpus 0.2"
ctl_ok stop spin

# Millicores: 500m is half a CPU.
deploy_ready spin "${DARGS[@]}" --cpus 500m --restart never --min-uptime 0.3
assert_eq 0.5 "$(rev_get spin spin-2 "r['limits']['cpus']")" "limits.cpus from 500m"
ctl_ok stop spin
wait_until 5 "spin's cgroups to be removed" cg_env_gone "$name"
finish_deploy_hearth

#!/bin/bash
# limits.cpu_weight "idle" (systemd's CPUWeight=idle): the revision's cgroup
# gets cpu.idle = 1 and it runs only on CPU nobody else wants.
#   - beside a busy revision (no limits) on every CPU, an idle busy revision
#     gets almost nothing: under a tenth of the busy one's CPU time;
#   - once the busy one stops, the idle one uses the free CPU (idle is not a
#     limit);
#   - status and hearthctl show cpu_weight idle.
# Without cpu.idle (kernel before 5.15) the processes take SCHED_IDLE and
# status lists that under degraded; that branch is checked instead.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups cpu

NCPU=$("$PYTHON" -c 'import os; print(len(os.sched_getaffinity(0)))')
start_cg_hearth --grace 1
make_workloads

deploy_args spin "threads=$NCPU"
deploy_ready idle "${DARGS[@]}" --cpu-weight idle --restart never --min-uptime 0.2
rev=$(rev_json idle idle-1)
assert_eq '"idle"' "$(jget "$rev" "json.dumps(j['limits']['cpu_weight'])")" "limits.cpu_weight"
name=$(basename "$(jget "$rev" "j['cgroup']['path']")")
cdir=$(cg_mount_of cpu)$CG_PARENT/envs/$name
if [ -f "$cdir/cpu.idle" ]; then
    assert_eq 1 "$(cat "$cdir/cpu.idle")" "$cdir/cpu.idle"
    assert_eq "[]" "$(jget "$rev" "j['cgroup']['degraded']")" "degraded with cpu.idle"
else
    note "no cpu.idle in this kernel: SCHED_IDLE expected"
    assert_contains "$(jget "$rev" "j['cgroup']['degraded']")" "cpu_idle" "degraded without cpu.idle"
    pid=$(host_pid_of idle idle-1)
    assert_contains "$(chrt -p "$pid")" "SCHED_IDLE" "policy of pid $pid"
fi
run_ctl status idle
assert_contains "$RUN_OUT$RUN_ERR" "cpu_weight idle" "hearthctl status idle"

# usage_of LOCATION ID: the revision's cpu_usage_usec now.
usage_of() { rev_get "$1" "$2" "r['cgroup']['cpu_usage_usec']"; }

deploy_args spin "threads=$NCPU"
deploy_ready busy "${DARGS[@]}" --restart never --min-uptime 0.2
sleep 0.3
i0=$(usage_of idle idle-1)
b0=$(usage_of busy busy-1)
sleep 2
i1=$(usage_of idle idle-1)
b1=$(usage_of busy busy-1)
note "2 s side by side: idle +$(((i1 - i0) / 1000)) ms, busy +$(((b1 - b0) / 1000)) ms of CPU"
float_cmp "($b1 - $b0) > 0 and ($i1 - $i0) < 0.1 * ($b1 - $b0)" ||
    fail "the idle revision got $((i1 - i0)) us beside $((b1 - b0)) us of the busy one (want < 10%)"

ctl_ok stop busy
sleep 0.3
i0=$(usage_of idle idle-1)
t0=$(now_ms)
sleep 1
i1=$(usage_of idle idle-1)
t1=$(now_ms)
rate=$("$PYTHON" -c "print('%.2f' % (($i1 - $i0) / 1000.0 / ($t1 - $t0)))")
note "alone, the idle revision used $rate CPUs"
float_cmp "$rate > 0.2" || fail "the idle revision used $rate CPUs with the machine free (want > 0.2)"

ctl_ok stop idle
finish_deploy_hearth

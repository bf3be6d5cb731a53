#!/bin/bash
# limits.cpu_slice_us (hearthctl --cpu-slice-us): the scheduler slice of the
# revision (EEVDF custom slice, sched_attr.sched_runtime, Linux 6.12+).
#   - every thread of the revision's process, and of the child it forks,
#     has se.slice = the value in ns (set by the child before exec, so
#     inherited by what it starts);
#   - a revision without it keeps the kernel's default slice;
#   - status and hearthctl show it; nothing is listed as degraded.
# On a kernel before 6.12 the slice is ignored by the kernel, and status
# says so under degraded; that branch is checked instead.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups cpu

start_cg_hearth --grace 1
make_workloads

# slices_of HOSTPID: "se.slice" of every thread of the process and of its
# descendants, one per line.
slices_of() {
    local p t
    for p in "$1" $(proc_descendants "$1"); do
        for t in /proc/"$p"/task/*; do
            sed -n 's/^se\.slice *: *//p' "$t/sched" 2>/dev/null
        done
    done
}
# has_tasks HOSTPID N: the process and its descendants have N threads.
has_tasks() { [ "$(slices_of "$1" | wc -l)" -ge "$2" ]; }

deploy_args hold threads=3 fork=1
deploy_ready short "${DARGS[@]}" --cpu-slice-us 100 --restart never --min-uptime 0.3
rev=$(rev_json short short-1)
assert_eq 100 "$(jget "$rev" "j['limits']['cpu_slice_us']")" "limits.cpu_slice_us"
pid=$(host_pid_of short short-1)
[ -n "$pid" ] || fail "no host pid for short-1"
[ -r "/proc/$pid/sched" ] || skip "no /proc/PID/sched in this kernel (CONFIG_SCHED_DEBUG)"
# 3 threads of the main process and the forked child.
wait_until 10 "short-1's threads and child" has_tasks "$pid" 4

release=$(uname -r)
if "$PYTHON" -c 'import sys; M, m = map(int, sys.argv[1].split(".")[:2]); sys.exit(0 if (M, m) >= (6, 12) else 1)' "$release"; then
    assert_eq "[]" "$(jget "$rev" "j['cgroup']['degraded']")" "degraded with custom slices"
    slices=$(slices_of "$pid" | sort -u | tr '\n' ' ')
    assert_eq "100000 " "$slices" "se.slice of every thread of short-1 and its child (ns)"
else
    note "kernel $release has no custom slices: degraded expected"
    assert_contains "$(jget "$rev" "j['cgroup']['degraded']")" "cpu_slice_us" "degraded before 6.12"
fi
run_ctl status short
assert_contains "$RUN_OUT$RUN_ERR" "cpu_slice_us 100" "hearthctl status short"

# Without it: the kernel's default slice, whatever it is, not 0.1 ms.
deploy_args hold threads=2
deploy_ready plain "${DARGS[@]}" --restart never --min-uptime 0.3
ppid=$(host_pid_of plain plain-1)
wait_until 10 "plain-1's threads" has_tasks "$ppid" 2
assert_eq null "$(rev_get plain plain-1 "json.dumps((r.get('limits') or {}).get('cpu_slice_us'))")" "limits.cpu_slice_us without it"
for s in $(slices_of "$ppid"); do
    assert_ne 100000 "$s" "se.slice of plain-1 (the default)"
done

ctl_ok stop short
ctl_ok stop plain
finish_deploy_hearth

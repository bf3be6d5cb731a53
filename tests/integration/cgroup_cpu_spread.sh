#!/bin/bash
# CPU placement (--cpu-placement spread, the default): a revision limited to
# N CPUs runs on ceil(N) of them, spread across revisions, so a busy one
# cannot hold every CPU at once however many threads it runs.
#   - two revisions at cpus 0.5 get one CPU each, different ones, the highest
#     numbered first; status names the set and what holds it;
#   - every process of the revision (forked ones too) has that CPU list;
#   - with the v2 cpuset controller the cgroup's cpuset.cpus is the set and
#     a process cannot widen its own affinity; without it (v1, hybrid) the
#     affinity is set for it, and it could widen it;
#   - a revision without a CPU limit keeps every CPU;
#   - a revision's CPUs are released when it stops (the next one gets them)
#     and kept across restarts (each restart has a fresh cgroup).
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups cpu

read -r -a CPUS < <("$PYTHON" -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
[ "${#CPUS[@]}" -ge 2 ] || skip "needs 2 CPUs to confine anything, this process has ${#CPUS[@]}"
ALL=$("$PYTHON" -c 'import os, sys; sys.path.insert(0, sys.argv[1]); import workloads; print(workloads._cpu_list(os.sched_getaffinity(0)))' "$(dirname "$WORKLOADS_PY")")
HIGH=${CPUS[-1]}
NEXT=${CPUS[-2]}

start_cg_hearth --grace 1
make_workloads

ctl_ok status; STATUS=$RUN_OUT
BY=$(jget "$STATUS" "j['hearth']['cgroup']['cpu_sets']")
note "cpu sets held by: $BY (all CPUs: $ALL)"
# v1 and hybrid never use the v1 cpuset hierarchy (a child cpuset would keep
# the machine's from shrinking); pure v2 uses the cpuset controller if any.
case $CG_MODE in
v1 | hybrid) assert_eq affinity "$BY" "cpu_sets on $CG_MODE" ;;
esac

# cpu_list_of PID: the kernel's Cpus_allowed_list of a host pid.
cpu_list_of() { proc_status_field "$1" Cpus_allowed_list; }

# check_confined LOCATION ID EXPECTED [status-only]: status, the kernel's view
# of every process of the revision, and the cpuset file agree on EXPECTED.
check_confined() {
    local rev set by pid p dir
    rev=$(rev_json "$1" "$2")
    set=$(jget "$rev" "j['cgroup'].get('cpu_set')")
    by=$(jget "$rev" "j['cgroup'].get('cpu_set_by')")
    assert_eq "$3" "$set" "$2 cgroup.cpu_set"
    assert_eq "$BY" "$by" "$2 cgroup.cpu_set_by"
    [ "${4:-}" != status-only ] || return 0
    pid=$(host_pid_of "$1" "$2")
    [ -n "$pid" ] || fail "no host pid for $2"
    for p in $pid $(proc_descendants "$pid"); do
        assert_eq "$3" "$(cpu_list_of "$p")" "Cpus_allowed_list of pid $p of $2"
    done
    if [ "$BY" = cpuset ]; then
        dir=$(cg_mount_of cpuset)$CG_PARENT/envs/$(basename "$(jget "$rev" "j['cgroup']['path']")")
        assert_eq "$3" "$(cat "$dir/cpuset.cpus")" "$dir/cpuset.cpus"
    fi
}

deploy_args spin threads=2
deploy_ready a "${DARGS[@]}" --cpus 0.5 --restart never --min-uptime 0.2
wait_until 5 "a's second spinner" eval '[ -n "$(proc_descendants "$(host_pid_of a a-1)")" ]'
check_confined a a-1 "$HIGH"

deploy_args affinity
deploy_ready b "${DARGS[@]}" --cpus 0.5 --restart never --min-uptime 0.2
# b asked for every CPU as it started ("before" is what hearth gave it): a
# cpuset refuses, plain affinity cannot.
if [ "$BY" = cpuset ]; then
    check_confined b b-1 "$NEXT"
    wait_log_line b b-1 "stdout affinity before=$NEXT after=$NEXT" 10
else
    check_confined b b-1 "$NEXT" status-only
    wait_log_line b b-1 "stdout affinity before=$NEXT after=$ALL" 10
fi

deploy_args hold
deploy_ready c "${DARGS[@]}" --restart never --min-uptime 0.2
assert_eq null "$(rev_get c c-1 "r['cgroup'].get('cpu_set')")" "c (no CPU limit) has no cpu set"
assert_eq "$ALL" "$(cpu_list_of "$(host_pid_of c c-1)")" "Cpus_allowed_list of c (no CPU limit)"

# a's CPU is free again once a has stopped: d (1 CPU) gets it.
ctl_ok stop a
deploy_args hold
deploy_ready d "${DARGS[@]}" --cpus 1 --restart never --min-uptime 0.2
check_confined d d-1 "$HIGH"

# Restarts keep the revision's CPUs, in each fresh cgroup.
deploy_args crash code=3 after=1
ctl_ok deploy e "${DARGS[@]}" --cpus 0.5 --restart always
first=$(rev_get e e-1 "r['cgroup'].get('cpu_set')")
[ "$first" != null ] || fail "e has no cpu set: $(rev_json e e-1)"
wait_until 20 "e to restart twice" eval '[ "$(rev_get e e-1 "r[\"restarts\"]")" -ge 2 ]'
wait_until 10 "e to run again" eval '[ "$(rev_get e e-1 "r[\"state\"]")" = loading ] || [ "$(rev_get e e-1 "r[\"state\"]")" = ready ]'
assert_eq "$first" "$(rev_get e e-1 "r['cgroup'].get('cpu_set')")" "e's cpu set after restarts"
pid=$(host_pid_of e e-1)
if [ -n "$pid" ]; then
    allowed=$(cpu_list_of "$pid")
    # The crash may have come in between: only a live process counts.
    ! proc_running "$pid" || assert_eq "$first" "$allowed" "Cpus_allowed_list of e after restarts"
fi

for loc in b c d e; do ctl_ok stop "$loc"; done
finish_deploy_hearth

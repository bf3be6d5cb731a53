#!/bin/bash
# Exclusive CPUs (limits.cpu_exclusive, hearthctl --cpu-exclusive): a
# revision gets ceil(cpus) CPUs that nothing else of hearth's runs on.
#   - before: an unlimited revision (threads and a child process) runs on
#     every CPU;
#   - x (cpus 1, exclusive) gets the highest CPU; status and hearth's
#     `cgroup.cpus` say so;
#   - every thread of every process of the running revision, and of hearth
#     itself, moves onto the remaining (shared) CPUs at once;
#   - revisions started afterwards, limited or not, get shared CPUs only;
#   - a reservation that would leave no shared CPU fails the revision with a
#     reason that names the CPUs and their holder;
#   - a new revision of x's location shares x's CPU (no second one is taken);
#   - when x's location stops, everything moves back onto every CPU;
#   - --cpu-exclusive without --cpus is an invalid-params error.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups cpu

read -r -a CPUS < <("$PYTHON" -c 'import os; print(*sorted(os.sched_getaffinity(0)))')
[ "${#CPUS[@]}" -ge 2 ] || skip "needs 2 CPUs to reserve one, this process has ${#CPUS[@]}"
cpulist() { "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1]); import workloads; print(workloads._cpu_list(int(c) for c in sys.argv[2:]))' "$(dirname "$WORKLOADS_PY")" "$@"; }
ALL=$(cpulist "${CPUS[@]}")
HIGH=${CPUS[-1]}
SHARED=$(cpulist "${CPUS[@]:0:${#CPUS[@]}-1}")
NEXT=${CPUS[-2]}

# --overcommit: y below must reach the CPU reservation (the subject here),
# not the capacity check that would refuse it first.
start_cg_hearth --grace 1 --overcommit
make_workloads

# threads_on PID EXPECTED WHAT: every thread of PID and of its descendants
# has Cpus_allowed_list EXPECTED.
threads_on() {
    local p t n=0
    for p in $1 $(proc_descendants "$1"); do
        for t in /proc/"$p"/task/*; do
            [ -e "$t/status" ] || continue
            assert_eq "$2" "$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status")" "$3: thread ${t##*/} of pid $p"
            n=$((n + 1))
        done
    done
    note "$3: $n threads on $2"
}

deploy_args hold threads=3 fork=1
deploy_ready a "${DARGS[@]}" --restart never
A=$(host_pid_of a a-1)
wait_until 5 "a's child" eval '[ -n "$(proc_descendants "$A")" ]'
threads_on "$A" "$ALL" "a before any reservation"

# x: one CPU of its own, the highest.
deploy_args hold threads=2
deploy_ready x "${DARGS[@]}" --cpus 1 --cpu-exclusive --restart never
assert_eq "$HIGH" "$(rev_get x x-1 "r['cgroup'].get('cpu_set')")" "x's cpu_set"
assert_eq true "$(rev_get x x-1 "r['cgroup'].get('cpu_exclusive')")" "x's cpu_exclusive"
assert_eq true "$(rev_get x x-1 "r['limits'].get('cpu_exclusive')")" "x's limits.cpu_exclusive"
X=$(host_pid_of x x-1)
threads_on "$X" "$HIGH" "x"
ctl_ok status
assert_eq "{\"$HIGH\":\"x\"}" "$(jget "$RUN_OUT" "j['hearth']['cgroup']['cpus']['exclusive']")" "hearth's exclusive CPUs"
assert_eq "$SHARED" "$(jget "$RUN_OUT" "j['hearth']['cgroup']['cpus']['shared']")" "hearth's shared CPUs"
run_ctl status x
assert_contains "$RUN_OUT" "cpu set" "hearthctl status x"
assert_contains "$RUN_OUT" "exclusive" "hearthctl status x"

# a, which was running, and hearth itself are off x's CPU now.
threads_on "$A" "$SHARED" "a after x's reservation"
assert_eq "$SHARED" "$(rev_get a a-1 "r['cgroup'].get('cpu_set')")" "a's cpu_set"
for t in /proc/"$HEARTH_PID"/task/*; do
    assert_eq "$SHARED" "$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status")" "hearth thread ${t##*/}"
done

# New revisions: unlimited, and limited to less than a CPU.
deploy_args hold
deploy_ready c "${DARGS[@]}" --restart never
threads_on "$(host_pid_of c c-1)" "$SHARED" "c (no CPU limit), started after x"
deploy_ready d "${DARGS[@]}" --cpus 0.5 --restart never
threads_on "$(host_pid_of d d-1)" "$NEXT" "d (cpus 0.5), started after x"

# Nothing left to reserve: every shared CPU but one would be needed.
deploy_failed y "${DARGS[@]}" --cpus "$((${#CPUS[@]} - 1))" --cpu-exclusive
msg=$(rev_get y y-1 "r.get('message')")
assert_contains "$msg" "cpu_exclusive" "y's failure"
assert_contains "$msg" "$HIGH by x" "y's failure names the holder"
assert_eq "$SHARED" "$(jget "$(rev_json a a-1)" "j['cgroup'].get('cpu_set')")" "a's cpu_set after y"

# The next revision of x shares x's CPU while x-1 still runs, then keeps it.
deploy_args hold
deploy_ready x "${DARGS[@]}" --cpus 1 --cpu-exclusive --restart never
assert_eq "$HIGH" "$(rev_get x x-2 "r['cgroup'].get('cpu_set')")" "x-2's cpu_set"
threads_on "$(host_pid_of x x-2)" "$HIGH" "x-2"
ctl_ok status
assert_eq "{\"$HIGH\":\"x\"}" "$(jget "$RUN_OUT" "j['hearth']['cgroup']['cpus']['exclusive']")" "exclusive CPUs with x-2"

# x stops: its CPU is everyone's again.
ctl_ok stop x
wait_until 10 "x's CPU to be shared again" eval '[ "$(rev_get a a-1 "r[\"cgroup\"].get(\"cpu_set\")")" = null ]'
threads_on "$A" "$ALL" "a after x stopped"
threads_on "$(host_pid_of c c-1)" "$ALL" "c after x stopped"
for t in /proc/"$HEARTH_PID"/task/*; do
    assert_eq "$ALL" "$(awk '/^Cpus_allowed_list:/ {print $2}' "$t/status")" "hearth thread ${t##*/} after x stopped"
done
ctl_ok status
assert_eq "{}" "$(jget "$RUN_OUT" "j['hearth']['cgroup']['cpus']['exclusive']")" "no exclusive CPUs after x stopped"

# A reservation needs a size.
run_ctl --json deploy z "${DARGS[@]}" --cpu-exclusive
assert_ne 0 "$RUN_RC" "deploy --cpu-exclusive without --cpus"
assert_contains "$RUN_ERR" "cpu_exclusive" "the error names the field"
assert_contains "$RUN_ERR" "needs limits.cpus" "the error says what is missing"

for loc in a c d; do ctl_ok stop "$loc"; done
finish_deploy_hearth

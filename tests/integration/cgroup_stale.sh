#!/bin/bash
# Leftovers of an earlier run: `<parent>/envs/stale-1` exists in every
# hierarchy with a process inside (a `sleep` this test places there), and
# `<parent>/envs/stale-2` has a sub-cgroup `inner` with another one (a
# revision may have made sub-cgroups). A hearth started with that parent
# kills both processes, removes the directories (depth first) and says so in
# its log, before it serves; then it works normally under the same parent.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups

# The hierarchies hearth uses: the cgroup2 one and the v1 controllers.
mounts=()
[ -n "$CG_UNIFIED" ] && mounts+=("$CG_UNIFIED")
for c in memory cpu pids; do
    m=${CG_V1[$c]:-}
    [ -n "$m" ] && [[ " ${mounts[*]} " != *" $m "* ]] && mounts+=("$m")
done

# place PID DIR...: writes PID into each DIR/cgroup.procs.
place() {
    local pid=$1 d
    shift
    for d in "$@"; do
        mkdir -p "$d"
        echo "$pid" >"$d/cgroup.procs" || fail "cannot place $pid into $d"
    done
}
# (disowned: bash would print a job notice when hearth kills them)
start_bg sleep 4848.1
s1=$BG_PID
start_bg sleep 4848.2
s2=$BG_PID
disown "$s1" "$s2"
d1=()
d2=()
for m in "${mounts[@]}"; do
    d1+=("$m$CG_PARENT/envs/stale-1")
    d2+=("$m$CG_PARENT/envs/stale-2/inner")
done
place "$s1" "${d1[@]}"
place "$s2" "${d2[@]}"
for d in "${d1[@]}"; do grep -qxF "$s1" "$d/cgroup.procs" || fail "sleep $s1 is not in $d"; done

start_cg_hearth --grace 1
# hearth cleans up before it listens: by now both must be dead.
wait_until 5 "the stale sleep (pid $s1) to be killed" proc_gone "$s1"
wait_until 5 "the nested stale sleep (pid $s2) to be killed" proc_gone "$s2"
wait_until 5 "stale-1 to be removed in every hierarchy" cg_env_gone stale-1
wait_until 5 "stale-2 (and stale-2/inner) to be removed in every hierarchy" cg_env_gone stale-2
for m in "${mounts[@]}"; do
    [ -d "$m$CG_PARENT/envs" ] || fail "$m$CG_PARENT/envs is gone (only the stale revisions should be)"
done
wait_until 5 "hearth's log to mention stale-1" hearth_log_has 'stale-1'
hearth_log_has 'stale-2' || fail "hearth's log does not mention stale-2"

# hearth works normally afterwards, under the same parent.
make_workloads
deploy_args hold
deploy_ready fresh "${DARGS[@]}" --restart never --min-uptime 0.3
path=$(rev_get fresh fresh-1 "r['cgroup']['path']")
[ -d "$path" ] || fail "the new revision's cgroup $path does not exist"
ctl_ok stop fresh
wait_until 5 "fresh's cgroup to be removed" cg_env_gone "$(basename "$path")"
finish_deploy_hearth

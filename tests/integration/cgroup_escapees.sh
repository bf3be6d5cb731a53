#!/bin/bash
# Processes that leave the revision's process group and session (setsid()
# plus a double fork, reparented to hearth; setsid() in a child; a new
# process group) and ignore SIGTERM and SIGHUP still belong to the revision:
# its cgroup holds them, and stopping the revision kills every one of them
# (checked by pid and start time), then removes the cgroup.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups

GRACE=1
start_cg_hearth --grace "$GRACE"
make_workloads

deploy_args escape marks=4747
deploy_ready esc "${DARGS[@]}" --restart never --min-uptime 0.3
wait_log_line esc "" "stdout escapees started" 10
esc_pids() {
    local k
    for k in 1 2 3; do host_pids_marked "sleep 4747.$k"; done
}
three_escapees() { [ "$(esc_pids | wc -l)" = 3 ]; }
wait_until 10 "three escapees (sleep 4747.1-3)" three_escapees
mapfile -t pids < <(esc_pids)

rev=$(rev_json esc esc-1)
main_host=$(host_pid "$(jget "$rev" "j['pid']")")
name=$(basename "$(jget "$rev" "j['cgroup']['path']")")
# They did escape: other sessions than the revision's main process, and the
# double-forked one is hearth's child now.
starts=()
for p in "${pids[@]}"; do starts+=("$p:$(proc_starttime "$p")"); done
for p in "${pids[0]}" "${pids[1]}"; do
    assert_ne "$(proc_session "$main_host")" "$(proc_session "$p")" "session of escapee $p ($(cmdline_of "$p"))"
done
assert_ne "$(proc_pgrp "$main_host")" "$(proc_pgrp "${pids[2]}")" "process group of the pgroup escapee"
assert_eq "$HEARTH_PID" "$(proc_ppid "${pids[0]}")" "parent of the double-forked escapee"
# ...but not out of the cgroup.
while read -r d; do
    procs=$(cg_procs "$d")
    for p in "${pids[@]}"; do
        grep -qxF "$p" <<<"$procs" || fail "escapee $p ($(cmdline_of "$p")) is not in $d/cgroup.procs"
    done
done < <(cg_env_dirs "$name")

t0=$(now_ms)
ctl_ok stop esc
t1=$(now_ms)
assert_eq '{"stopped":["esc-1"]}' "$(jget "$RUN_OUT" "j")" "stop result"
note "stop took $((t1 - t0)) ms (grace ${GRACE} s)"
escapee_left() {
    local e
    for e in "${starts[@]}"; do
        proc_running "${e%%:*}" && [ "$(proc_starttime "${e%%:*}")" = "${e#*:}" ] && return 0
    done
    return 1
}
no_escapee_left() { ! escapee_left; }
# `stop` replies when stopped: they must be gone already, give or take the
# reaping.
poll_until 1 no_escapee_left || {
    left=$(for e in "${starts[@]}"; do proc_running "${e%%:*}" && echo "${e%%:*}($(cmdline_of "${e%%:*}"))"; done)
    fail "escapees still run after stop replied: $left"
}
# And not even as zombies for long (hearth reaps what it inherited).
gone_entirely() {
    local e
    for e in "${starts[@]}"; do
        [ "$(proc_starttime "${e%%:*}" 2>/dev/null)" = "${e#*:}" ] && return 1
    done
    return 0
}
wait_until 5 "the escapees' pids to be reaped" gone_entirely
wait_until 5 "esc's cgroup to be removed" cg_env_gone "$name"
finish_deploy_hearth

#!/bin/bash
# Placement: a running revision's process is in <mount><parent>/envs/<name>
# in every hierarchy hearth uses (the cgroup2 one, and the v1 memory, cpu and
# pids ones), and was there when its user code began (it prints
# /proc/self/cgroup first). The limits are written to the kernel's files.
# status reports the driver (what this machine offers: hybrid here), enforced,
# the directory (status cgroup.path is one of the revision's directories) and
# the usage fields; hearth itself is not moved into envs; stop removes the
# directories.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"
need_cgroups

start_cg_hearth --grace 1
make_workloads

ctl_ok ping
assert_eq "$CG_MODE" "$(jget "$RUN_OUT" "j['cgroup_driver']")" "ping cgroup_driver"
ctl_ok status; STATUS=$RUN_OUT
hinfo=$(jget "$STATUS" "j['hearth']")
assert_eq "$CG_MODE enforced" "$(jget "$hinfo" "'%s %s' % (j['cgroup']['driver'], j['cgroup']['enforcement'])")" \
    "status hearth.cgroup driver and enforcement"
envs=$(jget "$hinfo" "'\n'.join(j['cgroup'].get('envs', []))")
for m in "$CG_UNIFIED" "${CG_V1[memory]:-}" "${CG_V1[pids]:-}"; do
    [ -n "$m" ] || continue
    grep -qxF "$m$CG_PARENT/envs" <<<"$envs" || fail "hearth.cgroup.envs lacks $m$CG_PARENT/envs: $envs"
    [ -d "$m$CG_PARENT/envs" ] || fail "$m$CG_PARENT/envs was not created"
done

deploy_args hold
deploy_ready place "${DARGS[@]}" --memory 128Mi --pids 64 --cpus 0.5 --restart never --min-uptime 0.5
rev=$(rev_json place place-1)
cg=$(jget "$rev" "j['cgroup']")
assert_eq "$CG_MODE enforced" "$(jget "$cg" "'%s %s' % (j['driver'], j['enforcement'])")" "revision cgroup driver and enforcement"
assert_eq "[]" "$(jget "$cg" "j.get('degraded', [])")" "revision cgroup degraded list"
assert_eq '{"cpus":0.5,"memory":134217728,"pids":64}' "$(jget "$rev" "j['limits']")" "revision limits"
path=$(jget "$cg" "j['path']")
name=$(basename "$path")
dirs=$(cg_env_dirs "$name")
[ -d "$path" ] || fail "status cgroup.path $path is not a directory"
grep -qxF "$path" <<<"$dirs" || fail "status cgroup.path $path is not one of the revision's directories: $dirs"

# Usage fields: present, numbers, plausible.
for f in memory_current cpu_usage_usec pids_current; do
    v=$(jget "$cg" "j['$f']")
    [[ $v =~ ^[0-9]+$ ]] || fail "cgroup.$f is not a number: $v"
done
assert_ge "$(jget "$cg" "j['memory_current']")" $((1 << 20)) "cgroup.memory_current (an interpreter is running)"
assert_ge "$(jget "$cg" "j['cpu_usage_usec']")" 1000 "cgroup.cpu_usage_usec (an interpreter started)"
assert_ge "$(jget "$cg" "j['pids_current']")" 1 "cgroup.pids_current"
if [ "$(jget "$cg" "'memory_peak' in j")" = true ]; then
    assert_ge "$(jget "$cg" "j['memory_peak']")" "$(jget "$cg" "j['memory_current']")" "cgroup.memory_peak >= memory_current"
fi

hpid=$(host_pid "$(jget "$rev" "j['pid']")")
[ -n "$hpid" ] || fail "no host pid for place-1"
# in_procs DIR: the revision's process is listed in DIR/cgroup.procs.
in_procs() { grep -qxF "$hpid" "$1/cgroup.procs" || fail "pid $hpid is not in $1/cgroup.procs: $(cg_procs "$1" | tr '\n' ' ')"; }
checked=0
if [ -n "$CG_UNIFIED" ]; then
    in_procs "$CG_UNIFIED$CG_PARENT/envs/$name"
    checked=$((checked + 1))
fi
for c in memory pids cpu; do
    m=${CG_V1[$c]:-}
    [ -n "$m" ] || continue
    in_procs "$m$CG_PARENT/envs/$name"
    checked=$((checked + 1))
done
assert_ge "$checked" 1 "hierarchies checked"

# The kernel's view of the limits.
mdir=$(cg_mount_of memory)$CG_PARENT/envs/$name
pdir=$(cg_mount_of pids)$CG_PARENT/envs/$name
cdir=$(cg_mount_of cpu)$CG_PARENT/envs/$name
if [ -f "$mdir/memory.limit_in_bytes" ]; then
    assert_eq 134217728 "$(cat "$mdir/memory.limit_in_bytes")" "$mdir/memory.limit_in_bytes"
else
    assert_eq 134217728 "$(cat "$mdir/memory.max")" "$mdir/memory.max"
fi
assert_eq 64 "$(cat "$pdir/pids.max")" "$pdir/pids.max"
if [ -f "$cdir/cpu.cfs_quota_us" ]; then
    assert_eq 50000 "$(cat "$cdir/cpu.cfs_quota_us")" "$cdir/cpu.cfs_quota_us"
else
    assert_eq "50000 100000" "$(cat "$cdir/cpu.max")" "$cdir/cpu.max"
fi

# Where the user code began: /proc/self/cgroup as the process saw it first.
wait_until 10 "the workload's first line" log_count_above place place-1 "hold started" 0
text=$(logs_text place place-1)
first=$(grep -m1 'hold started' <<<"$text")
if [ -n "$CG_UNIFIED" ]; then
    assert_contains "$first" "0::$CG_PARENT/envs/$name" "the workload's /proc/self/cgroup at start"
fi
for c in memory pids; do
    [ -n "${CG_V1[$c]:-}" ] || continue
    assert_match "$first" "[:;]([a-z_,]*,)?$c(,[a-z_,]*)?:$CG_PARENT/envs/$name(;|\$)" \
        "the workload's /proc/self/cgroup at start ($c)"
done

# hearth itself stays where it was.
hearth_cg=$(cat "/proc/$HEARTH_PID/cgroup")
assert_not_contains "$hearth_cg" "/envs/" "hearth's own /proc/PID/cgroup"

ctl_ok stop place
wait_until 5 "place-1's cgroup to be removed" cg_env_gone "$name"
finish_deploy_hearth

# A clean shutdown removes what hearth created: the test's parent did not
# exist before hearth started, so no hierarchy keeps it.
for m in "${CG_ALL_MOUNTS[@]}"; do
    [ ! -d "$m$CG_PARENT" ] || fail "$m$CG_PARENT is still there after a clean shutdown: $(find "$m$CG_PARENT" -type d)"
done

#!/bin/bash
# A grandchild that called setsid() has left every process group hearth knows,
# yet shutdown still reaches it: it gets TERM (and runs its TERM handler), and
# one that ignores TERM is KILLed after the grace period. Checked as PID 1 and
# as a subreaper (there, by pid: the processes must be dead after hearth).
. "$(dirname "$0")/lib.sh"
need_root
need_pidns
need_cmd setsid

# Grandchild script: $1 dir, $2 name, $3 "trap" or "ignore".
cat >"$TEST_TMP/escapee.sh" <<'SH'
dir=$1 name=$2
if [ "$3" = ignore ]; then
    trap '' TERM
else
    trap 'echo term > "$dir/$name.term"; exit 0' TERM
fi
# Field 6 of /proc/PID/stat is the session id (comm "sh" has no spaces).
session=$(cut -d' ' -f6 "/proc/$$/stat")
echo "$$ $session" > "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name.info"
while :; do sleep 0.1; done
SH

# Main command: starts the two escapees through setsid(1), waits until both
# report, then exits 3 (which starts hearth's shutdown).
main_script='
    dir=$1
    setsid /bin/sh "$dir/escapee.sh" "$dir" polite trap &
    setsid /bin/sh "$dir/escapee.sh" "$dir" stubborn ignore &
    while [ ! -e "$dir/polite.info" ] || [ ! -e "$dir/stubborn.info" ]; do sleep 0.02; done
    exit 3'

for mode in pid1 subreaper; do
    dir=$TEST_TMP/$mode
    mkdir "$dir"
    cp "$TEST_TMP/escapee.sh" "$dir/"
    t0=$(now_ms)
    "start_hearth_$mode" --grace 1 -- /bin/sh -c "$main_script" sh "$dir"
    wait_until 10 "$mode: escapees to start" eval '[ -e "$dir/polite.info" ] && [ -e "$dir/stubborn.info" ]'
    for name in polite stubborn; do
        read -r pid session <"$dir/$name.info"
        assert_eq "$pid" "$session" "$mode: session id of the $name escapee (setsid worked)"
        if [ "$mode" = subreaper ]; then
            track_pid "$pid"
            eval "${name}_pid=$pid"
        fi
    done
    wait_hearth_exit 20
    elapsed=$(($(now_ms) - t0))
    assert_eq 3 "$HEARTH_RC" "$mode: exit code (the main command's)"
    file_nonempty "$dir/polite.term" || fail "$mode: the setsid escapee did not get TERM"
    assert_ge "$elapsed" 1000 "$mode: ms to exit (stubborn escapee outlives grace)"
    if [ "$mode" = subreaper ]; then
        # shellcheck disable=SC2154
        proc_gone "$polite_pid" || fail "$mode: polite escapee $polite_pid still running"
        # shellcheck disable=SC2154
        proc_gone "$stubborn_pid" || fail "$mode: stubborn escapee $stubborn_pid still running"
    fi
done

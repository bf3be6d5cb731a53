#!/bin/bash
# Not PID 1: hearth becomes a child subreaper (and logs it), so an orphaned
# grandchild is reparented to hearth rather than to the real init, and is
# reaped by hearth as soon as it exits, while hearth keeps running.
. "$(dirname "$0")/lib.sh"
need_root

pidfile=$TEST_TMP/orphan
go=$TEST_TMP/go
start_hearth_subreaper --grace 5 -- /bin/sh -c '
    /bin/sh -c "/bin/sh -c '\''echo \$\$ > $1.tmp && mv $1.tmp $1; while [ ! -e $2 ]; do sleep 0.02; done; exit 5'\'' &"
    exec sleep 600' sh "$pidfile" "$go"
wait_until 10 "grandchild to start" file_nonempty "$pidfile"
orphan=$(cat "$pidfile")
track_pid "$orphan"
wait_main_started
main=$MAIN_PID

# Its parent (the middle shell) exited at once: the orphan now belongs to hearth.
reparented() { [ "$(proc_ppid "$orphan")" = "$HEARTH_PID" ]; }
wait_until 10 "the orphan to be reparented to hearth" reparented
assert_ne "$main" "$(proc_ppid "$orphan")" "orphan's parent"

grep -q subreaper "$HEARTH_STDERR" || fail "hearth did not log that it runs as a subreaper"
nspid=$(proc_status_field "$HEARTH_PID" NSpid)
assert_eq "$HEARTH_PID" "$nspid" "hearth's NSpid (no namespace of its own)"

# Let the orphan exit: hearth must reap it (a zombie would keep /proc/PID).
touch "$go"
wait_until 10 "the orphan (pid $orphan) to be reaped" eval '[ ! -e "/proc/$orphan" ]'
proc_running "$HEARTH_PID" || fail "hearth exited with its main command still running"
proc_running "$main" || fail "main command died"

signal_hearth TERM
wait_hearth_exit 20
assert_eq 143 "$HEARTH_RC" "hearth exit code"

#!/bin/bash
# Orphans are reaped as they exit: a child leaves 100 grandchildren behind and
# exits; they are reparented to hearth (PID 1) and, once they exit, none of
# them may stay a zombie while hearth keeps running.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

ready=$TEST_TMP/spawned
# The main command starts an intermediate shell that forks 100 short-lived
# grandchildren (exiting at staggered times, so their SIGCHLDs coalesce in
# various ways) and exits at once, orphaning them. The main command itself then
# stays alive so that hearth keeps running while we count.
start_hearth_pid1 --grace 2 -- /bin/sh -c '
    /bin/sh -c "
        i=0
        while [ \$i -lt 100 ]; do
            /bin/sh -c \"exec sleep 0.\$((i % 5))\" &
            i=\$((i + 1))
        done
        echo spawned > '"$ready"'
    "
    exec sleep 600'

wait_until 10 "the intermediate shell to spawn 100 grandchildren" file_nonempty "$ready"

# hearth, and the main command's sleep: everything else has exited and must
# have been reaped (a zombie still counts as a member of the namespace).
only_two_left() { [ "$(pidns_count "$HEARTH_PID")" -eq 2 ]; }
if ! poll_until 15 only_two_left; then
    note "namespace members: $(pidns_members "$HEARTH_PID" | tr '\n' ' ')"
    fail "$(pidns_zombies "$HEARTH_PID") zombie(s) left in hearth's namespace"
fi
assert_eq 0 "$(pidns_zombies "$HEARTH_PID")" "zombies in hearth's namespace"
proc_running "$HEARTH_PID" || fail "hearth stopped while reaping"

main=$(hearth_main_pid)
[ -n "$main" ] || fail "main command not found among hearth's children"
assert_eq "$HEARTH_PID" "$(proc_ppid "$main")" "main command's parent"

signal_hearth TERM
wait_hearth_exit 15
# sleep does not catch TERM: killed by signal 15.
assert_eq 143 "$HEARTH_RC" "hearth exit code"

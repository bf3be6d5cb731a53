#!/bin/bash
# Not PID 1, hearth never signals processes outside its own tree: neither a
# sibling in its own process group (the test shell's), nor one in a session of
# its own, nor its parent; not when forwarding signals, not on shutdown, not at
# the KILL after the grace period.
. "$(dirname "$0")/lib.sh"
need_root
need_cmd setsid

log=$TEST_TMP/received
cat >"$TEST_TMP/bystander.sh" <<'SH'
for s in HUP INT QUIT USR1 USR2 TERM WINCH CONT ALRM; do
    trap "echo '$1 $s' >> '$2'" $s
done
echo "$1 ready" >> "$2"
while :; do sleep 0.05; done
SH

start_bg /bin/sh "$TEST_TMP/bystander.sh" sibling "$log"
sibling=$BG_PID
start_bg setsid /bin/sh "$TEST_TMP/bystander.sh" loner "$log"
loner=$BG_PID
wait_until 10 "bystanders to be ready" eval 'file_has_line "$log" "sibling ready" && file_has_line "$log" "loner ready"'

# 1. Daemon, signals, TERM.
start_hearth_subreaper --grace 1
for s in HUP USR1 USR2 WINCH CONT; do signal_hearth $s; done
signal_hearth TERM
wait_hearth_exit 20
assert_eq 0 "$HEARTH_RC" "daemon exit code"

# 2. Main command ignoring TERM, so shutdown gets to its KILL sweep.
start_hearth_subreaper --grace 1 -- /bin/sh -c 'trap "" TERM; exec sleep 600'
wait_main_started
signal_hearth TERM
wait_hearth_exit 20
assert_eq 137 "$HEARTH_RC" "exit code of a main command KILLed after the grace period"

# 3. Main command exits while an orphan of its own lingers.
# (TERM is ignored before the fork, so the orphan can never die of an early TERM.)
start_hearth_subreaper --grace 1 -- /bin/sh -c 'trap "" TERM; sleep 600 & exit 0'
wait_hearth_exit 20
assert_eq 0 "$HEARTH_RC" "exit code after an orphan was KILLed"

proc_running "$sibling" || fail "sibling in hearth's process group was killed"
proc_running "$loner" || fail "process in another session was killed"
# Only the ready lines: no signal reached either bystander.
assert_eq "loner ready
sibling ready" "$(sort "$log")" "signals received by bystanders"

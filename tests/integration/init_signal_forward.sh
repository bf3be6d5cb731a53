#!/bin/bash
# HUP, QUIT, USR1, USR2, WINCH, CONT and real-time signals sent to hearth are
# forwarded to the main command's whole process group (a process of the group
# other than the leader receives them too), and do not end hearth. TERM is
# forwarded as well; the main command's own exit code then becomes hearth's.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns
need_python

log=$TEST_TMP/received
cat >"$TEST_TMP/catcher.py" <<'PY'
import os, signal, sys

log, role = sys.argv[1], "leader"
SIGS = [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH,
        signal.SIGCONT, signal.SIGTERM] + list(range(signal.SIGRTMIN, signal.SIGRTMAX + 1))

def record(line):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, (line + "\n").encode())
    os.close(fd)

def on_signal(num, _frame):
    record(f"{role} {num}")
    if num == signal.SIGTERM:
        os._exit(7 if role == "leader" else 0)

for s in SIGS:
    signal.signal(s, on_signal)
# The member inherits the handlers; fork keeps it in the leader's group.
if os.fork() == 0:
    role = "member"
record(f"{role} ready")
while True:
    signal.pause()
PY

start_hearth_pid1 --grace 30 -- "$PYTHON" "$TEST_TMP/catcher.py" "$log"
wait_until 10 "the main command's leader to be ready" file_has_line "$log" "leader ready"
wait_until 10 "the main command's member to be ready" file_has_line "$log" "member ready"

for sig in HUP QUIT USR1 USR2 WINCH CONT RTMIN RTMIN+5 RTMAX; do
    n=$(signum "$sig")
    signal_hearth "$sig"
    wait_until 10 "SIG$sig ($n) to reach the main command" file_has_line "$log" "leader $n"
    wait_until 10 "SIG$sig ($n) to reach the member of its group" file_has_line "$log" "member $n"
    proc_running "$HEARTH_PID" || fail "hearth exited after SIG$sig"
done

signal_hearth TERM
wait_hearth_exit 20
assert_eq 7 "$HEARTH_RC" "hearth exit code (the main command's, after it handled TERM)"
file_has_line "$log" "member 15" || fail "TERM did not reach the member of the main command's group"
# Each signal was delivered once to each process.
assert_eq "" "$(sort "$log" | uniq -d)" "duplicate deliveries"

#!/bin/bash
# Under NOTIFY_SOCKET, hearth sends READY=1 once it runs and STOPPING=1 when
# its shutdown starts (not before), on the datagram socket it was given (a
# path, or '@' for an abstract one); children never see NOTIFY_SOCKET.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns
need_python

cat >"$TEST_TMP/listen.py" <<'PY'
# Binds a datagram socket, records each received assignment on its own line,
# exits after STOPPING=1 (or after 60 s, so it can never linger).
import os, socket, sys, time
addr, log = sys.argv[1], sys.argv[2]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind("\0" + addr[1:] if addr.startswith("@") else addr)
with open(log + ".tmp", "w") as f:
    f.write("bound\n")
os.rename(log + ".tmp", log)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        data = sock.recv(4096).decode()
    except socket.timeout:
        break
    with open(log, "a") as f:
        for line in data.split("\n"):
            if line:
                f.write(line + "\n")
    if "STOPPING=1" in data.split("\n"):
        break
PY

# run_case NAME MODE SOCKET_ADDR [-- MAIN COMMAND...]
run_case() {
    local name=$1 mode=$2 addr=$3
    shift 3
    local log=$TEST_TMP/$name.notify envfile=$TEST_TMP/$name.env
    start_bg "$PYTHON" "$TEST_TMP/listen.py" "$addr" "$log"
    local listener=$BG_PID
    wait_until 10 "$name: listener to bind" file_nonempty "$log"

    HEARTH_WRAP=(env NOTIFY_SOCKET="$addr")
    if [ $# -gt 0 ]; then
        "start_hearth_$mode" --grace 5 -- /bin/sh -c \
            'env > "$1.tmp" && mv "$1.tmp" "$1"; exec sleep 600' sh "$envfile"
    else
        "start_hearth_$mode" --grace 5
    fi
    HEARTH_WRAP=()
    wait_until 10 "$name: READY=1" file_has_line "$log" "READY=1"
    if grep -qxF STOPPING=1 "$log"; then fail "$name: STOPPING=1 before shutdown"; fi

    if [ $# -gt 0 ]; then
        wait_until 10 "$name: main command's environment" file_nonempty "$envfile"
        if grep -q '^NOTIFY_SOCKET=' "$envfile"; then
            fail "$name: main command inherited NOTIFY_SOCKET"
        fi
        grep -q '^PATH=' "$envfile" || fail "$name: main command's environment looks empty"
    fi

    signal_hearth TERM
    wait_hearth_exit 20
    wait_until 10 "$name: STOPPING=1" file_has_line "$log" "STOPPING=1"
    assert_eq "bound
READY=1
STOPPING=1" "$(cat "$log")" "$name: notifications"
    wait_until 10 "$name: listener to exit" proc_gone "$listener"
}

run_case path pid1 "$TEST_TMP/notify.sock" -- main
run_case abstract subreaper "@hearth-test-notify-$$-$RANDOM"
run_case daemon-pid1 pid1 "$TEST_TMP/notify2.sock"

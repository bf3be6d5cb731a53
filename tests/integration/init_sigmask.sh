#!/bin/bash
# The main command starts with default signal dispositions and an empty signal
# mask, even when hearth was started with signals blocked and ignored (and
# whatever hearth itself blocks for its signalfd). Read from the child's own
# /proc/self/status (SigBlk, SigIgn, SigCgt). As PID 1 and as a subreaper.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns
need_python

# Exec wrapper: blocks HUP, USR1 and RTMIN+2, ignores USR2, INT, QUIT and TERM
# (python itself ignores PIPE and XFSZ, which stay ignored across exec).
cat >"$TEST_TMP/dirty.py" <<'PY'
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK,
                       {signal.SIGHUP, signal.SIGUSR1, signal.SIGRTMIN + 2})
for s in (signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
    signal.signal(s, signal.SIG_IGN)
os.execvp(sys.argv[1], sys.argv[1:])
PY
dirty=("$PYTHON" "$TEST_TMP/dirty.py")

field() { # STATUS_TEXT NAME
    printf '%s\n' "$1" | awk -v k="$2:" '$1 == k { print $2 }'
}

# Control: without hearth in between, the wrapper's state does reach a child
# (also through unshare), so the checks below can fail.
for via in direct unshare; do
    cmd=(cat /proc/self/status)
    [ $via = unshare ] && cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    run_cmd --timeout 20 "${dirty[@]}" "${cmd[@]}"
    assert_eq 0 "$RUN_RC" "control ($via) exit code"
    blk=$(field "$RUN_OUT" SigBlk)
    ign=$(field "$RUN_OUT" SigIgn)
    for s in HUP USR1 RTMIN+2; do
        sig_mask_has "$blk" "$(signum $s)" || fail "control ($via): SIG$s not blocked ($blk)"
    done
    for s in USR2 TERM PIPE; do
        sig_mask_has "$ign" "$(signum $s)" || fail "control ($via): SIG$s not ignored ($ign)"
    done
done

for mode in pid1 subreaper; do
    mapfile -d '' cmd < <(hearth_args -- cat /proc/self/status)
    [ $mode = pid1 ] && cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    run_cmd --timeout 20 "${dirty[@]}" "${cmd[@]}"
    assert_eq 0 "$RUN_RC" "$mode: hearth exit code"
    assert_eq 0000000000000000 "$(field "$RUN_OUT" SigBlk)" "$mode: main command's SigBlk"
    assert_eq 0000000000000000 "$(field "$RUN_OUT" SigIgn)" "$mode: main command's SigIgn"
    assert_eq 0000000000000000 "$(field "$RUN_OUT" SigCgt)" "$mode: main command's SigCgt"
    assert_eq 0000000000000000 "$(field "$RUN_OUT" SigPnd)" "$mode: main command's SigPnd"
done

# The same for processes that stay around, including a grandchild. hearth
# itself inherited TERM as ignored: it must still shut down on TERM, and the
# main command (sleep, which does not catch TERM) must die of it (143), not of
# the KILL at the end of the grace period (137).
for mode in pid1 subreaper; do
    out=$TEST_TMP/$mode-grandchild-status
    HEARTH_WRAP=("${dirty[@]}")
    "start_hearth_$mode" --grace 30 -- /bin/sh -c \
        '/bin/sh -c "cat /proc/self/status > $1.tmp && mv $1.tmp $1"; exec sleep 600' sh "$out"
    HEARTH_WRAP=()
    wait_until 10 "$mode: grandchild's status" file_nonempty "$out"
    status=$(cat "$out")
    assert_eq 0000000000000000 "$(field "$status" SigBlk)" "$mode: grandchild's SigBlk"
    assert_eq 0000000000000000 "$(field "$status" SigIgn)" "$mode: grandchild's SigIgn"
    wait_main_started
    assert_eq 0000000000000000 "$(proc_status_field "$MAIN_PID" SigBlk)" "$mode: running main command's SigBlk"
    assert_eq 0000000000000000 "$(proc_status_field "$MAIN_PID" SigIgn)" "$mode: running main command's SigIgn"
    signal_hearth TERM
    wait_hearth_exit 20
    assert_eq 143 "$HEARTH_RC" "$mode: hearth exit code"
done

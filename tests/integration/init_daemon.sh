#!/bin/bash
# Without a main command hearth runs as a daemon: other signals (HUP, USR1,
# USR2, QUIT, WINCH, real-time) neither end nor kill it, and TERM or INT make it
# exit 0 promptly. As PID 1 and as a subreaper.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

for mode in pid1 subreaper; do
    for stop in TERM INT; do
        "start_hearth_$mode" --grace 30
        for s in HUP USR1 USR2 QUIT WINCH RTMIN+1; do signal_hearth "$s"; done
        proc_running "$HEARTH_PID" || fail "$mode: daemon died of a non-stop signal"
        t0=$(now_ms)
        signal_hearth "$stop"
        wait_hearth_exit 20
        elapsed=$(($(now_ms) - t0))
        assert_eq 0 "$HEARTH_RC" "$mode: daemon exit code after SIG$stop"
        assert_lt "$elapsed" 5000 "$mode: ms from SIG$stop to exit (nothing to wait for)"
    done
done

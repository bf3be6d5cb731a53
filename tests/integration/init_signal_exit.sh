#!/bin/bash
# A signal sent to hearth reaches a main command that does not catch it, and
# hearth then exits with 128+N: TERM 143, USR1 138, USR2 140 (also HUP 129 and
# a real-time signal). Checked as PID 1 and as a subreaper.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

check() { # MODE SIGNAL
    local mode=$1 sig=$2 expected main t0 elapsed
    expected=$((128 + $(signum "$sig")))
    # A long grace period: the main command must die of the forwarded signal,
    # not of a KILL at the end of shutdown (which would also give 137).
    "start_hearth_$mode" --grace 30 -- sleep 600
    wait_main_started
    main=$MAIN_PID
    t0=$(now_ms)
    signal_hearth "$sig"
    wait_hearth_exit 20
    elapsed=$(($(now_ms) - t0))
    assert_eq "$expected" "$HEARTH_RC" "$mode: exit code after SIG$sig"
    assert_lt "$elapsed" 10000 "$mode: ms from SIG$sig to exit"
    proc_gone "$main" || fail "$mode: main command $main still running"
}

for mode in pid1 subreaper; do
    for sig in TERM USR1 USR2 HUP RTMIN+3; do
        check "$mode" "$sig"
    done
done

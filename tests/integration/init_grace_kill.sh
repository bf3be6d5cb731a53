#!/bin/bash
# Shutdown gives processes --grace seconds after TERM, then KILLs what is left:
#  A. TERM to hearth, main command ignores TERM: it is KILLed (hearth exits
#     137) no sooner than the grace period and not much later.
#  B. the main command exits 0 leaving an orphan that ignores TERM: hearth
#     still exits 0 after the grace period, and the orphan is dead.
# As PID 1 and as a subreaper. Bounds: elapsed >= grace, < grace + 4 s.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

grace=1
grace_ms=$((grace * 1000))
margin_ms=4000

for mode in pid1 subreaper; do
    # --- A
    ready=$TEST_TMP/$mode-a-ready
    "start_hearth_$mode" --grace "$grace" -- /bin/sh -c \
        'trap "" TERM; echo x > "$1"; exec sleep 600' sh "$ready"
    wait_until 10 "$mode A: main command to ignore TERM" file_nonempty "$ready"
    wait_main_started
    main=$MAIN_PID
    t0=$(now_ms)
    signal_hearth TERM
    wait_hearth_exit $((grace + 20))
    elapsed=$(($(now_ms) - t0))
    assert_eq 137 "$HEARTH_RC" "$mode A: exit code (main command KILLed)"
    assert_ge "$elapsed" "$grace_ms" "$mode A: ms from TERM to exit"
    assert_lt "$elapsed" $((grace_ms + margin_ms)) "$mode A: ms from TERM to exit"
    proc_gone "$main" || fail "$mode A: main command $main still running"

    # --- B
    pidfile=$TEST_TMP/$mode-b-orphan
    go=$TEST_TMP/$mode-b-go
    "start_hearth_$mode" --grace "$grace" -- /bin/sh -c '
        trap "" TERM
        /bin/sh -c "echo \$\$ > $1.tmp && mv $1.tmp $1; exec sleep 600" &
        while [ ! -e "$2" ]; do sleep 0.02; done
        exit 0' sh "$pidfile" "$go"
    wait_until 10 "$mode B: orphan to start" file_nonempty "$pidfile"
    orphan=$(cat "$pidfile")
    if [ "$mode" = subreaper ]; then
        # Its pid is only meaningful here when no namespace lies between us.
        track_pid "$orphan"
        proc_running "$orphan" || fail "$mode B: orphan $orphan not running"
    fi
    t0=$(now_ms)
    touch "$go"
    wait_hearth_exit $((grace + 20))
    elapsed=$(($(now_ms) - t0))
    assert_eq 0 "$HEARTH_RC" "$mode B: exit code (the main command's)"
    assert_ge "$elapsed" "$grace_ms" "$mode B: ms from main command's exit to hearth's"
    assert_lt "$elapsed" $((grace_ms + margin_ms)) "$mode B: ms from main command's exit to hearth's"
    if [ "$mode" = subreaper ]; then
        proc_gone "$orphan" || fail "$mode B: orphan $orphan survived hearth"
    fi
done

#!/bin/bash
# The main command inherits hearth's stdin, stdout and stderr unchanged (the
# same open files, not copies through a pipe) and no other descriptor, even
# one hearth inherited without close-on-exec. As PID 1 and as a subreaper.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

printf 'line one\nline two\n' >"$TEST_TMP/in"

for mode in pid1 subreaper; do
    # Data flows: stdin through to stdout, and stderr.
    mapfile -d '' cmd < <(hearth_args --log-level error -- /bin/sh -c 'cat; echo "to stderr" >&2')
    [ $mode = pid1 ] && cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    run_cmd --stdin "$TEST_TMP/in" "${cmd[@]}"
    assert_eq 0 "$RUN_RC" "$mode: exit code"
    assert_eq "line one
line two" "$RUN_OUT" "$mode: stdout (stdin copied through)"
    assert_eq "to stderr" "$RUN_ERR" "$mode: stderr"

    # Identity of the descriptors, read from outside while the main command
    # runs. The wrapper leaves fd 9 open (not close-on-exec) in hearth.
    HEARTH_STDIN=$TEST_TMP/in
    HEARTH_WRAP=(/bin/sh -c 'exec 9<"$1"; shift; exec "$@"' sh "$TEST_TMP/in")
    "start_hearth_$mode" --grace 5 -- sleep 600
    HEARTH_WRAP=()
    HEARTH_STDIN=/dev/null
    wait_main_started
    [ -e "/proc/$HEARTH_PID/fd/9" ] || fail "$mode: test set-up: hearth did not inherit fd 9"
    assert_eq "$TEST_TMP/in" "$(readlink "/proc/$MAIN_PID/fd/0")" "$mode: main command's stdin"
    assert_eq "$HEARTH_STDOUT" "$(readlink "/proc/$MAIN_PID/fd/1")" "$mode: main command's stdout"
    assert_eq "$HEARTH_STDERR" "$(readlink "/proc/$MAIN_PID/fd/2")" "$mode: main command's stderr"
    assert_eq "0 1 2" "$(ls "/proc/$MAIN_PID/fd" | sort -n | paste -sd ' ')" "$mode: main command's descriptors"
    signal_hearth TERM
    wait_hearth_exit 20
    assert_eq 143 "$HEARTH_RC" "$mode: hearth exit code"
done

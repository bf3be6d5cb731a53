#!/bin/bash
# hearth exits with its main command's exit code (sampled across 0..255), and
# with 128+N when the main command is killed by signal N. As PID 1 and as a
# subreaper.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

run_mode() { # MODE CMD...
    local mode=$1
    shift
    local -a cmd
    mapfile -d '' cmd < <(hearth_args --grace 5 -- "$@")
    [ "$mode" = pid1 ] && cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    run_cmd --timeout 30 "${cmd[@]}"
}

for mode in pid1 subreaper; do
    for code in 0 1 2 42 126 127 128 200 255; do
        run_mode "$mode" /bin/sh -c "exit $code"
        assert_eq "$code" "$RUN_RC" "$mode: hearth exit code for 'exit $code'"
    done
    # Killed by a signal: the shell convention 128+N.
    for sig in KILL TERM SEGV ABRT; do
        run_mode "$mode" /bin/sh -c "ulimit -c 0; kill -s $sig \$\$"
        assert_eq $((128 + $(signum "$sig"))) "$RUN_RC" "$mode: hearth exit code for a main command killed by SIG$sig"
    done
done

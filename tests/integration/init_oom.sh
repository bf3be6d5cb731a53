#!/bin/bash
# hearth protects itself from the OOM killer (oom_score_adj -1000) while its
# main command, and what that starts, are ordinary victims (0) - whatever
# hearth inherited (500 here). As PID 1 and as a subreaper.
# Going below 0 needs CAP_SYS_RESOURCE (which e.g. Docker's default set
# lacks): without it, hearth keeps what it inherited and only the children's 0
# is checked.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

# Exec wrapper that gives hearth a non-default value to start from.
HEARTH_WRAP=(/bin/sh -c 'echo 500 > /proc/self/oom_score_adj && exec "$@"' sh)
for mode in pid1 subreaper; do
    out=$TEST_TMP/$mode-grandchild
    "start_hearth_$mode" --grace 5 -- /bin/sh -c \
        '/bin/sh -c "cat /proc/self/oom_score_adj > $1.tmp && mv $1.tmp $1"; exec sleep 600' sh "$out"
    if has_cap sys_resource; then
        assert_eq -1000 "$(cat "/proc/$HEARTH_PID/oom_score_adj")" "$mode: hearth's oom_score_adj"
    else
        note "no CAP_SYS_RESOURCE here: hearth's -1000 cannot be checked"
        assert_eq 500 "$(cat "/proc/$HEARTH_PID/oom_score_adj")" "$mode: hearth's oom_score_adj (inherited)"
    fi
    wait_main_started
    assert_eq 0 "$(cat "/proc/$MAIN_PID/oom_score_adj")" "$mode: main command's oom_score_adj"
    wait_until 10 "$mode: grandchild's report" file_nonempty "$out"
    assert_eq 0 "$(cat "$out")" "$mode: grandchild's oom_score_adj"
    signal_hearth TERM
    wait_hearth_exit 20
    assert_eq 143 "$HEARTH_RC" "$mode: hearth exit code"
done
HEARTH_WRAP=()

if ! has_cap sys_resource && command -v strace >/dev/null; then
    # Second best: hearth at least asks for -1000 (and still runs when refused).
    mapfile -d '' cmd < <(hearth_args -- true)
    run_cmd --timeout 30 strace -qq -e trace=openat,write -e signal=none -o "$TEST_TMP/strace" "${cmd[@]}"
    assert_eq 0 "$RUN_RC" "hearth under strace"
    grep -q 'oom_score_adj' "$TEST_TMP/strace" || fail "hearth did not open its oom_score_adj"
    grep -qF '"-1000", 5)' "$TEST_TMP/strace" || fail "hearth did not try to write -1000 to oom_score_adj"
fi

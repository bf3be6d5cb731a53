#!/bin/bash
# Shutdown with live revisions, through `hearthctl shutdown` and through
# SIGTERM to hearth: hearth sends TERM to every revision (a revision that
# handles it records so before exiting), refuses new deploys meanwhile
# (-32003), kills one that ignores TERM once --grace has passed, reports each
# revision stopping -> stopped, and exits 0. Every revision process is gone.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

GRACE=2
make_sample
make_app "$FIX/polite.pex" main 'import os, signal, sys, time
def on_term(sig, frame):
    with open(os.environ["MARKER"], "w") as f:
        f.write("TERM\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("polite ready", flush=True)
while True:
    time.sleep(0.1)'
make_app "$FIX/stubborn.pex" main 'import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring TERM", flush=True)
while True:
    time.sleep(0.1)'

for how in hearthctl sigterm; do
    note "shutdown via $how"
    rm -f "$HEARTH_RUN_DIR/control.sock"
    # Each round starts from no locations (a shutdown keeps the desired
    # state, which the next hearth would restore).
    rm -f "$HEARTH_STATE_DIR/state.json"
    start_deploy_hearth --grace "$GRACE"
    marker=$TEST_TMP/polite-$how.term
    deploy_ready native --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"
    deploy_ready pex --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --runtime pex
    deploy_ready polite --deps "$SAMPLE_DEPS" --source "$FIX/polite.pex" --env "MARKER=$marker"
    wait_log_line polite "" "stdout polite ready"
    deploy_ready stubborn --deps "$SAMPLE_DEPS" --source "$FIX/stubborn.pex"
    wait_log_line stubborn "" "stdout ignoring TERM"
    pids=()
    for loc in native pex polite stubborn; do
        p=$(host_pid "$(rev_get "$loc" "$loc-1" "r['pid']")")
        [ -n "$p" ] || fail "$how: no process for $loc-1"
        pids+=("$p")
    done
    start_event_recorder "$TEST_TMP/events-$how.jsonl"

    t0=$(now_ms)
    if [ "$how" = hearthctl ]; then
        run_ctl shutdown
        assert_eq 0 "$RUN_RC" "hearthctl shutdown exit code ($RUN_ERR)"
        assert_eq "hearth is shutting down" "$RUN_OUT" "hearthctl shutdown output"
    else
        signal_hearth TERM
    fi
    # While the stubborn revision holds it up: no new work, and ping says so.
    wait_until 5 "the polite revision to get TERM" test -s "$marker"
    run_ctl deploy late --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"
    assert_eq 1 "$RUN_RC" "$how: deploy during shutdown: exit code"
    assert_contains "$RUN_ERR" "(code -32003)" "$how: deploy during shutdown: error"
    ctl_ok ping
    assert_eq true "$(jget "$RUN_OUT" "j['shutting_down']")" "$how: ping's shutting_down during shutdown"

    wait_hearth_exit 30
    elapsed=$(($(now_ms) - t0))
    assert_eq 0 "$HEARTH_RC" "$how: hearth's exit code"
    assert_ge "$elapsed" $((GRACE * 1000 - 100)) "$how: ms until exit (the stubborn revision needs the grace)"
    assert_lt "$elapsed" $((GRACE * 1000 + 5000)) "$how: ms until exit (--grace $GRACE bounds it)"
    for p in "${pids[@]}"; do proc_gone "$p" || fail "$how: revision process $p survived the shutdown"; done
    assert_eq "TERM" "$(cat "$marker")" "$how: the polite revision's TERM marker"

    # hearth saw each revision stop (not merely the namespace being torn down).
    events=$(event_lines "$TEST_TMP/events-$how.jsonl")
    for loc in native pex polite stubborn; do
        s1=$(line_no "$events" "$loc-1 ready->stopping")
        s2=$(line_no "$events" "$loc-1 stopping->stopped")
        if [ "$s1" -eq 0 ] || [ "$s2" -le "$s1" ]; then
            fail "$how: no stopping then stopped events for $loc-1: $events"
        fi
    done
    stub=$(grep '"id": "stubborn-1"' "$TEST_TMP/events-$how.jsonl" | tail -n 1)
    assert_eq "stopped SIGKILL" "$(jget "$stub" "j['state'] + ' ' + j['revision'].get('signal', '')")" \
        "$how: how the stubborn revision ended"
    pol=$(grep '"id": "polite-1"' "$TEST_TMP/events-$how.jsonl" | tail -n 1)
    assert_eq "stopped 0" "$(jget "$pol" "'%s %s' % (j['state'], j['revision'].get('exit_code'))")" \
        "$how: how the polite revision ended"
    grep -q "grace" "$HEARTH_STDERR" || fail "$how: hearth did not log that it killed after the grace period"
    [ ! -S "$HEARTH_RUN_DIR/control.sock" ] || note "$how: the control socket file is left behind"
done

#!/bin/bash
# A revision is its whole process group (hearth gives each its own session),
# not only its first process: whatever the entry module started goes with the
# revision. When the main process crashes, its children must not keep running
# under a revision reported failed; when a revision is stopped (by request, or
# replaced by a redeploy), children that ignore SIGTERM are killed once the
# grace period is over, like the main process would be.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

GRACE=1
start_deploy_hearth --grace "$GRACE"
make_sample

# The entry module runs $SPAWN with sh (a child in the revision's process
# group), then crashes ($MODE crash) or keeps running.
make_app "$FIX/spawner.pex" main 'import os, subprocess, sys, time
subprocess.Popen(["sh", "-c", os.environ["SPAWN"]])
print("spawned", flush=True)
if os.environ.get("MODE") == "crash":
    time.sleep(0.3)
    sys.exit(5)
while True:
    time.sleep(0.1)'
ignore_term="trap '' TERM;"

# expect_gone TIMEOUT_S MARK WHAT: `sleep MARK` must be gone within the
# timeout; a failure is recorded (all cases run, then the test fails).
problems=()
expect_gone() {
    poll_until "$1" no_process_with_cmd "sleep $2" ||
        problems+=("$3 (sleep $2, pid $(pids_running_cmd "sleep $2" | tr '\n' ' ')) still runs after $1 s")
}

# ---- the main process crashes: its child must not outlive the revision
deploy_failed crashed --deps "$SAMPLE_DEPS" --source "$FIX/spawner.pex" --min-uptime 10 \
    --env "SPAWN=exec sleep 4242.1" --env MODE=crash
assert_eq "exited 5" "$(jget "$DEPLOY_REV" "'%s %s' % (j['reason'], j['exit_code'])")" "crashed revision"
expect_gone 5 4242.1 "the child of a revision whose main process crashed"

# ---- stop: a child that honours TERM, and one that ignores it
deploy_ready polite --deps "$SAMPLE_DEPS" --source "$FIX/spawner.pex" --env "SPAWN=exec sleep 4242.2"
wait_until 5 "sleep 4242.2 to start" process_with_cmd "sleep 4242.2"
ctl_ok stop polite
expect_gone 3 4242.2 "the child of a stopped revision"

deploy_ready stubborn --deps "$SAMPLE_DEPS" --source "$FIX/spawner.pex" \
    --env "SPAWN=$ignore_term exec sleep 4242.3"
wait_until 5 "sleep 4242.3 to start" process_with_cmd "sleep 4242.3"
ctl_ok stop stubborn
assert_eq '{"stopped":["stubborn-1"]}' "$(jget "$RUN_OUT" "j")" "stop result"
expect_gone $((GRACE + 3)) 4242.3 "the TERM-ignoring child of a stopped revision"

# ---- replaced by a redeploy: the old revision's TERM-ignoring child too
make_ticker "$FIX/green.pex" green
deploy_ready bg --deps "$SAMPLE_DEPS" --source "$FIX/spawner.pex" \
    --env "SPAWN=$ignore_term exec sleep 4242.4"
wait_until 5 "sleep 4242.4 to start" process_with_cmd "sleep 4242.4"
deploy_ready bg --deps "$SAMPLE_DEPS" --source "$FIX/green.pex"
wait_rev_state bg bg-1 stopped
expect_gone $((GRACE + 3)) 4242.4 "the TERM-ignoring child of a revision replaced by a redeploy"

if [ ${#problems[@]} -gt 0 ]; then
    fail "$(printf '%s; ' "${problems[@]}")"
fi
finish_deploy_hearth

#!/bin/bash
# A failing redeploy leaves the old revision serving: new source that
# crashes, new deps with a wrong digest, new source no interpreter can run.
# After each, the old revision is still ready, still active, with the same
# process. A good redeploy afterwards still switches over.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
make_ticker "$FIX/good.pex" good
make_ticker "$FIX/better.pex" better
make_app "$FIX/crash.pex" main 'import sys
print("crashing now", file=sys.stderr, flush=True)
sys.exit(7)'
pex_edit "$FIX/py9.pex" "$FIX/good.pex" 'info["interpreter_constraints"] = ["CPython>=9.0"]'

deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/good.pex"
nspid1=$(jget "$DEPLOY_REV" "j['pid']")
pid1=$(host_pid "$nspid1")
[ -n "$pid1" ] || fail "no process for analytics-1"

old_serves() { # WHAT
    status_of analytics
    local r1
    r1=$(jget "$STATUS" "[r for r in j['locations'][0]['revisions'] if r['id'] == 'analytics-1'][0]")
    assert_eq analytics-1 "$(jget "$STATUS" "j['locations'][0]['active']")" "active after $1"
    assert_eq ready "$(jget "$r1" "j['state']")" "analytics-1 state after $1"
    assert_eq "$nspid1" "$(jget "$r1" "j['pid']")" "analytics-1 pid after $1"
    proc_running "$pid1" || fail "analytics-1's process died after $1"
}

# Crashing code (a long min-uptime, so the crash is seen while loading).
deploy_failed analytics --deps "$SAMPLE_DEPS" --source "$FIX/crash.pex" --min-uptime 10
assert_eq analytics-2 "$DEPLOY_ID" "crashing revision id"
assert_eq "exited 7" "$(jget "$DEPLOY_REV" "'%s %s' % (j['reason'], j['exit_code'])")" "crashing revision"
old_serves "a crashing redeploy"

# Wrong deps digest.
deploy_failed analytics --deps "$SAMPLE_DEPS" --deps-sha256 "$(printf 'f%.0s' {1..64})" --source "$FIX/good.pex"
assert_eq digest_mismatch "$(jget "$DEPLOY_REV" "j['reason']")" "reason"
old_serves "a redeploy with a wrong digest"

# No interpreter for the new source.
deploy_failed analytics --deps "$SAMPLE_DEPS" --source "$FIX/py9.pex"
assert_eq no_interpreter "$(jget "$DEPLOY_REV" "j['reason']")" "reason"
old_serves "a redeploy without a suitable interpreter"

# The old revision kept running all along: its output still grows.
n=$(log_count analytics analytics-1 "good tick")
wait_until 5 "analytics-1 to keep ticking" log_count_above analytics analytics-1 "good tick" "$n"

# Status lists them newest first: 4 (failed), 3, 2, 1 (ready).
status_of analytics
assert_eq "analytics-4:failed analytics-3:failed analytics-2:failed analytics-1:ready" \
    "$(jget "$STATUS" "' '.join(r['id'] + ':' + r['state'] for r in j['locations'][0]['revisions'])")" \
    "revisions, newest first"

# A good redeploy still takes over.
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$FIX/better.pex"
assert_eq analytics-5 "$DEPLOY_ID" "good redeploy id"
wait_rev_state analytics analytics-1 stopped
wait_until 10 "analytics-1's process to exit" proc_gone "$pid1"
assert_eq analytics-5 "$(active_of analytics)" "active after the good redeploy"

finish_deploy_hearth

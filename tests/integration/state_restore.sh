#!/bin/bash
# Surviving a restart (issue 13): hearth keeps the desired state in
# state.json (mode 0600, env values included) and, started again on the same
# state directory, redeploys every location that was not stopped from the
# store's cache: the HTTP server's access log shows no new request. `stop`
# keeps a location (stopped, not redeployed), `remove` forgets it, and a
# shutdown by signal keeps the rest. Env values never reach status, events
# or hearth's log; only state.json holds them.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

SECRET=s3cret-value-$$
no_env_value_in() { # WHAT TEXT
    case "$2" in
    *"$SECRET"*) fail "$1 contains an env value: $(printf '%q' "$2" | head -c 2000)" ;;
    esac
}
# restored_ready LOCATION: its active revision exists and is ready.
restored_ready() {
    local id
    id=$(active_of "$1") || return 1
    [ "$id" != null ] && rev_in_state "$1" "$id" ready
}
start_httpd
start_deploy_hearth
make_sample
serve deps.pex "$SAMPLE_DEPS"
deps_sha=$(sha256_of "$SAMPLE_DEPS")
for name in alpha beta gamma held gone; do
    make_ticker "$FIX/$name.pex" "$name"
    serve "src/$name.pex" "$FIX/$name.pex"
done
deploy_http() { # LOCATION [HEARTHCTL ARGS...]
    local loc=$1
    shift
    deploy_ready "$loc" --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
        --source "$HTTPD_URL/src/$loc.pex" --source-sha256 "$(sha256_of "$FIX/$loc.pex")" "$@"
}
deploy_http alpha --env "API_TOKEN=$SECRET" --env PLAIN=1
no_env_value_in "deploy --wait events" "$DEPLOY_OUT$DEPLOY_ERR"
deploy_http beta
deploy_http gamma
deploy_http held
deploy_http gone
ctl_ok stop held
ctl_ok remove gone

state=$HEARTH_STATE_DIR/state.json
wait_until 10 "state.json without the removed location" \
    "$PYTHON" -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit('gone' in d['locations'])" "$state"
assert_eq 600 "$(stat -c %a "$state")" "mode of state.json"
doc=$(cat "$state")
assert_eq "alpha beta gamma held" "$(jget "$doc" "' '.join(sorted(j['locations']))")" "locations in state.json"
assert_eq "false false false true" \
    "$(jget "$doc" "' '.join(json.dumps(j['locations'][n]['stopped']) for n in ['alpha', 'beta', 'gamma', 'held'])")" \
    "stopped flags in state.json"
assert_eq "$SECRET" "$(jget "$doc" "j['locations']['alpha']['params']['env']['API_TOKEN']")" \
    "the env value kept in state.json"

ctl_ok status
no_env_value_in "status" "$RUN_OUT"
ctl_ok logs alpha
no_env_value_in "logs" "$RUN_OUT"

# A shutdown by signal keeps the desired state.
requests_before=$(wc -l <"$HTTPD_LOG")
signal_hearth TERM
wait_hearth_exit 30
cp "$HEARTH_STDERR" "$TEST_TMP/hearth-1.err"
no_env_value_in "hearth's log" "$(cat "$TEST_TMP/hearth-1.err")"
assert_eq "$doc" "$(cat "$state")" "state.json after a shutdown by signal"

# Restart: alpha, beta and gamma come back from the cache, held stays
# stopped, gone stays forgotten.
start_deploy_hearth
for loc in alpha beta gamma; do
    wait_until 30 "$loc to be restored and ready" restored_ready "$loc"
    id=$(active_of "$loc")
    assert_eq true "$(rev_get "$loc" "$id" "r.get('restored')")" "$loc's revision marked restored"
    assert_eq "true true" "$(rev_get "$loc" "$id" "'%s %s' % (json.dumps(r['deps']['cache_hit']), json.dumps(r['source']['cache_hit']))")" \
        "$loc's artifacts from the cache"
done
assert_eq "$requests_before" "$(wc -l <"$HTTPD_LOG")" "access log lines after the restart (no refetch)"
wait_log_line alpha "" "stdout alpha started: hello, alpha"
run_ctl status held
assert_ne 0 "$RUN_RC" "status of the stopped location after the restart (not redeployed)"
run_ctl status gone
assert_ne 0 "$RUN_RC" "status of the removed location after the restart"
assert_eq "alpha beta gamma held" "$(jget "$(cat "$state")" "' '.join(sorted(j['locations']))")" \
    "locations in state.json after the restart"
grep -q "location restored" "$HEARTH_STDERR" || fail "no 'location restored' log line"

# The restored env still reaches the process, and still not status or logs.
ctl_ok status alpha
no_env_value_in "status after the restart" "$RUN_OUT"
finish_deploy_hearth
no_env_value_in "hearth's log after the restart" "$(cat "$HEARTH_STDERR")"

#!/bin/bash
# A state.json that cannot be used is set aside (state.json.corrupt-<stamp>,
# with a log line) and hearth starts empty rather than refusing to start.
# A restored location whose blob is gone and whose URL no longer answers
# fails fetch_error like any deploy.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

mkdir -p "$HEARTH_STATE_DIR"
printf '{"version": 1, "locations": {"x": ' >"$HEARTH_STATE_DIR/state.json"
start_deploy_hearth
ctl_ok status
assert_eq 0 "$(jget "$RUN_OUT" "len(j['locations'])")" "locations after a corrupt state.json"
set_aside=$(find "$HEARTH_STATE_DIR" -maxdepth 1 -name 'state.json.corrupt-*' | head -n 1)
[ -n "$set_aside" ] || fail "the corrupt state.json was not set aside"
[ ! -e "$HEARTH_STATE_DIR/state.json" ] || fail "the corrupt state.json is still in place"
grep -q "state file unusable, set aside" "$HEARTH_STDERR" || fail "no log line about the corrupt state.json"
finish_deploy_hearth

# An expired URL for a blob that is not cached: fetch_error on restore.
start_httpd
sha=$(printf 'x' | sha256sum | cut -d' ' -f1)
cat >"$HEARTH_STATE_DIR/state.json" <<JSON
{"version": 1, "locations": {"lost": {"stopped": false, "params": {
  "location": "lost", "restart": "never",
  "deps": {"url": "$HTTPD_URL/status/404/deps.pex", "sha256": "$sha"},
  "source": {"url": "$HTTPD_URL/status/404/src.pex", "sha256": "$sha"}}}}}
JSON
start_deploy_hearth
wait_until 20 "the restored location to fail" rev_in_state lost lost-1 failed
assert_eq fetch_error "$(rev_get lost lost-1 "r['reason']")" "reason of the restore of an expired URL"
assert_eq true "$(rev_get lost lost-1 "r.get('restored')")" "restored flag"
finish_deploy_hearth

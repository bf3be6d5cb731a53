#!/bin/bash
# Stalls: with --fetch-stall-timeout 2 and --fetch-attempts 2, a server that
# sends the headers and 1000 body bytes and then nothing more (keeping the
# connection open) costs two attempts of ~2 s each plus the 0.5 s retry delay:
# the revision fails fetch_error in bounded time (4.5 s nominal, checked
# between 3.8 s and 10 s), while the status showed it fetching. The same for
# a server that sends nothing at all (no headers). Hearth stays responsive
# meanwhile and nothing is left in tmp/.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth --fetch-stall-timeout 2 --fetch-attempts 2
make_sample
make_random_file "$FIX/deps.bin" 100000
serve deps.pex "$FIX/deps.bin"
serve silent.pex "$FIX/deps.bin"
sha=$(sha256_of "$FIX/deps.bin")
httpd_config '{"/deps.pex": {"stall": 1000}, "/silent.pex": {"hang": 1}}'

t0=$(now_ms)
run_ctl deploy stall --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$sha" --source "$SAMPLE_SOURCE"
assert_eq 0 "$RUN_RC" "hearthctl deploy exit code ($RUN_ERR)"
id=$RUN_OUT
wait_until 5 "the first request of the stalling file" requests_ge /deps.pex 1
assert_eq fetching "$(rev_get stall "$id" "r['state']")" "state during the stall"
# Progress is reported at most every 250 ms: allow for that, well within the
# 2 s before the attempt times out.
wait_until 1.5 "deps fetched_bytes/total_bytes to be 1000/100000 during the stall" \
    rev_field_is stall "$id" "'%s/%s' % (r['deps'].get('fetched_bytes'), r['deps'].get('total_bytes'))" 1000/100000
ctl_ok ping
wait_rev_state stall "$id" failed 20
elapsed=$(($(now_ms) - t0))
assert_eq fetch_error "$(rev_get stall "$id" "r['reason']")" "reason after a stall"
assert_contains "$(rev_get stall "$id" "r['message']")" "$HTTPD_URL/deps.pex" "message after a stall"
assert_eq 2 "$(requests /deps.pex)" "requests of the stalling file (--fetch-attempts 2)"
assert_ge "$elapsed" 3800 "ms until the stalled fetch failed"
assert_lt "$elapsed" 10000 "ms until the stalled fetch failed"

t0=$(now_ms)
deploy_failed silent --deps "$HTTPD_URL/silent.pex" --deps-sha256 "$sha" --source "$SAMPLE_SOURCE"
elapsed=$(($(now_ms) - t0))
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason when no header arrives"
assert_eq 2 "$(requests /silent.pex)" "requests of the silent file"
assert_ge "$elapsed" 3800 "ms until the silent fetch failed"
assert_lt "$elapsed" 10000 "ms until the silent fetch failed"

[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$sha" ] || fail "a stalled download was published"
assert_eq "" "$(tmp_entries)" "leftovers in tmp/ after stalls"

finish_deploy_hearth

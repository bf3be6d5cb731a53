#!/bin/bash
# HTTP failures that are not retried, and secrets in URLs.
#  - 404: the revision fails with fetch_error after ONE request; the message
#    names the URL without its query string and the status.
#  - The URL's query (a presigned X-Amz-Signature), its userinfo, and the
#    query of a redirect target never show up: not in status, events,
#    hearthctl's output or hearth's log.
#  - A body over --fetch-max-bytes fails fetch_error naming the limit, both
#    when the Content-Length says so and when there is none (streamed);
#    nothing is published and tmp/ is left empty.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

LIMIT=200000
start_httpd
start_deploy_hearth --fetch-max-bytes "$LIMIT"
make_sample
start_event_recorder "$TEST_TMP/events.jsonl"
SECRET=HearthSecret${RANDOM}x${RANDOM}
missing_sha=$(printf 'not served' | sha256sum | cut -d' ' -f1)

url="$HTTPD_URL/status/404/deps.pex?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA$SECRET&X-Amz-Signature=$SECRET"
deploy_failed sec --deps "$url" --deps-sha256 "$missing_sha" --source "$SAMPLE_SOURCE"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason for a 404"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "$HTTPD_URL/status/404/deps.pex" "message for a 404 (the URL)"
assert_contains "$msg" "404" "message for a 404 (the status)"
assert_contains "$msg" "deps" "message for a 404 (which artifact)"
assert_not_contains "$msg" "X-Amz" "message for a 404"
assert_eq 1 "$(requests /status/404/deps.pex)" "requests for a 404 (4xx is not retried)"

# Userinfo in the URL.
url2="http://user:pw$SECRET@127.0.0.1:$HTTPD_PORT/status/403/src.pex"
deploy_failed sec --deps "$SAMPLE_DEPS" --source "$url2" --source-sha256 "$missing_sha"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason for a 403"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "127.0.0.1:$HTTPD_PORT/status/403/src.pex" "message for a 403"
out2=$DEPLOY_OUT$DEPLOY_ERR

# A redirect to a presigned URL that then fails: its query is a secret too.
httpd_config "{\"/hop.pex\": {\"redirect\": \"/status/404/target.pex?X-Amz-Signature=${SECRET}hop\"}}"
deploy_failed sec --deps "$HTTPD_URL/hop.pex" --deps-sha256 "$missing_sha" --source "$SAMPLE_SOURCE"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason for a redirect to a 404"
assert_eq 1 "$(requests /status/404/target.pex)" "requests of the redirect target"
out3=$DEPLOY_OUT$DEPLOY_ERR

status_of sec
wait_until 10 "the failed events" grep -q '"state": "failed"' "$TEST_TMP/events.jsonl"
no_secret_in "status" "$STATUS" "$SECRET"
no_secret_in "hearthctl deploy --wait output" "$out2$out3" "$SECRET"
no_secret_in "the events" "$(cat "$TEST_TMP/events.jsonl")" "$SECRET"
no_secret_in "hearth's stderr" "$(cat "$HEARTH_STDERR")" "$SECRET"
no_secret_in "hearth's stdout" "$(cat "$HEARTH_STDOUT")" "$SECRET"
ctl_ok logs sec --tail 10000
no_secret_in "the revision's logs" "$RUN_OUT" "$SECRET"
# The log does talk about the failure (so the check above looked at something).
assert_contains "$(cat "$HEARTH_STDERR" "$HEARTH_STDOUT")" "/status/404/deps.pex" "hearth's log"

# Too large, announced by Content-Length: refused before the body, not retried.
make_random_file "$FIX/big.bin" $((LIMIT + 50000))
serve big.pex "$FIX/big.bin"
big_sha=$(sha256_of "$FIX/big.bin")
deploy_failed big --deps "$HTTPD_URL/big.pex" --deps-sha256 "$big_sha" --source "$SAMPLE_SOURCE"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason for a body over the limit"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "$LIMIT" "message for a body over the limit (the limit)"
assert_contains "$msg" "$HTTPD_URL/big.pex" "message for a body over the limit (the URL)"
assert_eq 1 "$(requests /big.pex)" "requests for a body over the limit (not retried)"

# Too large, no Content-Length: cut off while streaming.
deploy_failed big --deps "$HTTPD_URL/big.pex?length=none" --deps-sha256 "$big_sha" --source "$SAMPLE_SOURCE"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason for a streamed body over the limit"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "$LIMIT" "message for a streamed body over the limit"
assert_eq 2 "$(requests /big.pex)" "requests for the streamed body over the limit (not retried)"

[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$big_sha" ] || fail "an over-limit body was published"
wait_until 5 "tmp/ to be empty" tmp_empty
assert_eq null "$(active_of big)" "active of a location whose deploys all failed"

finish_deploy_hearth

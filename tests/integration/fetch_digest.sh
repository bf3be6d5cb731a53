#!/bin/bash
# A fetched body whose sha256 is not the one the deploy names fails
# digest_mismatch with both digests in the message; nothing is published
# under blobs/ (neither digest) or trees/, tmp/ is empty. The right digest
# afterwards fetches again (a second request) and works.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth
make_sample
serve deps.pex "$SAMPLE_DEPS"
deps_sha=$(sha256_of "$SAMPLE_DEPS")
wrong=$(printf 'something else' | sha256sum | cut -d' ' -f1)

deploy_failed app --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$wrong" --source "$SAMPLE_SOURCE"
assert_eq digest_mismatch "$(jget "$DEPLOY_REV" "j['reason']")" "reason"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "$wrong" "message (expected digest)"
assert_contains "$msg" "$deps_sha" "message (actual digest)"
assert_eq 1 "$(requests /deps.pex)" "requests (a mismatch is not retried)"
for d in "$wrong" "$deps_sha"; do
    [ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$d" ] || fail "blobs/sha256/$d exists after a mismatch"
    [ ! -e "$HEARTH_STATE_DIR/trees/sha256/$d" ] || fail "trees/sha256/$d exists after a mismatch"
done
assert_eq "" "$(tmp_entries)" "leftovers in tmp/ after a mismatch"
cache_json
assert_eq false "$(jget "$CACHE" "any(e['sha256'] in ('$wrong', '$deps_sha') for e in j['entries'])")" \
    "cache.list mentions the mismatching body"

deploy_ready app --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" --source "$SAMPLE_SOURCE"
assert_eq 2 "$(requests /deps.pex)" "requests after the deploy with the right digest"
[ -f "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" ] || fail "the verified blob was not published"

finish_deploy_hearth

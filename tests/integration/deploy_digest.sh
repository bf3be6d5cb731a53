#!/bin/bash
# Digest verification: a deploy naming the wrong sha256 fails with reason
# digest_mismatch and a message with both digests; nothing is published
# under state/blobs for it (neither under the wrong digest nor under the
# real one) and no temp file stays behind. A missing file is a fetch_error.
# The right digest afterwards works.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
deps_sha=$(sha256_of "$SAMPLE_DEPS")
source_sha=$(sha256_of "$SAMPLE_SOURCE")
wrong=$(printf '%s' "not the deps" | sha256sum | cut -d' ' -f1)

deploy_failed analytics --deps "$SAMPLE_DEPS" --deps-sha256 "$wrong" --source "$SAMPLE_SOURCE"
assert_eq digest_mismatch "$(jget "$DEPLOY_REV" "j['reason']")" "reason"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "$wrong" "message (expected digest)"
assert_contains "$msg" "$deps_sha" "message (actual digest)"
assert_contains "$msg" "deps" "message (which artifact)"
assert_contains "$DEPLOY_ERR" "digest_mismatch" "hearthctl deploy --wait stderr"
assert_eq "null" "$(jget "$DEPLOY_REV" "j.get('pid')")" "pid of a revision that never started"
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$wrong" ] || fail "a blob was published under the wrong digest"
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" ] || fail "the mismatching file was published under its real digest"
[ ! -e "$HEARTH_STATE_DIR/trees/sha256/$wrong" ] || fail "a tree was published under the wrong digest"
left=$(find "$HEARTH_STATE_DIR/tmp" -mindepth 1)
assert_eq "" "$left" "leftovers in the store's tmp/"
assert_eq "null" "$(active_of analytics)" "active after a failed first deploy"

# The source side, named as such.
deploy_failed analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --source-sha256 "$wrong"
assert_eq digest_mismatch "$(jget "$DEPLOY_REV" "j['reason']")" "reason (source)"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "source" "message (which artifact)"
assert_contains "$msg" "$source_sha" "message (actual digest)"
assert_contains "$msg" "$wrong" "message (expected digest)"

# A file that is not there (under a digest the store does not have: content
# addressing would otherwise never look at the file).
missing_sha=$(printf '%s' "missing" | sha256sum | cut -d' ' -f1)
deploy_failed analytics --deps "$FIX/missing.pex" --deps-sha256 "$missing_sha" --source "$SAMPLE_SOURCE"
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason (missing file)"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "$FIX/missing.pex" "message (missing file)"
# hearthctl cannot hash a missing local file itself: exit 1, no deploy.
run_ctl deploy analytics --deps "$FIX/missing.pex" --source "$SAMPLE_SOURCE"
assert_eq 1 "$RUN_RC" "hearthctl deploy of a missing local file: exit code"
assert_contains "$RUN_ERR" "missing.pex" "hearthctl's error"
assert_eq 3 "$(jget "$(status_of analytics; echo "$STATUS")" "len(j['locations'][0]['revisions'])")" \
    "revisions after hearthctl refused to deploy a missing file"

# The right digests, the deps one in upper case (hearthctl sends it in lower
# case): ready.
deploy_ready analytics --deps "$SAMPLE_DEPS" --deps-sha256 "${deps_sha^^}" --source "$SAMPLE_SOURCE"
assert_eq "$deps_sha $source_sha" "$(jget "$DEPLOY_REV" "j['deps']['sha256'] + ' ' + j['source']['sha256']")" \
    "digests of the good deploy"
[ -f "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" ] || fail "the verified blob was not published"
assert_eq 444 "$(stat -c %a "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha")" "mode of the published blob"
cmp -s "$SAMPLE_DEPS" "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" || fail "the published blob differs from the file"

finish_deploy_hearth

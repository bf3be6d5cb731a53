#!/bin/bash
# Retries: a server that answers 500 to the first two requests of deps.pex
# and then serves it gets three requests (500, 500, 200) and the deploy
# becomes ready; the retries wait (0.5 s, then 1 s) in between. A server
# that always answers 500 gets --fetch-attempts requests (3 here), then the
# revision fails fetch_error naming the status and the attempt count.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth --fetch-attempts 3
make_sample
serve deps.pex "$SAMPLE_DEPS"
serve always.pex "$SAMPLE_DEPS"
deps_sha=$(sha256_of "$SAMPLE_DEPS")
deps_size=$(stat -c %s "$SAMPLE_DEPS")
httpd_config '{"/deps.pex": {"fail": 2}, "/always.pex": {"fail": 1000, "fail_status": 503}}'

# Always failing first (the digest is not in the store yet).
t0=$(now_ms)
deploy_failed bad --deps "$HTTPD_URL/always.pex" --deps-sha256 "$deps_sha" --source "$SAMPLE_SOURCE"
elapsed=$(($(now_ms) - t0))
assert_eq fetch_error "$(jget "$DEPLOY_REV" "j['reason']")" "reason after every attempt failed"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "503" "message after every attempt failed (the status)"
assert_contains "$msg" "3 attempts" "message after every attempt failed (the count)"
assert_contains "$msg" "$HTTPD_URL/always.pex" "message after every attempt failed (the URL)"
assert_eq 3 "$(requests /always.pex)" "requests with --fetch-attempts 3"
# Delays 0.5 s + 1 s between the three attempts.
assert_ge "$elapsed" 1400 "ms until the third attempt failed"
assert_lt "$elapsed" 15000 "ms until the third attempt failed"
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" ] || fail "a blob was published although no attempt succeeded"

t0=$(now_ms)
deploy_ready good --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" --source "$SAMPLE_SOURCE"
elapsed=$(($(now_ms) - t0))
assert_eq "500 500 200" "$(access_lines /deps.pex | cut -d' ' -f1 | paste -sd' ')" \
    "statuses of the requests of deps.pex"
assert_eq "$deps_size" "$(access_lines /deps.pex | tail -n 1 | cut -d' ' -f2)" "bytes of the served request"
assert_ge "$elapsed" 1400 "ms until the deploy after two 500s was ready"
assert_eq false "$(jget "$DEPLOY_REV" "json.dumps(j['deps']['cache_hit'])")" "deps cache_hit after retries"
cmp -s "$SAMPLE_DEPS" "$HEARTH_STATE_DIR/blobs/sha256/$deps_sha" || fail "the blob fetched after retries differs"
assert_eq "" "$(tmp_entries)" "leftovers in tmp/ after retries"

finish_deploy_hearth

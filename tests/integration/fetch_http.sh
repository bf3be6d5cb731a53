#!/bin/bash
# Deploy over HTTP: deps and source fetched from a loopback server, verified,
# published under blobs/ and run. The blob is cached: a second deploy of the
# same digests (another location, same URLs) makes no request at all (the
# server's access log is unchanged) and reports cache hits. A 302 redirect is
# followed: one request to the old path, one to the new one.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth
make_sample
make_ticker "$FIX/web.pex" web
serve deps.pex "$SAMPLE_DEPS"
serve src/web.pex "$FIX/web.pex"
deps_sha=$(sha256_of "$SAMPLE_DEPS")
src_sha=$(sha256_of "$FIX/web.pex")
deps_size=$(stat -c %s "$SAMPLE_DEPS")

deploy_ready web --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
    --source "$HTTPD_URL/src/web.pex" --source-sha256 "$src_sha"
assert_eq 1 "$(requests /deps.pex)" "GETs of deps.pex"
assert_eq 1 "$(requests /src/web.pex)" "GETs of web.pex"
assert_eq "200 $deps_size" "$(access_lines /deps.pex)" "access log of deps.pex (status, bytes)"
assert_eq "false false" "$(jget "$DEPLOY_REV" "'%s %s' % (json.dumps(j['deps']['cache_hit']), json.dumps(j['source']['cache_hit']))")" \
    "cache hits of the first deploy"
assert_eq "$deps_sha" "$(jget "$DEPLOY_REV" "j['deps']['sha256']")" "deps digest"
assert_eq "$deps_size $deps_size" "$(jget "$DEPLOY_REV" "'%s %s' % (j['deps'].get('fetched_bytes'), j['deps'].get('total_bytes'))")" \
    "deps fetched_bytes and total_bytes after the fetch"
assert_match "$(jget "$DEPLOY_REV" "j['timings_ms'].get('fetching')")" '^[0-9]+(\.[0-9]+)?$' "timings_ms.fetching"
blob=$HEARTH_STATE_DIR/blobs/sha256/$deps_sha
[ -f "$blob" ] || fail "the fetched deps were not published as $blob"
cmp -s "$SAMPLE_DEPS" "$blob" || fail "the published blob differs from the served file"
assert_eq 444 "$(stat -c %a "$blob")" "mode of the fetched blob"
[ -f "$HEARTH_STATE_DIR/blobs/sha256/$src_sha" ] || fail "the fetched source was not published"
wait_log_line web "" "stdout web started: hello, web"
assert_eq "" "$(tmp_entries)" "leftovers in the store's tmp/"

# Same digests, same URLs, another location: served from the store.
before=$(wc -l <"$HTTPD_LOG")
deploy_ready web2 --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
    --source "$HTTPD_URL/src/web.pex" --source-sha256 "$src_sha"
assert_eq "$before" "$(wc -l <"$HTTPD_LOG")" "access log lines after deploying cached digests"
assert_eq "true true" "$(jget "$DEPLOY_REV" "'%s %s' % (json.dumps(j['deps']['cache_hit']), json.dumps(j['source']['cache_hit']))")" \
    "cache hits of the deploy of cached digests"
# Even a URL that could not be fetched is not contacted for a cached digest.
deploy_ready web3 --deps "$HTTPD_URL/status/500/gone.pex" --deps-sha256 "$deps_sha" \
    --source "$FIX/web.pex"
assert_eq "$before" "$(wc -l <"$HTTPD_LOG")" "access log lines after deploying a cached digest from a dead URL"
run_ctl stop web2
run_ctl stop web3

# A redirect: /old/green.pex answers 302 to /new/green.pex.
make_ticker "$FIX/green.pex" green
serve new/green.pex "$FIX/green.pex"
green_sha=$(sha256_of "$FIX/green.pex")
httpd_config '{"/old/green.pex": {"redirect": "/new/green.pex"}}'
deploy_ready web --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
    --source "$HTTPD_URL/old/green.pex" --source-sha256 "$green_sha"
assert_eq "302" "$(access_lines /old/green.pex | cut -d' ' -f1)" "access log of the redirecting path"
assert_eq "200 $(stat -c %s "$FIX/green.pex")" "$(access_lines /new/green.pex)" "access log of the redirect target"
assert_eq 1 "$(requests /deps.pex)" "GETs of deps.pex after three deploys"
wait_log_line web "" "stdout green started: hello, green"
assert_eq "web-2" "$(active_of web)" "active revision after the redirected deploy"

finish_deploy_hearth

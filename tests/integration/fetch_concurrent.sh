#!/bin/bash
# Two locations deploy the same deps and source URLs at the same time while
# the server sends slowly (about 1 s per file): hearth downloads each file
# ONCE (one GET per path in the access log), both revisions follow that one
# download's progress, and both become ready on the same digests.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth
make_fat_deps "$FIX/deps.pex" 300000
make_ticker "$FIX/app.pex" twin
serve deps.pex "$FIX/deps.pex"
serve app.pex "$FIX/app.pex"
deps_sha=$(sha256_of "$FIX/deps.pex")
src_sha=$(sha256_of "$FIX/app.pex")
httpd_config '{"/deps.pex": {"rate": 300000}, "/app.pex": {"rate": 4000}}'

pids=()
for loc in one two; do
    start_bg "$HEARTHCTL" --json deploy "$loc" --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
        --source "$HTTPD_URL/app.pex" --source-sha256 "$src_sha" --min-uptime 0.2 --wait \
        >"$TEST_TMP/$loc.out" 2>"$TEST_TMP/$loc.err"
    pids+=("$BG_PID")
done
for i in 0 1; do
    wait_bg "${pids[$i]}" 40
    [ "$BG_RC" = 0 ] || fail "deploy $i exited $BG_RC: $(cat "$TEST_TMP"/*.err)"
done
for loc in one two; do
    last=$(tail -n 1 "$TEST_TMP/$loc.out")
    assert_eq ready "$(jget "$last" "j['state']")" "final state of $loc"
    assert_eq "$deps_sha $src_sha" "$(jget "$last" "j['revision']['deps']['sha256'] + ' ' + j['revision']['source']['sha256']")" \
        "digests of $loc"
done
# Both really waited on the download in flight: each saw deps progress
# before the end of the body.
for loc in one two; do
    partial=$("$PYTHON" -c '
import json, sys
n = 0
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get("type") == "progress" and e.get("artifact") == "deps" and e["fetched_bytes"] < (e.get("total_bytes") or 0):
        n += 1
print(n)' "$TEST_TMP/$loc.out")
    assert_ge "$partial" 1 "deps progress events of $loc before the end of the body"
done
assert_eq 1 "$(requests /deps.pex)" "GETs of deps.pex for two concurrent deploys"
assert_eq 1 "$(requests /app.pex)" "GETs of app.pex for two concurrent deploys"
wait_log_line one "" "stdout twin started: hello, twin"
wait_log_line two "" "stdout twin started: hello, twin"
assert_eq "" "$(tmp_entries)" "leftovers in tmp/"

finish_deploy_hearth

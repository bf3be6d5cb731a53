#!/bin/bash
# Budget exhaustion: with --store-max-bytes 3Mi, location c runs the sample
# (its objects pinned by c-1, ~190 KiB) and a stopped location a left ~2 MiB
# of unpinned objects. Redeploys of c that cannot fit even after evicting
# everything unpinned fail no_space, and the running c-1 is untouched (still
# ready, active, same process, still logging); tmp/ is empty and the store
# is back within its budget afterwards:
#  1. 1.5 MiB of incompressible deps from a file (blob + tree ~3.1 MiB, plus
#     c's pinned objects: over 3 MiB);
#  2. the same size over HTTP;
#  3. 3.5 MiB of deps from a file: the tree alone is over the budget (and
#     over --extract-max-bytes, which defaults to the budget): still no_space,
#     since the object cannot fit the budget, not bad_archive;
#  4. 3.5 MiB over HTTP: the blob alone is over the budget, so it is refused
#     at its Content-Length, before any of the body is stored: no_space.
# A deploy that fits works afterwards and takes over from c-1.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

BUDGET=$((3 * 1048576))
start_httpd
start_deploy_hearth --store-max-bytes 3Mi
make_sample
make_ticker "$FIX/c.pex" cee
make_ticker "$FIX/a.pex" ay
make_fat_deps "$FIX/A.pex" 1000000 21
make_fat_deps "$FIX/D1.pex" 1572864 22
make_fat_deps "$FIX/D1h.pex" 1572864 23
make_fat_deps "$FIX/D2.pex" 3670016 24
make_fat_deps "$FIX/D2h.pex" 3670016 25
D1h=$(sha256_of "$FIX/D1h.pex")
D2=$(sha256_of "$FIX/D2.pex")
D2h=$(sha256_of "$FIX/D2h.pex")
serve D1h.pex "$FIX/D1h.pex"
serve D2h.pex "$FIX/D2h.pex"

deploy_ready c --deps "$SAMPLE_DEPS" --source "$FIX/c.pex"
c_pid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$c_pid" ] || fail "no process for c-1"
deploy_ready a --deps "$FIX/A.pex" --source "$FIX/a.pex"
run_ctl stop a

check_c_untouched() { # WHEN
    assert_eq c-1 "$(active_of c)" "active of c $1"
    assert_eq ready "$(rev_get c c-1 "r['state']")" "c-1 $1"
    proc_running "$c_pid" || fail "c-1's process died $1"
    local n
    n=$(log_count c c-1 "cee tick")
    wait_until 5 "c-1 to keep ticking $1" log_count_above c c-1 "cee tick" "$n"
    wait_until 5 "tmp/ to be empty $1" tmp_empty
    # The GC that follows a failure runs in the background: allow it a moment.
    poll_until 5 within_budget || fail "store over the budget $1: $CACHE"
}
within_budget() {
    cache_json
    [ "$(jget "$CACHE" "j['used_bytes']")" -le "$BUDGET" ]
}

deploy_failed c --deps "$FIX/D1.pex" --source "$FIX/c.pex"
assert_eq c-2 "$DEPLOY_ID" "the first failed revision"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason: blob + tree over the budget (file)"
note "message: $(jget "$DEPLOY_REV" "j['message']")"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "budget" "no_space message"
check_c_untouched "after a no_space deploy from a file"

deploy_failed c --deps "$HTTPD_URL/D1h.pex" --deps-sha256 "$D1h" --source "$FIX/c.pex"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason: blob + tree over the budget (HTTP)"
check_c_untouched "after a no_space deploy over HTTP"

deploy_failed c --deps "$FIX/D2.pex" --source "$FIX/c.pex"
note "message: $(jget "$DEPLOY_REV" "j['message']")"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason: a tree larger than the whole budget"
check_c_untouched "after deploying a tree larger than the budget"
[ ! -e "$HEARTH_STATE_DIR/trees/sha256/$D2" ] || fail "a tree larger than the budget was published"

deploy_failed c --deps "$HTTPD_URL/D2h.pex" --deps-sha256 "$D2h" --source "$FIX/c.pex"
note "message: $(jget "$DEPLOY_REV" "j['message']")"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason: a download larger than the whole budget"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "--store-max-bytes" "message of a download over the budget"
assert_eq 0 "$(jget "$DEPLOY_REV" "j['deps'].get('fetched_bytes', 0)")" "bytes stored of a download refused by its Content-Length"
check_c_untouched "after a download larger than the budget"
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$D2h" ] || fail "a blob larger than the budget was published"

# Something that fits still deploys, and takes over from c-1.
make_ticker "$FIX/c2.pex" ceetwo
deploy_ready c --deps "$SAMPLE_DEPS" --source "$FIX/c2.pex"
assert_eq c-6 "$DEPLOY_ID" "the revision that fits"
wait_log_line c c-6 "stdout ceetwo started: hello, ceetwo"
wait_rev_state c c-1 stopped

finish_deploy_hearth

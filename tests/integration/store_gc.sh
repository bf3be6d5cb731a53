#!/bin/bash
# Store GC under --store-max-bytes 4Mi. Location c runs the small sample (its
# objects are pinned by the live c-1); location a deployed ~1.5 MiB of
# incompressible deps (blob + tree ~3 MiB) and was stopped. Deploying
# location b with other ~1.5 MiB deps does not fit beside a's: a's deps
# blob and tree are evicted (least recently used, unpinned), c's objects stay
# (cache.list: pinned_by c-1), used <= budget, c keeps running. Then with b
# stopped, `hearthctl cache gc --target PINNED` evicts b's objects and
# nothing pinned; `cache gc` without a target evicts nothing when under the
# budget; a target below the pinned bytes evicts every unpinned object;
# the `cache ls` table shows the pins and the total against the budget.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

BUDGET=4194304
start_deploy_hearth --store-max-bytes 4Mi
make_sample
make_ticker "$FIX/c.pex" cee
make_ticker "$FIX/a.pex" ay
make_ticker "$FIX/b.pex" bee
make_fat_deps "$FIX/A.pex" 1572864 11
make_fat_deps "$FIX/B.pex" 1572864 12
C=$(sha256_of "$SAMPLE_DEPS")
A=$(sha256_of "$FIX/A.pex")
B=$(sha256_of "$FIX/B.pex")

deploy_ready c --deps "$SAMPLE_DEPS" --source "$FIX/c.pex"
c_pid=$(jget "$DEPLOY_REV" "j['pid']")
deploy_ready a --deps "$FIX/A.pex" --source "$FIX/a.pex"
run_ctl stop a
assert_eq 0 "$RUN_RC" "hearthctl stop a ($RUN_ERR)"

cache_json
assert_eq "$BUDGET" "$(jget "$CACHE" "j['budget_bytes']")" "cache.list budget_bytes"
assert_eq '["c-1"]' "$(jget "$CACHE" "[e['pinned_by'] for e in j['entries'] if e['kind'] == 'tree' and e['sha256'] == '$C'][0]")" \
    "pinned_by of c's deps tree"
assert_eq '[]' "$(jget "$CACHE" "[e['pinned_by'] for e in j['entries'] if e['kind'] == 'tree' and e['sha256'] == '$A'][0]")" \
    "pinned_by of the stopped a's deps tree"
a_bytes=$(jget "$CACHE" "sum(e['bytes'] for e in j['entries'] if e['sha256'] == '$A')")
assert_ge "$a_bytes" $((2 * 1572864)) "bytes of a's deps blob + tree"
# Newest use first.
assert_eq 1 "$(jget "$CACHE" "int([e['last_used'] for e in j['entries']] == sorted([e['last_used'] for e in j['entries']], reverse=True))")" \
    "cache.list in newest-use-first order"

deploy_ready b --deps "$FIX/B.pex" --source "$FIX/b.pex"
cache_json
note "cache after b: $(jget "$CACHE" "[(e['kind'], e['sha256'][:8], e['bytes'], e['pinned_by']) for e in j['entries']]")"
for kind in blob tree; do
    ! cache_has "$kind" "$A" || fail "a's deps $kind was not evicted"
    cache_has "$kind" "$C" || fail "c's deps $kind (pinned) was evicted"
    cache_has "$kind" "$B" || fail "b's deps $kind is not in the cache"
done
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$A" ] || fail "a's deps blob is still on disk"
[ ! -e "$HEARTH_STATE_DIR/trees/sha256/$A" ] || fail "a's deps tree is still on disk"
[ -d "$HEARTH_STATE_DIR/trees/sha256/$C" ] || fail "c's deps tree is gone from the disk"
used=$(jget "$CACHE" "j['used_bytes']")
assert_eq "$used" "$(jget "$CACHE" "sum(e['bytes'] for e in j['entries'])")" "used_bytes = sum of the entries"
[ "$used" -le "$BUDGET" ] || fail "used_bytes $used over the budget $BUDGET after b's deploy"
assert_eq '["b-1"]' "$(jget "$CACHE" "[e['pinned_by'] for e in j['entries'] if e['kind'] == 'tree' and e['sha256'] == '$B'][0]")" \
    "pinned_by of b's deps tree"
status_of c
assert_eq "ready $c_pid" "$(jget "$STATUS" "(lambda r: '%s %s' % (r['state'], r['pid']))(j['locations'][0]['revisions'][0])")" \
    "c-1 after the eviction"
assert_eq "$BUDGET" "$(jget "$STATUS" "j['hearth']['store']['budget_bytes']")" "status hearth.store.budget_bytes"
assert_eq "$used" "$(jget "$STATUS" "j['hearth']['store']['used_bytes']")" "status hearth.store.used_bytes"
wait_log_line c "" "stdout cee tick 3"

# The table.
run_ctl cache ls
assert_eq 0 "$RUN_RC" "hearthctl cache ls ($RUN_ERR)"
nl=$'\n'
assert_match "$RUN_OUT" "(^|$nl)KIND +SHA256 +SIZE +LAST-USED +PINNED-BY" "cache ls header"
assert_match "$RUN_OUT" "(^|$nl)tree +${C:0:12} .*c-1" "cache ls row of c's deps tree"
assert_match "$RUN_OUT" "used [0-9.]+ [KMG]?i?B of budget 4 MiB" "cache ls total line"

# Manual GC, reachable target: b stopped, target = what c pins -> every
# unpinned object goes (b's among them), nothing pinned does.
run_ctl stop b
cache_json
pinned=$(jget "$CACHE" "sum(e['bytes'] for e in j['entries'] if e['pinned_by'])")
ctl_ok cache gc --target "$pinned"
GC=$RUN_OUT
note "cache gc --target $pinned: $GC"
assert_eq true "$(jget "$GC" "any(e['sha256'] == '$B' and e['kind'] == 'blob' for e in j['evicted'])")" "b's deps blob evicted by cache gc"
assert_eq true "$(jget "$GC" "any(e['sha256'] == '$B' and e['kind'] == 'tree' for e in j['evicted'])")" "b's deps tree evicted by cache gc"
assert_eq false "$(jget "$GC" "any(e['sha256'] == '$C' for e in j['evicted'])")" "c's (pinned) deps evicted by cache gc"
assert_eq "$(jget "$GC" "sum(e['bytes'] for e in j['evicted'])")" "$(jget "$GC" "j['freed_bytes']")" "freed_bytes"
assert_eq "$pinned" "$(jget "$GC" "j['used_bytes']")" "used_bytes after cache gc --target PINNED"
cache_json
assert_eq true "$(jget "$CACHE" "all(e['pinned_by'] for e in j['entries'])")" "only pinned entries after cache gc --target PINNED"
[ ! -e "$HEARTH_STATE_DIR/trees/sha256/$B" ] || fail "b's deps tree is still on disk after cache gc"
[ ! -e "$HEARTH_STATE_DIR/blobs/sha256/$B" ] || fail "b's deps blob is still on disk after cache gc"
ctl_ok cache gc
assert_eq '[] 0' "$(jget "$RUN_OUT" "'%s %s' % (json.dumps(j['evicted']), j['freed_bytes'])")" "cache gc under the budget"

# Unreachable target (below what c pins): the spec says "evicts unpinned LRU
# until used <= target", so every unpinned object goes and the pinned stay.
deploy_ready a --deps "$FIX/A.pex" --source "$FIX/a.pex"
run_ctl stop a
cache_has tree "$A" || fail "a's deps tree missing after the redeploy of a"
ctl_ok cache gc --target 1
GC=$RUN_OUT
note "cache gc --target 1: $GC"
assert_eq true "$(jget "$GC" "any(e['sha256'] == '$A' and e['kind'] == 'tree' for e in j['evicted'])")" \
    "a's (unpinned) deps tree evicted by cache gc --target 1 (below the pinned bytes)"
cache_json
assert_eq true "$(jget "$CACHE" "all(e['pinned_by'] for e in j['entries'])")" "only pinned entries after cache gc --target 1"
cache_has tree "$C" || fail "c's deps tree (pinned) evicted by cache gc --target 1"

assert_eq ready "$(rev_get c c-1 "r['state']")" "c-1 after cache gc"
assert_eq "" "$(tmp_entries)" "leftovers in tmp/"

finish_deploy_hearth

#!/bin/bash
# Capacity (issue 13): `status` reports hearth's capacity (its own cgroup's
# memory limit here: hearth runs in a test cgroup limited to 256 MiB) and
# what live revisions commit. A deploy whose memory limit does not fit is
# refused at once with JSON-RPC error insufficient_capacity (-32005, data
# resource/asked/free); a redeploy counts its location's serving revision
# once; --overcommit accepts what does not fit.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"

need_cgroups memory
mem=${CG_V1[memory]:-}
[ -n "$mem" ] || skip "needs a v1 memory hierarchy (to place hearth in a limited test cgroup)"
MiB=1048576
mkdir -p "$mem$CG_PARENT"
echo $((256 * MiB)) >"$mem$CG_PARENT/memory.limit_in_bytes" || fail "cannot limit the test cgroup"
# hearth (and so every revision) starts inside the limited test cgroup.
# shellcheck disable=SC2016,SC2034 # expanded by that sh; read by lib.sh
HEARTH_WRAP=(sh -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$mem$CG_PARENT")

make_workloads
deploy_args hold
start_cg_hearth

ctl_ok status
cap=$(jget "$RUN_OUT" "j['capacity']")
assert_eq $((256 * MiB)) "$(jget "$cap" "j['memory']['total']")" "capacity.memory.total"
assert_eq cgroup "$(jget "$cap" "j['memory']['source']")" "capacity.memory.source"
assert_eq 0 "$(jget "$cap" "j['revisions']")" "capacity.revisions before any deploy"
assert_match "$(jget "$cap" "j['cpus']['total']")" '^[0-9]+(\.[0-9]+)?$' "capacity.cpus.total"

deploy_ready big "${DARGS[@]}" --memory 200Mi
ctl_ok status
cap=$(jget "$RUN_OUT" "j['capacity']")
assert_eq $((200 * MiB)) "$(jget "$cap" "j['memory']['committed']")" "capacity.memory.committed"
assert_eq $((56 * MiB)) "$(jget "$cap" "j['memory']['free']")" "capacity.memory.free"
assert_eq 1 "$(jget "$cap" "j['revisions']")" "capacity.revisions"

# 100 MiB more does not fit: refused at once, nothing created.
params="{\"location\": \"more\", \"deps\": {\"path\": \"$SAMPLE_DEPS\", \"sha256\": \"$(sha256_of "$SAMPLE_DEPS")\"},
 \"source\": {\"path\": \"$WORKLOADS\", \"sha256\": \"$(sha256_of "$WORKLOADS")\"},
 \"entry\": {\"module\": \"hearth_workloads\", \"args\": [\"hold\"]}, \"limits\": {\"memory\": $((100 * MiB))}}"
rpc deploy "$params"
assert_eq -32005 "$(jget "$RPC_OUT" "j['error']['code']")" "error code of a deploy that does not fit"
assert_eq memory "$(jget "$RPC_OUT" "j['error']['data']['resource']")" "error data.resource"
assert_eq $((100 * MiB)) "$(jget "$RPC_OUT" "j['error']['data']['asked']")" "error data.asked"
assert_eq $((56 * MiB)) "$(jget "$RPC_OUT" "j['error']['data']['free']")" "error data.free"
assert_contains "$(jget "$RPC_OUT" "j['error']['message']")" "insufficient memory" "error message"
run_ctl status more
assert_ne 0 "$RUN_RC" "status of the refused location (never created)"
run_ctl deploy more "${DARGS[@]}" --memory 100Mi
assert_ne 0 "$RUN_RC" "hearthctl deploy exit code when refused"
assert_contains "$RUN_ERR" "insufficient memory" "hearthctl's message"

# A redeploy of `big` replaces its serving revision: counted once (220 MiB
# fits in 256 MiB, though 200 + 220 would not).
deploy_ready big "${DARGS[@]}" --memory 220Mi
assert_eq big-2 "$DEPLOY_ID" "the redeploy's revision"

# Restart with --overcommit: `big` is restored and `more` is accepted.
run_ctl shutdown
wait_hearth_exit 30
start_cg_hearth --overcommit
wait_until 30 "big to be restored" rev_in_state big big-1 ready
deploy_ready more "${DARGS[@]}" --memory 100Mi
ctl_ok status
cap=$(jget "$RUN_OUT" "j['capacity']")
assert_eq $((320 * MiB)) "$(jget "$cap" "j['memory']['committed']")" "committed when overcommitted"
assert_eq 0 "$(jget "$cap" "j['memory']['free']")" "free when overcommitted"
finish_deploy_hearth

#!/bin/bash
# Invalid limits, restart and stop specs are refused with -32602 naming the
# field (params.limits.cpus and so on), over the raw socket and through
# `hearthctl deploy --params`; nothing is created for them (the location stays
# unknown). Ceilings (--max-memory, --max-cpus, --max-pids) are -32602 naming
# the field too. Valid spellings ("64Mi", "500m", integers) are accepted and
# reported normalised in status. Driver none: validation needs no cgroups.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"

start_cg_hearth --grace 1 --cgroup-driver none --max-memory 1Gi --max-cpus 2 --max-pids 1000
make_workloads

BASE=$("$PYTHON" -c '
import hashlib, json, sys
def art(p):
    return {"path": p, "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
print(json.dumps({"deps": art(sys.argv[1]), "source": art(sys.argv[2]),
                  "entry": {"module": "hearth_workloads", "args": ["hold"]},
                  "restart": "never", "min_uptime_s": 0.3}))' "$SAMPLE_DEPS" "$WORKLOADS")

# with LOCATION PY-DICT-UPDATE: BASE plus the location and the update.
with() {
    "$PYTHON" -c '
import json, sys
p = json.loads(sys.argv[1])
p["location"] = sys.argv[2]
p.update(eval(sys.argv[3]))
print(json.dumps(p))' "$BASE" "$1" "$2"
}

problems=()
# refused FIELD PY-DICT-UPDATE: the deploy must fail with -32602 whose
# message names FIELD, and leave no location behind.
n=0
refused() {
    n=$((n + 1))
    local loc=bad$n
    rpc deploy "$(with "$loc" "$2")"
    local got
    got=$(jget "$RPC_OUT" "'%s|%s' % (j.get('error', {}).get('code'), j.get('error', {}).get('message'))")
    case $got in
    "-32602|"*"$1"*) ;;
    *) problems+=("$2 -> $got (expected -32602 naming $1)") ;;
    esac
    if location_known "$loc"; then problems+=("$2 -> location $loc exists after a refused deploy"); fi
}

refused params.limits "{'limits': 'lots'}"
refused params.limits.bogus "{'limits': {'bogus': 1}}"
refused params.limits.cpus "{'limits': {'cpus': 0}}"
refused params.limits.cpus "{'limits': {'cpus': -1}}"
refused params.limits.cpus "{'limits': {'cpus': 1025}}"
refused params.limits.cpus "{'limits': {'cpus': 'fast'}}"
refused params.limits.cpus "{'limits': {'cpus': True}}"
refused params.limits.memory "{'limits': {'memory': '12Q'}}"
refused params.limits.memory "{'limits': {'memory': 1000}}"
refused params.limits.memory "{'limits': {'memory': -5}}"
refused params.limits.memory "{'limits': {'memory': '2Gi'}}"
refused params.limits.memory_high "{'limits': {'memory_high': 'x'}}"
refused params.limits.pids "{'limits': {'pids': 0}}"
refused params.limits.pids "{'limits': {'pids': 1.5}}"
refused params.limits.pids "{'limits': {'pids': 5000}}"
refused params.limits.cpu_weight "{'limits': {'cpu_weight': 0}}"
refused params.limits.cpu_weight "{'limits': {'cpu_weight': 10001}}"
refused params.limits.cpu_slice_us "{'limits': {'cpu_slice_us': 99}}"
refused params.limits.cpu_slice_us "{'limits': {'cpu_slice_us': 'short'}}"
refused params.limits.cpus "{'limits': {'cpus': 3}}"
refused params.restart "{'restart': 'sometimes'}"
refused params.restart "{'restart': 5}"
refused params.restart.policy "{'restart': {'policy': 'sometimes'}}"
refused params.restart.max_restarts "{'restart': {'policy': 'on-failure', 'max_restarts': -1}}"
refused params.restart.window_s "{'restart': {'policy': 'on-failure', 'window_s': -3}}"
refused params.stop.signal "{'stop': {'signal': 'BOGUS'}}"
refused params.stop.signal "{'stop': {'signal': 'SIGSEGV'}}"
refused params.stop.grace_s "{'stop': {'grace_s': -1}}"
refused params.stop.grace_s "{'stop': {'grace_s': 3601}}"
refused params.user "{'user': ''}"
refused params.user "{'user': 12.5}"

# The ceiling message says what was asked and the ceiling.
rpc deploy "$(with ceil "{'limits': {'memory': '2Gi'}}")"
msg=$(jget "$RPC_OUT" "j['error']['message']")
assert_contains "$msg" "params.limits.memory" "ceiling message"
assert_match "$msg" "2 ?Gi.*1 ?Gi" "ceiling message (what was asked, then the ceiling)"

# Through hearthctl --params: exit 1, the daemon's message on stderr.
with viactl "{'limits': {'cpus': 0}}" >"$TEST_TMP/bad.json"
run_ctl --json deploy --params "$TEST_TMP/bad.json"
assert_eq 1 "$RUN_RC" "hearthctl deploy --params with cpus 0 exit code ($RUN_ERR)"
assert_contains "$RUN_ERR" "params.limits.cpus" "hearthctl stderr"
assert_contains "$RUN_ERR" "(code -32602)" "hearthctl stderr"

# Valid spellings are accepted and normalised.
rpc deploy "$(with good "{'limits': {'memory': '64Mi', 'cpus': '500m', 'pids': 32, 'cpu_weight': 50}, 'restart': {'policy': 'on-failure', 'max_restarts': 3, 'window_s': 60}, 'stop': {'signal': 'INT', 'grace_s': 0}}")"
assert_eq good-1 "$(jget "$RPC_OUT" "j.get('result', {}).get('id')")" "valid deploy ($RPC_OUT)"
wait_rev_state good good-1 ready 20
r=$(rev_json good good-1)
assert_eq '{"cpu_weight":50,"cpus":0.5,"memory":67108864,"pids":32}' "$(jget "$r" "j['limits']")" "normalised limits"
assert_eq "INT 0" "$(jget "$r" "'%s %g' % (j['stop']['signal'], j['stop']['grace_s'])")" "normalised stop spec"
ctl_ok stop good

if [ ${#problems[@]} -gt 0 ]; then
    fail "$(printf '%s; ' "${problems[@]}")"
fi
finish_deploy_hearth

#!/bin/bash
# The stop spec: stop {signal: INT, grace_s: 1}.
#  - A process that exits on SIGINT sees SIGINT (it records each signal it
#    gets in a file), no SIGTERM, and `stop` returns well before the grace.
#  - A process that ignores it (records it, keeps running) is SIGKILLed about
#    1 s later (stop takes 0.8..3 s), and nothing else reached it.
#  - The name may carry SIG (SIGUSR1 through raw params), status shows the
#    spec; without one, hearth's --grace and TERM apply.
#  - A revision replaced by a redeploy is stopped with its own spec too.
# shellcheck source=cgroup_lib.sh
. "$(dirname "$0")/cgroup_lib.sh"

start_cg_hearth --grace 3
make_workloads

# signals_in FILE: the names of the signals recorded (one per line).
signals_in() { awk '$1 != "ready" { print $1 }' "$1" 2>/dev/null; }
recorded_ready() { grep -q '^ready ' "$1" 2>/dev/null; }

# ---- honours INT
OUT1=$TEST_TMP/sig.polite
deploy_args signals out="$OUT1" ignore=0
deploy_ready polite "${DARGS[@]}" --stop-signal INT --stop-grace 1 --restart never
wait_until 10 "polite to install its handlers" recorded_ready "$OUT1"
assert_eq "INT 1" "$(rev_get polite polite-1 "'%s %g' % (r['stop']['signal'], r['stop']['grace_s'])")" "status stop spec"
t0=$(now_ms)
ctl_ok stop polite
t1=$(now_ms)
assert_eq '{"stopped":["polite-1"]}' "$(jget "$RUN_OUT" "j")" "stop result"
assert_eq INT "$(signals_in "$OUT1")" "signals the polite process saw"
assert_lt $((t1 - t0)) 900 "ms for stop of a process that exits on SIGINT (grace 1 s)"
r=$(rev_json polite polite-1)
assert_eq stopped "$(jget "$r" "j['state']")" "state after stop"
assert_eq null "$(jget "$r" "json.dumps(j.get('signal'))")" "signal of a clean exit"

# ---- ignores INT: KILLed after ~1 s
OUT2=$TEST_TMP/sig.stubborn
deploy_args signals out="$OUT2" ignore=1
deploy_ready stubborn "${DARGS[@]}" --stop-signal INT --stop-grace 1 --restart never
wait_until 10 "stubborn to install its handlers" recorded_ready "$OUT2"
hp=$(host_pid_of stubborn stubborn-1)
t0=$(now_ms)
ctl_ok stop stubborn
t1=$(now_ms)
note "stop of the INT-ignoring process took $((t1 - t0)) ms"
assert_ge $((t1 - t0)) 800 "ms for stop of a process ignoring SIGINT (grace 1 s)"
assert_lt $((t1 - t0)) 3000 "ms for stop of a process ignoring SIGINT (grace 1 s)"
assert_eq INT "$(signals_in "$OUT2")" "signals the stubborn process saw (then SIGKILL)"
proc_gone "$hp" || fail "the stubborn process $hp still runs after stop"
sig=$(rev_get stubborn stubborn-1 "r.get('signal')")
[ "$sig" = null ] || assert_eq SIGKILL "$sig" "signal that ended the stubborn process"
# The recorded INT came at the start of the stop, the kill ~1 s later.
int_at=$(awk '$1 == "INT" { print $2; exit }' "$OUT2")
float_cmp "abs($int_at * 1000 - $t0) < 500" || fail "SIGINT was recorded at $int_at, stop began at ${t0} ms"

# ---- SIG prefix through raw params; the status shows the spec
OUT3=$TEST_TMP/sig.usr1
params=$("$PYTHON" -c '
import json, sys
deps, src, out = sys.argv[1:4]
def art(p):
    import hashlib
    return {"path": p, "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
print(json.dumps({"location": "usr", "deps": art(deps), "source": art(src),
                  "entry": {"module": "hearth_workloads", "args": ["signals", "out=" + out, "ignore=0"]},
                  "restart": "never", "min_uptime_s": 0.3,
                  "stop": {"signal": "SIGUSR1", "grace_s": 0.5}}))' "$SAMPLE_DEPS" "$WORKLOADS" "$OUT3")
rpc deploy "$params"
assert_eq usr-1 "$(jget "$RPC_OUT" "j['result']['id']")" "raw deploy with stop.signal SIGUSR1 ($RPC_OUT)"
wait_rev_state usr usr-1 ready 20
wait_until 10 "usr to install its handlers" recorded_ready "$OUT3"
assert_eq "USR1 0.5" "$(rev_get usr usr-1 "'%s %g' % (r['stop']['signal'], r['stop']['grace_s'])")" "status stop spec from SIGUSR1"
ctl_ok stop usr
assert_eq USR1 "$(signals_in "$OUT3")" "signals seen with stop.signal SIGUSR1"

# ---- defaults: hearth's --grace and TERM
OUT4=$TEST_TMP/sig.default
deploy_args signals out="$OUT4" ignore=0
deploy_ready plain "${DARGS[@]}" --restart never
wait_until 10 "plain to install its handlers" recorded_ready "$OUT4"
assert_eq "TERM 3" "$(rev_get plain plain-1 "'%s %g' % (r['stop']['signal'], r['stop']['grace_s'])")" "default stop spec"
ctl_ok stop plain
assert_eq TERM "$(signals_in "$OUT4")" "signals seen with the default stop spec"

# ---- replaced by a redeploy: the old revision gets its own stop signal
OUT5=$TEST_TMP/sig.blue
deploy_args signals out="$OUT5" ignore=0
deploy_ready bg "${DARGS[@]}" --stop-signal QUIT --stop-grace 2 --restart never
wait_until 10 "bg-1 to install its handlers" recorded_ready "$OUT5"
deploy_args hold
deploy_ready bg "${DARGS[@]}" --restart never
wait_rev_state bg bg-1 stopped 10
assert_eq QUIT "$(signals_in "$OUT5")" "signals the replaced revision saw"
finish_deploy_hearth

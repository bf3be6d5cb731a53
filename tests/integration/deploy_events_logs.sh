#!/bin/bash
# `hearthctl events` prints each state change as it happens (while it keeps
# running), in the documented format, for all locations or only the one
# named; with --json one event object per line. `hearthctl logs -f` prints
# the history, then new lines as the revision writes them. Both end with
# exit 0 on SIGTERM, and with exit 3 when hearth goes away.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
missing_sha=$(printf '%s' "no such file" | sha256sum | cut -d' ' -f1)

# probe_until_seen FILE LOCATION: a subscription gives no sign of life until
# the first event, so deploy LOCATION from a missing file (it fails at once)
# until FILE shows one of its events; from then on the subscriber misses
# nothing. Fails the test after 10 tries.
probe_until_seen() {
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        run_ctl deploy "$2" --deps "$FIX/none.pex" --deps-sha256 "$missing_sha" \
            --source "$FIX/none.pex" --source-sha256 "$missing_sha"
        [ "$RUN_RC" = 0 ] || fail "probe deploy of $2 was refused: $RUN_ERR"
        if poll_until 1 grep -q " $2 $2-" "$1"; then return 0; fi
    done
    fail "no event of $2 reached $1: $(cat "$1")"
}

# ---- events
start_bg "$HEARTHCTL" --socket "$HEARTH_SOCKET" events >"$TEST_TMP/all.txt" 2>"$TEST_TMP/all.err"
all_pid=$BG_PID
start_bg "$HEARTHCTL" --socket "$HEARTH_SOCKET" --json events analytics >"$TEST_TMP/one.jsonl" 2>"$TEST_TMP/one.err"
one_pid=$BG_PID
probe_until_seen "$TEST_TMP/all.txt" probe
# The filtered subscriber only gets analytics' events: sync it with analytics
# probes (each a failed revision of analytics).
for _ in 1 2 3 4 5 6 7 8 9 10; do
    run_ctl deploy analytics --deps "$FIX/none.pex" --deps-sha256 "$missing_sha" \
        --source "$FIX/none.pex" --source-sha256 "$missing_sha"
    if poll_until 1 grep -q '"location":"analytics"' "$TEST_TMP/one.jsonl"; then break; fi
done
grep -q '"location":"analytics"' "$TEST_TMP/one.jsonl" || fail "no analytics event reached the filtered subscriber"

# A failure line: TIMESTAMP LOCATION ID PREVIOUS -> STATE REASON: MESSAGE.
failed_line=$(grep -m 1 ' probe probe-[0-9]* fetching -> failed ' "$TEST_TMP/all.txt" || true)
assert_match "$failed_line" \
    '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z probe probe-[0-9]+ fetching -> failed fetch_error: .*none\.pex' \
    "event line of a failed revision"
assert_match "$(grep -m 1 ' probe probe-[0-9]* ' "$TEST_TMP/all.txt")" \
    '^[0-9T:.Z-]+ probe probe-[0-9]+ - -> pending$' "event line of a new revision"

# A real deploy with a 3 s min-uptime, without --wait: each line shows up
# while the revision is still in that state.
ctl_ok deploy analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --min-uptime 3
id=$(jget "$RUN_OUT" "j['id']")
wait_until 20 "'$id starting -> loading' from hearthctl events" grep -q " analytics $id starting -> loading\$" "$TEST_TMP/all.txt"
assert_eq loading "$(rev_get analytics "$id" "r['state']")" "$id state when its loading event was printed"
proc_running "$all_pid" || fail "hearthctl events exited"
wait_until 20 "'$id loading -> ready' from hearthctl events" grep -q " analytics $id loading -> ready\$" "$TEST_TMP/all.txt"
seq=$(grep " analytics $id " "$TEST_TMP/all.txt" | sed -E 's/^[^ ]+ analytics [^ ]+ //')
assert_eq "- -> pending
pending -> fetching
fetching -> extracting
extracting -> starting
starting -> loading
loading -> ready" "$seq" "events of $id, in order"

ctl_ok stop analytics
wait_until 10 "'$id stopping -> stopped' from hearthctl events" \
    grep -q " analytics $id stopping -> stopped: " "$TEST_TMP/all.txt"
grep -q " analytics $id ready -> stopping" "$TEST_TMP/all.txt" || fail "no 'ready -> stopping' line for $id"

# The --json subscriber: only analytics, one object per line, same sequence.
wait_until 10 "the stopped event in --json events" grep -q "\"id\":\"$id\".*\"state\":\"stopped\"" "$TEST_TMP/one.jsonl"
summary=$("$PYTHON" -c '
import json, sys
locs, seq = set(), []
for raw in open(sys.argv[1]):
    e = json.loads(raw)
    locs.add(e["location"])
    assert e["revision"]["id"] == e["id"] and e["revision"]["state"] == e["state"], e
    if e["id"] == sys.argv[2]:
        seq.append("%s>%s" % (e["previous"], e["state"]))
print(",".join(sorted(locs)), " ".join(seq))' "$TEST_TMP/one.jsonl" "$id") || fail "bad --json events output"
assert_eq "analytics None>pending pending>fetching fetching>extracting extracting>starting starting>loading loading>ready ready>stopping stopping>stopped" \
    "$summary" "--json events analytics: locations seen and the sequence of $id"

kill -TERM "$all_pid" "$one_pid"
for p in "$all_pid" "$one_pid"; do
    wait_bg "$p"
    assert_eq 0 "$BG_RC" "hearthctl events exit code on SIGTERM"
done

# ---- logs -f
deploy_ready follow --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --env SAMPLE_INTERVAL=0.2
wait_log_line follow "" "stdout [0003] hello, hearth"
start_bg "$HEARTHCTL" --socket "$HEARTH_SOCKET" logs follow -f --tail 2 >"$TEST_TMP/follow.txt" 2>"$TEST_TMP/follow.err"
f_pid=$BG_PID
start_bg "$HEARTHCTL" --socket "$HEARTH_SOCKET" --json logs follow -f --tail 0 >"$TEST_TMP/follow.jsonl" 2>"$TEST_TMP/follow.err2"
fj_pid=$BG_PID
# The history first: exactly two lines, then more as they are written.
wait_until 10 "the logs -f history" file_lines_ge "$TEST_TMP/follow.txt" 2
first=$(head -n 1 "$TEST_TMP/follow.txt")
assert_match "$first" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z stdout \[[0-9]{4}\] hello, hearth$' "first line of logs -f"
n0=$(sed -E 's/.*\[0*([0-9]+)\] hello, hearth$/\1/' <<<"$first")
want=$((n0 + 6))
wait_until 20 "logs -f to print tick $want" grep -q "stdout \[$(printf '%04d' "$want")\] hello, hearth\$" "$TEST_TMP/follow.txt"
proc_running "$f_pid" || fail "hearthctl logs -f exited"
# No line twice, none skipped, in order.
ticks=$(sed -nE 's/.* stdout \[0*([0-9]+)\] hello, hearth$/\1/p' "$TEST_TMP/follow.txt" | head -n 7 | tr '\n' ' ')
assert_eq "$(seq "$n0" $((n0 + 6)) | tr '\n' ' ')" "$ticks" "ticks printed by logs -f"
# --json -f --tail 0: only new lines, as objects.
wait_until 10 "a line from --json logs -f" test -s "$TEST_TMP/follow.jsonl"
line=$(head -n 1 "$TEST_TMP/follow.jsonl")
assert_eq "follow follow-1 stdout" "$(jget "$line" "' '.join([j['location'], j['id'], j['stream']])")" "--json logs -f line"
assert_match "$(jget "$line" "j['text']")" '^\[[0-9]{4}\] hello, hearth$' "--json logs -f text"
kill -TERM "$f_pid"
wait_bg "$f_pid"
assert_eq 0 "$BG_RC" "hearthctl logs -f exit code on SIGTERM"

# hearth going away ends a follower with exit 3.
finish_deploy_hearth
wait_bg "$fj_pid"
assert_eq 3 "$BG_RC" "hearthctl --json logs -f exit code when hearth exits"

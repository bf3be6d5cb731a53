#!/bin/bash
# Progress of a slow download (the server sends ~1 MB at 400 kB/s): while the
# revision is fetching, status shows deps.fetched_bytes growing (at least two
# different values strictly between 0 and the size, never decreasing) and
# deps.total_bytes = the Content-Length; afterwards both equal the size.
# Progress events arrive (type "progress", artifact "deps", state
# "fetching", total_bytes), at most 4 per second; state events have type
# "state". Without a Content-Length, total_bytes is null until the end.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

start_httpd
start_deploy_hearth
SIZE=1000000
make_fat_deps "$FIX/deps.pex" "$SIZE"
make_ticker "$FIX/app.pex" slow
serve deps.pex "$FIX/deps.pex"
deps_sha=$(sha256_of "$FIX/deps.pex")
size=$(stat -c %s "$FIX/deps.pex")
httpd_config '{"/deps.pex": {"rate": 400000}}'
start_event_recorder "$TEST_TMP/events.jsonl" slow

t0=$(now_ms)
run_ctl deploy slow --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" --source "$FIX/app.pex" --min-uptime 0.2
assert_eq 0 "$RUN_RC" "hearthctl deploy exit code ($RUN_ERR)"
id=$RUN_OUT
samples=()
deadline=$(($(now_ms) + 30000))
while [ "$(now_ms)" -lt "$deadline" ]; do
    line=$(rev_get slow "$id" "'%s %s %s' % (r['state'], r['deps'].get('fetched_bytes'), r['deps'].get('total_bytes'))")
    read -r state fetched total <<<"$line"
    case $state in
    pending) ;;
    fetching)
        samples+=("$fetched")
        if [ "$fetched" != None ] && [ "$fetched" != 0 ]; then
            assert_eq "$size" "$total" "deps.total_bytes while fetching (fetched $fetched)"
        fi
        ;;
    *) break ;;
    esac
    sleep 0.1
done
fetch_ms=$(($(now_ms) - t0))
note "fetching samples: ${samples[*]}"
inside=$(printf '%s\n' "${samples[@]}" | awk -v s="$size" '$1 ~ /^[0-9]+$/ && $1 > 0 && $1 < s' | sort -un | wc -l)
assert_ge "$inside" 2 "distinct fetched_bytes values strictly between 0 and $size seen while fetching"
prev=0
for v in "${samples[@]}"; do
    [[ $v =~ ^[0-9]+$ ]] || continue
    assert_ge "$v" "$prev" "fetched_bytes over time (${samples[*]})"
    prev=$v
done
wait_rev_state slow "$id" ready 30
assert_eq "$size $size" "$(rev_get slow "$id" "'%s %s' % (r['deps'].get('fetched_bytes'), r['deps'].get('total_bytes'))")" \
    "deps fetched_bytes and total_bytes after the fetch"

# The events.
summary=$("$PYTHON" - "$TEST_TMP/events.jsonl" "$id" "$size" <<'PY'
import json, sys
path, rid, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
prog, states, bad = [], 0, []
for raw in open(path):
    e = json.loads(raw)
    if e.get("id") != rid:
        continue
    if e.get("type") == "progress":
        prog.append(e)
        if e.get("artifact") not in ("deps", "source"):
            bad.append("artifact %r" % e.get("artifact"))
        if e.get("state") != "fetching":
            bad.append("state %r" % e.get("state"))
        if e.get("artifact") == "deps" and e.get("total_bytes") != size:
            bad.append("total_bytes %r" % e.get("total_bytes"))
        fb = e.get("fetched_bytes")
        if not isinstance(fb, int) or fb < 0 or fb > size:
            bad.append("fetched_bytes %r" % fb)
    elif e.get("type") == "state":
        states += 1
    else:
        bad.append("event without a known type: %r" % e)
deps = [e["fetched_bytes"] for e in prog if e.get("artifact") == "deps"]
print(len(deps), states, int(deps == sorted(deps)), "; ".join(bad[:5]))
PY
)
read -r n_prog n_state ordered bad <<<"$summary"
note "progress events: $n_prog in ${fetch_ms} ms; state events: $n_state"
assert_ge "$n_prog" 1 "progress events of deps"
assert_ge "$n_state" 4 "state events (pending, fetching, extracting, ... ready)"
assert_eq 1 "$ordered" "progress events' fetched_bytes in increasing order"
assert_eq "" "$bad" "malformed progress events"
# At most 4 per second (plus one for the partial second at each end).
assert_lt "$n_prog" $((fetch_ms * 4 / 1000 + 3)) "progress events in ${fetch_ms} ms"

# No Content-Length: total_bytes is null while fetching.
make_fat_deps "$FIX/deps2.pex" 400000 2
serve deps2.pex "$FIX/deps2.pex"
: >"$TEST_TMP/events.jsonl"
httpd_config '{"/deps2.pex": {"rate": 400000, "length": "none"}}'
deploy_ready slow --deps "$HTTPD_URL/deps2.pex" --deps-sha256 "$(sha256_of "$FIX/deps2.pex")" --source "$FIX/app.pex"
# Before the body is complete the total is unknown (null); a final event
# may report the total once the end is seen.
totals=$("$PYTHON" - "$TEST_TMP/events.jsonl" "$(stat -c %s "$FIX/deps2.pex")" <<'PY'
import json, sys
size = int(sys.argv[2])
ev = [json.loads(l) for l in open(sys.argv[1])]
ev = [e for e in ev if e.get("type") == "progress" and e.get("artifact") == "deps"]
print(" ".join(sorted({json.dumps(e.get("total_bytes")) for e in ev if e.get("fetched_bytes", 0) < size})))
PY
)
assert_eq null "$totals" "total_bytes of the progress events without a Content-Length (before the end)"

finish_deploy_hearth

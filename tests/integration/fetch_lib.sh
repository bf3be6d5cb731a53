# shellcheck shell=bash
# shellcheck disable=SC2034 # the globals set here are read by the tests
# Helpers for the store/fetch integration tests (fetch_*.sh, store_*.sh).
# Source this instead of deploy_lib.sh:
#
#     . "$(dirname "$0")/fetch_lib.sh"
#
# It sources deploy_lib.sh (and so lib.sh: see there for the conventions)
# and adds a loopback HTTP server (tests/fixtures/httpd.py) serving
# $HTTPD_ROOT, its access log, and fixtures of chosen sizes.

# shellcheck source=deploy_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/deploy_lib.sh"

HTTPD_PY=${HEARTH_SOURCE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/fixtures/httpd.py
[ -f "$HTTPD_PY" ] || fail "fixture server $HTTPD_PY is missing"

HTTPD_ROOT=$TEST_TMP/www       # what the server serves
HTTPD_LOG=$TEST_TMP/access.log # METHOD PATH STATUS BYTES per request
HTTPD_CONFIG=$TEST_TMP/httpd.json
mkdir -p "$HTTPD_ROOT"
printf '{}\n' >"$HTTPD_CONFIG"

# start_httpd: starts the server in the background (tracked, so the exit
# trap kills it by pid) and waits for its port; sets HTTPD_PID, HTTPD_PORT
# and HTTPD_URL (http://127.0.0.1:PORT, no trailing slash).
start_httpd() {
    rm -f "$TEST_TMP/httpd.port"
    start_bg "$PYTHON" "$HTTPD_PY" --root "$HTTPD_ROOT" --port-file "$TEST_TMP/httpd.port" \
        --log "$HTTPD_LOG" --config "$HTTPD_CONFIG"
    HTTPD_PID=$BG_PID
    wait_until 10 "the test HTTP server's port file" test -s "$TEST_TMP/httpd.port"
    HTTPD_PORT=$(cat "$TEST_TMP/httpd.port")
    HTTPD_URL=http://127.0.0.1:$HTTPD_PORT
}

# httpd_config JSON: replaces the server's switch file (read per request).
httpd_config() { printf '%s\n' "$1" >"$HTTPD_CONFIG"; }

# serve NAME FILE: copies FILE to $HTTPD_ROOT/NAME; prints nothing.
serve() {
    mkdir -p "$(dirname "$HTTPD_ROOT/$1")"
    cp "$2" "$HTTPD_ROOT/$1"
}

# requests [METHOD] PATH-PREFIX: how many access-log lines are requests of
# METHOD (default GET) for a target starting with PATH-PREFIX.
requests() {
    local method=GET
    if [ $# -ge 2 ]; then method=$1; shift; fi
    awk -v m="$method" -v p="$1" '$1 == m && index($2, p) == 1 { n++ } END { print n + 0 }' "$HTTPD_LOG"
}

# access_lines PATH-PREFIX: "STATUS BYTES" of each request for PATH-PREFIX, in order.
access_lines() {
    awk -v p="$1" 'index($2, p) == 1 { print $3, $4 }' "$HTTPD_LOG"
}

requests_ge() { [ "$(requests "$1")" -ge "$2" ]; } # PATH-PREFIX N

# rev_field_is LOCATION ID EXPR VALUE: whether rev_get's EXPR is VALUE now.
rev_field_is() { [ "$(rev_get "$1" "$2" "$3")" = "$4" ]; }

# make_random_file OUT BYTES [SEED]: incompressible bytes (deterministic per seed).
make_random_file() {
    "$PYTHON" -c '
import random, sys
r = random.Random(int(sys.argv[3]))
open(sys.argv[1], "wb").write(r.getrandbits(8 * int(sys.argv[2])).to_bytes(int(sys.argv[2]), "little"))' \
        "$1" "$2" "${3:-1}" || fail "make_random_file $1 failed"
}

# make_fat_deps OUT BYTES [SEED]: a deps pex with the sample's `greet`
# module (so make_ticker sources run on it) plus BYTES of incompressible data
# in greet/blob.bin: its blob and its tree each take about BYTES in the store.
make_fat_deps() {
    local out=$1 bytes=$2 seed=${3:-1}
    local dir
    dir=$FIX/fat-$(basename "$out" .pex)
    rm -rf "$dir"
    write_file "$dir/greet/__init__.py" "def hello(name):
    return 'hello, %s' % name"
    make_random_file "$dir/greet/blob.bin" "$bytes" "$seed"
    make_deps "$out" --dist "hearth-sample-greet==1.0:$dir"
}

# cache_json: sets CACHE to the cache.list result (through hearthctl).
cache_json() {
    ctl_ok cache ls
    CACHE=$RUN_OUT
}

# cache_has KIND HEX: whether cache.list lists that object (fresh listing).
cache_has() {
    cache_json
    [ "$(jget "$CACHE" "any(e['kind'] == '$1' and e['sha256'] == '$2' for e in j['entries'])")" = true ]
}

# tmp_entries [STATE_DIR]: the entries left in the store's tmp/ (one per line).
tmp_entries() {
    find "${1:-$HEARTH_STATE_DIR}/tmp" -mindepth 1 -maxdepth 1 2>/dev/null || true
}

tmp_empty() { [ -z "$(tmp_entries "$@")" ]; } # [STATE_DIR]

# no_secret_in WHAT TEXT SECRET: fails if TEXT contains SECRET, naming WHAT.
no_secret_in() {
    case "$2" in
    *"$3"*) fail "$1 contains the URL's secret '$3': $(printf '%q' "$2" | head -c 2000)" ;;
    esac
}

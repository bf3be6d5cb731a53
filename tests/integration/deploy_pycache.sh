#!/bin/bash
# Bytecode cache: the store's trees are read-only, so after a start the .pyc
# files of the sample's modules (user code and every deps distribution) are
# under <state>/pycache (PYTHONPYCACHEPREFIX), none in the trees, and the
# published blobs and trees still have no write bits. A second revision of
# the same trees reuses those .pyc files instead of writing new ones.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

# Even when hearth itself runs with PYTHONDONTWRITEBYTECODE=1.
HEARTH_WRAP=(env PYTHONDONTWRITEBYTECODE=1)
start_deploy_hearth
make_sample
deps_tree=$HEARTH_STATE_DIR/trees/sha256/$(sha256_of "$SAMPLE_DEPS")
source_tree=$HEARTH_STATE_DIR/trees/sha256/$(sha256_of "$SAMPLE_SOURCE")
cache=$HEARTH_STATE_DIR/pycache

deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"
# The app has imported everything once it prints its first tick.
wait_log_line analytics "" "stdout [0001] hello, hearth"

tag=$("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)')
pycs=(
    "$source_tree/app/__init__.$tag.pyc"
    "$source_tree/app/main.$tag.pyc"
    "$deps_tree/.deps/hearth_sample_greet-1.0-py3-none-any.whl/greet/__init__.$tag.pyc"
    "$deps_tree/.deps/hearth_sample_counter-0.3-py3-none-any.whl/counter/__init__.$tag.pyc"
    "$deps_tree/.deps/hearth_sample_fmt-2.1-py3-none-any.whl/samplefmt.$tag.pyc"
)
for p in "${pycs[@]}"; do
    # PYTHONPYCACHEPREFIX mirrors the source's absolute path under the prefix.
    [ -s "$cache$p" ] || fail "no bytecode $cache$p; cache holds: $(find "$cache" -name '*.pyc' | grep -F "$HEARTH_STATE_DIR/trees" | head -20)"
done
declare -A mtime
for p in "${pycs[@]}"; do mtime[$p]=$(stat -c %Y.%y "$cache$p"); done

# Nothing was written into the trees, and nothing there became writable.
found=$(find "$HEARTH_STATE_DIR/trees" -name __pycache__ -o -name '*.pyc')
assert_eq "" "$found" "bytecode inside the store's trees"
found=$(find "$HEARTH_STATE_DIR/trees" -mindepth 2 -perm /222)
assert_eq "" "$found" "writable files or dirs in the store's trees"
found=$(find "$HEARTH_STATE_DIR/blobs" -type f -perm /222)
assert_eq "" "$found" "writable blobs"
for t in "$deps_tree" "$source_tree"; do
    [ -d "$t" ] || fail "tree $t missing"
    assert_eq 555 "$(stat -c %a "$t")" "mode of $t"
done

# A second revision of the same location and trees: the cache is reused
# (same files, not rewritten).
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"
assert_eq analytics-2 "$DEPLOY_ID" "second revision id"
wait_log_line analytics analytics-2 "stdout [0001] hello, hearth"
for p in "${pycs[@]}"; do
    assert_eq "${mtime[$p]}" "$(stat -c %Y.%y "$cache$p")" "mtime of $cache$p after a second start"
done

finish_deploy_hearth

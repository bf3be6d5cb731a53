#!/bin/bash
# Command line: --help and --version print and exit 0 (nothing on stderr); bad
# usage prints exactly one line on stderr, nothing on stdout, and exits 2,
# without starting anything.
. "$(dirname "$0")/lib.sh"

for opt in --help -h; do
    run_cmd "$HEARTH" "$opt"
    assert_eq 0 "$RUN_RC" "exit code of $opt"
    assert_contains "$RUN_OUT" "Usage: hearth" "$opt output"
    for o in --state-dir --run-dir --grace --log-level --log-format --python --help --version; do
        assert_contains "$RUN_OUT" "$o" "$opt output"
    done
    assert_eq "" "$RUN_ERR" "stderr of $opt"
done

for opt in --version -V; do
    run_cmd "$HEARTH" "$opt"
    assert_eq 0 "$RUN_RC" "exit code of $opt"
    assert_match "$RUN_OUT" '^hearth [0-9a-zA-Z][^ ]*$' "$opt output"
    assert_eq "" "$RUN_ERR" "stderr of $opt"
done

# Options take `--opt value` and `--opt=value`; a good command line runs.
run_cmd "$HEARTH" --grace=0.5 --log-level=error --log-format json \
    --state-dir "$HEARTH_STATE_DIR" --run-dir="$HEARTH_RUN_DIR" -- /bin/sh -c 'echo ran; exit 4'
assert_eq 4 "$RUN_RC" "exit code with valid options"
assert_eq ran "$RUN_OUT" "main command's output"

marker=$TEST_TMP/must-not-run
bad() { # WHAT ARGS...: hearth ARGS must be a usage error
    local what=$1
    shift
    run_cmd "$HEARTH" "$@" -- /bin/sh -c "touch $marker"
    assert_eq 2 "$RUN_RC" "exit code for $what"
    assert_eq "" "$RUN_OUT" "stdout for $what"
    assert_lines "$RUN_ERR" 1 "stderr for $what"
    [ ! -e "$marker" ] || fail "main command ran despite $what"
}

bad "an unknown long option" --bogus
bad "an unknown short option" -x
bad "--grace without a value" --grace
bad "a non-numeric --grace" --grace soon
bad "a negative --grace" --grace -1
bad "--log-format xml" --log-format xml
bad "an unknown --log-level" --log-level loud
bad "a relative --state-dir" --state-dir relative/dir
bad "a value for --help" --help=yes

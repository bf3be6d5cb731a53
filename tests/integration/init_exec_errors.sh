#!/bin/bash
# A main command that cannot be started: 127 when it does not exist, 126 when
# it exists but cannot be executed; one line on stderr names the command and
# the reason, and nothing reaches stdout.
. "$(dirname "$0")/lib.sh"
need_root
need_pidns

mkdir "$TEST_TMP/bin"
printf '#!/bin/sh\necho should-not-run\n' >"$TEST_TMP/bin/noexec"
chmod 644 "$TEST_TMP/bin/noexec"
printf '\177ELF garbage, not a program\n' >"$TEST_TMP/bin/badformat"
chmod 755 "$TEST_TMP/bin/badformat"
mkdir "$TEST_TMP/bin/adir"

check() { # MODE EXPECTED_CODE REASON_REGEX CMD...
    local mode=$1 expected=$2 reason=$3
    shift 3
    local -a cmd
    mapfile -d '' cmd < <(hearth_args --grace 5 -- "$@")
    [ "$mode" = pid1 ] && cmd=(unshare --pid --fork --mount-proc -- "${cmd[@]}")
    # PATH also holds our bin dir, so that a bare name is looked up there too.
    run_cmd --timeout 30 env PATH="$TEST_TMP/bin:$PATH" "${cmd[@]}"
    assert_eq "$expected" "$RUN_RC" "$mode: exit code for '$*'"
    assert_eq "" "$RUN_OUT" "$mode: stdout for '$*'"
    local lines
    lines=$(printf '%s\n' "$RUN_ERR" | grep -F -- "$1" || true)
    assert_lines "$lines" 1 "$mode: stderr lines naming '$1'"
    assert_match "$lines" "$reason" "$mode: reason for '$*'"
}

for mode in pid1 subreaper; do
    check "$mode" 127 "No such file or directory" /nonexistent/dir/cmd arg
    check "$mode" 127 "No such file or directory" hearth-test-no-such-command-xyz
    check "$mode" 127 "Not a directory|No such file" "$TEST_TMP/bin/noexec/sub"
    check "$mode" 126 "Permission denied" "$TEST_TMP/bin/noexec"
    check "$mode" 126 "Permission denied" noexec
    check "$mode" 126 "Permission denied|Is a directory" "$TEST_TMP/bin/adir"
    check "$mode" 126 "Exec format error" "$TEST_TMP/bin/badformat"
done

# With only errors logged, the reason is the whole of stderr: exactly one line.
mapfile -d '' cmd < <(hearth_args --log-level error -- /nonexistent/cmd)
run_cmd --timeout 30 "${cmd[@]}"
assert_eq 127 "$RUN_RC" "exit code with --log-level error"
assert_lines "$RUN_ERR" 1 "stderr with --log-level error"
assert_contains "$RUN_ERR" "/nonexistent/cmd" "stderr with --log-level error"

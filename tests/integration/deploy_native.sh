#!/bin/bash
# deploy -> ready with the native runtime: status shows the state, a pid that
# is the running interpreter, the python, the command line with the entry
# module (also in /proc/PID/cmdline), digests, sizes and timings; the logs
# hold the sample app's stdout and stderr lines; hearth's own stdout carries
# them with a "[location] " prefix. An entry override (--module/--arg) runs
# that module with exactly those arguments.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample

run_ctl deploy analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --min-uptime 0.2 --wait
assert_eq 0 "$RUN_RC" "hearthctl deploy --wait exit code ($RUN_ERR)"
assert_contains "$RUN_OUT" "analytics analytics-1 loading -> ready" "deploy --wait output"

status_of analytics
rev=$(jget "$STATUS" "j['locations'][0]['revisions'][0]")
assert_eq analytics-1 "$(jget "$STATUS" "j['locations'][0]['active']")" "active revision"
assert_eq analytics-1 "$(jget "$rev" "j['id']")" "revision id"
assert_eq 1 "$(jget "$rev" "j['number']")" "revision number"
assert_eq ready "$(jget "$rev" "j['state']")" "state"
assert_eq native "$(jget "$rev" "j['runtime']")" "runtime"
assert_eq "$PYTHON" "$(jget "$rev" "j['python']")" "python"
assert_match "$(jget "$rev" "j['created_at']")" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' "created_at"
assert_eq "$(sha256_of "$SAMPLE_DEPS") $(stat -c %s "$SAMPLE_DEPS") false" \
    "$(jget "$rev" "'%s %d %s' % (j['deps']['sha256'], j['deps']['bytes'], json.dumps(j['deps']['cache_hit']))")" "deps artifact"
assert_eq "$(sha256_of "$SAMPLE_SOURCE") $(stat -c %s "$SAMPLE_SOURCE") false" \
    "$(jget "$rev" "'%s %d %s' % (j['source']['sha256'], j['source']['bytes'], json.dumps(j['source']['cache_hit']))")" "source artifact"
assert_eq "extracting fetching loading starting" \
    "$(jget "$rev" "' '.join(sorted(k for k in j['timings_ms'] if k != 'pending'))")" "timings_ms phases"
assert_eq "null null" "$(jget "$rev" "'%s %s' % (json.dumps(j.get('reason')), json.dumps(j.get('exit_code')))")" \
    "reason and exit_code of a ready revision"

# The command: PYTHON -s .../hearth_boot.py -m app.main.
command=$(jget "$rev" "' '.join(j['command'])")
assert_match "$command" "^$PYTHON -s [^ ]*/hearth_boot\.py -m app\.main\$" "command"

nspid=$(jget "$rev" "j['pid']")
assert_match "$nspid" '^[0-9]+$' "pid"
assert_ne 1 "$nspid" "pid (1 is hearth)"
hpid=$(host_pid "$nspid")
[ -n "$hpid" ] || fail "no process with pid $nspid in hearth's PID namespace"
proc_running "$hpid" || fail "revision process $nspid is not running"
assert_eq "$HEARTH_PID" "$(proc_ppid "$hpid")" "parent of the revision process"
assert_eq "$(readlink -f "$PYTHON")" "$(proc_exe "$hpid")" "executable of the revision process"
assert_contains "$(cmdline_of "$hpid")" "-m app.main" "/proc/$hpid/cmdline"
# Its own session and process group.
assert_eq "$hpid" "$(proc_session "$hpid")" "session of the revision process"
environ_has "$hpid" HEARTH_LOCATION=analytics || fail "HEARTH_LOCATION not in the process environment"
environ_has "$hpid" HEARTH_REVISION=analytics-1 || fail "HEARTH_REVISION not in the process environment"

# Logs: stdout and stderr, told apart. The app prints its own pid, which is
# the one status reports (both as seen inside the namespace).
wait_log_line analytics "" "stdout [0001] hello, hearth"
logs=$(logs_text analytics)
assert_contains "$logs" "stdout sample app started: hello, hearth argv=[]" "logs"
assert_contains "$logs" "stderr sample app stderr: pid $nspid" "logs"
ctl_ok logs analytics --tail 1
assert_eq "1 analytics-1 0" "$(jget "$RUN_OUT" "'%d %s %d' % (len(j['lines']), j['id'], j['dropped'])")" "logs --tail 1"

# hearth's stdout: the same lines, prefixed with the location.
wait_until 10 "prefixed lines on hearth's stdout" \
    file_has_line "$HEARTH_STDOUT" "[analytics] sample app started: hello, hearth argv=[]"
wait_until 10 "the app's stderr line, prefixed, on hearth's stdout" \
    file_has_line "$HEARTH_STDOUT" "[analytics] sample app stderr: pid $nspid"
wait_until 10 "'[analytics] [0001] hello, hearth' on hearth's stdout" \
    file_has_line "$HEARTH_STDOUT" "[analytics] [0001] hello, hearth"

# Entry override: another module of the same trees, exactly these arguments
# (one starting with a dash), PEX-INFO's entry point not used.
deploy_ready other --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE" --module app.main --arg --x --arg 'two words'
assert_match "$(jget "$DEPLOY_REV" "' '.join(j['command'])")" "-m app\.main --x two words\$" "command with --module/--arg"
assert_eq "true true" "$(jget "$DEPLOY_REV" "'%s %s' % (json.dumps(j['deps']['cache_hit']), json.dumps(j['source']['cache_hit']))")" \
    "cache hits of a second location with the same files"
wait_log_line other "" "stdout sample app started: hello, hearth argv=['--x', 'two words']"

# Both run side by side; the first is untouched.
assert_eq ready "$(rev_get analytics analytics-1 "r['state']")" "analytics-1 after deploying another location"
proc_running "$hpid" || fail "analytics-1's process died when another location was deployed"
finish_deploy_hearth

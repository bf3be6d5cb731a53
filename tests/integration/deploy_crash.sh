#!/bin/bash
# Crashing user code: the revision fails with reason exited, its exit code
# (or the signal that killed it) and its last stderr lines in stderr_tail;
# `hearthctl deploy --wait` exits 1 and prints the reason, the exit code and
# the stderr tail. A long min-uptime makes sure the crash is seen while the
# revision is still loading; a crash after ready fails the revision too and
# clears `active`. Invalid UTF-8 output is replaced by U+FFFD.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
make_app "$FIX/crash.pex" main 'import os, signal, sys
print("starting up", flush=True)
print("crash-marker one", file=sys.stderr, flush=True)
print("crash-marker two", file=sys.stderr, flush=True)
mode = os.environ.get("CRASH", "raise")
if mode == "late":
    import time
    time.sleep(1.5)
    sys.exit(9)
if mode == "exit":
    sys.exit(3)
if mode == "signal":
    os.kill(os.getpid(), signal.SIGKILL)
raise ValueError("boom")'

# An uncaught exception: exit code 1, the traceback in the tail; the native
# bootstrap reported it, so the reason is load_error (health_load_error.sh
# checks the structure).
run_ctl deploy crash --deps "$SAMPLE_DEPS" --source "$FIX/crash.pex" --min-uptime 10 --restart never --wait
assert_eq 1 "$RUN_RC" "hearthctl deploy --wait exit code"
assert_contains "$RUN_ERR" "crash-1 failed: load_error" "hearthctl stderr"
assert_contains "$RUN_ERR" "exit code: 1" "hearthctl stderr"
assert_contains "$RUN_ERR" "ValueError: boom" "hearthctl stderr"
assert_contains "$RUN_ERR" "crash-marker two" "hearthctl stderr"
assert_contains "$RUN_OUT" "crash crash-1 loading -> failed load_error" "hearthctl stdout (events)"
r=$(rev_get crash crash-1 "r")
assert_eq "failed load_error 1" "$(jget "$r" "'%s %s %s' % (j['state'], j['reason'], j['exit_code'])")" "state reason exit_code"
assert_eq "null null" "$(jget "$r" "'%s %s' % (json.dumps(j.get('pid')), json.dumps(j.get('signal')))")" "pid and signal"
tail_json=$(jget "$r" "j['stderr_tail']")
assert_eq "ValueError: boom" "$(jget "$tail_json" "j[-1]")" "last line of stderr_tail"
assert_eq "crash-marker one" "$(jget "$tail_json" "j[0]")" "first line of stderr_tail"
assert_contains "$tail_json" "Traceback (most recent call last):" "stderr_tail"
# stdout lines are not in the stderr tail, but are in the logs.
assert_not_contains "$tail_json" "starting up" "stderr_tail"
assert_contains "$(logs_text crash)" "stdout starting up" "logs of the crashed revision"
assert_contains "$(jget "$r" "j['message']")" "1" "message (exit code)"
assert_eq null "$(active_of crash)" "active of a location whose only revision crashed"

# sys.exit(3): exit code 3, only the two marker lines.
deploy_failed crash --deps "$SAMPLE_DEPS" --source "$FIX/crash.pex" --min-uptime 10 --env CRASH=exit
assert_eq "exited 3" "$(jget "$DEPLOY_REV" "'%s %s' % (j['reason'], j['exit_code'])")" "reason and exit_code"
assert_eq '["crash-marker one","crash-marker two"]' "$(jget "$DEPLOY_REV" "j['stderr_tail']")" "stderr_tail"
assert_contains "$DEPLOY_ERR" "exit code: 3" "hearthctl stderr"
assert_contains "$DEPLOY_ERR" "crash-marker two" "hearthctl stderr"

# Killed by a signal: the signal's name, no exit code.
deploy_failed crash --deps "$SAMPLE_DEPS" --source "$FIX/crash.pex" --min-uptime 10 --env CRASH=signal
assert_eq "exited SIGKILL null" \
    "$(jget "$DEPLOY_REV" "'%s %s %s' % (j['reason'], j.get('signal'), json.dumps(j.get('exit_code')))")" \
    "reason, signal and exit_code"
assert_contains "$DEPLOY_ERR" "SIGKILL" "hearthctl stderr"

# A crash after the revision became ready is seen at once too: it fails
# (reason exited) and is no longer active.
deploy_ready late --deps "$SAMPLE_DEPS" --source "$FIX/crash.pex" --env CRASH=late --min-uptime 0.2 --restart never
assert_eq late-1 "$(active_of late)" "active before the late crash"
wait_rev_state late late-1 failed 10
assert_eq "exited 9" "$(rev_get late late-1 "'%s %s' % (r['reason'], r['exit_code'])")" "late crash"
assert_eq null "$(active_of late)" "active after the late crash"

# Invalid UTF-8 is replaced (U+FFFD) in logs and the tail, and a last line
# without its newline still counts.
make_app "$FIX/bytes.pex" main 'import sys
sys.stdout.buffer.write(b"bad \xff\xfe bytes\ncaf\xc3\xa9 ok\n")
sys.stdout.flush()
sys.stderr.buffer.write(b"last \xff words")
sys.stderr.flush()
sys.exit(4)'
deploy_failed bytes --deps "$SAMPLE_DEPS" --source "$FIX/bytes.pex" --min-uptime 10
assert_eq '["last \ufffd words"]' "$(jget "$DEPLOY_REV" "json.dumps(j['stderr_tail'])")" "stderr_tail with invalid UTF-8"
assert_eq 4 "$(jget "$DEPLOY_REV" "j['exit_code']")" "exit code"
ctl_ok logs bytes
assert_eq '["bad \ufffd\ufffd bytes", "caf\u00e9 ok", "last \ufffd words"]' \
    "$(jget "$RUN_OUT" "json.dumps([l['text'] for l in j['lines']])")" "logs with invalid UTF-8"

# The human-readable status shows the reason.
run_ctl status crash
assert_eq 0 "$RUN_RC" "hearthctl status exit code"
assert_match "$RUN_OUT" $'\n''crash +crash-3 +failed +- +- +native +[a-z/-]+ +[^ ]+ +0 +exited' "status table"

finish_deploy_hearth

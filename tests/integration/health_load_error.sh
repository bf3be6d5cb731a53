#!/bin/bash
# Structured load errors (issue 13): user code that raises while it is
# imported fails the revision with reason load_error and the exception as
# `error` {type, message, frames, cause}, from the bootstrap's
# load_error.json (any revision) or its HEARTH_LOAD_ERROR notify message (a
# revision with notify readiness); exit code and stderr tail stay.
# `hearthctl status` prints it like Python prints a traceback. A crash with
# no report (sys.exit) stays `exited`.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
make_app "$FIX/bad.pex" main 'import json, os, sys
def parse_config():
    return json.loads("{not json")
def load():
    try:
        return parse_config()
    except ValueError as e:
        raise RuntimeError("cannot load the definitions") from e
if os.environ.get("EXIT"):
    sys.exit(4)
load()'

check_load_error() { # LOCATION ID
    local r
    r=$(rev_get "$1" "$2" "r")
    assert_eq "failed load_error 1" "$(jget "$r" "'%s %s %s' % (j['state'], j['reason'], j['exit_code'])")" "state reason exit_code"
    assert_eq "RuntimeError" "$(jget "$r" "j['error']['type']")" "error.type"
    assert_eq "cannot load the definitions" "$(jget "$r" "j['error']['message']")" "error.message"
    assert_eq "json.decoder.JSONDecodeError" "$(jget "$r" "j['error']['cause']['type']")" "error.cause.type"
    assert_eq "true" "$(jget "$r" "any(f['function'] == 'load' and f['file'].endswith('main.py') and f['line'] > 0 for f in j['error']['frames'])")" "a frame of load() in main.py"
    assert_eq "true" "$(jget "$r" "any(f['function'] == 'parse_config' for f in j['error']['cause']['frames'])")" "the cause's frames"
    assert_contains "$(jget "$r" "j['stderr_tail']")" "Traceback (most recent call last):" "stderr_tail"
    assert_eq "failed exited 1" "$(jget "$r" "'%s %s %s' % (j['readiness']['state'], j['process']['state'], j['process']['exit_code'])")" "readiness and process objects"
    run_ctl status "$1"
    assert_eq 0 "$RUN_RC" "hearthctl status exit code"
    assert_contains "$RUN_OUT" "Traceback (most recent call last):" "hearthctl status"
    assert_contains "$RUN_OUT" "in parse_config" "hearthctl status"
    assert_contains "$RUN_OUT" "json.decoder.JSONDecodeError: " "hearthctl status"
    assert_contains "$RUN_OUT" "RuntimeError: cannot load the definitions" "hearthctl status"
}

# From load_error.json (no readiness configured).
deploy_failed bad --deps "$SAMPLE_DEPS" --source "$FIX/bad.pex" --min-uptime 10
assert_contains "$DEPLOY_ERR" "load_error" "hearthctl deploy --wait stderr"
check_load_error bad "$DEPLOY_ID"

# From the notify socket.
printf '%s\n' '{"readiness": {"notify": {}, "timeout_s": 30}}' >"$FIX/notify.json"
deploy_failed badn --deps "$SAMPLE_DEPS" --source "$FIX/bad.pex" --params "$FIX/notify.json"
check_load_error badn "$DEPLOY_ID"

# No report: exited.
deploy_failed bad --deps "$SAMPLE_DEPS" --source "$FIX/bad.pex" --min-uptime 10 --env EXIT=1
assert_eq "exited 4 False" "$(jget "$DEPLOY_REV" "'%s %s %s' % (j['reason'], j['exit_code'], 'error' in j)")" "reason without a report"

finish_deploy_hearth

#!/bin/bash
# Readiness (issue 13): each revision's endpoint (PORT, HEARTH_RUNTIME_DIR)
# and the readiness kinds. notify: READY=1 makes a revision ready, STATUS=
# is its progress and EXTEND_TIMEOUT_USEC= pushes a short deadline out; a
# datagram from outside the revision is refused; a missed deadline fails it
# `readiness_timeout` with a message naming the budget, the setting, the
# last progress and the stderr tail, and its process is gone. tcp and http
# with port "auto" probe the revision's own PORT, which differs between two
# revisions of a location during a redeploy. exec runs in the revision's
# environment.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample

make_app "$FIX/notify.pex" main 'import os, socket, sys, time
def send(text):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(os.environ["NOTIFY_SOCKET"])
    s.send(text.encode())
    s.close()
print("endpoint port=%s dir=%s" % (os.environ.get("PORT"), os.environ.get("HEARTH_RUNTIME_DIR")), flush=True)
mode = os.environ.get("MODE", "ready")
if mode == "ready":
    time.sleep(0.3)
    send("STATUS=warming up")
    send("READY=1")
elif mode == "extend":
    send("STATUS=loading the models\nEXTEND_TIMEOUT_USEC=8000000")
    time.sleep(3)
    send("READY=1")
elif mode == "stuck":
    send("STATUS=stuck at step 3")
    print("stuck-marker on stderr", file=sys.stderr, flush=True)
while True:
    time.sleep(1)'

params() { # FILE JSON
    printf '%s\n' "$2" >"$1"
}

# ---- notify READY=1
params "$FIX/notify.json" '{"readiness": {"notify": {}, "timeout_s": 20}}'
deploy_ready nready --deps "$SAMPLE_DEPS" --source "$FIX/notify.pex" --params "$FIX/notify.json"
r=$(rev_get nready "$DEPLOY_ID" "r")
assert_eq "ready notify warming up" "$(jget "$r" "'%s %s %s' % (j['readiness']['state'], j['readiness']['kind'], j['readiness']['progress'])")" "readiness object"
assert_eq running "$(jget "$r" "j['process']['state']")" "process state"
port=$(jget "$r" "j['endpoint']['port']")
dir=$(jget "$r" "j['endpoint']['runtime_dir']")
assert_match "$port" '^2[0-9]{4}$' "endpoint port in the default range"
wait_log_line nready "$DEPLOY_ID" "stdout endpoint port=$port dir=$dir"
[ -S "$dir/notify" ] || fail "no notify socket at $dir/notify"
assert_eq 700 "$(stat -c %a "$dir")" "runtime directory mode"
ctl_ok stop nready
wait_until 10 "runtime directory removed" test ! -e "$dir"

# ---- STATUS + EXTEND_TIMEOUT_USEC: ready after 3 s with a 1.5 s budget
params "$FIX/extend.json" '{"readiness": {"notify": {}, "timeout_s": 1.5}}'
deploy_ready nextend --deps "$SAMPLE_DEPS" --source "$FIX/notify.pex" --params "$FIX/extend.json" --env MODE=extend
assert_eq "loading the models" "$(rev_get nextend "$DEPLOY_ID" "r['readiness']['progress']")" "progress text"
ctl_ok stop nextend

# ---- readiness_timeout: the message names budget, setting, progress, stderr
params "$FIX/stuck.json" '{"readiness": {"notify": {}, "timeout_s": 1.5}}'
deploy_failed nstuck --deps "$SAMPLE_DEPS" --source "$FIX/notify.pex" --params "$FIX/stuck.json" --env MODE=stuck
assert_eq readiness_timeout "$(jget "$DEPLOY_REV" "j['reason']")" "reason"
msg=$(jget "$DEPLOY_REV" "j['message']")
assert_contains "$msg" "budget of 1.5 s" "timeout message (budget)"
assert_contains "$msg" "readiness.timeout_s" "timeout message (setting)"
assert_contains "$msg" "stuck at step 3" "timeout message (progress)"
assert_contains "$msg" "stuck-marker on stderr" "timeout message (stderr tail)"
assert_match "$msg" '\(1\.[5-9] s|\([2-9]\.[0-9] s' "timeout message (elapsed)"
r=$(rev_get nstuck "$DEPLOY_ID" "r")
assert_eq "failed exited" "$(jget "$r" "'%s %s' % (j['readiness']['state'], j['process']['state'])")" "readiness and process after the timeout"

# ---- a spoofed sender is refused
params "$FIX/spoof.json" '{"readiness": {"notify": {}, "timeout_s": 4}}'
ctl_ok deploy nspoof --deps "$SAMPLE_DEPS" --source "$FIX/notify.pex" --params "$FIX/spoof.json" --env MODE=stuck
spoof_id=$(jget "$RUN_OUT" "j['id']")
wait_until 20 "the spoof target to load" rev_in_state nspoof "$spoof_id" loading
sock=$(rev_get nspoof "$spoof_id" "r['endpoint']['runtime_dir']")/notify
wait_until 10 "notify socket" test -S "$sock"
"$PYTHON" - "$sock" <<'PY' || fail "could not send the spoofed datagram"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
s.send(b"READY=1\nSTATUS=spoofed")
PY
sleep 1
assert_eq "loading stuck at step 3" "$(rev_get nspoof "$spoof_id" "'%s %s' % (r['state'], r['readiness'].get('progress'))")" "state after a spoofed READY=1"
wait_rev_state nspoof "$spoof_id" failed 20
assert_eq readiness_timeout "$(rev_get nspoof "$spoof_id" "r['reason']")" "spoof target's reason"

# ---- tcp and http with port auto; PORT per revision during a redeploy
make_app "$FIX/web.pex" main 'import http.server, os, time
time.sleep(0.5)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()
    def log_message(self, *a):
        pass
port = int(os.environ["PORT"])
print("serving on %d" % port, flush=True)
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()'
params "$FIX/tcp.json" '{"readiness": {"tcp": {"port": "auto"}, "timeout_s": 20, "period_s": 0.2}}'
deploy_ready web --deps "$SAMPLE_DEPS" --source "$FIX/web.pex" --params "$FIX/tcp.json"
first=$DEPLOY_ID
port1=$(rev_get web "$first" "r['endpoint']['port']")
assert_contains "$(logs_text web "$first")" "stdout serving on $port1" "the process got PORT"
params "$FIX/http.json" '{"readiness": {"http": {"port": "auto", "path": "/healthz"}, "timeout_s": 20, "period_s": 0.2}}'
deploy_ready web --deps "$SAMPLE_DEPS" --source "$FIX/web.pex" --params "$FIX/http.json"
second=$DEPLOY_ID
port2=$(rev_get web "$second" "r['endpoint']['port']")
assert_ne "$port1" "$port2" "PORT of two revisions of one location"
assert_contains "$(logs_text web "$second")" "stdout serving on $port2" "the new process got its PORT"
assert_eq "http ready" "$(rev_get web "$second" "'%s %s' % (r['readiness']['kind'], r['readiness']['state'])")" "http readiness"
# A path that answers 503 never becomes ready.
params "$FIX/http503.json" '{"readiness": {"http": {"port": "auto", "path": "/nope"}, "timeout_s": 2, "period_s": 0.2}}'
deploy_failed web --deps "$SAMPLE_DEPS" --source "$FIX/web.pex" --params "$FIX/http503.json"
assert_eq readiness_timeout "$(jget "$DEPLOY_REV" "j['reason']")" "reason with HTTP 503"
assert_contains "$(jget "$DEPLOY_REV" "j['message']")" "503" "message names the last attempt"
assert_eq "$second" "$(active_of web)" "the ready revision keeps serving"
ctl_ok stop web

# ---- exec: runs with the revision's environment
make_app "$FIX/flag.pex" main 'import os, time
time.sleep(0.5)
open(os.path.join(os.environ["HEARTH_RUNTIME_DIR"], "ready-flag"), "w").close()
while True:
    time.sleep(1)'
params "$FIX/exec.json" '{"readiness": {"exec": {"argv": ["sh", "-c", "test -f \"$HEARTH_RUNTIME_DIR/ready-flag\""]}, "timeout_s": 20, "period_s": 0.2}}'
deploy_ready flag --deps "$SAMPLE_DEPS" --source "$FIX/flag.pex" --params "$FIX/exec.json"
assert_eq "exec ready" "$(rev_get flag "$DEPLOY_ID" "'%s %s' % (r['readiness']['kind'], r['readiness']['state'])")" "exec readiness"

finish_deploy_hearth

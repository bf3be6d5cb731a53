#!/bin/bash
# Malformed input on the raw control socket: invalid JSON, non-objects,
# missing or invalid envelope members, unknown methods, missing and wrongly
# typed params, a line over 1 MiB, unknown locations and revisions. Each gets
# the JSON-RPC error code of hearth-protocol(7) with a message naming the
# problem, the SAME connection then still answers a ping, a notification gets
# no reply, a second connection is unaffected, and hearth keeps running.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
# One real location, so that params checks behind the location lookup
# (logs' tail and follow, stop's id) are reached.
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"

# The exchange runs in python (raw bytes on the socket); it prints one line
# per case, fields separated by US (0x1f): NAME, CODE, ID, MESSAGE, DATA,
# then how the ping that followed on the same connection went ("pong" or
# what happened instead).
"$PYTHON" - "$HEARTH_SOCKET" >"$TEST_TMP/cases.tsv" 2>"$TEST_TMP/cases.err" <<'PY' ||
import json, socket, sys

path = sys.argv[1]
SEP = "\x1f"  # not whitespace: bash's read keeps empty fields


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


class Conn:
    def __init__(self):
        self.sock = connect()
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return {"<no reply>": "timeout"}
            if not chunk:
                return {"<no reply>": "connection closed"}
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        try:
            return json.loads(raw)
        except ValueError:
            return {"<not json>": raw.decode("utf-8", "replace")}


def clean(text):
    return str(text).replace(SEP, " ").replace("\n", " ")


conn = Conn()
other = Conn()  # opened first, used only at the end
ping_id = [1000]


def ping(c):
    ping_id[0] += 1
    pid = ping_id[0]
    c.send(b'{"jsonrpc":"2.0","id":%d,"method":"ping"}\n' % pid)
    r = c.line()
    if r.get("id") == pid and r.get("result", {}).get("pong") is True:
        return "pong"
    return "bad ping reply: " + clean(json.dumps(r))


def case(name, data, reply=True):
    if isinstance(data, str):
        data = data.encode("utf-8")
    conn.send(data)
    if reply:
        r = conn.line()
    else:
        r = {}
    err = r.get("error") or {}
    fields = [
        name,
        str(err.get("code", "<none>")) if reply else "<none>",
        json.dumps(r.get("id", "<absent>")) if reply else "<absent>",
        clean(err.get("message", json.dumps(r)) if reply else ""),
        json.dumps(err.get("data")),
        ping(conn),
    ]
    print(SEP.join(fields), flush=True)


def req(id_, method, params=None):
    m = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        m["params"] = params
    return json.dumps(m) + "\n"


sha = "a" * 64
art = {"path": "/nonexistent.pex", "sha256": sha}
case("truncated_json", '{"jsonrpc":"2.0","id":1,"method":"ping"\n')
case("garbage", "hello there\n")
case("invalid_utf8", b'{"jsonrpc":"2.0","id":2,"method":"\xff\xfe"}\n')
case("batch", '[{"jsonrpc":"2.0","id":3,"method":"ping"}]\n')
case("string", '"ping"\n')
case("number", "42\n")
case("no_jsonrpc", '{"id":4,"method":"ping"}\n')
case("bad_jsonrpc", '{"jsonrpc":"1.0","id":5,"method":"ping"}\n')
case("bad_id", '{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}\n')
case("no_method", '{"jsonrpc":"2.0","id":6}\n')
case("method_not_string", '{"jsonrpc":"2.0","id":7,"method":7}\n')
case("unknown_method", req(8, "frobnicate"))
case("params_array", req(9, "status", [1, 2]))
case("stop_no_params", req(10, "stop"))
case("deploy_empty", req(11, "deploy", {}))
case("deploy_no_deps", req(12, "deploy", {"location": "x", "source": art}))
case("deploy_bad_sha", req(13, "deploy", {"location": "x", "deps": {"path": "/d.pex", "sha256": "xyz"}, "source": art}))
case("deploy_bad_name", req(14, "deploy", {"location": "Bad Name", "deps": art, "source": art}))
case("deploy_env_type", req(15, "deploy", {"location": "x", "deps": art, "source": art, "env": {"K": 1}}))
case("status_loc_type", req(16, "status", {"location": 5}))
case("logs_tail_type", req(17, "logs", {"location": "analytics", "tail": "ten"}))
case("logs_tail_range", req(18, "logs", {"location": "analytics", "tail": 10001}))
case("logs_follow_type", req(19, "logs", {"location": "analytics", "follow": "yes"}))
case("too_long", b'{"jsonrpc":"2.0","id":20,"method":"ping","params":{"pad":"' + b"a" * (1100 * 1024) + b'"}}\n')
case("status_unknown", req(21, "status", {"location": "nope"}))
case("stop_unknown", req(22, "stop", {"location": "nope"}))
case("logs_unknown", req(23, "logs", {"location": "nope"}))
case("remove_unknown", req(24, "remove", {"location": "nope"}))
case("stop_unknown_rev", req(25, "stop", {"location": "analytics", "id": "analytics-99"}))
# A notification (no id) is executed without a reply, even when it fails:
# the ping right after must get the next line.
case("notification", '{"jsonrpc":"2.0","method":"frobnicate"}\n', reply=False)
case("string_id", '{"jsonrpc":"2.0","id":"abc","method":"nope.nope"}\n')
print(SEP.join(["other_connection", "<none>", "<absent>", "", "null", ping(other)]))
PY
    {
        cat "$TEST_TMP/cases.err" >&2
        fail "the raw protocol client failed"
    }

declare -A CODE ID MSG DATA PING
while IFS=$'\x1f' read -r name code id msg data ping; do
    CODE[$name]=$code ID[$name]=$id MSG[$name]=$msg DATA[$name]=$data PING[$name]=$ping
done <"$TEST_TMP/cases.tsv"

# expect NAME CODE ID MESSAGE-PART...
expect() {
    local name=$1 code=$2 id=$3
    shift 3
    [ -n "${CODE[$name]+x}" ] || fail "$name: no result (client output: $(cat "$TEST_TMP/cases.tsv"))"
    assert_eq "$code" "${CODE[$name]}" "$name: error code (message '${MSG[$name]}')"
    assert_eq "$id" "${ID[$name]}" "$name: reply id"
    local part
    for part in "$@"; do assert_contains "${MSG[$name]}" "$part" "$name: error message"; done
    [ -n "${MSG[$name]}" ] || fail "$name: empty error message"
    assert_eq pong "${PING[$name]}" "$name: ping on the same connection afterwards"
}

# Parse errors say where (nlohmann: "... at line 1, column N ...").
expect truncated_json -32700 null "column"
expect garbage -32700 null "column"
expect invalid_utf8 -32700 null "UTF-8"
expect batch -32600 null "batch"
expect string -32600 null "object"
expect number -32600 null "object"
expect no_jsonrpc -32600 4 "jsonrpc"
expect bad_jsonrpc -32600 5 "jsonrpc"
expect bad_id -32600 null "id"
expect no_method -32600 6 "method"
expect method_not_string -32600 7 "method"
expect unknown_method -32601 8 "frobnicate"
expect params_array -32602 9 "params" "object"
expect stop_no_params -32602 10 "params.location"
expect deploy_empty -32602 11 "params.location"
expect deploy_no_deps -32602 12 "params.deps"
expect deploy_bad_sha -32602 13 "params.deps.sha256"
expect deploy_bad_name -32602 14 "params.location"
expect deploy_env_type -32602 15 "params.env.K"
expect status_loc_type -32602 16 "params.location"
expect logs_tail_type -32602 17 "params.tail"
expect logs_tail_range -32602 18 "params.tail"
expect logs_follow_type -32602 19 "params.follow"
expect too_long -32600 null "1048576"
expect status_unknown -32001 21 "nope"
assert_eq '{"location": "nope"}' "${DATA[status_unknown]}" "status_unknown: error data"
expect stop_unknown -32001 22 "nope"
expect logs_unknown -32001 23 "nope"
expect remove_unknown -32001 24 "nope"
expect stop_unknown_rev -32002 25 "analytics-99"
assert_eq '{"id": "analytics-99"}' "${DATA[stop_unknown_rev]}" "stop_unknown_rev: error data"
assert_eq pong "${PING[notification]}" "a notification got a reply, or broke the connection"
expect string_id -32601 '"abc"' "nope.nope"
assert_eq pong "${PING[other_connection]}" "a second connection, after all that on the first"

# None of it touched the running revision or hearth itself.
proc_running "$HEARTH_PID" || fail "hearth died"
ctl_ok ping
assert_eq true "$(jget "$RUN_OUT" "j['pong']")" "hearthctl ping afterwards"
assert_eq ready "$(rev_get analytics analytics-1 "r['state']")" "analytics-1 state afterwards"

# hearthctl reports a daemon error as one line naming the method and code,
# and exits 1.
run_ctl status nope
assert_eq 1 "$RUN_RC" "hearthctl status of an unknown location: exit code"
assert_contains "$RUN_ERR" "hearthctl: status:" "hearthctl's error line"
assert_contains "$RUN_ERR" "nope" "hearthctl's error line"
assert_contains "$RUN_ERR" "(code -32001)" "hearthctl's error line"
assert_lines "$RUN_ERR" 1 "hearthctl's error output"
finish_deploy_hearth

#!/bin/bash
# systemd/hearth.service.in as meson generates and installs it:
# - `meson install --tags systemd` puts hearth.service in the unit directory
#   the build was configured with, and its ExecStart names the hearth that
#   `meson install` puts in sbindir;
# - the settings hearth relies on: Type=notify, Delegate= with the
#   controllers hearth writes, KillMode=mixed, TimeoutStopSec above --grace,
#   Restart=on-failure, StateDirectory=/RuntimeDirectory=hearth;
# - `systemd-analyze verify` accepts it without a single message, in a
#   scratch root (--root) that holds the installed unit, a hearth at the
#   ExecStart path and a copy of this machine's system units (the targets it
#   is ordered against). No systemd runs here (PID 1 is not systemd), so this
#   checks the unit file, not a live service. --man=no: hearth's own man pages
#   are not installed on the test machine; the verify would otherwise fail on
#   the Documentation= entries. A deliberately broken copy must be reported,
#   so that a silent verify means something.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

need_cmd systemd-analyze meson
need_python
BUILD=${HEARTH_BUILD_ROOT:?}
UNIT=$BUILD/hearth.service
[ -f "$UNIT" ] || fail "meson did not generate $UNIT"

# Where meson installs hearth and the unit (meson's own introspection).
installed() { # BUILD-PATH: its install path, "" if not installed
    "$PYTHON" -c '
import json, sys
print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' \
        "$BUILD/meson-info/intro-installed.json" "$1"
}
sbin_hearth=$(installed "$BUILD/src/hearth")
unit_dest=$(installed "$UNIT")
[ -n "$sbin_hearth" ] || fail "meson installs no hearth"

# ------------------------------------------------------------ the settings
value() { # KEY: the value of KEY= in the unit's [Service] (last one wins)
    awk -v k="$1" '
        /^\[/ { sect = $0 }
        sect == "[Service]" && index($0, k "=") == 1 { v = substr($0, length(k) + 2) }
        END { print v }' "$UNIT"
}
assert_eq notify "$(value Type)" "Type="
assert_eq mixed "$(value KillMode)" "KillMode="
assert_eq on-failure "$(value Restart)" "Restart="
assert_eq hearth "$(value StateDirectory)" "StateDirectory="
assert_eq hearth "$(value RuntimeDirectory)" "RuntimeDirectory="
delegate=" $(value Delegate) "
for c in memory cpu pids; do
    assert_contains "$delegate" " $c " "Delegate= controllers"
done
exec_start=$(value ExecStart)
assert_eq "$sbin_hearth" "${exec_start%% *}" "ExecStart's program (meson's installed hearth)"
grace=$(sed -n 's/.*--grace[ =]\([0-9.]*\).*/\1/p' <<<"$exec_start")
[ -n "$grace" ] || fail "ExecStart sets no --grace: $exec_start"
stop=$(value TimeoutStopSec)
assert_match "$stop" '^[0-9]+$' "TimeoutStopSec= (whole seconds)"
"$PYTHON" -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$stop" "$grace" ||
    fail "TimeoutStopSec=$stop is not above --grace $grace"

# ----------------------------------------------- meson install and verify
ROOT=$TEST_TMP/root
if [ -z "$unit_dest" ]; then
    # Configured without systemd (no pkg-config systemd): nothing installs
    # the unit, so verify the generated one where it would go.
    note "meson installs no hearth.service (configured without systemd); verifying the generated unit"
    unit_dest=/etc/systemd/system/hearth.service
    mkdir -p "$ROOT/etc/systemd/system"
    cp "$UNIT" "$ROOT$unit_dest"
else
    run_cmd --timeout 60 meson install -C "$BUILD" --no-rebuild --destdir "$ROOT" --tags systemd
    assert_eq 0 "$RUN_RC" "meson install --tags systemd ($RUN_ERR)"
    [ -f "$ROOT$unit_dest" ] || fail "meson install did not write $unit_dest"
    cmp -s "$UNIT" "$ROOT$unit_dest" || fail "the installed unit differs from the generated one"
fi
mkdir -p "$ROOT$(dirname "$sbin_hearth")" "$ROOT/lib/systemd"
cp "$HEARTH" "$ROOT$sbin_hearth"
for d in /lib/systemd/system /usr/lib/systemd/system; do
    if [ -d "$d" ]; then
        cp -a "$d" "$ROOT/lib/systemd/"
        break
    fi
done
[ -f "$ROOT/lib/systemd/system/multi-user.target" ] || skip "this machine has no systemd unit files to verify against"

run_cmd --timeout 60 systemd-analyze --root="$ROOT" --man=no verify "$unit_dest"
assert_eq 0 "$RUN_RC" "systemd-analyze verify exit code ($RUN_OUT $RUN_ERR)"
assert_eq "" "$RUN_OUT$RUN_ERR" "systemd-analyze verify output"

# The same verify must see a broken unit.
sed -e 's/^KillMode=.*/KillMode=bogus/' -e 's/^Type=.*/Type=notify\nNoSuchKey=1/' \
    "$ROOT$unit_dest" >"$ROOT$(dirname "$unit_dest")/hearth-broken.service"
run_cmd --timeout 60 systemd-analyze --root="$ROOT" --man=no verify "$(dirname "$unit_dest")/hearth-broken.service"
assert_contains "$RUN_OUT$RUN_ERR" "NoSuchKey" "systemd-analyze verify of a broken unit"
assert_contains "$RUN_OUT$RUN_ERR" "bogus" "systemd-analyze verify of a broken unit"

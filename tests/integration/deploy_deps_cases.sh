#!/bin/bash
# Deps that need more than a directory on sys.path: a distribution whose .pth
# file adds a directory and runs an import line, and two distributions that
# share a PEP 420 namespace package. As installed-wheel chroots and as raw
# wheels (--raw-wheels), under the native runtime and under the pex runtime.
# The entry module imports from all of them and prints what proves it worked.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth

make_deps "$FIX/deps-chroot.pex" --pth-case --namespace-case
make_deps "$FIX/deps-raw.pex" --pth-case --namespace-case --raw-wheels
make_app "$FIX/source.pex" main 'import sys, time
import hearth_pth_case
import pth_extra_mod              # importable only through the .pth line "pth_extra"
import hearth_ns.one, hearth_ns.two
print("PTH value=%s extra=%s ran=%s" % (hearth_pth_case.VALUE, pth_extra_mod.WHERE,
      getattr(sys, "hearth_pth_ran", 0)))
print("NS one=%s two=%s portions=%d" % (hearth_ns.one.NAME, hearth_ns.two.NAME,
      len(list(hearth_ns.__path__))))
print("NS file=%s" % getattr(hearth_ns, "__file__", None), flush=True)
time.sleep(3600)'

# The raw-wheel pex really holds wheel files, stored.
"$PYTHON" - "$FIX/deps-raw.pex" <<'PY' || fail "deps-raw.pex does not hold raw wheels"
import json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as zf:
    info = json.loads(zf.read("PEX-INFO"))
    assert info["deps_are_wheel_files"] is True, info
    wheels = [n for n in zf.namelist() if n.startswith(".deps/") and n.endswith(".whl")]
    assert len(wheels) == 3, wheels
PY

check_run() { # LOCATION
    wait_log_line "$1" "" "stdout NS file=None"
    local logs
    logs=$(logs_text "$1")
    # The .pth ran exactly once: its directory was added and its import line ran.
    assert_contains "$logs" "stdout PTH value=pth-case extra=pth_extra ran=1" "$1 logs"
    # A namespace package (no __file__) with both portions.
    assert_contains "$logs" "stdout NS one=hearth_ns.one two=hearth_ns.two portions=2" "$1 logs"
    assert_not_contains "$logs" "stderr " "$1 logs (nothing on stderr)"
}

n=0
for deps in chroot raw; do
    for runtime in native pex; do
        n=$((n + 1))
        loc=$deps-$runtime
        deploy_ready "$loc" --deps "$FIX/deps-$deps.pex" --source "$FIX/source.pex" --runtime "$runtime"
        assert_eq "$runtime" "$(jget "$DEPLOY_REV" "j['runtime']")" "$loc runtime"
        check_run "$loc"
    done
done

# The store unpacked the raw wheels beside the tree (doc/pex-format.md).
raw_tree=$HEARTH_STATE_DIR/trees/sha256/$(sha256_of "$FIX/deps-raw.pex")
for whl in hearth_pth_case-1.0-py3-none-any.whl hearth_ns_one-1.0-py3-none-any.whl \
    hearth_ns_two-1.0-py3-none-any.whl; do
    [ -d "$raw_tree/.hearth/wheels/$whl" ] || fail "raw wheel $whl not unpacked under $raw_tree/.hearth/wheels"
done

# The native runtime put the .pth directory on the path through its boot
# script, not through PYTHONPATH.
hpid=$(host_pid "$(rev_get raw-native raw-native-1 "r['pid']")")
[ -n "$hpid" ] || fail "raw-native-1 has no process"
if tr '\0' '\n' <"/proc/$hpid/environ" | grep -q '^PYTHONPATH='; then
    fail "the native runtime set PYTHONPATH"
fi

finish_deploy_hearth

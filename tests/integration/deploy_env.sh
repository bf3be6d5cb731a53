#!/bin/bash
# A revision's environment is clean: hearth is started with
# PYTHONDONTWRITEBYTECODE=1, PYTHONPATH=/bogus and other junk in its own
# environment, and the entry module (which prints os.environ) sees none of
# it; it sees the deploy's --env K=V (which wins over PEX-INFO's inject_env),
# TMPDIR set to its own writable scratch dir, PYTHONPYCACHEPREFIX, LANG=C.UTF-8.
# Native and pex runtime alike.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

HEARTH_WRAP=(env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/bogus PYTHONHOME=/bogus-home
    PYTHONSTARTUP=/bogus-startup HEARTH_TEST_LEAK=leaked LC_ALL=C LANG=C)
start_deploy_hearth
make_sample

mkdir -p "$FIX/envcode/envapp"
write_file "$FIX/envcode/envapp/__init__.py" ""
write_file "$FIX/envcode/envapp/show.py" 'import os, sys, tempfile, time
for k in sorted(os.environ):
    print("ENV %s=%s" % (k, os.environ[k]))
print("FLAG dont_write_bytecode=%d" % sys.flags.dont_write_bytecode)
print("SYSPATH " + repr(sys.path))
t = tempfile.mkstemp()[1]
print("TMPFILE %s" % os.path.dirname(t))
print("CWD %s" % os.getcwd())
print("DONE", flush=True)
time.sleep(3600)'
make_source "$FIX/env.pex" "$FIX/envcode" envapp.show --inject-env INJ=from-pex --inject-env K=from-pex

for runtime in native pex; do
    loc=env-$runtime
    deploy_ready "$loc" --deps "$SAMPLE_DEPS" --source "$FIX/env.pex" --runtime "$runtime" \
        --env K=V --env 'EQ=a=b' --env EMPTY=
    wait_log_line "$loc" "" "stdout DONE"
    logs=$(logs_text "$loc")
    scratch=$HEARTH_STATE_DIR/scratch/$loc-1
    for line in "ENV K=V" "ENV EQ=a=b" "ENV EMPTY=" "ENV LANG=C.UTF-8" "ENV TMPDIR=$scratch" \
        "ENV PYTHONPYCACHEPREFIX=$HEARTH_STATE_DIR/pycache" "ENV HEARTH_LOCATION=$loc" \
        "ENV HEARTH_REVISION=$loc-1" "FLAG dont_write_bytecode=0" "TMPFILE $scratch" "CWD $scratch"; do
        grep -qxF -- "stdout $line" <<<"$logs" || fail "$loc: no '$line' in the logs: $logs"
    done
    # inject_env fills what is unset (the native runtime applies it itself;
    # under the pex runtime the pex's __main__.py does).
    grep -qxF -- "stdout ENV INJ=from-pex" <<<"$logs" || fail "$loc: inject_env INJ missing: $logs"
    for bad in PYTHONDONTWRITEBYTECODE PYTHONPATH PYTHONHOME PYTHONSTARTUP HEARTH_TEST_LEAK LC_ALL \
        PEX_PATH PEX_ROOT; do
        if grep -q "^stdout ENV $bad=" <<<"$logs"; then
            fail "$loc: $bad leaked into the revision: $(grep "^stdout ENV $bad=" <<<"$logs")"
        fi
    done
    assert_not_contains "$(grep '^stdout SYSPATH' <<<"$logs")" "/bogus" "$loc sys.path"
    [ -d "$scratch" ] || fail "$loc: scratch dir $scratch does not exist"
    assert_eq 700 "$(stat -c %a "$scratch")" "$loc: scratch dir mode"
done

finish_deploy_hearth

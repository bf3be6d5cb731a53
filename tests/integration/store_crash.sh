#!/bin/bash
# Crash during extraction: hearth is killed with SIGKILL while it extracts a
# big deps.pex (mkpex big: ~24 MB, 4000 entries), then restarted on the same
# state dir. The half-built tree never appears under trees/ (had the
# extraction finished first, the published tree must be complete), the
# restart sweeps tmp/, and the redeploy extracts a complete tree (every file
# of the archive, same sizes) and becomes ready.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

"$PYTHON" "$MKPEX" big "$FIX/big.pex" --mb 24 --entries 4000 || fail "mkpex big failed"
D=$(sha256_of "$FIX/big.pex")
make_app "$FIX/app.pex" main "import time
import bigdep_000
print('big up', bigdep_000.__name__, flush=True)
while True:
    time.sleep(1)"

# tree_complete DIR: whether DIR holds exactly the archive's files, same sizes
# (hearth's own .hearth/ aside).
tree_complete() {
    "$PYTHON" - "$FIX/big.pex" "$1" <<'PY'
import os, sys, zipfile
want = {i.filename: i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist() if not i.is_dir()}
have = {}
for root, dirs, files in os.walk(sys.argv[2]):
    for f in files:
        p = os.path.join(root, f)
        rel = os.path.relpath(p, sys.argv[2])
        if rel.startswith(".hearth/"):
            continue
        have[rel] = os.lstat(p).st_size
missing = sorted(set(want) - set(have))[:3]
extra = sorted(set(have) - set(want))[:3]
wrong = sorted(n for n in want if n in have and have[n] != want[n])[:3]
if missing or extra or wrong:
    sys.exit("tree differs from the archive: missing %s, extra %s, wrong size %s" % (missing, extra, wrong))
PY
}

# Kills hearth (SIGKILL) as soon as the tree being built in tmp/ has its
# directories, i.e. while files are being written.
WATCH='
import os, signal, sys, time
tmp, prefix, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        names = os.listdir(tmp)
    except OSError:
        names = []
    for n in names:
        if n.startswith(prefix) and os.path.isdir(os.path.join(tmp, n, ".deps")):
            os.kill(pid, signal.SIGKILL)
            print(n)
            sys.exit(0)
    time.sleep(0.001)
sys.exit("no extraction of %s* seen in %s" % (prefix, tmp))
'

start_deploy_hearth
start_bg "$PYTHON" -c "$WATCH" "$HEARTH_STATE_DIR/tmp" "tree-${D:0:12}-" "$HEARTH_PID" >"$TEST_TMP/watch.out"
watcher=$BG_PID
run_ctl deploy big --deps "$FIX/big.pex" --source "$FIX/app.pex"
assert_eq 0 "$RUN_RC" "hearthctl deploy exit code ($RUN_ERR)"
wait_bg "$watcher" 40
[ "$BG_RC" = 0 ] || fail "the watcher did not see the extraction (exit $BG_RC)"
# (The launcher, unshare, exits 1 when its child dies of a signal.)
wait_hearth_exit 10
cp "$HEARTH_STDERR" "$TEST_TMP/hearth-1.err"

if [ -e "$HEARTH_STATE_DIR/trees/sha256/$D" ]; then
    note "the extraction finished before SIGKILL landed; checking the published tree"
    tree_complete "$HEARTH_STATE_DIR/trees/sha256/$D" || fail "a published tree is incomplete after SIGKILL"
else
    debris=$(tmp_entries)
    note "debris after SIGKILL: $(printf '%s' "$debris" | wc -l) entr(ies); files in the partial tree: $(find "$HEARTH_STATE_DIR/tmp" -type f | wc -l)"
    assert_ne "" "$debris" "tmp/ right after SIGKILL during extraction"
fi
[ -f "$HEARTH_STATE_DIR/blobs/sha256/$D" ] || fail "the blob (published before the extraction) is gone"

# Restart on the same state dir.
start_deploy_hearth
wait_until 10 "the restarted hearth to sweep tmp/" tmp_empty
if [ -e "$HEARTH_STATE_DIR/trees/sha256/$D" ]; then
    tree_complete "$HEARTH_STATE_DIR/trees/sha256/$D" || fail "the tree under trees/ is incomplete after the restart"
fi
deploy_ready big --deps "$FIX/big.pex" --source "$FIX/app.pex"
tree_complete "$HEARTH_STATE_DIR/trees/sha256/$D" || fail "the tree extracted after the restart is incomplete"
wait_log_line big "" "stdout big up bigdep_000"
assert_eq "" "$(tmp_entries)" "leftovers in tmp/ after the redeploy"

finish_deploy_hearth

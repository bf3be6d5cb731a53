#!/bin/bash
# A full disk: hearth's state dir is an 8 MiB tmpfs (mounted in a mount
# namespace of hearth's own, so nothing outlives the test), with a budget far
# above it (--store-max-bytes 1Gi) so the filesystem, not the budget, runs
# out. c-1 runs the small sample. Then:
#  1. 12 MiB of deps over HTTP: ENOSPC while the blob is written -> the
#     revision fails no_space, tmp/ is empty, nothing is published, hearth
#     is alive and c-1 still ready; the space is free again: a small redeploy
#     (c-3) becomes ready.
#  2. 5 MiB of deps from a file: the blob fits, its tree does not -> ENOSPC
#     during extraction -> no_space, no partial tree, tmp/ empty, c-3 ready.
# Skipped (77) when a tmpfs cannot be mounted in a new mount namespace;
# failed instead under HEARTH_TESTS_MUST_WORK=1.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

# _MOUNT_WRAP STATE_DIR CMD...: a new mount namespace (mounts private, so
# nothing propagates back), an 8 MiB tmpfs on STATE_DIR, then exec CMD: one
# process throughout (HEARTH_WRAP must keep the pid, and lib.sh takes the
# launcher's first child for hearth, so no helper may be forked).
_MOUNT_WRAP='
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x00020000, 0x4000, 0x40000
def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        sys.exit("%s: %s" % (what, os.strerror(e)))
check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
check(libc.mount(b"tmpfs", sys.argv[1].encode(), b"tmpfs", 0, sys.argv[2].encode()), "mount tmpfs")
if len(sys.argv) > 3:
    os.execvp(sys.argv[3], sys.argv[3:])
'
mkdir -p "$TEST_TMP/probe"
err=$("$PYTHON" -c "$_MOUNT_WRAP" "$TEST_TMP/probe" size=1m 2>&1) ||
    skip "cannot mount a tmpfs in a new mount namespace: $err"

# shellcheck disable=SC2034 # read by lib.sh's _start_hearth
HEARTH_WRAP=("$PYTHON" -c "$_MOUNT_WRAP" "$HEARTH_STATE_DIR" size=8m,mode=0755)
start_httpd
start_deploy_hearth --store-max-bytes 1Gi
# The store as hearth sees it (the tmpfs is not mounted in the test's namespace).
NS_STATE=/proc/$HEARTH_PID/root$HEARTH_STATE_DIR
assert_eq tmpfs "$(stat -f -c %T "$NS_STATE")" "filesystem of hearth's state dir"
assert_eq "" "$(find "$HEARTH_STATE_DIR" -mindepth 1 -maxdepth 1)" "the test's view of the state dir (must stay empty)"

make_sample
make_ticker "$FIX/c.pex" cee
make_fat_deps "$FIX/E1.pex" $((12 * 1048576)) 31
make_fat_deps "$FIX/E2.pex" $((5 * 1048576)) 32
E1=$(sha256_of "$FIX/E1.pex")
E2=$(sha256_of "$FIX/E2.pex")
serve E1.pex "$FIX/E1.pex"

deploy_ready c --deps "$SAMPLE_DEPS" --source "$FIX/c.pex"
c_pid=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$c_pid" ] || fail "no process for c-1"

alive_and_serving() { # REVISION WHEN
    proc_running "$HEARTH_PID" || fail "hearth died $2"
    ctl_ok ping
    assert_eq "$1" "$(active_of c)" "active of c $2"
    assert_eq ready "$(rev_get c "$1" "r['state']")" "$1 $2"
}

# 1. The blob does not fit.
deploy_failed c --deps "$HTTPD_URL/E1.pex" --deps-sha256 "$E1" --source "$FIX/c.pex"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason when the disk fills during the fetch"
note "message: $(jget "$DEPLOY_REV" "j['message']")"
alive_and_serving c-1 "after ENOSPC during a fetch"
proc_running "$c_pid" || fail "c-1's process died after ENOSPC during a fetch"
assert_eq "" "$(tmp_entries "$NS_STATE")" "leftovers in tmp/ after ENOSPC during a fetch"
[ ! -e "$NS_STATE/blobs/sha256/$E1" ] || fail "a blob was published although the disk was full"
avail=$(df -B1 --output=avail "$NS_STATE" | tail -n 1)
assert_ge "$avail" $((6 * 1048576)) "free bytes on the tmpfs after the failed fetch"

make_ticker "$FIX/c3.pex" ceethree
deploy_ready c --deps "$SAMPLE_DEPS" --source "$FIX/c3.pex"
assert_eq c-3 "$DEPLOY_ID" "the small redeploy after ENOSPC"

# 2. The blob fits, its tree does not.
deploy_failed c --deps "$FIX/E2.pex" --source "$FIX/c.pex"
assert_eq no_space "$(jget "$DEPLOY_REV" "j['reason']")" "reason when the disk fills during extraction"
note "message: $(jget "$DEPLOY_REV" "j['message']")"
alive_and_serving c-3 "after ENOSPC during extraction"
assert_eq "" "$(tmp_entries "$NS_STATE")" "leftovers in tmp/ after ENOSPC during extraction"
[ ! -e "$NS_STATE/trees/sha256/$E2" ] || fail "a tree was published although the disk was full"
wait_log_line c c-3 "stdout ceethree tick 2"

finish_deploy_hearth

#!/bin/bash
# The container without Docker: a minimal Debian 12 root filesystem
# (debootstrap --variant=minbase --include=python3 bookworm), into which ONLY
# the bundle (ninja bundle) is copied, as container/Dockerfile does with its
# runtime stage. hearth runs as PID 1 of its own PID and mount namespace,
# chrooted there with /proc mounted inside, revisions as the unprivileged
# user `hearth` (--user), and is driven with the bundle's own hearthctl run
# inside the root (as the Dockerfile's HEALTHCHECK does):
# - a deploy over HTTP (the bundle's libcurl and libarchive; the root
#   filesystem has neither, nor libuv) reaches `ready`, its process runs as
#   `hearth`;
# - status says the `none` cgroup driver and enforcement `degraded` (no
#   cgroupfs in the root, the usual unprivileged container);
# - a redeploy of a changed source from a file inside the root switches
#   blue/green;
# - `hearthctl shutdown` ends hearth with exit status 0, and nothing of its
#   PID namespace is left running.
#
# The root filesystem is built once and cached OUTSIDE the repository in
# $HEARTH_ROOTFS_CACHE (default /var/cache/hearth-tests/rootfs-bookworm); the
# first run downloads about 60 MB of Debian packages (minutes), later runs
# only overlay-mount it. The test never writes to the cache after building
# it: each run works in an overlay whose upper layer is in its temp dir.
# Needs root, debootstrap (scripts/ensure-deps.sh) or the cache, and
# Debian's archive on the first run; exit 77 without them (fail under
# HEARTH_TESTS_MUST_WORK=1).

# Mounts made by this test stay in a mount namespace of its own: whatever
# happens, none outlives it.
if [ -z "${HEARTH_CHROOT_TEST_NS:-}" ]; then
    if unshare --mount --propagation private true 2>/dev/null; then
        export HEARTH_CHROOT_TEST_NS=1
        exec unshare --mount --propagation private -- "$0" "$@"
    fi
    echo "SKIP: container_chroot: cannot create a mount namespace" >&2
    [ "${HEARTH_TESTS_MUST_WORK:-0}" = 1 ] && exit 1
    exit 77
fi

# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"
unset HEARTH_CHROOT_TEST_NS # (kept through lib.sh's re-exec, kept from hearth)

need_cmd chroot mount umount flock
BUNDLE=${HEARTH_BUNDLE:-}
[ -n "$BUNDLE" ] || fail "HEARTH_BUNDLE is not set (run through 'meson test')"
[ -x "$BUNDLE/bin/hearth" ] || fail "no bundle at $BUNDLE (ninja bundle)"

# ------------------------------------------------------ the root filesystem
CACHE=${HEARTH_ROOTFS_CACHE:-/var/cache/hearth-tests/rootfs-bookworm}
MIRROR=${HEARTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}

rootfs_ok() { [ -x "$1/usr/bin/python3" ] && [ -f "$1/etc/debian_version" ]; }

build_rootfs() {
    need_cmd debootstrap
    mkdir -p "$(dirname "$CACHE")"
    local tmp=$CACHE.tmp.$$ t0
    t0=$(now_ms)
    note "building $CACHE with debootstrap from $MIRROR (once; minutes)"
    rm -rf "$tmp"
    if ! debootstrap --variant=minbase --include=python3 bookworm "$tmp" "$MIRROR" \
        >"$TEST_TMP/debootstrap.log" 2>&1; then
        tail -n 20 "$TEST_TMP/debootstrap.log" >&2
        rm -rf "$tmp"
        skip "debootstrap failed (no access to $MIRROR?)"
    fi
    rootfs_ok "$tmp" || { rm -rf "$tmp"; fail "debootstrap made no usable root in $tmp"; }
    # The packages' downloads are not needed any more.
    rm -rf "$tmp"/var/cache/apt/archives/*.deb
    mv "$tmp" "$CACHE" # atomic: a cache directory is complete or absent
    note "debootstrap took $((($(now_ms) - t0) / 1000)) s"
}

# One builder at a time (two build directories testing at once).
mkdir -p "$(dirname "$CACHE")" || skip "cannot create $(dirname "$CACHE")"
exec {lock_fd}>"$(dirname "$CACHE")/.$(basename "$CACHE").lock"
flock "$lock_fd"
rootfs_ok "$CACHE" || build_rootfs
flock -u "$lock_fd"

ROOT=$TEST_TMP/root
mkdir -p "$ROOT" "$TEST_TMP/upper" "$TEST_TMP/work"
if ! mount -t overlay overlay \
    -o "lowerdir=$CACHE,upperdir=$TEST_TMP/upper,workdir=$TEST_TMP/work" "$ROOT" 2>/dev/null; then
    note "no overlayfs here; copying the cached root instead"
    cp -a "$CACHE/." "$ROOT/"
fi
# Unmount before lib.sh's cleanup removes the temp dir (lazily: a process
# that still uses it is killed by that cleanup right after).
trap '_rc=$?; umount -l "$ROOT" 2>/dev/null || true; (exit $_rc); _cleanup' EXIT

# The image has none of hearth's libraries: what runs below runs on the bundle.
for so in libuv.so.1 libarchive.so.13 libcurl.so.4 libspdlog.so.1.10; do
    [ -z "$(find "$ROOT/usr/lib" "$ROOT/lib" -name "$so" 2>/dev/null | head -n 1)" ] ||
        fail "the minimal root already has $so; it would hide a bundle that lacks it"
done

# Only the bundle goes in, as in the Dockerfile's runtime stage.
mkdir -p "$ROOT/opt"
cp -a "$BUNDLE" "$ROOT/opt/hearth"
chroot "$ROOT" /usr/sbin/useradd --system --user-group --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin hearth ||
    fail "useradd hearth in the root failed"
HEARTH_UID=$(chroot "$ROOT" id -u hearth)
mkdir -p "$ROOT/fixtures"

# ---------------------------------------------------------- hearth as PID 1
# unshare's child (PID 1 of the new namespace) mounts /proc inside the root
# and execs chroot, which execs hearth: hearth keeps PID 1.
HEARTH_STDOUT=$TEST_TMP/hearth.out
HEARTH_STDERR=$TEST_TMP/hearth.err
# shellcheck disable=SC2016 # expanded by the inner shell
env -u LD_LIBRARY_PATH -u LD_PRELOAD unshare --pid --fork --mount --propagation private -- \
    /bin/sh -c 'root=$1; shift; mount -t proc proc "$root/proc" && exec chroot "$root" "$@"' \
    sh "$ROOT" /opt/hearth/bin/hearth --state-dir /var/lib/hearth --run-dir /run/hearth \
    --python /usr/bin/python3 --user hearth --grace 5 \
    </dev/null >"$HEARTH_STDOUT" 2>"$HEARTH_STDERR" &
HEARTH_LAUNCHER_PID=$!
track_pid "$HEARTH_LAUNCHER_PID"
HEARTH_PID=

hearth_up() {
    [ -n "$HEARTH_PID" ] || HEARTH_PID=$(proc_children "$HEARTH_LAUNCHER_PID" | head -n 1)
    [ -n "$HEARTH_PID" ] && [ "$(cat "/proc/$HEARTH_PID/comm" 2>/dev/null)" = hearth ] &&
        _hearth_has_signalfd "$HEARTH_PID" && [ -S "$ROOT/run/hearth/control.sock" ]
}
deadline=$(($(now_ms) + 20000))
until hearth_up; do
    proc_running "$HEARTH_LAUNCHER_PID" || fail "hearth in the root exited before it listened"
    [ "$(now_ms)" -lt "$deadline" ] || fail "hearth in the root not listening after 20 s"
    sleep 0.05
done
track_pid "$HEARTH_PID"
nspid=$(proc_status_field "$HEARTH_PID" NSpid)
[ "${nspid##*[[:space:]]}" = 1 ] || fail "hearth is not PID 1 in its namespace (NSpid: $nspid)"
PIDNS=$(readlink "/proc/$HEARTH_PID/ns/pid")

# hearthctl is the bundle's, run inside the root; paths are the root's.
HEARTHCTL=$TEST_TMP/hearthctl-in-root
printf '#!/bin/sh\nexec chroot %q /opt/hearth/bin/hearthctl "$@"\n' "$ROOT" >"$HEARTHCTL"
chmod +x "$HEARTHCTL"
HEARTH_SOCKET=/run/hearth/control.sock

run_ctl ping
assert_eq 0 "$RUN_RC" "hearthctl ping inside the root ($RUN_ERR)"
ctl_ok status
assert_eq "none degraded" "$(jget "$RUN_OUT" "j['hearth']['cgroup']['driver'] + ' ' + j['hearth']['cgroup']['enforcement']")" \
    "cgroup driver and enforcement without cgroupfs"

# ------------------------------------------------------ deploy and redeploy
start_httpd
make_sample
make_ticker "$FIX/a.pex" blue
make_ticker "$FIX/b.pex" green
serve deps.pex "$SAMPLE_DEPS"
serve a.pex "$FIX/a.pex"
deps_sha=$(sha256_of "$SAMPLE_DEPS")
deploy_ready app --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" \
    --source "$HTTPD_URL/a.pex" --source-sha256 "$(sha256_of "$FIX/a.pex")"
assert_eq app-1 "$DEPLOY_ID" "first revision"
wait_log_line app app-1 "stdout blue started: hello, blue"
pid1=$(host_pid "$(jget "$DEPLOY_REV" "j['pid']")")
[ -n "$pid1" ] || fail "no process for app-1"
read -r -a uids <<<"$(proc_status_field "$pid1" Uid)"
assert_eq "$HEARTH_UID $HEARTH_UID" "${uids[0]} ${uids[1]}" "app-1's real and effective uid (user hearth)"

cp "$FIX/b.pex" "$ROOT/fixtures/b.pex"
deploy_ready app --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$deps_sha" --source /fixtures/b.pex
assert_eq app-2 "$DEPLOY_ID" "redeployed revision"
wait_log_line app app-2 "stdout green started: hello, green"
wait_rev_state app app-1 stopped
wait_until 10 "app-1's process to exit" proc_gone "$pid1"
assert_eq app-2 "$(active_of app)" "active after the redeploy"
pid2=$(host_pid "$(rev_get app app-2 "r['pid']")")
[ -n "$pid2" ] || fail "no process for app-2"

# ------------------------------------------------------------- shutdown
run_ctl shutdown
assert_eq 0 "$RUN_RC" "hearthctl shutdown ($RUN_ERR)"
wait_hearth_exit 30
assert_eq 0 "$HEARTH_RC" "exit status of hearth (and unshare) after shutdown"
proc_gone "$pid2" || fail "app-2's process outlived hearth"
left=""
for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$PIDNS" ] && left="$left ${p#/proc/}"
done
assert_eq "" "$left" "processes left in hearth's PID namespace"
grep -q "stopping" "$HEARTH_STDERR" || note "hearth's log has no 'stopping' line"

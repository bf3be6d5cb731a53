#!/bin/sh
# Installs the Debian 12 packages hearth needs to build and test, if missing.
# Sourced or run by scripts/demo and scripts/test; needs root for apt-get.
set -eu

packages="build-essential meson ninja-build pkg-config scdoc \
libuv1-dev libarchive-dev nlohmann-json3-dev libspdlog-dev libcurl4-openssl-dev libssl-dev catch2 \
python3 util-linux procps libarchive-tools unzip clang-format clang-tidy \
patchelf debootstrap python3-yaml systemd"
# Why the last four (build and test dependencies of issue 14's operations work):
# - patchelf: `ninja bundle` gives each copied library the run path $ORIGIN,
#   which linking cannot do for Debian's prebuilt libraries (meson.build).
# - debootstrap: tests/integration/container_chroot.sh builds the minimal
#   Debian root filesystem the bundle runs in as PID 1 (cached outside the repo).
# - python3-yaml: tests/k8s_manifest.py parses container/kubernetes/.
# - systemd: only for `systemd-analyze verify` in tests/integration/systemd_unit.sh
#   and pkg-config systemd's unit directory; already there on most Debian
#   systems, and nothing here starts it.
[ "${HEARTH_WITH_BENCH_DEPS:-0}" = 1 ] && packages="$packages tini supervisor hyperfine curl"

missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "hearth: installing Debian packages:$missing" >&2
    if [ "$(id -u)" != 0 ]; then
        echo "hearth: need root to install packages (run as root or install them yourself)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
fi

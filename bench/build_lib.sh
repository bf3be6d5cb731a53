# shellcheck shell=bash
# Sourced by the benches, from the source root: logging and the release build.
#
#   log MESSAGE...                 "== MESSAGE" on stderr
#   bench_build BUILD_DIR TARGET...
#                                  meson setup BUILD_DIR (release) if it is not
#                                  set up yet, then ninja TARGET...; exits 1
#                                  with the build directory named on failure
#   bench_hearth [BUILD_DIR]       sets HEARTH and HEARTHCTL: as given in the
#                                  environment (HEARTH set: no build), else
#                                  built in BUILD_DIR (default build-bench);
#                                  exits 1 if either is not executable

log() { printf '== %s\n' "$*" >&2; }

bench_build() {
    local build=$1
    shift
    if [ ! -f "$build/build.ninja" ]; then
        log "meson setup $build"
        meson setup "$build" --buildtype=release >/dev/null
    fi
    log "ninja -C $build $*"
    if ! ninja -C "$build" "$@" >/dev/null; then
        echo "$(basename "$0"): cannot build $* in $build" >&2
        exit 1
    fi
}

bench_hearth() {
    if [ -z "${HEARTH:-}" ]; then
        local build=${1:-build-bench}
        bench_build "$build" src/hearth src/hearthctl
        HEARTH=$PWD/$build/src/hearth
        HEARTHCTL=$PWD/$build/src/hearthctl
    fi
    HEARTHCTL=${HEARTHCTL:-$(dirname "$HEARTH")/hearthctl}
    [ -x "$HEARTH" ] || { echo "no hearth binary at $HEARTH" >&2; exit 1; }
    [ -x "$HEARTHCTL" ] || { echo "no hearthctl binary at $HEARTHCTL" >&2; exit 1; }
}

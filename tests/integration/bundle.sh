#!/bin/bash
# The relocatable bundle (`ninja bundle`, tools/bundle.py): bin/hearth and
# bin/hearthctl plus lib/ with everything beyond glibc.
# - `ldd` of every file in it, run with an empty LD_LIBRARY_PATH, names only
#   glibc and the bundle's own lib/ (the dlopen'ed libarchive and libcurl and
#   all their dependencies included), and nothing "not found".
# - hearthctl needs glibc only.
# - The highest GLIBC_ symbol version any file needs is at most the glibc it
#   was built against, and hearth(8) PORTABILITY names both.
# - A copy of the bundle moved elsewhere runs a deploy over HTTP (libcurl)
#   with extraction (libarchive), and hearth's memory map then holds shared
#   libraries from that copy's lib/ and glibc only.
# shellcheck source=fetch_lib.sh
. "$(dirname "$0")/fetch_lib.sh"

BUNDLE=${HEARTH_BUNDLE:-}
[ -n "$BUNDLE" ] || fail "HEARTH_BUNDLE is not set (run through 'meson test')"
[ -d "$BUNDLE/bin" ] && [ -d "$BUNDLE/lib" ] || fail "no bundle at $BUNDLE (ninja bundle)"
need_cmd ldd objdump
MAN=$HEARTH_SOURCE_ROOT/man/hearth.8.scd

# glibc's own libraries, as tools/bundle.py leaves them out.
GLIBC_RE='^(linux-vdso|linux-gate|ld-linux[-_a-z0-9.]*|ld64|libc|libm|libmvec|libdl|libpthread|librt|libresolv|libutil|libanl|libnsl|libBrokenLocale|libthread_db|libnss_[a-z0-9_]+|libc_malloc_debug)\.so(\.[0-9]+)*$'
is_glibc() { [[ $1 =~ $GLIBC_RE ]]; }

# ldd_outside FILE LIBDIR: prints every library ldd resolves for FILE that is
# neither glibc's nor in LIBDIR (canonical path), and every one not found.
ldd_outside() {
    local file=$1 libdir line name where
    libdir=$(readlink -f "$2")
    while read -r line; do
        if [[ $line =~ ^([^[:space:]]+)[[:space:]]+=\>[[:space:]]+(not found|[^[:space:]]+) ]]; then
            name=${BASH_REMATCH[1]}
            where=${BASH_REMATCH[2]}
            if [ "$where" = "not found" ]; then
                echo "$name (not found)"
            elif [ "$(dirname "$(readlink -f "$where")")" = "$libdir" ]; then
                :
            elif ! is_glibc "$name"; then
                echo "$name => $where"
            fi
        elif [[ $line =~ ^([^[:space:]]+)[[:space:]]+\( ]]; then
            # the vDSO and the dynamic loader: no "=>"
            name=$(basename "${BASH_REMATCH[1]}")
            is_glibc "$name" || echo "$line"
        elif [[ $line == *"statically linked"* ]]; then
            :
        else
            echo "unexpected ldd line: $line"
        fi
    done < <(LD_LIBRARY_PATH= ldd "$file" 2>&1)
}

# ------------------------------------------------------------ the ldd rule
[ -x "$BUNDLE/bin/hearth" ] || fail "bundle has no bin/hearth"
[ -x "$BUNDLE/bin/hearthctl" ] || fail "bundle has no bin/hearthctl"
for so in libarchive.so.13 libcurl.so.4; do
    [ -f "$BUNDLE/lib/$so" ] || fail "bundle lacks the dlopen'ed $so"
done
n=0
for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do
    bad=$(ldd_outside "$f" "$BUNDLE/lib")
    [ -z "$bad" ] || fail "ldd $f names libraries outside glibc and the bundle: $bad"
    n=$((n + 1))
done
note "ldd rule holds for $n files"

# hearthctl: glibc and nothing else.
ctl_libs=$(LD_LIBRARY_PATH= ldd "$BUNDLE/bin/hearthctl" | awk '$2 == "=>" { print $1 }')
for name in $ctl_libs; do
    is_glibc "$name" || fail "bundled hearthctl needs $name (only glibc expected): $ctl_libs"
done

# ------------------------------------------------------------------ glibc
built=$(ldd --version | awk 'NR == 1 { print $NF }')
assert_match "$built" '^[0-9]+\.[0-9]+$' "glibc version from ldd --version"
max=$(for f in "$BUNDLE"/bin/* "$BUNDLE"/lib/*; do objdump -T "$f"; done |
    grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/^GLIBC_//' | sort -u -V | tail -n 1)
assert_match "$max" '^[0-9]+\.[0-9]+' "highest GLIBC_ symbol version"
[ "$(printf '%s\n%s\n' "$max" "$built" | sort -V | tail -n 1)" = "$built" ] ||
    fail "the bundle needs GLIBC_$max, newer than the glibc $built it was built against"
portability=$(sed -n '/^# PORTABILITY/,/^# [A-Z]/p' "$MAN")
[ -n "$portability" ] || fail "hearth(8) has no PORTABILITY section"
assert_contains "$portability" "glibc $built" "hearth(8) PORTABILITY"
assert_contains "$portability" "GLIBC_$max" "hearth(8) PORTABILITY"

# ------------------------------------------- a moved copy runs a deploy
COPY=$TEST_TMP/opt/hearth
mkdir -p "$TEST_TMP/opt"
cp -a "$BUNDLE" "$COPY"
HEARTH=$COPY/bin/hearth
HEARTH_REAL=$(readlink -f "$HEARTH")
HEARTHCTL=$COPY/bin/hearthctl
# Nothing of the builder's environment may help it find libraries.
HEARTH_WRAP=(env -u LD_LIBRARY_PATH -u LD_PRELOAD)

start_httpd
start_deploy_hearth
make_sample
make_ticker "$FIX/web.pex" bundled
serve deps.pex "$SAMPLE_DEPS"
serve web.pex "$FIX/web.pex"
deploy_ready web --deps "$HTTPD_URL/deps.pex" --deps-sha256 "$(sha256_of "$SAMPLE_DEPS")" \
    --source "$HTTPD_URL/web.pex" --source-sha256 "$(sha256_of "$FIX/web.pex")"
wait_log_line web "" "stdout bundled started: hello, bundled"

copy_lib=$(readlink -f "$COPY/lib")
maps=$(awk '$6 ~ /\.so/ { print $6 }' "/proc/$HEARTH_PID/maps" | sort -u)
for so in libarchive.so.13 libcurl.so.4 libuv.so.1 libstdc++.so.6; do
    grep -qxF "$copy_lib/$so" <<<"$maps" ||
        fail "hearth did not map $copy_lib/$so; its libraries: $maps"
done
while read -r path; do
    [ "$(dirname "$path")" = "$copy_lib" ] && continue
    is_glibc "$(basename "$path")" && continue
    fail "hearth mapped $path, from outside the bundle and glibc"
done <<<"$maps"

run_ctl ping
assert_eq 0 "$RUN_RC" "bundled hearthctl ping ($RUN_ERR)"
finish_deploy_hearth

#!/bin/bash
# Unsafe or corrupt archives fail with reason bad_archive, naming the
# artifact and (where there is one) the offending entry, and nothing is
# written outside the store: a truncated pex, an entry whose data is
# corrupt, a zip-slip entry (../evil, a/../../evil), an absolute path, a
# symlink leaving the tree. No tree is published for them, the store's tmp/
# is left empty, and a good deploy still works afterwards.
# shellcheck source=deploy_lib.sh
. "$(dirname "$0")/deploy_lib.sh"

start_deploy_hearth
make_sample
src=$SAMPLE_SOURCE

size=$(stat -c %s "$src")
head -c $((size / 2)) "$src" >"$FIX/truncated.pex"

cp "$src" "$FIX/crc.pex"
"$PYTHON" - "$FIX/crc.pex" <<'PY' || fail "cannot corrupt crc.pex"
import struct, sys, zipfile
p = sys.argv[1]
with zipfile.ZipFile(p) as zf:
    zi = zf.getinfo("app/main.py")  # header_offset is absolute (shebang included)
with open(p, "r+b") as f:
    f.seek(zi.header_offset + 26)
    n, m = struct.unpack("<HH", f.read(4))
    at = zi.header_offset + 30 + n + m + zi.compress_size // 2
    f.seek(at)
    b = f.read(8)
    f.seek(at)
    f.write(bytes(x ^ 0x55 for x in b))
PY

pex_edit "$FIX/slip.pex" "$src" 'entries.append([zipfile.ZipInfo("../evil"), b"evil\n"])'
pex_edit "$FIX/slip2.pex" "$src" 'entries.append([zipfile.ZipInfo("app/../../evil2"), b"evil\n"])'
pex_edit "$FIX/abs.pex" "$src" "entries.append([zipfile.ZipInfo('$TEST_TMP/evil-abs'), b'evil\n'])"
pex_edit "$FIX/link.pex" "$src" '
zi = zipfile.ZipInfo("app/evil-link")
zi.create_system = 3
zi.external_attr = (0o120777 << 16)
entries.append([zi, b"../../../../../../../../evil-target"])'
pex_edit "$FIX/deps-slip.pex" "$SAMPLE_DEPS" 'entries.append([zipfile.ZipInfo("../evil-deps"), b"evil\n"])'

# bad LABEL DEPS SOURCE ARTIFACT MESSAGE-PART...: deploys, expects
# bad_archive with a message naming ARTIFACT ("deps"/"source") and each PART.
bad() {
    local label=$1 deps=$2 source=$3 artifact=$4
    shift 4
    deploy_failed "$label" --deps "$deps" --source "$source"
    assert_eq bad_archive "$(jget "$DEPLOY_REV" "j['reason']")" "$label: reason"
    assert_eq null "$(jget "$DEPLOY_REV" "j.get('pid')")" "$label: pid"
    local msg part bad_sha
    msg=$(jget "$DEPLOY_REV" "j['message']")
    assert_contains "$msg" "$artifact" "$label: message"
    for part in "$@"; do assert_contains "$msg" "$part" "$label: message"; done
    assert_contains "$DEPLOY_ERR" "bad_archive" "$label: hearthctl deploy --wait stderr"
    bad_sha=$(sha256_of "$([ "$artifact" = deps ] && echo "$deps" || echo "$source")")
    [ ! -e "$HEARTH_STATE_DIR/trees/sha256/$bad_sha" ] || fail "$label: a tree was published for it"
}

bad truncated "$SAMPLE_DEPS" "$FIX/truncated.pex" source "$(sha256_of "$FIX/truncated.pex")"
bad crc "$SAMPLE_DEPS" "$FIX/crc.pex" source "app/main.py"
bad slip "$SAMPLE_DEPS" "$FIX/slip.pex" source "'../evil'"
bad slip2 "$SAMPLE_DEPS" "$FIX/slip2.pex" source "app/../../evil2"
bad abs "$SAMPLE_DEPS" "$FIX/abs.pex" source "$TEST_TMP/evil-abs"
bad link "$SAMPLE_DEPS" "$FIX/link.pex" source "app/evil-link"
bad deps-slip "$FIX/deps-slip.pex" "$SAMPLE_SOURCE" deps "../evil-deps"

# Nothing escaped: no file named evil* anywhere in the test's directory (the
# store and everything around it), nor at the absolute paths.
found=$(find "$TEST_TMP" -name 'evil*' ! -name '*.pex')
assert_eq "" "$found" "files written by unsafe entries"
[ ! -e "$TEST_TMP/evil-abs" ] || fail "the absolute entry was written"
if [ -e /evil-target ] || [ -L /evil-target ]; then fail "/evil-target exists"; fi
left=$(find "$HEARTH_STATE_DIR/tmp" -mindepth 1)
assert_eq "" "$left" "leftovers in the store's tmp/"

# The same store still deploys good files.
deploy_ready analytics --deps "$SAMPLE_DEPS" --source "$SAMPLE_SOURCE"

finish_deploy_hearth

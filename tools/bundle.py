#!/usr/bin/env python3
"""Builds hearth's relocatable bundle: OUT/bin and OUT/lib.

Usage (ninja bundle runs it, see meson.build):

    bundle.py --out DIR [--patchelf PATH] [--strip PATH]
              --bin NAME=FILE ... [--dlopen FILE ...]

Every --bin FILE is copied to OUT/bin/NAME (its RUNPATH must already say
$ORIGIN/../lib: the bundle's binaries are linked for it). Every shared library
the binaries and the --dlopen libraries need, as `ldd` resolves them here, is
copied to OUT/lib under the name the dependent asks for (its soname), except
glibc's own libraries: those must come from the system the bundle runs on,
since they are tied to its ld.so (GLIBC_PRIVATE interfaces). Each copied
library gets RUNPATH $ORIGIN, because a DT_RUNPATH only serves the object's
own direct dependencies: without one, a library's dependencies (libarchive's
libxml2, libcurl's libssl, ...) would be looked up on the system.

OUT is rebuilt from scratch each time. Exit status 1 with a message when a
dependency cannot be resolved or a tool fails.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

# glibc's libraries (and the kernel's vDSO): never bundled. Shared with
# tests/integration/bundle.sh, which applies the same rule to the result.
GLIBC = re.compile(
    r"^(linux-vdso|linux-gate|ld-linux[-\w.]*|ld64|libc|libm|libmvec|libdl|libpthread|librt|"
    r"libresolv|libutil|libanl|libnsl|libBrokenLocale|libthread_db|libnss_\w+|"
    r"libc_malloc_debug)\.so(\.\d+)*$"
)

LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+|not found)")


def die(msg):
    print("bundle: " + msg, file=sys.stderr)
    sys.exit(1)


def run(cmd):
    # An empty LD_LIBRARY_PATH: the bundle must not depend on the builder's.
    env = dict(os.environ, LD_LIBRARY_PATH="")
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        die("%s failed (%d): %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def needed(path):
    """{soname: resolved file} for every non-glibc library `path` needs,
    directly or not (ldd lists the whole closure)."""
    out = {}
    for line in run(["ldd", path]).splitlines():
        m = LDD_LINE.match(line)
        if not m:
            continue  # the vDSO and ld.so lines have no "=>" target
        name, where = m.groups()
        if GLIBC.match(name):
            continue
        if where == "not found":
            die("%s needs %s, which is not found" % (path, name))
        out[name] = os.path.realpath(where)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", action="append", default=[], metavar="NAME=FILE")
    ap.add_argument("--dlopen", action="append", default=[], metavar="FILE")
    ap.add_argument("--patchelf", default="patchelf")
    ap.add_argument("--strip", default="", help="strip debug info from the binaries' copies")
    a = ap.parse_args()

    out = os.path.abspath(a.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(os.path.join(out, "bin"))
    os.makedirs(os.path.join(out, "lib"))

    libs = {}
    for spec in a.bin:
        name, _, src = spec.partition("=")
        if not name or not src:
            die("--bin wants NAME=FILE, got %r" % spec)
        dst = os.path.join(out, "bin", name)
        shutil.copy2(src, dst)
        if a.strip:
            run([a.strip, "--strip-debug", dst])
        libs.update(needed(src))
    for lib in a.dlopen:
        if not os.path.exists(lib):
            die("dlopen'ed library %s does not exist" % lib)
        libs[os.path.basename(lib)] = os.path.realpath(lib)
        libs.update(needed(lib))

    for name, src in sorted(libs.items()):
        dst = os.path.join(out, "lib", name)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
        run([a.patchelf, "--set-rpath", "$ORIGIN", dst])
    print("bundle: %s: %d binaries, %d libraries" % (out, len(a.bin), len(libs)))


if __name__ == "__main__":
    main()

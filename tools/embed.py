#!/usr/bin/env python3
"""Turn a text file into a C++ raw string literal include (used for hearth_boot.py)."""
import sys

src, dst = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    text = f.read()
delim = "HEARTH_EMBED"
assert ")" + delim not in text
with open(dst, "w", encoding="utf-8") as f:
    f.write('R"' + delim + "(" + text + ")" + delim + '"\n')

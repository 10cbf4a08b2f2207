#!/usr/bin/env python3
"""Issue 13's "a format is one directory", checked on the source: core/ and guest/ name none of the
formats that were added as plugins alone (vdi, qed, parallels, luks, qcow, dmg, bochs, cloop) in
code. Allowed: comments, and the tables of qemu's own block drivers that core needs whether or not a
plugin is installed (which names qemu-img's measure, dd and rebase refuse or accept), listed below.
Usage: test_core_names_no_format.py SOURCE_ROOT"""
import pathlib
import re
import sys

FORMATS = ["vdi", "qed", "parallels", "luks", "qcow", "dmg", "bochs", "cloop"]
# (file, table): qemu-img's driver lists, named after qemu, not after a plugin.
QEMU_DRIVER_TABLES = {
    ("core/src/cli/cmd_measure.cpp", "NO_CREATE"),
    ("core/src/cli/cmd_measure.cpp", "NO_MEASURE"),
    ("core/src/cli/cmd_rebase.cpp", "QEMU_DRIVERS"),
    ("core/src/cli/cmd_dd.cpp", "QEMU_NO_CREATE"),
    ("core/src/cli/cmd_dd.cpp", "QEMU_CREATES"),
}
LITERAL = re.compile(r'"(%s)"' % "|".join(FORMATS))
TABLE = re.compile(r"\b([A-Z][A-Z0-9_]*)\[\]\s*=\s*\{")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return [re.sub(r"//.*", "", line) for line in text.split("\n")]


def main():
    root = pathlib.Path(sys.argv[1])
    found = []
    for top in ("core", "guest"):
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in (".cpp", ".h", ".hpp", ".c"):
                continue
            rel = path.relative_to(root).as_posix()
            table = None
            for number, line in enumerate(strip_comments(path.read_text(errors="replace")), 1):
                m = TABLE.search(line)
                if m:
                    table = m.group(1)
                for hit in LITERAL.finditer(line):
                    if table is not None and (rel, table) in QEMU_DRIVER_TABLES:
                        continue
                    found.append("%s:%d: %s" % (rel, number, hit.group(0)))
                if "};" in line:
                    table = None
    for f in found:
        print("format named in core/guest code:", f)
    print("%d format names outside qemu's driver tables" % len(found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Makes fuzz_vhdx_replay's seeds (corpus/replay-*.vhdx): a qemu-img vhdx cut to its first 2 MiB
(identifier, headers, region tables, log) with a pending log entry at its log (vhdx_log_images.py).
replay-zero: one zero descriptor; replay-data: a data and a zero descriptor and an unaligned last
file offset (the replay grows the file).

Usage: make_replay_seeds.py QEMU_IMG CORPUS_DIR
"""
import os
import subprocess
import sys
import tempfile

from vhdx_log_images import with_pending_log

MIB = 1 << 20


def main():
    qemu_img, corpus = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as work:
        base = os.path.join(work, "base.vhdx")
        subprocess.run([qemu_img, "create", "-q", "-f", "vhdx", base, "8M"], check=True)
        os.truncate(base, 2 * MIB)  # the log (1 MiB at 1 MiB) must lie inside the file
        with_pending_log(base, os.path.join(corpus, "replay-zero.vhdx"), zeros=[(0xf0000, 8192)])
        with_pending_log(base, os.path.join(corpus, "replay-data.vhdx"), writes=[(0xe0000, bytes(range(256)) * 16)],
                         zeros=[(0xf0000, 4096)], grow=4096)


if __name__ == "__main__":
    main()

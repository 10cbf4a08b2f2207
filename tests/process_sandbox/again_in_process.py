#!/usr/bin/env python3
"""Runs an end-to-end suite again under the process sandbox (INSTAR_SANDBOX=process, set by meson)
where its ordinary run used the other sandbox. Where the default (--sandbox=auto) already picks the
process sandbox (no usable /dev/kvm), the ordinary run of the same suite checked every case in it, so
this run would repeat it byte for byte: it is skipped, loudly, saying so.

Usage: again_in_process.py INSTAR SCRIPT.py ARGS...   (SCRIPT runs with this Python)
"""
import json
import os
import subprocess
import sys
import tempfile


def default_sandbox(instar):
    """The sandbox `instar formats --probe` reports with INSTAR_SANDBOX unset (auto)."""
    env = {k: v for k, v in os.environ.items() if k != "INSTAR_SANDBOX"}
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "probe.raw")
        with open(image, "wb") as f:
            f.write(bytes(512))
        out = subprocess.run([instar, "formats", "--probe", image], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("again_in_process: instar formats --probe failed: " + out.stderr.strip())
    return json.loads(out.stdout)["sandbox"]


def main():
    instar, script = sys.argv[1], sys.argv[2]
    if default_sandbox(instar) == "process":
        print("SKIPPED LOUDLY: no usable /dev/kvm, so the default sandbox here is the process sandbox and "
              "%s's ordinary run already checked every case in it" % os.path.basename(script))
        sys.exit(77)
    os.execv(sys.executable, [sys.executable, script] + sys.argv[3:])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Interleaved timing of commands that change an image in place (instar against qemu-img).

hyperfine runs all of one command's runs before the next command's, so a drift in the machine
(another process, the page cache, CPU frequency) lands on one side. Here every round runs each
command once, in a fresh random order, each on a fresh copy of the template image that was synced
to disk untimed (a fresh copy's dirty pages would otherwise go to disk inside the first flush of
whichever command comes first). Prints each median (and minimum) and the ratio of the first
command's median to each other's.

Usage: interleaved.py ROUNDS TEMPLATE NAME=COMMAND... (COMMAND runs through the shell in a scratch
directory holding a copy of TEMPLATE named img.<TEMPLATE's suffix>; docs/resize.md has figures.)
"""
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    rounds, template = int(sys.argv[1]), os.path.abspath(sys.argv[2])
    commands = [arg.split("=", 1) for arg in sys.argv[3:]]
    image = "img" + os.path.splitext(template)[1]
    times = {name: [] for name, _ in commands}
    with tempfile.TemporaryDirectory(prefix="instar-bench-") as scratch:
        for _ in range(rounds):
            order = list(commands)
            random.shuffle(order)
            for name, command in order:
                target = os.path.join(scratch, image)
                shutil.copyfile(template, target)
                subprocess.run(["sync", "-f", target], check=True)
                start = time.perf_counter()
                subprocess.run(command, shell=True, cwd=scratch, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    first = commands[0][0]
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, t in times.items():
        line = "%-10s median %7.2f ms  min %7.2f ms" % (name, medians[name] * 1e3, min(t) * 1e3)
        if name != first:
            line += "  %s/%s %.3f" % (first, name, medians[first] / medians[name])
        print(line)
    print("rounds %d, load average %s" % (rounds, " ".join(open("/proc/loadavg").read().split()[:3])))
    return 0


if __name__ == "__main__":
    sys.exit(main())

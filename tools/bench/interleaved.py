#!/usr/bin/env python3
"""Interleaved timing of commands that change an image in place (instar against qemu-img).

hyperfine runs all of one command's runs before the next command's, so a drift in the machine
(another process, the page cache, CPU frequency) lands on one side. Here every round runs each
command once, in a fresh random order, each on a fresh copy of the template image that was synced
to disk untimed (a fresh copy's dirty pages would otherwise go to disk inside the first flush of
whichever command comes first). Prints each median (and minimum) and the ratio of the first
command's median to each other's.

Usage: interleaved.py [--with FILE]... [--static FILE]... [--times JSON] ROUNDS TEMPLATE NAME=COMMAND...
COMMAND runs through the shell in a scratch directory holding a copy of TEMPLATE named
img.<TEMPLATE's suffix>; each --with FILE is copied there too (same name) before every command, each
--static FILE once (a backing file the commands only read); --times writes every run's seconds.
docs/resize.md has figures.
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    args = sys.argv[1:]
    fresh, static, times_json = [], [], None
    while len(args) >= 2 and args[0] in ("--with", "--static", "--times"):
        if args[0] == "--times":
            times_json = args[1]
        else:
            (fresh if args[0] == "--with" else static).append(os.path.abspath(args[1]))
        args = args[2:]
    if len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    rounds, template = int(args[0]), os.path.abspath(args[1])
    commands = [arg.split("=", 1) for arg in args[2:]]
    image = "img" + os.path.splitext(template)[1]
    times = {name: [] for name, _ in commands}
    with tempfile.TemporaryDirectory(prefix="instar-bench-") as scratch:
        for path in static:
            shutil.copyfile(path, os.path.join(scratch, os.path.basename(path)))
        for _ in range(rounds):
            order = list(commands)
            random.shuffle(order)
            for name, command in order:
                target = os.path.join(scratch, image)
                shutil.copyfile(template, target)
                for path in fresh:
                    shutil.copyfile(path, os.path.join(scratch, os.path.basename(path)))
                subprocess.run(["sync", "-f", target], check=True)
                start = time.perf_counter()
                subprocess.run(command, shell=True, cwd=scratch, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - start)
    if times_json is not None:
        with open(times_json, "w") as out:
            json.dump(times, out)
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

#!/usr/bin/env python3
"""Writes instar.1 from instar's own help texts (`instar --help`, `instar COMMAND --help`), so the
man page lists exactly the commands and flags the binary takes, and never falls out of step.
Usage: gen-manpage.py INSTAR OUTPUT"""
import datetime
import os
import re
import subprocess
import sys

instar, output = sys.argv[1], sys.argv[2]
env = dict(os.environ, INSTAR_QEMU_VERSION="10.0.0", LC_ALL="C")


def run(*args):
    p = subprocess.run([instar, *args], capture_output=True, text=True, env=env, check=False)
    return p.returncode, p.stdout


def roff(text):
    out = []
    for line in text.splitlines():
        line = line.replace("\\", "\\e").replace("-", "\\-")
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


rc, top = run("--help")
if rc != 0:
    sys.exit(f"gen-manpage: {instar} --help failed")
version = re.search(r"version (\S+)", top).group(1)
standard = top.split("Standard options:\n", 1)[1].split("\nRecognized commands", 1)[0]
commands = re.findall(r"^  ([a-z]+) - (.*)$", top, re.M)

# SOURCE_DATE_EPOCH keeps the page reproducible (Debian builds set it).
when = datetime.datetime.fromtimestamp(int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or
                                       datetime.datetime.now().timestamp(), datetime.timezone.utc)
page = [
    f'.TH INSTAR 1 "{when:%Y-%m-%d}" "instar {version}" "User Commands"',
    ".SH NAME",
    "instar \\- sandboxed drop\\-in replacement for qemu\\-img",
    ".SH SYNOPSIS",
    ".B instar",
    "[\\fIstandard options\\fR] \\fICOMMAND\\fR [\\fB\\-\\-help\\fR | \\fIcommand options\\fR]",
    ".SH DESCRIPTION",
    "instar takes qemu\\-img's subcommands and flags and prints what qemu\\-img prints, for qemu\\-img 7.2 "
    "and for 8.0 and later (\\fB\\-\\-qemu\\-version\\fR).",
    "Every byte of an image is parsed inside a sandbox (a KVM micro\\-VM), never in the instar process.",
    "Image formats are plugins; \\fBinstar formats\\fR lists the ones installed.",
    ".SH STANDARD OPTIONS",
    ".nf",
    roff(standard.strip("\n")),
    ".fi",
    ".SH COMMANDS",
]
for name, summary in commands:
    page += [".SS " + name, roff(summary)]
    rc, text = run(name, "--help")
    if rc == 0 and text.strip():
        page += [".PP", ".nf", roff(text.rstrip("\n")), ".fi"]
page += [
    ".SH ENVIRONMENT",
    ".TP", ".B INSTAR_QEMU_VERSION",
    "The qemu\\-img version whose output to reproduce when \\fB\\-\\-qemu\\-version\\fR is not given.",
    ".TP", ".B INSTAR_PLUGIN_PATH",
    "Colon\\-separated directories searched for format plugins after the installed ones.",
    ".TP", ".B INSTAR_SECCOMP",
    "\\fBoff\\fR disables the sandbox process's seccomp filter (for debugging only).",
    ".SH EXIT STATUS",
    "As qemu\\-img's for each command: 0 on success, 1 on error; \\fBcheck\\fR and \\fBcompare\\fR "
    "use qemu\\-img's further codes.",
    ".SH SEE ALSO",
    ".BR qemu\\-img (1)",
    "",
]
with open(output, "w") as f:
    f.write("\n".join(page))

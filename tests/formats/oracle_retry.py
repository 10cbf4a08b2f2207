"""Runs fixture commands (qemu-img, qemu-io) so that the oracles' own flakiness cannot fail a test.

qemu's LUKS code sizes its PBKDF iteration count by timing a first round with getrusage(), whose
tick-based accounting on these machines often reports 0 ms; qemu then refuses with "Unable to get
accurate CPU usage", whatever encrypt.iter-time says. The rate depends on the hash: about one
creation in four with sha256, 38 in 60 with encrypt.hash-alg=sha1 (the fastest, so the likeliest to
finish its first timing round inside one tick), and more under load. That is qemu measuring the
machine, not the behaviour under test, so such a run is simply tried again."""
import os
import subprocess

# qemu's crypto/pbkdf.c message for a zero-length timing sample.
TRANSIENT = ("Unable to get accurate CPU usage",)
# A failing try costs one qemu start (it fails in its first timing round, a few ms). Ten tries were
# not enough: CI failed a sha1 creation ten times in a row under load. Even at a failure rate of 9 in
# 10, two hundred tries all fail about once in a billion runs.
ATTEMPTS = 200


def run_fixture(cmd, **kwargs):
    """subprocess.run(cmd, capture_output=True, text=True, **kwargs), retried while it fails with
    one of qemu's transient messages. Returns the last CompletedProcess (check=True raises as usual)."""
    check = kwargs.pop("check", False)
    for attempt in range(ATTEMPTS):
        p = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
        if p.returncode == 0 or not any(t in (p.stderr or "") for t in TRANSIENT):
            break
    if check and p.returncode != 0:
        raise subprocess.CalledProcessError(p.returncode, cmd, p.stdout, p.stderr)
    return p


def run_in_place(cmd, reset, **kwargs):
    """run_fixture for a command that changes its image in place (amend): qemu may have changed the
    image before its transient failure (a refcount_bits rebuild before the new key slot's PBKDF), so
    reset() restores the fixture before each retry, or the retry would start from another image."""
    for attempt in range(ATTEMPTS):
        p = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
        if p.returncode == 0 or not any(t in (p.stderr or "") for t in TRANSIENT):
            break
        reset()
    return p


def run_normalised(cmd, cwd, env=None, timeout=600):
    """run_fixture(cmd) -> (returncode, stdout, stderr), with cmd[0]'s directory replaced by ARGV0DIR
    in both texts: usage hints echo the program's path, and instar and qemu-img live apart."""
    p = run_fixture(cmd, cwd=cwd, env=env, timeout=timeout)
    d = os.path.dirname(cmd[0])
    out, err = p.stdout, p.stderr
    if d:
        out, err = out.replace(d, "ARGV0DIR"), err.replace(d, "ARGV0DIR")
    return p.returncode, out, err

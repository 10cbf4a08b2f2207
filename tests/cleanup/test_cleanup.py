#!/usr/bin/env python3
"""Nothing left behind: long `create` and `convert` runs interrupted by SIGINT, SIGTERM, SIGHUP and
SIGKILL, with unnamed (O_TMPFILE) temporaries and with named ones (INSTAR_NO_TMPFILE=1).

Each interrupted run must leave no temporary, leave a pre-existing target untouched, and end as
qemu-img 7.2 and 10.0 end for the same signal (killed by it; the shell sees 128 + N). After a
SIGKILL an unnamed temporary is gone with the process; a named one stays (docs/create.md).

usage: test_cleanup.py INSTAR QEMU_IMG_7_2 QEMU_IMG_10
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

INSTAR, QEMU72, QEMU10 = (os.path.abspath(a) for a in sys.argv[1:4])
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PRECIOUS = b"precious: must survive an interrupted overwrite\n"
WAIT_FOR_DATA = 20.0  # seconds for a run to start writing before the case fails

passed = failed = skipped = 0


def report(case, before, note=""):
    """Prints the case's outcome: ok unless a check failed since `before` failures."""
    if failed == before:
        print(f"ok: {case}{note}", flush=True)


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, flush=True)


def named_temporaries(work):
    return [n for n in os.listdir(work) if ".instar-" in n]


def writing(pid, work, target):
    """The size of the file the run is writing (its named temporary, an unnamed O_TMPFILE file or
    qemu-img's target), or None while there is none."""
    for n in named_temporaries(work):
        try:
            return os.stat(os.path.join(work, n)).st_blocks
        except FileNotFoundError:
            pass
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return None
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        # An O_TMPFILE file shows as DIR/#INODE (deleted); qemu-img writes the target itself.
        if link.startswith(work + "/#") or (target and link == target):
            try:
                return os.stat(f"/proc/{pid}/fd/{fd}").st_blocks
            except OSError:
                pass
    return None


def interrupt(argv, work, target, sig, env=None, preexec=None, then=None):
    """Starts argv in work, sends sig once it has written data; returns (returncode, stderr,
    sent) where sent is False when the run ended before it wrote anything."""
    p = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         preexec_fn=preexec)
    deadline = time.monotonic() + WAIT_FOR_DATA
    sent = False
    while time.monotonic() < deadline and p.poll() is None:
        blocks = writing(p.pid, work, target)
        if blocks:
            p.send_signal(sig)
            sent = True
            if then is not None:
                time.sleep(0.2)
                sent = p.poll() is None  # the first signal was ignored as it should be
                p.send_signal(then)
            break
        time.sleep(0.01)
    if not sent and p.poll() is None:
        p.kill()
    _, err = p.communicate()
    return p.returncode, err.decode(errors="replace"), sent


def reset(work, target, existing):
    for n in os.listdir(work):
        if n != "src.raw":
            os.unlink(os.path.join(work, n))
    if existing:
        with open(target, "wb") as f:
            f.write(PRECIOUS)


def untouched(target, existing):
    if not existing:
        return not os.path.exists(target)
    with open(target, "rb") as f:
        return f.read() == PRECIOUS


def main():
    global skipped
    # Every child starts with the default SIGHUP action, whatever this runner inherited (a run
    # under nohup ignores SIGHUP, and an ignored signal stays ignored across exec).
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    for binary in (INSTAR,):
        if not os.access(binary, os.X_OK):
            print(f"SKIPPED LOUDLY: {binary} missing")
            sys.exit(77)
    oracles = [q for q in (QEMU72, QEMU10) if os.access(q, os.X_OK)]
    if len(oracles) < 2:
        print("note: qemu-img oracle(s) missing; expecting killed-by-signal", flush=True)

    work = os.path.realpath(tempfile.mkdtemp(prefix="instar-cleanup-"))
    try:
        # A sparse raw source with 256 MiB of data spread over 1 GiB: long enough to interrupt.
        src = os.path.join(work, "src.raw")
        with open(src, "wb") as f:
            f.truncate(1 << 30)
            chunk = bytes(range(256)) * 4096
            for off in range(0, 1 << 30, 4 << 20):
                f.seek(off)
                f.write(chunk)

        commands = {
            "create qcow2 preallocation=full": (["create", "-f", "qcow2", "-o", "preallocation=full", "big.qcow2", "8G"], "big.qcow2"),
            "create raw preallocation=full": (["create", "-f", "raw", "-o", "preallocation=full", "big.raw", "8G"], "big.raw"),
            "convert raw to raw": (["convert", "-f", "raw", "-O", "raw", "src.raw", "big.img"], "big.img"),
            "convert raw to qcow2": (["convert", "-f", "raw", "-O", "qcow2", "src.raw", "big.qcow2"], "big.qcow2"),
        }

        # What qemu-img does: run each create and send each signal while it writes.
        expected = {}
        for name, (args, target) in commands.items():
            if name.startswith("convert"):
                continue  # qemu-img converts this source in a fraction of a second
            for sig in SIGNALS:
                for q in oracles:
                    t = os.path.join(work, target)
                    reset(work, t, existing=False)
                    rc, _, sent = interrupt([q] + args, work, t, sig)
                    if sent:
                        expected.setdefault(sig, set()).add(rc)
        for sig in SIGNALS:
            seen = expected.get(sig, {-sig})
            check(seen == {-sig}, f"qemu-img ends killed by {sig.name}: {sorted(seen)}")

        for mode, env_extra in (("unnamed", {}), ("named", {"INSTAR_NO_TMPFILE": "1"})):
            env = dict(os.environ)
            env.pop("INSTAR_NO_TMPFILE", None)
            env.update(env_extra)
            for name, (args, target) in commands.items():
                t = os.path.join(work, target)
                for sig in SIGNALS:
                    for existing in (True, False) if sig == signal.SIGTERM else (True,):
                        reset(work, t, existing)
                        rc, err, sent = interrupt([INSTAR] + args, work, t, sig, env=env)
                        case = f"{mode}: {name}, {sig.name}, {'over an existing target' if existing else 'new target'}"
                        if not sent:
                            skipped += 1
                            print(f"SKIPPED LOUDLY: {case}: finished before it wrote data (rc {rc}) {err}", flush=True)
                            continue
                        before = failed
                        check(rc == -sig, f"{case}: exit {rc}, expected killed by {sig.name}; stderr {err!r}")
                        check(not named_temporaries(work), f"{case}: left {named_temporaries(work)}")
                        check(untouched(t, existing), f"{case}: the target was changed")
                        report(case, before)

            # An ignored SIGHUP stays ignored (nohup), as for qemu-img; SIGTERM then ends the run.
            args, target = commands["create raw preallocation=full"]
            t = os.path.join(work, target)
            reset(work, t, existing=True)
            rc, err, sent = interrupt([INSTAR] + args, work, t, signal.SIGHUP, env=env,
                                      preexec=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
                                      then=signal.SIGTERM)
            case = f"{mode}: ignored SIGHUP, then SIGTERM"
            before = failed
            check(sent, f"{case}: the ignored SIGHUP ended the run (rc {rc})")
            check(rc == -signal.SIGTERM, f"{case}: exit {rc}")
            check(not named_temporaries(work) and untouched(t, True), f"{case}: left {os.listdir(work)}")
            report(case, before)

            # kill -9: an unnamed temporary goes with the process; a named one stays (documented).
            args, target = commands["create qcow2 preallocation=full"]
            t = os.path.join(work, target)
            reset(work, t, existing=True)
            rc, err, sent = interrupt([INSTAR] + args, work, t, signal.SIGKILL, env=env)
            case = f"{mode}: SIGKILL"
            before = failed
            check(sent and rc == -signal.SIGKILL, f"{case}: exit {rc}")
            left = named_temporaries(work)
            if mode == "unnamed":
                check(not left, f"{case}: left {left}")
            else:
                check(len(left) == 1 and left[0].startswith(".big.qcow2.instar-"),
                      f"{case}: expected the named temporary to stay, found {left}")
            check(untouched(t, True), f"{case}: the target was changed")
            report(case, before, " (named temporary left, as documented)" if left else "")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

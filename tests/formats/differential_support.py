"""Shared pieces of the per-format differential checks (plugins/<fmt>/tests/*_differential.py):
the qemu-img oracles, running commands, comparing a hosted tool's report with
`qemu-img info --output=json`, and the closing "N passed, N failed" line."""
import json
import os
import sys

from oracle_retry import run_fixture
from sparse_compare import data_ranges

QEMUS = {'7.2': ('/usr/bin/qemu-img', '/usr/bin/qemu-io'),
         '10.0': ('/opt/qemu-img-10/root/usr/bin/qemu-img', '/opt/qemu-img-10/root/usr/bin/qemu-io')}
FIELDS = ('virtual-size', 'cluster-size', 'encrypted', 'dirty-flag', 'backing-filename-format')


def run(cmd):
    return run_fixture(cmd, check=True).stdout


def strip(j):
    """A JSON report without the fields that name the file or measure the host's allocation
    (filename, actual-size), at every level: 10.0 nests the protocol node in children."""
    if isinstance(j, dict):
        return {k: strip(v) for k, v in j.items() if k not in ('filename', 'actual-size')}
    if isinstance(j, list):
        return [strip(v) for v in j]
    return j


def read_head(path, length):
    """The file's first `length` bytes (all of a shorter file) in one bytearray, read in place (no
    copies), for masking where it lies."""
    with open(path, 'rb') as f:
        b = bytearray(min(length, os.fstat(f.fileno()).st_size))
        view, done = memoryview(b), 0
        while done < len(b):
            n = f.readinto(view[done:])
            if not n:
                break
            done += n
    return b


def data_segments(path):
    """The file's allocated byte ranges (SEEK_DATA / SEEK_HOLE), so sparse images of any size are
    compared by what is really stored.

    On ext4 an fallocated (unwritten) extent counts as data once any of its pages sits in the page
    cache, and reading a neighbouring range (a byte comparison, its readahead) puts them there: the
    answer would depend on what was read before. So the file is flushed and its clean pages are
    dropped first; then written extents are data and unwritten ones holes, whatever came before."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return data_ranges(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def start(usage, tool_count, required=(), sandboxed=False):
    """The hosted tools a check was given (sys.argv), or (None, exit status): 2 after `usage` when
    the count is wrong; 77 (meson's skip) after a loud message when an oracle or one of the
    `required` programs (e.g. a libyal reader) is missing. `sandboxed`: the tool is instar itself,
    whose sandbox depends on /dev/kvm (sandbox_note)."""
    if len(sys.argv) != tool_count + 1:
        print(usage)
        return None, 2
    skip = missing_oracle()
    if skip is not None:
        return None, skip
    if missing_programs(required):
        return None, 77
    if sandboxed:
        sandbox_note()
    return sys.argv[1:], None


def start_with_oracles(usage, count):
    """For a check given instar and then the oracle programs (qemu-img, qemu-io) it runs, and
    perhaps more: sys.argv[1:], or (None, exit status) as start() returns them, after checking that
    the first `count` arguments are there and the oracles among them can be run."""
    args = sys.argv[1:]
    if len(args) < count:
        print(usage)
        return None, 2
    if missing_programs(args[1:count]):
        return None, 77
    sandbox_note()
    return args, None


def missing_programs(programs):
    """True after a loud message when one of `programs` cannot be run."""
    missing = [p for p in programs if not os.access(p, os.X_OK)]
    if missing:
        print(f'SKIPPED LOUDLY: {", ".join(missing)} missing; check NOT run (run tools/install-deps.sh)')
    return bool(missing)


def sandbox_note():
    """Says loudly which sandbox instar runs in when /dev/kvm is absent (--sandbox=auto then picks
    the process sandbox, which the checks still exercise)."""
    if not os.path.exists('/dev/kvm'):
        print('NOTE LOUDLY: /dev/kvm is absent; instar runs the guest code in the process sandbox')


def missing_oracle():
    """77 (meson's skip code) after a loud message when an oracle is missing, else None."""
    for ver, (qemu_img, qemu_io) in QEMUS.items():
        if not (os.access(qemu_img, os.X_OK) and os.access(qemu_io, os.X_OK)):
            print(f'SKIP: qemu {ver} oracle missing ({qemu_img}); differential check NOT run')
            return 77
    return None


def compare_report(ours, fmt, path, label, results, fixup_specific=None):
    """Compares a hosted tool's JSON report with each oracle's `info --output=json`, appending
    (label, problems) per qemu version. fixup_specific(spec) may adjust host-derived fields."""
    for ver, (qemu_img, _) in QEMUS.items():
        qi = json.loads(run([qemu_img, 'info', '-f', fmt, '--output=json', path]))
        problems = []
        info = ours.get('info')
        if ours.get('status') != 0 or info is None:
            problems.append(f'status {ours.get("status")} {ours.get("decode-error", "")}')
        else:
            if not ours.get('probe'):
                problems.append('probe false')
            if info['format'] != qi['format']:
                problems.append(f'format {info["format"]} != {qi["format"]}')
            for k in FIELDS:
                if info.get(k) != qi.get(k):
                    problems.append(f'{k}: ours {info.get(k)!r} qemu {qi.get(k)!r}')
            backing = [f['name'] for f in info['files'] if f['role'] == 'backing']
            want = [qi['backing-filename']] if 'backing-filename' in qi else []
            if backing != want:
                problems.append(f'backing: ours {backing} qemu {want}')
            spec = info.get('format-specific')
            if spec and fixup_specific:
                fixup_specific(spec)
            if spec != qi.get('format-specific'):
                problems.append(f'format-specific: ours {spec} qemu {qi.get("format-specific")}')
        results.append((f'{label} [qemu {ver}]', problems))


def report(results):
    """Prints each failure and the closing line; returns the exit status."""
    failed = 0
    for label, problems in results:
        if problems:
            failed += 1
            print(f'FAIL {label}: ' + '; '.join(problems))
    print(f'{len(results) - failed} passed, {failed} failed')
    return 1 if failed else 0

#!/usr/bin/env python3
"""Differential check of the VHD emitter against `qemu-img create -f vpc` (7.2 and 10.0).

For each size and each (subformat, force_size) pair, dynamic/fixed x on/off (dynamic and off mostly
as the defaults, each also given explicitly), it creates the image with the hosted tool and with
both qemu-imgs and compares the bytes (footer timestamp, checksum and unique id masked), the file
size and the allocation, `qemu-img info --output=json` under the qemu compared with (the other
reads ours when its own file is compared; both do when the bytes differ), and runs vhdiinfo.
qemu-img has no check for vpc. Error cases compare the reason with qemu-img's message. Differencing
disks (an instar extension qemu-img cannot make) are checked with qemu-img info, vhdiinfo and the
guest half's own info().

usage: vpc_create_differential.py HOSTED_CREATE HOSTED_INFO
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, report, run, start, strip  # noqa: E402

FORMAT = 'vpc'
VHDIINFO = '/usr/bin/vhdiinfo'
UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}
SIZES = ['0', '1000', '1M', '12345678', '64M', '1G', '127G', '1T', '2040G']
# Footer fields qemu fills from the clock and the RNG: timestamp, checksum, unique id.
MASKED = [(24, 28), (64, 84)]
CHUNK = 1 << 20


def size_bytes(s):
    m = re.fullmatch(r'(\d+)([KMGT]?)', s)
    return int(m.group(1)) * UNITS[m.group(2)]


def qemu_create(qemu_img, path, opts, size, extra=()):
    cmd = [qemu_img, 'create', '-q', '-f', FORMAT] + list(extra)
    if opts:
        cmd += ['-o', ','.join(f'{k}={v}' for k, v in opts.items())]
    p = subprocess.run(cmd + [path, size], capture_output=True, text=True)
    prefix = f'qemu-img: {path}: '
    err = p.stderr.strip()
    return p.returncode, err[len(prefix):] if err.startswith(prefix) else err


def ours_create(tool, path, opts, size, backing=None, backing_fmt=None):
    cmd = [tool, path, str(size_bytes(size))] + [f'{k}={v}' for k, v in opts.items()]
    if backing:
        cmd += ['--backing', backing]
    if backing_fmt:
        cmd += ['--backing-fmt', backing_fmt]
    return json.loads(run(cmd))


def qemu_info(qemu_img, path):
    """info's JSON without the per-file fields, or {'error': message} when qemu cannot open the file
    (a fixed disk of size 0 is a lone footer at offset 0, which qemu reads as a dynamic disk)."""
    p = subprocess.run([qemu_img, 'info', '-f', FORMAT, '--output=json', path], capture_output=True, text=True)
    if p.returncode != 0:
        return {'error': p.stderr.replace(path, 'FILE').strip()}
    return strip(json.loads(p.stdout))


def masked(buf, base, footers):
    """`buf` (file bytes from offset `base`) with the random fields of each footer zeroed."""
    b = bytearray(buf)
    for f in footers:
        for lo, hi in MASKED:
            for i in range(max(f + lo, base), min(f + hi, base + len(b))):
                b[i - base] = 0
    return bytes(b)


def footer_offsets(path, size):
    with open(path, 'rb') as f:
        head = f.read(8)
    return ([0] if head == b'conectix' else []) + [size - 512]


def compare_bytes(ours, theirs):
    """Compares the two files where either has data; holes read as zeros."""
    size = os.path.getsize(ours)
    if size != os.path.getsize(theirs):
        return [f'file size {size} != {os.path.getsize(theirs)}']
    ranges = sorted(data_segments(ours) + data_segments(theirs))
    fo, ft = footer_offsets(ours, size), footer_offsets(theirs, size)
    with open(ours, 'rb') as a, open(theirs, 'rb') as b:
        for start, end in ranges:
            for off in range(start, end, CHUNK):
                n = min(CHUNK, end - off)
                a.seek(off)
                b.seek(off)
                if masked(a.read(n), off, fo) != masked(b.read(n), off, ft):
                    return [f'bytes differ in [{off}, {off + n})']
    return []


def compare_allocation(ours, theirs, fixed):
    """Allocated ranges must match, except that qemu's file protocol allocates the first 4 KiB
    block when it grows an empty file (file-posix allocate_first_block), which only a fixed disk
    leaves visible: that part is the host's, not the format's."""
    a, b = data_segments(ours), data_segments(theirs)
    if fixed and b and b[0][0] == 0 and (not a or a[0][0] != 0):
        b = [(max(s, 4096), e) for s, e in b if e > 4096]
        if not compare_allocation.noted:
            compare_allocation.noted = True
            print('NOTE: fixed disks: qemu\'s first 4 KiB block is allocated, ours is a hole '
                  '(file-posix allocate_first_block; a host set_length matter, not compared)')
    return [] if a == b else [f'allocation: ours {a} qemu {b}']


compare_allocation.noted = False


def vhdiinfo(path):
    p = subprocess.run([VHDIINFO, path], capture_output=True, text=True)
    return p.returncode, p.stdout


# File-protocol preallocation: qemu's vpc table lacks it and the protocol layer's only use of it is
# on the empty file it creates, which changes nothing visible; the emitter ignores it too. Each mode
# once, full (the one that would write) under both subformats.
EXTRA = [({'subformat': sub, 'preallocation': mode}, '64M')
         for sub, mode in (('dynamic', 'off'), ('fixed', 'falloc'), ('dynamic', 'full'), ('fixed', 'full'))]


# The size-dependent work (CHS geometry, footer, dynamic header and BAT) for each subformat x
# force_size at every size; the defaults (dynamic, off) stand for the explicit values there, which
# are each given once more explicitly (the only other thing a pair can change is option parsing).
PAIRS = [{}, {'subformat': 'dynamic', 'force_size': 'on'},
         {'subformat': 'fixed'}, {'subformat': 'fixed', 'force_size': 'on'}]
EXPLICIT = [({'subformat': 'dynamic', 'force_size': 'off'}, '12345678')]


def matrix():
    for opts in PAIRS:
        for size in SIZES:
            yield opts, size
    yield from EXPLICIT
    yield from EXTRA


def check_matrix(tool, d, results):
    n = 0
    for opts, size in matrix():
        n += 1
        sub = opts.get('subformat')
        label = f'{opts or "defaults"} {size}'
        ours = os.path.join(d, f'ours{n}.vhd')
        res = ours_create(tool, ours, opts, size)
        for ver, (qemu_img, _) in QEMUS.items():
            theirs = os.path.join(d, f'qemu{n}-{ver}.vhd')
            problems = []
            rc, err = qemu_create(qemu_img, theirs, opts, size)
            if rc != 0 or res['status'] != 0:
                problems.append(f'create: qemu rc {rc} {err!r}, ours {res}')
            else:
                byte_problems = compare_bytes(ours, theirs)
                problems += byte_problems
                # info reads only the bytes compared (the masked fields are not in it): equal bytes
                # read the same under either qemu, so the one compared with reads them; both do when
                # the bytes differ (the other reads ours when its own file is compared).
                for iv, (info_img, _) in QEMUS.items():
                    if iv != ver and not byte_problems:
                        continue
                    qi, oi = qemu_info(info_img, theirs), qemu_info(info_img, ours)
                    if qi != oi:
                        problems.append(f'info [{iv}]: ours {oi} qemu {qi}')
                problems += compare_allocation(ours, theirs, sub == 'fixed')
                want_unit = 0 if sub == 'fixed' else 2 << 20
                if res['unit'] != want_unit:
                    problems.append(f'unit {res["unit"]} != {want_unit}')
                # vhdiinfo opens every image qemu-img can open (a fixed disk of size 0
                # neither can).
                rc, _ = vhdiinfo(ours)
                want_rc, _ = vhdiinfo(theirs)
                if rc != want_rc:
                    problems.append(f'vhdiinfo exit {rc}, on qemu\'s image {want_rc}')
                os.unlink(theirs)
            results.append((f'create {label} [created by qemu {ver}]', problems))
        os.unlink(ours)


ERRORS = [
    ({'subformat': 'foo'}, '1M'),
    ({'subformat': 'Fixed'}, '1M'),
    ({}, '2041G'),
    ({}, '3T'),
    ({'force_size': 'on'}, '3T'),
    ({'subformat': 'fixed', 'force_size': 'on'}, '2041G'),
]


def check_errors(tool, d, results):
    for opts, size in ERRORS:
        ours = os.path.join(d, 'err-ours.vhd')
        res = ours_create(tool, ours, opts, size)
        for ver, (qemu_img, _) in QEMUS.items():
            theirs = os.path.join(d, 'err-qemu.vhd')
            rc, err = qemu_create(qemu_img, theirs, opts, size)
            problems = []
            if rc == 0 or res['status'] == 0:
                problems.append(f'expected failure: qemu rc {rc}, ours {res["status"]}')
            if res['reason'] != err:
                problems.append(f'reason: ours {res["reason"]!r} qemu {err!r}')
            results.append((f'error {opts} {size} [qemu {ver}]', problems))


def vhdi_field(out, name):
    m = re.search(rf'^\s*{name}\s*:\s*(.*)$', out, re.M)
    return m.group(1).strip() if m else None


def check_differencing(tool, info_tool, d, results):
    qemu_img = QEMUS['7.2'][0]
    cases = [({}, '64M'), ({'subformat': 'fixed'}, '64M'), ({'force_size': 'on'}, '1G'), ({}, '1T')]
    for i, (opts, size) in enumerate(cases):
        sub = os.path.join(d, f'diff{i}')
        os.mkdir(sub)
        base = os.path.join(sub, 'base.vhd')
        qemu_create(qemu_img, base, opts, size)
        parent_size = qemu_info(qemu_img, base)['virtual-size']
        for backing, backing_fmt in (('base.vhd', 'vpc'), (base, None)):
            child = os.path.join(sub, 'child.vhd')
            problems = []
            res = ours_create(tool, child, {}, str(parent_size), backing, backing_fmt)
            if res['status'] != 0:
                problems.append(f'create {res}')
            else:
                ours = json.loads(run([info_tool, child]))
                names = [f['name'] for f in ours.get('info', {}).get('files', []) if f['role'] == 'backing']
                if ours.get('status') != 0 or names != [backing]:
                    problems.append(f'own info: {ours}')
                if ours.get('info', {}).get('virtual-size') != parent_size:
                    problems.append(f'own virtual size {ours.get("info", {}).get("virtual-size")} != {parent_size}')
                for ver, (qi_img, _) in QEMUS.items():
                    qi = qemu_info(qi_img, child)
                    if qi.get('virtual-size') != parent_size or qi.get('cluster-size') != 2 << 20 or \
                            'backing-filename' in qi:
                        problems.append(f'qemu {ver} info {qi}')
                rc, out = vhdiinfo(child)
                _, pout = vhdiinfo(base)
                if rc != 0:
                    problems.append(f'vhdiinfo exit {rc}')
                elif vhdi_field(out, 'Parent identifier') != vhdi_field(pout, 'Identifier'):
                    problems.append('vhdiinfo: parent identifier '
                                    f'{vhdi_field(out, "Parent identifier")} != {vhdi_field(pout, "Identifier")}')
                elif vhdi_field(out, 'Parent filename') != 'base.vhd':
                    problems.append(f'vhdiinfo: parent filename {vhdi_field(out, "Parent filename")}')
                elif vhdi_field(out, 'Disk type') != 'Differential':
                    problems.append(f'vhdiinfo: disk type {vhdi_field(out, "Disk type")}')
                # vhdiinfo must not depend on the parent being present.
                os.rename(base, base + '.away')
                rc, _ = vhdiinfo(child)
                os.rename(base + '.away', base)
                if rc != 0:
                    problems.append(f'vhdiinfo without the parent: exit {rc}')
                os.unlink(child)
            results.append((f'differencing on {opts or "dynamic"} {size} parent, -b {backing}', problems))
    # qemu-img itself refuses a backing file for vpc; a non-VHD parent is refused with a reason.
    base = os.path.join(d, 'diff0', 'base.vhd')
    for ver, (qi_img, _) in QEMUS.items():
        rc, err = qemu_create(qi_img, os.path.join(d, 'q-child.vhd'), {}, '64M', ['-b', base, '-F', FORMAT])
        results.append((f'qemu {ver} refuses -b for vpc',
                        [] if rc != 0 and err == "Backing file not supported for file format 'vpc'" else [err]))
    raw = os.path.join(d, 'diff0', 'raw.img')
    with open(raw, 'wb') as f:
        f.truncate(1 << 20)
    res = ours_create(tool, os.path.join(d, 'diff0', 'bad.vhd'), {}, '1M', 'raw.img', 'raw')
    results.append(('differencing on a raw parent refused',
                    [] if res['reason'] == "A differencing VHD needs a backing file in format 'vpc'" else [str(res)]))
    res = ours_create(tool, os.path.join(d, 'diff0', 'bad.vhd'), {}, '1M', 'raw.img')
    results.append(('differencing on an undeclared non-VHD parent refused',
                    [] if res['reason'].startswith('The backing file is not a VHD image') else [str(res)]))


def main():
    tools, status = start(__doc__, 2, required=[VHDIINFO])
    if tools is None:
        return status
    tool, info_tool = tools
    results = []
    with tempfile.TemporaryDirectory() as d:
        check_matrix(tool, d, results)
        check_errors(tool, d, results)
        check_differencing(tool, info_tool, d, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

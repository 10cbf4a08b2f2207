#!/usr/bin/env python3
"""Differential check of the qcow2 emitter against `qemu-img create -f qcow2` (7.2 and 10.0).

For a matrix of options x sizes (plain, preallocated, with backing files) it creates the image with
the hosted tool and with both qemu-imgs, and requires the same bytes (qemu's qcow2 create is
deterministic) and the same file size and allocated ranges. Where qemu-img refuses, instar must
refuse with qemu-img's message. `qemu-img info --output=json` and `check --output=json` under both
versions, and qcowinfo (libqcow), are functions of the bytes and the allocation: they run only
where those differ, to say how (equal files need no more proof, and the matrix's time goes to
its cases).

usage: qcow2_create_differential.py HOSTED_CREATE
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, report, run, start, strip  # noqa: E402

FORMAT = 'qcow2'
QCOWINFO = '/usr/bin/qcowinfo'
UNITS = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50, 'E': 1 << 60}
CHUNK = 1 << 20
# instar's reason is one line of at most 511 characters (CREATE_MAX_REASON); qemu quotes a
# 1024-byte backing name in full.
MAX_REASON = 511

PLAIN_OPTS = [
    {},
    {'cluster_size': '512'},
    {'cluster_size': '4096'},
    {'cluster_size': '8192'},
    {'cluster_size': '2M'},
    {'refcount_bits': '1'},
    {'refcount_bits': '8', 'cluster_size': '512'},
    {'refcount_bits': '64'},
    {'refcount_bits': '64', 'cluster_size': '512'},
    {'extended_l2': 'on'},
    {'extended_l2': 'on', 'cluster_size': '16K'},
    {'lazy_refcounts': 'on'},
    {'compat': '0.10'},
    {'compat': 'v2', 'cluster_size': '512'},
    {'compat': 'v3'},
    {'compression_type': 'zstd'},
    {'compression_type': 'zlib', 'lazy_refcounts': 'on', 'refcount_bits': '32'},
]
PLAIN_SIZES = ['0', '1000', '1M', '64M', '1G', '1T']
# Each size once with qemu's defaults; the other option sets at one sub-cluster, one mid and one
# large size (the layouts the options change: L1, refcount table and block sizes) (CI budget: each
# case once, not every combination).
OPTION_SIZES = ['1000', '64M', '1T']
EXTRA_PLAIN = [
    ({'cluster_size': '512'}, '128G'),            # the largest L1: refcount table moved three times
    # A refcount table of several clusters at 64-bit refcounts (moved as it grows). qemu's create is
    # quadratic here (20G: 2 s, 100G: 48 s), so not larger.
    ({'cluster_size': '512', 'refcount_bits': '64'}, '20G'),
    ({'cluster_size': '1024', 'refcount_bits': '1'}, '300G'),
    ({}, '1P'),
    ({'cluster_size': '2M'}, '2E'),
    ({'cluster_size': '2M', 'extended_l2': 'on'}, '1E'),
    ({}, '12345678'),
]

PREALLOC_OPTS = [
    {},
    {'cluster_size': '512'},
    {'cluster_size': '4096', 'refcount_bits': '64'},
    {'cluster_size': '512', 'refcount_bits': '64'},
    {'cluster_size': '2M'},
    {'refcount_bits': '1'},
    {'extended_l2': 'on'},
    {'extended_l2': 'on', 'cluster_size': '16K'},
    {'lazy_refcounts': 'on'},
    {'compat': '0.10'},
]
# qemu syncs every refcount block and L1 update, so small clusters are slow to preallocate: they get
# smaller sizes (8 MiB of 512-byte clusters with 64-bit refcounts still moves the table 4 times).
METADATA_SIZES = ['0', '1000', '1M', '64M', '1G']
SMALL_CLUSTER_SIZES = ['0', '1000', '1M', '8M']
# (Every size for qemu's defaults; the other option sets at these.)
OPTION_METADATA_SIZES = ['1000', '64M', '1G']
OPTION_SMALL_CLUSTER_SIZES = ['1000', '8M']
EXTRA_METADATA = [
    ({}, '10G'),
    ({}, '1T'),                          # streamed: 2048 L2 tables, 513 refcount blocks
    ({'cluster_size': '2M'}, '5G'),      # more than one INT_MAX chunk per L2 table
    ({'cluster_size': '2M', 'extended_l2': 'on'}, '5000000'),
    ({'cluster_size': '512'}, '64M'),    # refcount table growth between L2 tables
    ({'cluster_size': '1024', 'refcount_bits': '64'}, '32M'),
    ({'extended_l2': 'on'}, '1049088'),  # copy-on-write tail of one subcluster
]
DATA_SIZES = ['0', '1000', '1M', '8M']
# preallocation=full writes the data region that falloc allocates: the metadata (every size-dependent
# layout) is the same code path, covered by falloc's sizes; full keeps one sub-cluster and one
# multi-MiB size per option set (CI budget: each case once).
FULL_SIZES = ['1000', '8M']
EXTRA_DATA = [({}, '64M', 'falloc'), ({}, '64M', 'full'), ({'cluster_size': '512'}, '16M', 'falloc')]

BACKING = [
    ({}, '1M', 'base.img', 'raw'),
    ({}, '10G', 'dir/base.qcow2', 'qcow2'),
    ({'cluster_size': '512'}, '1M', 'base.raw', 'raw'),
    ({'compat': '0.10'}, '64M', 'base.vmdk', 'vmdk'),
    ({'extended_l2': 'on', 'preallocation': 'metadata'}, '64M', 'b.raw', 'raw'),
    ({'extended_l2': 'on', 'preallocation': 'falloc'}, '1M', 'b.qcow2', 'qcow2'),
    ({'cluster_size': '4096'}, '1M', 'x' * 1023, 'raw'),
    ({'cluster_size': '512'}, '1M', 'y' * 376, 'raw'),   # exactly fills the header cluster
]

ERRORS = [
    ({'cluster_size': '1000'}, '1G', None),
    ({'cluster_size': '256'}, '1G', None),
    ({'cluster_size': '4M'}, '1G', None),
    ({'cluster_size': '0'}, '1G', None),
    ({'refcount_bits': '3'}, '1G', None),
    ({'refcount_bits': '128'}, '1G', None),
    ({'refcount_bits': '0'}, '1G', None),
    ({'extended_l2': 'on', 'cluster_size': '8K'}, '1G', None),
    ({'compat': '0.10', 'lazy_refcounts': 'on'}, '1G', None),
    ({'compat': 'v2', 'compression_type': 'zstd'}, '1G', None),
    ({'compat': 'v2', 'extended_l2': 'on'}, '1G', None),
    ({'compat': 'v2', 'refcount_bits': '8'}, '1G', None),
    ({'compat': 'foo'}, '1G', None),
    ({'compression_type': 'lz4'}, '1G', None),
    ({'preallocation': 'bad'}, '1G', None),
    ({'compat': '0.10', 'extended_l2': 'on', 'cluster_size': '1000'}, '1G', None),
    ({'cluster_size': '512'}, '1T', None),
    ({'cluster_size': '512'}, '137438953473', None),
    ({}, '4P', None),
    ({'cluster_size': '2M', 'extended_l2': 'on'}, '1152921504606846977', None),
    ({'cluster_size': '2M'}, '9223372036854775807', None),
    ({'cluster_size': '2M'}, '9223372036854775296', None),
    ({'preallocation': 'metadata'}, '1M', ('base', 'raw')),
    ({'preallocation': 'full'}, '1M', ('base', 'raw')),
    ({}, '1M', ('z' * 1024, 'raw')),
    ({'cluster_size': '512'}, '1M', ('w' * 400, 'raw')),
    ({}, '1M', ('base', 'foo')),
    ({}, '1M', ('base', 'virtio-blk-vhost-vdpa')),  # in the QAPI enum, not in Debian's builds
]


def size_bytes(s):
    m = re.fullmatch(r'(\d+)([KMGTPE]?)', s)
    return int(m.group(1)) * UNITS[m.group(2)]


def opt_bytes(opts):
    """The host passes sizes normalised to decimal bytes."""
    return {k: (str(size_bytes(v)) if k == 'cluster_size' else v) for k, v in opts.items()}


def qemu_create(qemu_img, path, opts, size, backing=None):
    cmd = [qemu_img, 'create', '-q', '-f', FORMAT]
    if backing:
        cmd += ['-u', '-b', backing[0], '-F', backing[1]]
    if opts:
        cmd += ['-o', ','.join(f'{k}={v}' for k, v in opts.items())]
    p = subprocess.run(cmd + [path, size], capture_output=True, text=True)
    prefix = f'qemu-img: {path}: '
    err = p.stderr.strip()
    return p.returncode, err[len(prefix):] if err.startswith(prefix) else err


def ours_create(tool, path, opts, size, backing=None):
    cmd = [tool, path, str(size_bytes(size))] + [f'{k}={v}' for k, v in opt_bytes(opts).items()]
    if backing:
        cmd += ['--backing', backing[0], '--backing-fmt', backing[1]]
    return json.loads(run(cmd))


def qemu_json(qemu_img, verb, path):
    p = subprocess.run([qemu_img, verb, '-f', FORMAT, '--output=json', path], capture_output=True, text=True)
    if p.returncode != 0 and not p.stdout:
        return {'error': p.stderr.replace(path, 'FILE').strip(), 'rc': p.returncode}
    return strip(json.loads(p.stdout))


def compare_bytes(ours, theirs):
    """Compares the files wherever either has data (holes read as zeros), and their allocation."""
    size = os.path.getsize(ours)
    if size != os.path.getsize(theirs):
        return [f'file size {size} != {os.path.getsize(theirs)}']
    a, b = data_segments(ours), data_segments(theirs)
    problems = [] if a == b else [f'allocation: ours {a[:6]} qemu {b[:6]}']
    with open(ours, 'rb') as fa, open(theirs, 'rb') as fb:
        for start, end in sorted(a + b):
            for off in range(start, end, CHUNK):
                n = min(CHUNK, end - off)
                fa.seek(off)
                fb.seek(off)
                if fa.read(n) != fb.read(n):
                    return problems + [f'bytes differ in [{off}, {off + n})']
    return problems


def explain(ours, theirs):
    """Where the files differ: how qemu-img info and check (both versions) and qcowinfo see each."""
    problems = []
    for iv, (info_img, _) in QEMUS.items():
        for verb in ('info', 'check'):
            qi, oi = qemu_json(info_img, verb, theirs), qemu_json(info_img, verb, ours)
            if qi != oi:
                problems.append(f'{verb} [{iv}]: ours {oi} qemu {qi}')
    # libqcow opens every image qemu-img makes except extended-L2 ones and v2 ones of size 0 (no L1
    # table): it must treat ours the same.
    p = subprocess.run([QCOWINFO, ours], capture_output=True, text=True)
    want = subprocess.run([QCOWINFO, theirs], capture_output=True, text=True).returncode
    if p.returncode != want:
        problems.append(f'qcowinfo exit {p.returncode} (on qemu\'s image {want}): {p.stderr.strip()[:200]}')
    return problems


def check_case(tool, d, n, opts, size, backing, results):
    label = f'{opts or "defaults"} {size}' + (f' backing {backing[0][:20]!r} {backing[1]}' if backing else '')
    ours = os.path.join(d, f'ours{n}.qcow2')
    res = ours_create(tool, ours, opts, size, backing)
    for ver, (qemu_img, _) in QEMUS.items():
        theirs = os.path.join(d, f'qemu{n}-{ver}.qcow2')
        problems = []
        rc, err = qemu_create(qemu_img, theirs, opts, size, backing)
        if rc != 0:
            if res['status'] == 0:
                problems.append(f'qemu failed ({err!r}), ours succeeded')
            elif res['reason'] != err[:MAX_REASON]:
                problems.append(f'reason {res["reason"]!r} != qemu {err!r}')
        elif res['status'] != 0:
            problems.append(f'ours failed: {res}')
        else:
            problems += compare_bytes(ours, theirs)
            if res['unit'] != size_bytes(opts.get('cluster_size', '64K')):
                problems.append(f'unit {res["unit"]}')
            if problems:
                problems += explain(ours, theirs)
            os.unlink(theirs)
        results.append((f'{label} [created by qemu {ver}]', problems))
    if os.path.exists(ours):
        os.unlink(ours)


def cases():
    for opts in PLAIN_OPTS:
        for size in PLAIN_SIZES if not opts else OPTION_SIZES:
            yield opts, size, None
    for opts, size in EXTRA_PLAIN:
        yield opts, size, None
    for opts in PREALLOC_OPTS:
        small = size_bytes(opts.get('cluster_size', '64K')) <= 4096
        sizes = (SMALL_CLUSTER_SIZES if small else METADATA_SIZES) if not opts else \
            (OPTION_SMALL_CLUSTER_SIZES if small else OPTION_METADATA_SIZES)
        for size in sizes:
            yield dict(opts, preallocation='metadata'), size, None
        for mode, sizes in (('falloc', DATA_SIZES if not opts else FULL_SIZES), ('full', FULL_SIZES)):
            for size in sizes:
                yield dict(opts, preallocation=mode), size, None
    for opts, size in EXTRA_METADATA:
        yield dict(opts, preallocation='metadata'), size, None
    for opts, size, mode in EXTRA_DATA:
        yield dict(opts, preallocation=mode), size, None
    for opts, size, name, fmt in BACKING:
        yield opts, size, (name, fmt)
    for opts, size, backing in ERRORS:
        yield opts, size, backing


def main():
    tools, status = start(__doc__, 1, required=[QCOWINFO])
    if tools is None:
        return status
    tool = os.path.abspath(tools[0])
    results = []
    with tempfile.TemporaryDirectory() as d:
        for n, (opts, size, backing) in enumerate(cases()):
            check_case(tool, d, n, opts, size, backing, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

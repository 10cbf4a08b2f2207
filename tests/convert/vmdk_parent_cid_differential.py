#!/usr/bin/env python3
"""vmdk's parentCID check against both qemu-img oracles (docs/convert.md, "vmdk's parentCID").

qemu's vmdk driver reads through a child's unallocated grains only while the child's parentCID is
its parent's CID (block/vmdk.c vmdk_is_cid_valid); a parent written since the child was made has a
new CID, and then every read that falls through the child fails with EINVAL (convert, compare,
dd), while map still sees through, and every write into the child that allocates a grain fails the
same way before anything is written (convert -n). Each case runs qemu-img 7.2, 10.0 and instar on
the same images (made once by qemu-img and qemu-io) and compares exit status, stdout, stderr and
the bytes of every output and input afterwards.

usage: vmdk_parent_cid_differential.py INSTAR"""
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402
from oracle_diff import VERSIONS, OracleDiff, sh  # noqa: E402

CID_LINE = re.compile(rb'\nCID=[0-9a-f]+\n')
DESC_WINDOW = 20 * 512  # qemu's DESC_SIZE: the window vmdk_write_cid writes back whole


def any_cid(data):
    """The image with its embedded descriptor's CID blanked: qemu writes a random one on the first
    write, and a shorter or longer one leaves other stale bytes after the text's NUL."""
    at = data.find(b'# Disk DescriptorFile')
    if at < 0:
        return data
    text = data[at:at + DESC_WINDOW].split(b'\0')[0]
    return data[:at] + CID_LINE.sub(b'\nCID=........\n', text, count=1) + b'|' + data[at + DESC_WINDOW:]


def same_in_copies(d, label, src_dir, args, files):
    """`args` run by each tool in its own copy of `src_dir` (a child whose descriptor names its
    extent files cannot be copied under another name); the files compared afterwards."""
    for ver in VERSIONS:
        got = {}
        for who in ('qemu', 'instar'):
            run_dir = d.path(f'{who}-{ver}')
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(src_dir, run_dir)
            exe = [QEMUS[ver][0]] if who == 'qemu' else [d.instar, '--qemu-version', ver]
            rc, out, err = sh(exe + args, run_dir)
            got[who] = (rc, out, err, {f: open(os.path.join(run_dir, f), 'rb').read() for f in files})
        q, i = got['qemu'], got['instar']
        problems = [f'{what} differs:\n--- qemu\n{a}--- instar\n{b}'
                    for what, a, b in (('exit', q[0], i[0]), ('stdout', q[1], i[1]), ('stderr', q[2], i[2]))
                    if a != b]
        problems += [f'{f}: bytes differ' for f in files if q[3][f] != i[3][f]]
        d.results.append((f'{label} [qemu {ver}]', problems))


def reads(d, top, tag, parallel=(['-m', '2'],)):
    """The read side on `top` (over base.vmdk): convert (also -m 1, -W, -B and `parallel`), compare,
    dd, map."""
    for extra in ([], ['-m', '1'], ['-W'], *parallel):
        d.same(f'{tag}: convert {" ".join(extra)}', ['convert', *extra, '-O', 'raw', top, '@out.raw'],
               outputs=['out.raw'], named_source=True)
    # -B: only the top's own grains are read, so nothing falls through
    d.same(f'{tag}: convert -B', ['convert', '-O', 'qcow2', '-B', 'base.vmdk', '-F', 'vmdk', top, '@out.qcow2'],
           outputs=['out.qcow2'], named_source=True)
    d.same(f'{tag}: compare with base', ['compare', top, 'base.vmdk'])
    d.same(f'{tag}: compare with itself', ['compare', top, top])
    d.same(f'{tag}: dd', ['dd', '-O', 'raw', 'bs=64k', 'count=3', f'if={top}', 'of=@dd.raw'], outputs=['dd.raw'],
           named_source=True)
    d.same(f'{tag}: map', ['map', '--output=json', top])


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-vmdk-cid-')
    try:
        d = OracleDiff(tools[0], work)
        qemu, qemu_io = QEMUS['7.2']
        d.fixture(qemu, 'create', '-q', '-f', 'vmdk', 'base.vmdk', '4M')
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -P 0x11 0 1M', 'base.vmdk')
        # top: its own grain at 1M; top0: its own grain at 0 (qemu's first failing chunk is the
        # second); topz: zeroed grains (a whole zero grain is written without allocating)
        for name, opts, write in (('top.vmdk', [], 'write -P 0x22 1M 64k'), ('top0.vmdk', [], 'write -P 0x22 0 64k'),
                                  ('topz.vmdk', ['-o', 'zeroed_grain=on'], 'write -P 0x22 1M 64k')):
            d.fixture(qemu, 'create', '-q', '-f', 'vmdk', *opts, '-b', 'base.vmdk', '-F', 'vmdk', name)
            d.fixture(qemu_io, '-f', 'vmdk', '-c', write, name)
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -z 0 64k', 'topz.vmdk')  # a zeroed grain (GTE 1)
        # a child split in extents (its descriptor file holds the CIDs)
        os.mkdir(d.path('split'))
        d.fixture(qemu, 'create', '-q', '-f', 'vmdk', 'split/base.vmdk', '4M')
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -P 0x11 0 1M', 'split/base.vmdk')
        d.fixture(qemu, 'create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', '-b', 'base.vmdk',
                  '-F', 'vmdk', 'split/top.vmdk')
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -P 0x22 1M 64k', 'split/top.vmdk')
        d.write('data.raw', bytes(range(256)) * 1024)   # 256 KiB of data
        d.write('zero.raw', bytes(65536))               # one whole zero grain
        d.write('part.raw', bytes(32768))               # half a grain of zeros
        split_files = ['base.vmdk', 'top.vmdk', 'top-s001.vmdk']

        # The parent as the child recorded it: everything reads through.
        for top in ('top.vmdk', 'top0.vmdk'):
            reads(d, top, f'valid {top}')
        # Zeros over part of a zeroed grain: qemu's zeroed write refuses it, the zeros it then
        # writes allocate a grain (instar too since round 10).
        d.same('valid topz.vmdk: convert -n half a grain of zeros',
               ['convert', '-n', '-f', 'raw', '-O', 'vmdk', 'part.raw', '@topz.vmdk'], inputs=['topz.vmdk'],
               normalize=any_cid)
        same_in_copies(d, 'valid split: convert', d.path('split'), ['convert', '-O', 'raw', 'top.vmdk', 'o.raw'],
                       split_files + ['o.raw'])

        # The parent written since: its CID changes, the children's parentCID no longer matches.
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -P 0x33 2M 64k', 'base.vmdk')
        d.fixture(qemu_io, '-f', 'vmdk', '-c', 'write -P 0x33 2M 64k', 'split/base.vmdk')
        # -m 2 over top0: qemu's second line comes or not by timing (its first chunk reads the
        # top's own grain, then two coroutines race), so only the default -m 8 there.
        reads(d, 'top.vmdk', 'stale top.vmdk')
        reads(d, 'top0.vmdk', 'stale top0.vmdk', parallel=())
        # convert -n into a stale child: the first grain it allocates fails, nothing is written
        # (not even the new CID); writes into its own grains and whole zeroed grains go through.
        d.same('stale topz.vmdk: convert -n half a grain of zeros',
               ['convert', '-n', '-f', 'raw', '-O', 'vmdk', 'part.raw', '@topz.vmdk'], inputs=['topz.vmdk'],
               normalize=any_cid)
        for top in ('top.vmdk', 'topz.vmdk'):
            d.same(f'stale {top}: convert -n data', ['convert', '-n', '-f', 'raw', '-O', 'vmdk', 'data.raw', '@' + top],
                   inputs=[top], normalize=any_cid)
            d.same(f'stale {top}: convert -n zeros', ['convert', '-n', '-f', 'raw', '-O', 'vmdk', 'zero.raw', '@' + top],
                   inputs=[top], normalize=any_cid)
        same_in_copies(d, 'stale split: convert', d.path('split'), ['convert', '-O', 'raw', 'top.vmdk', 'o.raw'],
                       split_files)
        same_in_copies(d, 'stale split: convert -n', d.path('split'),
                       ['convert', '-n', '-f', 'raw', '-O', 'vmdk', '../data.raw', 'top.vmdk'], split_files)
        same_in_copies(d, 'stale split: map', d.path('split'), ['map', 'top.vmdk'], split_files)
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())

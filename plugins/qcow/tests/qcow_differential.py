#!/usr/bin/env python3
"""Differential check of the qcow (version 1) plugin end to end: the instar binary against qemu-img
7.2 and 10.0 on info (human and JSON), create (messages and image bytes), convert from qcow (plain,
compressed, backing chains, legacy AES with a secret: data, map, compare), convert to qcow (-O qcow,
-c, -B, -n: image bytes), the refusals of resize and rebase, and check (qemu has none for qcow) on
clean and damaged images.

usage: qcow_differential.py INSTAR
"""
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, start, report, run_fixture  # noqa: E402
from oracle_diff import OracleDiff as Diff, patch  # noqa: E402

SECRET = ['--object', 'secret,id=s0,data=secret']


def enc_opts(name):
    return ['--image-opts', f'driver=qcow,file.filename={name},encrypt.key-secret=s0']


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-qcow-')
    try:
        d = Diff(sys.argv[1], work)
        qemu_img, qemu_io = QEMUS['7.2']

        # ---- create: the Formatting line, qemu's refusals, the bytes ----
        d.same('create -o help', ['create', '-f', 'qcow', '-o', 'help'])
        for n, size in enumerate(['10M', '1000001', '0', '1', '100G']):
            d.same(f'create {size}', ['create', '-f', 'qcow', f'@c{n}.qcow', size], outputs=[f'c{n}.qcow'])
        # base.raw: only its size is read (create -b, rebase -u), so it holds no data.
        d.fixture(qemu_img, 'create', '-q', '-f', 'raw', 'base.raw', '10M')
        # base.qcow2: data around the tops' writes (at 1M and 5M) and across top.qcow's 10M end,
        # holes elsewhere, so a chain reads the top, its backing's data and backing holes; 3 MiB
        # of data rather than 16 keeps the chains' converts and the safe rebase's copy small.
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow2', 'base.qcow2', '16M')
        d.fixture(qemu_io, '-f', 'qcow2', '-c', 'write -P 0x77 512k 1M', '-c', 'write -P 0x77 4608k 1M',
                  '-c', 'write -P 0x77 9728k 1M', 'base.qcow2')
        d.same('create -b raw', ['create', '-f', 'qcow', '-b', 'base.raw', '-F', 'raw', '@cb1.qcow'],
               outputs=['cb1.qcow'])
        d.same('create -b qcow2 size', ['create', '-f', 'qcow', '-b', 'base.qcow2', '-F', 'qcow2', '@cb2.qcow', '20M'],
               outputs=['cb2.qcow'])
        d.same('create -b fat:', ['create', '-f', 'qcow', '-u', '-b', 'fat:', '-F', 'raw', '@cb3.qcow', '1M'],
               outputs=['cb3.qcow'])

        # ---- images for info and convert ----
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', 'data.qcow', '16M')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x55 0 3M', '-c', 'write -P 0xaa 10M 100k',
                  '-c', 'write -z 8M 1M', '-c', 'write -P 0x11 15M 1M', 'data.qcow')
        # A raw backing file is probed (qcow stores no backing format), and instar never guesses raw
        # (quirk raw-needs-partition-table): the chains here sit on qcow2.
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow', '10M')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x33 1M 100k', '-c', 'write -P 0x44 5M 64k', 'top.qcow')
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'top.qcow', '-F', 'qcow', 'top2.qcow', '12M')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x66 1M 4k', '-c', 'write -P 0x67 11M 512', 'top2.qcow')
        d.fixture(qemu_img, 'convert', '-O', 'raw', 'data.qcow', 'data.raw')
        # qemu-img convert -c -O qcow exits 1 silently after writing a complete image (see same()).
        run_fixture([qemu_img, 'convert', '-c', '-O', 'qcow', 'data.raw', 'comp.qcow'], cwd=work, timeout=120)
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', *SECRET, '-o', 'encrypt.format=aes,encrypt.key-secret=s0',
                  'enc.qcow', '4M')
        d.fixture(qemu_io, *SECRET, '-c', 'write -P 0x5e 4k 100k', '-c', 'write -P 0x5f 3M 512',
                  *enc_opts('enc.qcow'))
        clean = open(d.path('data.qcow'), 'rb').read()
        l1 = struct.unpack_from('>Q', clean, 40)[0]
        l2 = struct.unpack_from('>Q', clean, l1)[0]
        damaged = {
            'v2': [(4, '>I', 2)],
            'v3': [(4, '>I', 3)],
            'tiny': [(24, '>Q', 1)],
            'cb8': [(32, 'B', 8)],
            'cb17': [(32, 'B', 17)],
            'l2b5': [(33, 'B', 5)],
            'l2b14': [(33, 'B', 14)],
            'crypt2': [(36, '>I', 2)],
            'toolarge': [(24, '>Q', (1 << 64) - 4096)],
            'toolarge2': [(24, '>Q', 1 << 52)],
            'longname': [(8, '>Q', 48), (16, '>I', 1024)],
            'l1past': [(40, '>Q', 1 << 40)],
            'l1huge': [(40, '>Q', (1 << 64) - 8)],
            'namehuge': [(8, '>Q', 1 << 63), (16, '>I', 10)],
            'l2past': [(l1, '>Q', 1 << 40)],
            'unaligned': [(l2 + 8, '>Q', struct.unpack_from('>Q', clean, l2 + 8)[0] + 100)],
        }
        for name, edits in damaged.items():
            patch(d.path('data.qcow'), d.path(f'{name}.qcow'), edits)

        # ---- info ----
        for img in ['data.qcow', 'top.qcow', 'top2.qcow', 'comp.qcow', 'enc.qcow', 'c1.qcow']:
            d.same(f'info {img}', ['info', img])
            d.same(f'info --output=json {img}', ['info', '--output=json', img])
        for img in [f'{n}.qcow' for n in damaged]:  # refusals: one output mode is enough
            d.same(f'info {img}', ['info', img])
        d.same('info --backing-chain top2.qcow', ['info', '--backing-chain', 'top2.qcow'])
        d.same('info -f qcow on qcow2', ['info', '-f', 'qcow', 'base.qcow2'])

        # ---- convert from qcow, map, compare ----
        for img in ['data.qcow', 'top.qcow', 'top2.qcow', 'comp.qcow', 'l1past.qcow', 'l2past.qcow']:
            d.same(f'convert {img} -O raw', ['convert', '-O', 'raw', img, '@out.raw'], outputs=['out.raw'])
        for img in ['data.qcow', 'top2.qcow', 'comp.qcow']:
            d.same(f'map --output=json {img}', ['map', '--output=json', img])
        d.same('map top2.qcow', ['map', 'top2.qcow'])
        d.same('convert enc.qcow (no secret)', ['convert', '-O', 'raw', 'enc.qcow', '@out.raw'], outputs=[])
        d.same('convert enc.qcow', ['convert'] + SECRET + enc_opts('enc.qcow') + ['-O', 'raw', '@out.raw'],
               outputs=['out.raw'])
        d.same('convert unaligned.qcow (hostile)', ['convert', '-O', 'raw', 'unaligned.qcow', '@out.raw'], outputs=[],
               named_source=True)
        d.same('compare top.qcow base.qcow2', ['compare', 'top.qcow', 'base.qcow2'])
        d.same('compare data.qcow data.raw', ['compare', '-F', 'raw', 'data.qcow', 'data.raw'])
        d.same('compare comp.qcow data.qcow', ['compare', 'comp.qcow', 'data.qcow'])

        # ---- convert to qcow ----
        for n, (srcimg, opts) in enumerate([('data.qcow', []), ('data.raw', ['-f', 'raw']), ('top2.qcow', []),
                                            ('comp.qcow', []), ('data.qcow', ['-c']), ('data.raw', ['-c', '-f', 'raw']),
                                            ('top.qcow', ['-c']), ('base.qcow2', [])]):
            d.same(f'convert {" ".join(opts)} {srcimg} -O qcow', ['convert'] + opts + ['-O', 'qcow', srcimg, f'@t{n}.qcow'],
                   outputs=[f't{n}.qcow'], qemu_rc=1 if '-c' in opts else None)
        for n, srcimg in enumerate(['top.qcow', 'top2.qcow']):
            d.same(f'convert -B base.qcow2 {srcimg}',
                   ['convert', '-O', 'qcow', '-B', 'base.qcow2', '-F', 'qcow2', srcimg, f'@b{n}.qcow'],
                   outputs=[f'b{n}.qcow'])

        # ---- convert -n into existing qcow images ----
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', 'empty16.qcow', '16M')
        for n, (srcimg, opts, tgt) in enumerate([('data.raw', ['-f', 'raw'], 'empty16.qcow'),
                                                 ('top.qcow', [], 'data.qcow'), ('comp.qcow', [], 'data.qcow')]):
            d.same(f'convert -n {srcimg} into {tgt}', ['convert', '-n'] + opts + ['-O', 'qcow', srcimg, f'@{tgt}'],
                   inputs=[tgt])

        # ---- resize, rebase: qemu's qcow has neither truncate nor change_backing_file ----
        for args in (['resize', '@top.qcow', '+1M'], ['rebase', '-u', '-b', 'base.raw', '-F', 'raw', '@top.qcow'],
                     ['rebase', '-b', 'data.qcow', '-F', 'qcow', '@top.qcow']):
            d.same(' '.join(args), args, inputs=['top.qcow'])

        # ---- commit: qemu's qcow_make_empty empties the qcow top afterwards (without -d) ----
        # Each tool commits into its own copy of the base: d/ becomes Qx_d/ and Ix_d/, and the top
        # names its base relatively, so both tops hold the same bytes.
        for tag in ('', 'Qx_', 'Ix_'):
            os.makedirs(d.path(tag + 'd'), exist_ok=True)
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow2', 'd/base.qcow2', '16M')
        d.fixture(qemu_io, '-f', 'qcow2', '-c', 'write -P 0x77 0 16M', 'd/base.qcow2')
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'base.qcow2', '-F', 'qcow2', 'd/top.qcow', '16M')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x33 1M 100k', '-c', 'write -P 0x44 5M 64k',
                  '-c', 'write -P 0x45 15M 1M', 'd/top.qcow')
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'base.qcow2', '-F', 'qcow2', 'd/small.qcow', '1000001')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x12 4k 8k', 'd/small.qcow')
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'base.qcow2', '-F', 'qcow2', 'd/clean.qcow', '16M')
        d.fixture(qemu_img, 'create', '-q', '-f', 'qcow', '-b', 'top.qcow', '-F', 'qcow', 'd/top2.qcow', '16M')
        d.fixture(qemu_io, '-f', 'qcow', '-c', 'write -P 0x66 3M 4k', 'd/top2.qcow')
        chain = ['d/base.qcow2', 'd/top.qcow']
        for top, opts in (('top', []), ('top', ['-d']), ('small', []), ('clean', []), ('top', ['-q'])):
            d.same(f'commit {" ".join(opts)} {top}.qcow', ['commit'] + opts + [f'@d/{top}.qcow'],
                   inputs=['d/base.qcow2', f'd/{top}.qcow'])
        d.same('commit top2.qcow into top.qcow', ['commit', '@d/top2.qcow'], inputs=chain + ['d/top2.qcow'])
        d.same('commit -b base.qcow2 top2.qcow', ['commit', '-b', 'base.qcow2', '@d/top2.qcow'],
               inputs=chain + ['d/top2.qcow'])

        # ---- version >= 2: qemu's qcow2 probe takes the file (Unsupported qcow2 version N) ----
        for v in (2, 3):
            d.same(f'info -f qcow v{v}', ['info', '-f', 'qcow', f'v{v}.qcow'])
        # Without -f, any version of 2 or more is qcow2's (an AtLeast probe match), whose header
        # then says "Unsupported qcow2 version N": qcow and qcow2 headers alike, big versions too.
        for v in (4, 255, 256, 1 << 24):
            patch(d.path('data.qcow'), d.path(f'p{v}.qcow'), [(4, '>I', v)])
            patch(d.path('base.qcow2'), d.path(f'p{v}.qcow2'), [(4, '>I', v)])
            for img in (f'p{v}.qcow', f'p{v}.qcow2'):
                d.same(f'info {img}', ['info', img])
                d.same(f'info --output=json {img}', ['info', '--output=json', img])
        d.same('convert p4.qcow2 (no -f)', ['convert', '-O', 'raw', 'p4.qcow2', '@out.raw'], outputs=[])
        d.same('compare p255.qcow data.qcow', ['compare', 'p255.qcow', 'data.qcow'])

        # ---- check: qemu has no check for qcow ----
        for mode in ([], ['--output=json'], ['-r', 'all']):
            d.same(f'check {" ".join(mode)} data.qcow', ['check'] + mode + ['@data.qcow'], inputs=['data.qcow'])
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Differential check of the dmg plugin end to end: the instar binary against qemu-img 7.2 and 10.0
on dmg images built by dmg_fixtures.py (qemu-img cannot create dmg): info (human and JSON), convert
from dmg (-O raw and -O qcow2: output bytes), compare, map, measure, qemu's refusals (create,
convert -O dmg, check), I/O errors on chunks qemu cannot read (bzip2, lzfse, gaps) and hostile
trailers and tables.

Known divergences the comparison allows (docs/formats/dmg.md): qemu's "module ... not found" and
"dmg-bzip2 module is missing" warning lines are dropped from its stderr; for a chunk over qemu's
limits instar prints qemu's first line's text as the reason of its single "Could not open" line.

usage: dmg_differential.py INSTAR
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', '..', 'tests', 'formats'))
sys.path.insert(0, HERE)
from differential_support import QEMUS, start, report  # noqa: E402
from oracle_diff import OracleDiff  # noqa: E402
import dmg_fixtures as fx  # noqa: E402

def qemu_noise(line):
    return (line.startswith('qemu: module block-block-dmg-') or
            line.startswith('qemu-img: warning: dmg-') or
            line.startswith('qemu-img: warning: Image contains chunks of unknown type'))


class Diff(OracleDiff):
    def qemu_stderr(self, err, limit_line=False):
        """qemu's module noise dropped. limit_line: qemu's "<limit text>\nqemu-img: Could not open
        'F': Could not open 'F': Invalid argument" is instar's "qemu-img: Could not open 'F': <limit
        text>" (quirk dmg-chunk-limit-message)."""
        err = ''.join(line for line in err.splitlines(True) if not qemu_noise(line))
        lines = err.splitlines()
        if limit_line and len(lines) == 2 and lines[0].startswith('qemu-img: '):
            name = lines[1].split("'")[1]
            err = f"qemu-img: Could not open '{name}': {lines[0][len('qemu-img: '):]}\n"
        return err


def patched(data, edits):
    d = bytearray(data)
    for off, fmt, val in edits:
        struct.pack_into(fmt, d, off if off >= 0 else len(d) + off, val)
    return bytes(d)


def rsrc_at(data):
    return struct.unpack_from('>Q', data, len(data) - 512 + 0x28)[0]


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-dmg-')
    try:
        d = Diff(sys.argv[1], work)
        K = -512  # the trailer's offset from the end
        good = {
            'xml.dmg': fx.sample(),
            'rsrc.dmg': fx.sample(binary=True),
            'bz2.dmg': fx.sample(with_bz2=True),
            'lzfse.dmg': fx.sample(binary=True, with_lzfse=True),
            'odd.dmg': fx.sample() + b'\0\0\0',
            # an all-zero 1 TiB disk in one zero chunk, sectors past the table's end
            'big.dmg': fx.image(1 << 31, [fx.mish([(fx.UDZE, 0, 1 << 31, 0, 0)])], b''),
            # a gap (sectors 8..15 in no chunk) and a second resource that is not a mish block
            'gap.dmg': fx.image(24, [fx.mish([(fx.UDRW, 0, 8, 0, 4096), (fx.UDRW, 16, 8, 0, 4096)]), b'x' * 300],
                                fx.pattern(4096, 9), binary=True),
        }
        raw_data = fx.pattern(512 * 6, 5)
        z512 = zlib.compress(b'a' * 512)
        hostile = {
            'nokoly.dmg': bytes(3000),
            'short.dmg': b'koly' + bytes(300),
            'dfo.dmg': patched(good['xml.dmg'], [(K + 0x18, '>Q', 1 << 40)]),
            'nofork.dmg': patched(good['xml.dmg'], [(K + 0xe0, '>Q', 0)]),
            'negative.dmg': patched(good['xml.dmg'], [(K + 0x1ec, '>Q', 1 << 63)]),
            'refresh.dmg': patched(good['xml.dmg'], [(K + 0x1ec, '>Q', (1 << 63) - 1)]),
            'nodataend.dmg': good['xml.dmg'].replace(b'</data>', b'</dat>', 1),
            'count0.dmg': patched(good['rsrc.dmg'], [(rsrc_at(good['rsrc.dmg']) + 8, '>I', 0)]),
            'sectors.dmg': fx.image(8, [fx.mish([(fx.UDCM, 0, 0, 0, 0), (fx.UDRW, 0, 6, 0, len(raw_data)),
                                                 (fx.UDZO, 6, 200000, 0, 10)])], raw_data),
            'length.dmg': fx.image(8, [fx.mish([(fx.UDRW, 0, 6, 0, len(raw_data)),
                                                (fx.UDZO, 6, 2, 0, 70000000)])], raw_data, binary=True),
            'badzlib.dmg': fx.image(8, [fx.mish([(fx.UDZO, 0, 8, 0, 100)])], b'\x55' * 100),
            'shortzlib.dmg': fx.image(8, [fx.mish([(fx.UDZO, 0, 8, 0, len(z512))])], z512),
        }
        for name, data in {**good, **hostile}.items():
            d.write(name, data)

        # ---- info ----
        for name in list(good) + list(hostile):
            limit = name in ('sectors.dmg', 'length.dmg')
            # qemu probes dmg by the name, instar by the trailer (dmg-probe-by-trailer): without one,
            # only -f dmg reaches the driver in both.
            f = ['-f', 'dmg'] if name in ('nokoly.dmg', 'short.dmg') else []
            d.same(f'info {name}', ['info'] + f + [name], limit_line=limit)
            d.same(f'info --output=json {name}', ['info', '--output=json'] + f + [name], limit_line=limit)
        d.same('info -f dmg xml.dmg', ['info', '-f', 'dmg', 'xml.dmg'])

        # ---- convert from dmg, compare, map, measure ----
        for name in ('xml.dmg', 'rsrc.dmg', 'odd.dmg', 'bz2.dmg', 'lzfse.dmg', 'gap.dmg', 'badzlib.dmg',
                     'shortzlib.dmg'):
            d.same(f'convert -O raw {name}', ['convert', '-O', 'raw', name, '@out.raw'], outputs=['out.raw'],
                   named_source=True)
        for name in ('xml.dmg', 'rsrc.dmg'):
            d.same(f'convert -O qcow2 {name}', ['convert', '-O', 'qcow2', name, '@out.qcow2'], outputs=['out.qcow2'])
            d.same(f'map {name}', ['map', name])
            d.same(f'map --output=json {name}', ['map', '--output=json', name])
            d.same(f'measure -O qcow2 {name}', ['measure', '-O', 'qcow2', name])
        d.same('map gap.dmg', ['map', '--output=json', 'gap.dmg'])
        # -l: dmg has no snapshots to load (qemu's "does not support temporarily loading ..."), never ignored.
        d.same('convert -l xml.dmg', ['convert', '-O', 'raw', '-l', 's1', 'xml.dmg', '@out.raw'])
        d.same('dd xml.dmg', ['dd', '-O', 'raw', 'if=xml.dmg', 'of=@dd.raw', 'bs=4k', 'count=5', 'skip=1'],
               outputs=['dd.raw'])
        subprocess.run([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'xml.dmg', 'ref.raw'], cwd=work,
                       capture_output=True, check=True)
        d.same('compare xml.dmg rsrc.dmg', ['compare', 'xml.dmg', 'rsrc.dmg'])
        d.same('compare xml.dmg ref.raw', ['compare', '-F', 'raw', 'xml.dmg', 'ref.raw'])
        d.same('compare bz2.dmg ref.raw', ['compare', '-F', 'raw', 'bz2.dmg', 'ref.raw'])
        d.same('compare gap.dmg gap.dmg', ['compare', 'gap.dmg', 'gap.dmg'])
        # -p steps by block-status answers: qemu's dmg driver gives none, so the whole disk, its zero
        # chunks too, is one data run read 2 MiB at a time (instar's reader names no status boundary
        # and reports zero chunks as data, as map shows).
        d.write('large.dmg', fx.large(seed=1))
        subprocess.run([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'large.dmg', 'large.raw'], cwd=work,
                       capture_output=True, check=True)
        d.same('compare -p large.dmg large.raw', ['compare', '-p', '-F', 'raw', 'large.dmg', 'large.raw'])
        d.same('compare -p -s large.dmg large.raw', ['compare', '-p', '-s', '-F', 'raw', 'large.dmg', 'large.raw'])
        d.same('compare -p large.dmg large.dmg', ['compare', '-p', 'large.dmg', 'large.dmg'])

        # ---- what qemu cannot do with dmg ----
        d.same('create -f dmg', ['create', '-f', 'dmg', '@new.dmg', '1M'], outputs=['new.dmg'])
        d.same('convert -O dmg', ['convert', '-O', 'dmg', 'xml.dmg', '@new.dmg'], outputs=['new.dmg'])
        d.same('create -f dmg -o help', ['create', '-f', 'dmg', '-o', 'help'])
        d.same('convert -O dmg -o help', ['convert', '-O', 'dmg', '-o', 'help', 'xml.dmg', '@new.dmg'])
        d.same('check', ['check', 'xml.dmg'])
        # read-write opens: qemu's dmg is read-only (CAP_READ_ONLY), refused before the header is read
        subprocess.run([QEMUS['7.2'][0], 'create', '-q', '-f', 'qcow2', 'ro-base.qcow2', '1M'], cwd=work,
                       capture_output=True, check=True)
        for img in ('xml.dmg', 'nokoly.dmg'):
            for args in (['resize', '-f', 'dmg', '@' + img, '2M'], ['commit', '-f', 'dmg', '@' + img],
                         ['rebase', '-u', '-f', 'dmg', '-b', 'ro-base.qcow2', '-F', 'qcow2', '@' + img],
                         ['amend', '-f', 'dmg', '-o', 'size=2M', '@' + img],
                         ['snapshot', '-f', 'dmg', '-c', 's0', '@' + img],
                         ['bitmap', '-f', 'dmg', '--add', '@' + img, 'b0'],
                         ['check', '-f', 'dmg', '-r', 'all', '@' + img]):
                d.same(' '.join(a.replace('@', '') for a in args), args, inputs=[img])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(d.results)


if __name__ == '__main__':
    sys.exit(main())

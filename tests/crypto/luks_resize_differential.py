#!/usr/bin/env python3
"""`resize` of luks images against both qemu-img oracles (docs/resize.md, "luks"): the payload after
the LUKS header grows or shrinks, as qemu's block_crypto_co_truncate. Each case runs qemu-img 7.2,
10.0 and instar on copies of the same image (made by qemu-img, and one made by instar) and compares
exit status, stdout, stderr and the image's bytes afterwards; then each tool's resized image is
opened by the other: qemu-io reads the old data back through instar's result, instar converts
qemu's result to the same plaintext as qemu-img does.

usage: luks_resize_differential.py INSTAR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'formats'))
from differential_support import QEMUS, report, start as start_check  # noqa: E402
from oracle_diff import OracleDiff  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

PASS = 'resize-pass'
OBJ = ['--object', f'secret,id=s0,data={PASS}']
# iter-time 100: quick, and run_fixture retries qemu's occasional "Unable to get accurate CPU usage".
CREATE = ['-f', 'luks', '-o', 'key-secret=s0,iter-time=100']


def opts(img, key=True):
    return ['--image-opts', 'driver=luks,' + ('key-secret=s0,' if key else '') + f'file.filename=@{img}']


def main():
    args, status = start_check(__doc__, 1)  # main has a local `start`
    if args is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-luks-resize-')
    try:
        d = OracleDiff(args[0], work)
        qemu, qemu_io = QEMUS['7.2']
        d.fixture(qemu, 'create', '-q', *OBJ, *CREATE, 'q.luks', '1M')
        d.fixture(qemu_io, *OBJ, '--image-opts', 'driver=luks,key-secret=s0,file.filename=q.luks',
                  '-c', 'write -P 0x5a 0 1M')
        # instar's own luks image (another cipher), resized by both.
        d.fixture(d.instar, 'create', '-q', *OBJ, '-f', 'luks', '-o',
                  'key-secret=s0,iter-time=10,cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv', 'i.luks', '1M')
        d.fixture(qemu_io, *OBJ, '--image-opts', 'driver=luks,key-secret=s0,file.filename=i.luks',
                  '-c', 'write -P 0x33 4096 8192')
        cases = [
            ('grow', ['2M']),
            ('grow +', ['+1M']),
            ('grow unaligned', ['1049000']),
            ('same size', ['1M']),
            ('shrink', ['--shrink', '512K']),
            ('shrink to one byte', ['--shrink', '1']),
            ('shrink unaligned', ['--shrink', '1000']),
            ('shrink without --shrink', ['512K']),
            ('shrink -', ['--shrink', '--', '-4K']),
            ('prealloc off', ['--preallocation=off', '3M']),
            ('prealloc falloc', ['--preallocation=falloc', '3M']),
            ('prealloc full', ['--preallocation=full', '3M']),
            ('prealloc metadata', ['--preallocation=metadata', '3M']),
            ('prealloc not growing', ['--preallocation=full', '1M']),
            ('prealloc full shrink', ['--preallocation=full', '--shrink', '4K']),
            ('size zero', ['--shrink', '0']),
            ('past the maximum', ['9223372036854775000']),
            ('past the maximum with the header', ['9223372035781033984']),
            ('past the maximum, metadata', ['--preallocation=metadata', '9223372036854775000']),
            # ext4 refuses files past 16 TiB (EFBIG); a file system that takes it makes both tools succeed.
            ('past the file system\'s limit', ['1P']),
        ]
        for img in ('q.luks', 'i.luks'):
            for label, args in cases:
                # 10.0's option rework takes the size after the name; 7.2 wants it last: both fit here.
                size = args[-1]
                flags = args[:-1]
                if '--' in flags:
                    flags = [f for f in flags if f != '--']
                    argv = ['resize', *OBJ, *flags, *opts(img), '--', size]
                else:
                    argv = ['resize', *OBJ, *flags, *opts(img), size]
                d.same(f'resize {img} {label}', argv, inputs=[img])
            # The other ways of naming the image and its secret.
            d.same(f'resize {img} json:', ['resize', *OBJ, 'json:' + json.dumps(
                {'driver': 'luks', 'key-secret': 's0', 'file': {'driver': 'file', 'filename': '@' + img}}), '2M'],
                inputs=[img])
            d.same(f'resize {img} -f luks plain name', ['resize', '-f', 'luks', '@' + img, '2M'], inputs=[img])
            d.same(f'resize {img} no secret', ['resize', *OBJ, *opts(img, key=False), '2M'], inputs=[img])
            d.same(f'resize {img} wrong secret', ['resize', '--object', 'secret,id=s0,data=wrong', *opts(img), '2M'],
                   inputs=[img])
            d.same(f'resize {img} unknown secret', ['resize', *opts(img), '2M'], inputs=[img])
            d.same(f'resize {img} -q', ['resize', '-q', *OBJ, *opts(img), '+64K'], inputs=[img])

        # Each tool opens the other's result: grow then shrink, data kept below the new end.
        for img, pattern, length in (('q.luks', 0x5a, 1048576), ('i.luks', 0x33, 8192)):
            start = 0 if img == 'q.luks' else 4096
            for label, steps in (('grow', [['3M']]), ('shrink', [['--shrink', '768K']]),
                                 ('grow full then shrink', [['--preallocation=full', '2M'], ['--shrink', '1536K']])):
                for who, exe in (('instar', [d.instar]), ('qemu', [qemu])):
                    mine = f'{who}-{label.replace(" ", "_")}-{img}'
                    shutil.copyfile(d.path(img), d.path(mine))
                    problems = []
                    for step in steps:
                        r = subprocess.run(exe + ['resize', *OBJ, *step[:-1], *[a.replace('@', '') for a in opts(mine)],
                                                  step[-1]], capture_output=True, text=True, cwd=work)
                        if r.returncode != 0:
                            problems.append(f'{who} resize {step}: {r.returncode} {r.stderr.strip()}')
                    if not problems:
                        io = f'driver=luks,key-secret=s0,file.filename={mine}'
                        end = min(length, 768 * 1024 - start) if 'shrink' in label and label != 'grow full then shrink' \
                            else length
                        r = run_fixture([qemu_io, *OBJ, '--image-opts', io, '-c',
                                         f'read -P {pattern:#x} {start} {end}'], cwd=work)
                        if r.returncode != 0 or 'Pattern verification failed' in r.stdout:
                            problems.append(f'qemu-io read: {r.stdout.strip()} {r.stderr.strip()}')
                        outs = {}
                        for tool, texe in (('qemu', [qemu]), ('instar', [d.instar])):
                            out = d.path(f'{mine}.{tool}.raw')
                            c = subprocess.run(texe + ['convert', *OBJ, '--image-opts', io, '-O', 'raw', out],
                                               capture_output=True, text=True, cwd=work)
                            outs[tool] = open(out, 'rb').read() if c.returncode == 0 else c.stderr
                        if outs['qemu'] != outs['instar']:
                            problems.append('convert to raw differs between qemu-img and instar')
                        for ver, (q, _) in QEMUS.items():
                            i = subprocess.run([q, 'info', '--output=json', mine], capture_output=True, text=True,
                                               cwd=work)
                            if i.returncode != 0:
                                problems.append(f'qemu {ver} info: {i.stderr.strip()}')
                    d.results.append((f'resized by {who}, opened by the other: {img} {label}', problems))
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""The vdi plugin through the whole CLI against qemu-img 7.2 and 10.0: info (human and JSON, good
and hostile headers), create (-o help, the Formatting line, the bytes with the two random UUIDs
masked), convert to vdi (dynamic and static, bytes) and from vdi (data), convert -n into a vdi,
check (clean, corrupt maps, -r refused, JSON) and map (human and JSON) of dynamic and static images.

Usage: vdi_differential.py INSTAR"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, missing_oracle, report  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402
from sparse_compare import first_difference  # noqa: E402

PROFILES = {'7.2': '7.2', '10.0': '10.0'}
MiB = 1 << 20
UUIDS = (392, 424)  # uuid_image and uuid_last_snap: random in qemu and instar alike


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, errors='replace', timeout=300)
    return p.returncode, p.stdout, p.stderr


def norm(text):
    return text.replace('qemu-img: ', 'PROG: ').replace('instar: ', 'PROG: ')


def same_cli(label, qemu_cmd, instar_cmd, cwd, results, instar_cwd=None):
    """Runs both and compares exit status, stdout and stderr (program names normalised)."""
    q = run(qemu_cmd, cwd)
    i = run(instar_cmd, instar_cwd or cwd)
    problems = []
    if q[0] != i[0]:
        problems.append(f'exit {i[0]} != qemu {q[0]}')
    if norm(q[1]) != norm(i[1]):
        problems.append(f'stdout:\n--- qemu\n{q[1]}--- instar\n{i[1]}')
    if norm(q[2]) != norm(i[2]):
        problems.append(f'stderr: qemu {q[2]!r} instar {i[2]!r}')
    results.append((label, problems))


def same_bytes(label, a, b, results, mask=True):
    """The files' lengths and bytes (the two random UUIDs not compared when `mask`), read only
    where either file stores data (a 1 GiB static image is mostly a hole)."""
    ignore = [UUIDS] if mask and os.path.getsize(a) >= UUIDS[1] else []
    diff = first_difference(a, b, ignore)
    problems = []
    if diff is not None:
        (la, lb), first = diff
        problems.append(f'length {lb} != qemu {la}' if first is None else f'bytes differ from offset {first}')
    results.append((label, problems))


def patch(src, dst, fields):
    shutil.copyfile(src, dst)
    with open(dst, 'r+b') as f:
        for off, fmt, value in fields:
            f.seek(off)
            f.write(struct.pack(fmt, value))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    skip = missing_oracle()
    if skip is not None:
        return skip
    instar = os.path.abspath(sys.argv[1])
    if not os.access(instar, os.X_OK):
        print(f'SKIP: {instar} missing; SKIPPED LOUDLY')
        return 77
    q72 = QEMUS['7.2'][0]
    qio = QEMUS['7.2'][1]
    results = []
    d = tempfile.mkdtemp(prefix='vdi-diff-')
    try:
        def qimg(*args):
            run_fixture([q72, *args], check=True, cwd=d)

        def qemu_io(path, cmd):
            run_fixture([qio, '-f', 'vdi', '-c', cmd, path], check=True, cwd=d)

        # ---- images made by qemu-img 7.2 ----
        qimg('create', '-q', '-f', 'vdi', 'dyn.vdi', '5M')
        qimg('create', '-q', '-f', 'vdi', '-o', 'static=on', 'static.vdi', '3000000')
        qimg('create', '-q', '-f', 'vdi', 'empty.vdi', '0')
        qimg('create', '-q', '-f', 'vdi', 'data.vdi', '8M')
        qemu_io('data.vdi', 'write -P 0x5a 3M 64k')
        qemu_io('data.vdi', 'write -P 0x33 0 1k')
        qemu_io('data.vdi', 'write -P 0x77 7M 512')
        # A static image with data in some blocks (the rest stay holes of the file).
        qimg('create', '-q', '-f', 'vdi', '-o', 'static=on', 'sdata.vdi', '4M')
        qemu_io('sdata.vdi', 'write -P 0x5a 1M 64k')
        qemu_io('sdata.vdi', 'write -P 0x33 3M 1M')
        shutil.copyfile(os.path.join(d, 'dyn.vdi'), os.path.join(d, 'odd.vdi'))
        patch(os.path.join(d, 'dyn.vdi'), os.path.join(d, 'odd.vdi'), [(368, '<Q', 5 * MiB - 1000)])
        hostile = {
            'badsig.vdi': [(64, '<I', 0x12345678)],
            'version.vdi': [(68, '<I', 0x00020003)],
            'bmapalign.vdi': [(340, '<I', 0x201)],
            'sector.vdi': [(360, '<I', 4096)],
            'blocksize.vdi': [(376, '<I', 2 * MiB)],
            'toobig.vdi': [(368, '<Q', 1 << 62)],
            'bitmap.vdi': [(368, '<Q', 6 * MiB)],
            'parent.vdi': [(440, '<I', 7)],
            'link.vdi': [(424, '<I', 7)],
        }
        for name, fields in hostile.items():
            patch(os.path.join(d, 'dyn.vdi'), os.path.join(d, name), fields)
        # Corrupt block maps for check: a block used twice, an entry too large, a wrong count.
        patch(os.path.join(d, 'data.vdi'), os.path.join(d, 'dup.vdi'), [(512 + 4 * 5, '<I', 1)])
        patch(os.path.join(d, 'data.vdi'), os.path.join(d, 'large.vdi'), [(512 + 4 * 6, '<I', 99)])
        patch(os.path.join(d, 'data.vdi'), os.path.join(d, 'count.vdi'), [(388, '<I', 7)])
        # A block map that runs past the end of the file (read as zero entries: block 0 reused).
        patch(os.path.join(d, 'dyn.vdi'), os.path.join(d, 'shortmap.vdi'), [(384, '<I', 3000)])
        with open(os.path.join(d, 'shortmap.vdi'), 'r+b') as f:
            f.truncate(1024)
        # A map entry far past the end of the file: qemu reads zeros there.
        patch(os.path.join(d, 'data.vdi'), os.path.join(d, 'far.vdi'), [(512 + 4 * 4, '<I', 0x100000)])

        good = ['dyn.vdi', 'static.vdi', 'empty.vdi', 'data.vdi', 'odd.vdi', 'far.vdi', 'shortmap.vdi']
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for name in good + list(hostile):
                for out in ('human', 'json'):
                    # -f vdi: qemu probes a file without the signature as raw
                    fmt = ['-f', 'vdi'] if name == 'badsig.vdi' else []
                    same_cli(f'info {out} {name} [qemu {ver}]', [qemu, 'info', *fmt, f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'info', *fmt, f'--output={out}', name], d, results)
            same_cli(f'create -o help [qemu {ver}]', [qemu, 'create', '-f', 'vdi', '-o', 'help'],
                     [instar, '--qemu-version', prof, 'create', '-f', 'vdi', '-o', 'help'], d, results)
            for name in good + ['dup.vdi', 'large.vdi', 'count.vdi', 'version.vdi']:
                for extra in ([], ['--output=json'], ['-r', 'all']) if name != 'data.vdi' else ([], ['-r', 'leaks']):
                    same_cli(f'check {" ".join(extra)} {name} [qemu {ver}]', [qemu, 'check', *extra, name],
                             [instar, '--qemu-version', prof, 'check', *extra, name], d, results)
            # Static images: blocks whose bytes are file holes are DATA|ZERO (qemu's BDRV_BLOCK_RECURSE,
            # the plugin's qemu_traits), written blocks DATA; a dynamic image's blocks are DATA alone.
            for name in ('static.vdi', 'sdata.vdi', 'dyn.vdi', 'empty.vdi'):
                for out in ('human', 'json'):
                    same_cli(f'map {out} {name} [qemu {ver}]', [qemu, 'map', f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'map', f'--output={out}', name], d, results)
            same_cli(f'map json --start-offset sdata.vdi [qemu {ver}]',
                     [qemu, 'map', '--output=json', '--start-offset=1536k', '--max-length=1M', 'sdata.vdi'],
                     [instar, '--qemu-version', prof, 'map', '--output=json', '--start-offset=1536k',
                      '--max-length=1M', 'sdata.vdi'], d, results)
            for name in ('static.vdi', 'data.vdi'):
                same_cli(f'measure {name} [qemu {ver}]', [qemu, 'measure', '-O', 'qcow2', '--output=json', name],
                         [instar, '--qemu-version', prof, 'measure', '-O', 'qcow2', '--output=json', name], d, results)
            same_cli(f'compare -s static.vdi dyn.vdi [qemu {ver}]', [qemu, 'compare', '-s', 'static.vdi', 'dyn.vdi'],
                     [instar, '--qemu-version', prof, 'compare', '-s', 'static.vdi', 'dyn.vdi'], d, results)
            for args in (['10M'], ['--shrink', '1M'], ['+1M']):
                shutil.copyfile(os.path.join(d, 'dyn.vdi'), os.path.join(d, 'rs.vdi'))
                same_cli(f'resize {args} [qemu {ver}]', [qemu, 'resize', 'rs.vdi', *args],
                         [instar, '--qemu-version', prof, 'resize', 'rs.vdi', *args], d, results)
            for name in ('data.vdi', 'far.vdi'):
                for out in ('human', 'json'):
                    same_cli(f'map {out} {name} [qemu {ver}]', [qemu, 'map', f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'map', f'--output={out}', name], d, results)

        # ---- create: Formatting line, exit status and bytes ----
        os.mkdir(os.path.join(d, 'q'))
        os.mkdir(os.path.join(d, 'i'))
        sizes = ['0', '1', '512', '1M', '5M', '3000000', '1G', '100G', '562949819203585']
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for size in sizes:
                for opts in ([], ['-o', 'static=on']) if size != '5M' else ([], ['-o', 'static=on'], ['-o', 'static=off']):
                    if opts == ['-o', 'static=on'] and size == '100G':
                        continue  # a static image that large is a huge (sparse) file: skip
                    # The same name in two directories: the Formatting line prints it.
                    qa, ia = os.path.join('q', 'new.vdi'), os.path.join('i', 'new.vdi')
                    same_cli(f'create {size} {opts} [qemu {ver}]', [qemu, 'create', '-f', 'vdi', *opts, 'new.vdi', size],
                             [instar, '--qemu-version', prof, 'create', '-f', 'vdi', *opts, 'new.vdi', size],
                             os.path.join(d, 'q'), results, os.path.join(d, 'i'))
                    if os.path.exists(os.path.join(d, qa)) and os.path.exists(os.path.join(d, ia)):
                        same_bytes(f'create bytes {size} {opts} [qemu {ver}]', os.path.join(d, qa),
                                   os.path.join(d, ia), results)
                    for f in (qa, ia):
                        if os.path.exists(os.path.join(d, f)):
                            os.unlink(os.path.join(d, f))
            same_cli(f'create -o preallocation [qemu {ver}]',
                     [qemu, 'create', '-f', 'vdi', '-o', 'preallocation=metadata', 'p.vdi', '1M'],
                     [instar, '--qemu-version', prof, 'create', '-f', 'vdi', '-o', 'preallocation=metadata',
                      'p.vdi', '1M'], d, results)

        # ---- convert to vdi: bytes identical to qemu-img's (UUIDs masked) ----
        src = os.path.join(d, 'src.raw')
        with open(src, 'wb') as f:
            f.write(os.urandom(1536 * 1024))
            f.seek(3 * MiB + 4096)
            f.write(os.urandom(8192))
            f.seek(6 * MiB - 333)
            f.write(b'\x01' * 333)
        qimg('convert', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'src.qcow2')
        for source, fmt in (('src.raw', 'raw'), ('src.qcow2', 'qcow2'), ('data.vdi', 'vdi')):
            for opts in ([], ['-o', 'static=on']):
                qa, ia = f'cq-{fmt}-{len(opts)}.vdi', f'ci-{fmt}-{len(opts)}.vdi'
                for out in (qa, ia):
                    if os.path.exists(os.path.join(d, out)):
                        os.unlink(os.path.join(d, out))
                same_cli(f'convert {fmt} -> vdi {opts}', [q72, 'convert', '-f', fmt, '-O', 'vdi', *opts, source, qa],
                         [instar, 'convert', '-f', fmt, '-O', 'vdi', *opts, source, ia], d, results)
                if os.path.exists(os.path.join(d, qa)) and os.path.exists(os.path.join(d, ia)):
                    same_bytes(f'convert bytes {fmt} -> vdi {opts}', os.path.join(d, qa), os.path.join(d, ia),
                               results)

        # ---- convert from vdi: the data qemu-img reads ----
        for name in ('data.vdi', 'static.vdi', 'odd.vdi', 'far.vdi', 'empty.vdi', 'cq-raw-0.vdi', 'cq-raw-2.vdi'):
            qa, ia = f'r-q-{name}.raw', f'r-i-{name}.raw'
            same_cli(f'convert {name} -> raw', [q72, 'convert', '-O', 'raw', name, qa],
                     [instar, 'convert', '-O', 'raw', name, ia], d, results)
            if os.path.exists(os.path.join(d, qa)) and os.path.exists(os.path.join(d, ia)):
                same_bytes(f'convert data {name} -> raw', os.path.join(d, qa), os.path.join(d, ia), results,
                           mask=False)
        same_cli('convert -l from vdi', [q72, 'convert', '-l', 'snap', '-O', 'raw', 'data.vdi', 'l-q.raw'],
                 [instar, '--qemu-version', '7.2', 'convert', '-l', 'snap', '-O', 'raw', 'data.vdi', 'l-i.raw'], d,
                 results)
        for args in (['-c'], ['-B', 'dyn.vdi'], ['-S', '0'], ['-o', 'preallocation=full']):
            qa, ia = 'opt-q.vdi', 'opt-i.vdi'
            for out in (qa, ia):
                if os.path.exists(os.path.join(d, out)):
                    os.unlink(os.path.join(d, out))
            same_cli(f'convert to vdi {args}', [q72, 'convert', '-f', 'raw', '-O', 'vdi', *args, 'src.raw', qa],
                     [instar, '--qemu-version', '7.2', 'convert', '-f', 'raw', '-O', 'vdi', *args, 'src.raw', ia],
                     d, results)
            if os.path.exists(os.path.join(d, qa)) and os.path.exists(os.path.join(d, ia)):
                same_bytes(f'convert bytes to vdi {args}', os.path.join(d, qa), os.path.join(d, ia), results)
        for name in ('version.vdi', 'blocksize.vdi'):
            same_cli(f'convert hostile {name}', [q72, 'convert', '-O', 'raw', name, 'h-q.raw'],
                     [instar, 'convert', '-O', 'raw', name, 'h-i.raw'], d, results)

        # ---- convert -n into an existing vdi (the same starting bytes for both) ----
        for base in ('data.vdi', 'static.vdi'):
            qa, ia = f'n-q-{base}', f'n-i-{base}'
            shutil.copyfile(os.path.join(d, base), os.path.join(d, qa))
            shutil.copyfile(os.path.join(d, base), os.path.join(d, ia))
            qimg('create', '-q', '-f', 'raw', 'small.raw', '2M')
            run_fixture([qio, '-f', 'raw', '-c', 'write -P 0x42 1M 4k', 'small.raw'], check=True, cwd=d)
            same_cli(f'convert -n raw -> {base}', [q72, 'convert', '-n', '-f', 'raw', '-O', 'vdi', 'small.raw', qa],
                     [instar, 'convert', '-n', '-f', 'raw', '-O', 'vdi', 'small.raw', ia], d, results)
            same_bytes(f'convert -n bytes -> {base}', os.path.join(d, qa), os.path.join(d, ia), results,
                       mask=False)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

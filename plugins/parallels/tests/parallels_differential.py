#!/usr/bin/env python3
"""The parallels plugin through the whole CLI against qemu-img 7.2 and 10.0: info (human and JSON,
good and hostile headers, both magics), create (-o help, the Formatting line, the bytes), convert to
parallels (bytes) and from parallels (data), check (clean, leaked, outside, unclean, duplicate,
data_off; JSON; -r errors) and map/measure/compare.

Usage: parallels_differential.py INSTAR"""
import hashlib
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


def same_bytes(label, a, b, results):
    """The files' lengths and bytes, read only where either file stores data (the raw copy of
    the 3 GiB image is mostly a hole)."""
    diff = first_difference(a, b)
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


def old_image(path, data_off=0, extra=b''):
    """An old-magic ("WithoutFreeSpace") image as Parallels wrote them: 64 KiB, 4 KiB clusters,
    BAT entries in sectors, clusters 1 and 3 allocated."""
    h = b'WithoutFreeSpace' + struct.pack('<IIIII', 2, 16, 0, 8, 16) + struct.pack('<Q', 128)
    h += struct.pack('<IIIQ', 0, data_off, 0, 0)
    bat = [0] * 16
    bat[1], bat[3] = 8, 16
    img = bytearray(h + b''.join(struct.pack('<I', e) for e in bat))
    img += bytes(4096 - len(img))
    img += b'\x55' * 4096 + b'\x66' * 4096 + extra
    with open(path, 'wb') as f:
        f.write(img)


EXT_MAGIC = 0xAB234CEF23DCEA87
DIRTY_BITMAP = 0x20385FAE252CB34A


def ext_feature(magic, data, flags=0):
    return struct.pack('<QQII', magic, flags, len(data), 0) + data


def ext_bitmap(sectors, granularity, l1, ident=b'\x01' * 16):
    data = struct.pack('<Q16sII', sectors, ident, granularity, len(l1)) + b''.join(struct.pack('<Q', e) for e in l1)
    return ext_feature(DIRTY_BITMAP, data)


def ext_image(src, dst, features, magic=EXT_MAGIC, good_sum=True):
    """src with a Format Extension cluster appended (ext_off names it): the features after the magic
    and the MD5 of the rest of the cluster."""
    data = bytearray(open(src, 'rb').read())
    cs = struct.unpack_from('<I', data, 28)[0] * 512
    data += bytes(-len(data) % cs)
    at = len(data)
    body = bytearray(cs - 24)
    pos = 0
    for f in features:
        body[pos:pos + len(f)] = f
        pos += (len(f) + 7) // 8 * 8
    digest = hashlib.md5(bytes(body)).digest() if good_sum else bytes(16)
    data += struct.pack('<Q', magic) + digest + body
    struct.pack_into('<Q', data, 56, at // 512)
    open(dst, 'wb').write(data)


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
    d = tempfile.mkdtemp(prefix='parallels-diff-')
    p = lambda name: os.path.join(d, name)  # noqa: E731
    try:
        def qimg(*args):
            run_fixture([q72, *args], check=True, cwd=d)

        def qemu_io(path, cmd):
            run_fixture([qio, '-f', 'parallels', '-c', cmd, path], check=True, cwd=d)

        # ---- images made by qemu-img 7.2 (qemu-io writes) and by hand (old magic) ----
        qimg('create', '-q', '-f', 'parallels', 'empty.prl', '10M')
        qimg('create', '-q', '-f', 'parallels', 'zero.prl', '0')
        qimg('create', '-q', '-f', 'parallels', '-o', 'cluster_size=64k', 'data.prl', '1M')
        qemu_io('data.prl', 'write -P 0x11 0 64k')
        qemu_io('data.prl', 'write -P 0x22 256k 4k')
        qemu_io('data.prl', 'write -P 0x33 960k 64k')
        qemu_io('data.prl', 'write -P 0x44 128k 512')
        qimg('create', '-q', '-f', 'parallels', 'big.prl', '3G')
        qemu_io('big.prl', 'write -P 0x5a 2G 1M')
        old_image(p('old.prl'))
        old_image(p('olddataoff.prl'), data_off=8)
        old_image(p('oldleak.prl'), extra=b'\x00' * 5000)
        hostile = {
            'version.prl': [(16, '<I', 3)],
            'tracks0.prl': [(28, '<I', 0)],
            'bigcluster.prl': [(28, '<I', 0x7fffffff // 513 + 1)],
            'catalog.prl': [(32, '<I', 0x7fffffff // 4 + 1)],
            'extoff.prl': [(56, '<Q', 1 << 60)],
            'hugebat.prl': [(32, '<I', 0x7fffffff // 4)],
            'size32.prl': [(36, '<Q', (1 << 40) + 2048)],
        }
        for name, fields in hostile.items():
            patch(p('data.prl'), p(name), fields)
        with open(p('data.prl'), 'rb') as f, open(p('short.prl'), 'wb') as g:
            g.write(f.read(20))  # magic and version only: the rest of the header reads as zeros
        hostile['short.prl'] = []
        patch(p('old.prl'), p('oldsize.prl'), [(36, '<Q', (1 << 40) + 128)])  # old magic: low 32 bits only
        # check fixtures
        shutil.copyfile(p('data.prl'), p('leak.prl'))
        with open(p('leak.prl'), 'r+b') as f:
            f.truncate(os.path.getsize(p('data.prl')) + 100000)
        patch(p('data.prl'), p('unclean.prl'), [(44, '<I', 0x746F6E59)])
        patch(p('data.prl'), p('dup.prl'), [(64 + 4 * 5, '<I', 1)])
        patch(p('data.prl'), p('dupmid.prl'), [(64 + 4 * 1, '<I', 1)])
        patch(p('data.prl'), p('dataoff.prl'), [(48, '<I', 3)])
        patch(p('old.prl'), p('outside.prl'), [(64 + 4 * 5, '<I', 1000)])
        patch(p('data.prl'), p('far.prl'), [(64 + 4 * 6, '<I', 0x100000)])
        # duplicates for 10.0's repair: into the data end, into a hole, over a leak, unclean, old magic
        patch(p('data.prl'), p('duphole.prl'), [(64 + 4 * 2, '<I', 0), (64 + 4 * 5, '<I', 1)])
        shutil.copyfile(p('dup.prl'), p('dupleak.prl'))
        with open(p('dupleak.prl'), 'r+b') as f:
            f.truncate(400000)
        patch(p('dupmid.prl'), p('dupunclean.prl'), [(44, '<I', 0x746F6E59)])
        patch(p('old.prl'), p('olddup.prl'), [(64 + 4 * 7, '<I', 8)])
        patch(p('data.prl'), p('hole.prl'), [(64 + 4 * 2, '<I', 0)])
        old_image(p('oldleak3.prl'), extra=bytes(3 * 4096))

        # Format extensions (qemu reads them on a read-only open; instar checks them the same way and
        # refuses to write an image that has one): data.prl is 1 MiB, 2048 sectors, 64 KiB clusters.
        bm = ext_bitmap(2048, 128, [1])
        exts = {
            'ext-end.prl': [ext_feature(0, b'')],
            'ext-bitmaps.prl': [bm, ext_bitmap(2048, 16, [0], b'\x02' * 16), ext_bitmap(2048, 128, [300]),
                                ext_feature(0, b'')],
            'ext-magic.prl': None,
            'ext-sum.prl': None,
            'ext-flags.prl': [ext_feature(0, b'', 1)],
            'ext-unknown.prl': [ext_feature(0x1111, b'')],
            'ext-small.prl': [ext_feature(DIRTY_BITMAP, bytes(16))],
            'ext-size.prl': [ext_bitmap(2049, 128, [1])],
            'ext-l1.prl': [ext_feature(DIRTY_BITMAP, struct.pack('<Q16sII', 2048, b'A' * 16, 128, 5))],
            'ext-table.prl': [ext_bitmap(2048, 128, [1, 1])],
            'ext-dup.prl': [bm, bm],
            'ext-eio.prl': [ext_bitmap(2048, 128, [1 << 54])],
            'ext-past.prl': [ext_feature(DIRTY_BITMAP, struct.pack('<Q16sIIQ', 2048, b'B' * 16, 128, 1, 1) +
                                         bytes(65536 - 24 - 24 - 16 - 40))],
        }
        for name, features in exts.items():
            if name == 'ext-magic.prl':
                ext_image(p('data.prl'), p(name), [ext_feature(0, b'')], magic=0x1234)
            elif name == 'ext-sum.prl':
                ext_image(p('data.prl'), p(name), [ext_feature(0, b'')], good_sum=False)
            else:
                ext_image(p('data.prl'), p(name), features)
        patch(p('data.prl'), p('ext-eof.prl'), [(56, '<Q', 100000)])
        exts['ext-eof.prl'] = None
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for name in exts:
                for out in ('human', 'json'):
                    same_cli(f'info {out} {name} [qemu {ver}]', [qemu, 'info', f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'info', f'--output={out}', name], d, results)
            for name in ('ext-end.prl', 'ext-bitmaps.prl', 'ext-past.prl'):
                for cmd in (['check'], ['check', '--output=json'], ['map', '--output=json'],
                            ['measure', '-O', 'qcow2'], ['compare', 'data.prl']):
                    same_cli(f'{" ".join(cmd)} {name} [qemu {ver}]', [qemu, *cmd, name],
                             [instar, '--qemu-version', prof, *cmd, name], d, results)
                same_cli(f'convert {name} [qemu {ver}]', [qemu, 'convert', '-O', 'raw', name, 'xq.raw'],
                         [instar, '--qemu-version', prof, 'convert', '-O', 'raw', name, 'xi.raw'], d, results)
                same_bytes(f'convert bytes {name} [qemu {ver}]', p('xq.raw'), p('xi.raw'), results)
        # Writes into an image with an extension are refused (qemu warns "Format Extension ignored in
        # RW mode" and writes over it, leaving ext_off naming a cluster it reused): exit 1, untouched.
        for cmd in (['check', '-r', 'all', 'fx.prl'], ['convert', '-n', '-O', 'parallels', 'data.prl', 'fx.prl']):
            shutil.copyfile(p('ext-end.prl'), p('fx.prl'))
            rc, _, err = run([instar, *cmd], d)
            problems = []
            if rc != 1 or 'Format Extension' not in err:
                problems.append(f'exit {rc}, {err!r}')
            with open(p('fx.prl'), 'rb') as a, open(p('ext-end.prl'), 'rb') as b:
                if a.read() != b.read():
                    problems.append('the image changed')
            results.append((f'refused: {" ".join(cmd)}', problems))

        good = ['empty.prl', 'zero.prl', 'data.prl', 'big.prl', 'old.prl', 'olddataoff.prl', 'oldsize.prl',
                'far.prl', 'unclean.prl']
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for name in good + list(hostile):
                if name == 'extoff.prl' and ver == '7.2':
                    continue  # qemu 7.2 aborts (ext_off << 9 overflows; parallels-format-extension)
                # -f parallels: qemu probes a file without version 2 as raw
                fmt = ['-f', 'parallels'] if name in ('version.prl', 'short.prl') else []
                for out in ('human', 'json'):
                    same_cli(f'info {out} {name} [qemu {ver}]', [qemu, 'info', *fmt, f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'info', *fmt, f'--output={out}', name], d, results)
            same_cli(f'create -o help [qemu {ver}]', [qemu, 'create', '-f', 'parallels', '-o', 'help'],
                     [instar, '--qemu-version', prof, 'create', '-f', 'parallels', '-o', 'help'], d, results)
            checks = ['empty.prl', 'data.prl', 'old.prl', 'olddataoff.prl', 'oldleak.prl', 'leak.prl', 'unclean.prl',
                      'dup.prl', 'dupmid.prl', 'dataoff.prl', 'zero.prl', 'hugebat.prl', 'tracks0.prl', 'size32.prl']
            if ver == '7.2':
                checks += ['outside.prl', 'far.prl']  # qemu 10.0 aborts on them (parallels-check-e2big)
            for name in checks:
                for extra in ([], ['--output=json']):
                    same_cli(f'check {" ".join(extra)} {name} [qemu {ver}]', [qemu, 'check', *extra, name],
                             [instar, '--qemu-version', prof, 'check', *extra, name], d, results)
            # -r all on copies: the repairs instar does (unclean, outside, data_off), output and bytes.
            fixes = ['unclean.prl', 'dataoff.prl', 'leak.prl', 'oldleak.prl', 'dup.prl', 'dupmid.prl', 'duphole.prl',
                     'dupleak.prl', 'dupunclean.prl', 'olddup.prl'] + (['outside.prl'] if ver == '7.2' else [])
            for name in fixes:
                shutil.copyfile(p(name), p('fq.prl'))
                shutil.copyfile(p(name), p('fi.prl'))
                same_cli(f'check -r all {name} [qemu {ver}]', [qemu, 'check', '-r', 'all', 'fq.prl'],
                         [instar, '--qemu-version', prof, 'check', '-r', 'all', 'fi.prl'], d, results)
                # 7.2: after a repair of an image whose data_end lies past its clusters, qemu's close
                # grows the file to data_end (parallels-check-repairs)
                if not (ver == '7.2' and name in ('outside.prl', 'oldleak.prl')):
                    same_bytes(f'check -r all bytes {name} [qemu {ver}]', p('fq.prl'), p('fi.prl'), results)
            for name in ('data.prl', 'old.prl', 'far.prl'):
                for out in ('human', 'json'):
                    same_cli(f'map {out} {name} [qemu {ver}]', [qemu, 'map', f'--output={out}', name],
                             [instar, '--qemu-version', prof, 'map', f'--output={out}', name], d, results)
            for out in ('human', 'json'):  # 10.0 adds "bitmaps": 0 (QEMU_PERSISTENT_BITMAPS_SINCE_8_2)
                same_cli(f'measure {out} data.prl [qemu {ver}]',
                         [qemu, 'measure', '-O', 'qcow2', f'--output={out}', 'data.prl'],
                         [instar, '--qemu-version', prof, 'measure', '-O', 'qcow2', f'--output={out}', 'data.prl'], d,
                         results)
            same_cli(f'compare data.prl far.prl [qemu {ver}]', [qemu, 'compare', 'data.prl', 'far.prl'],
                     [instar, '--qemu-version', prof, 'compare', 'data.prl', 'far.prl'], d, results)

        # ---- create: Formatting line, exit status and bytes ----
        os.mkdir(p('q'))
        os.mkdir(p('i'))
        cases = [('0', []), ('1', []), ('512', []), ('1M', []), ('10M', []), ('3000000', []), ('1G', []),
                 ('100G', []), ('1M', ['-o', 'cluster_size=4k']), ('1M', ['-o', 'cluster_size=1000']),
                 ('5G', ['-o', 'cluster_size=512']), ('1M', ['-o', 'cluster_size=0']),
                 ('3T', ['-o', 'cluster_size=512']), ('1M', ['-o', 'cluster_size=64T']),
                 ('1M', ['-o', 'cluster_size=2M'])]
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for size, opts in cases:
                qa, ia = os.path.join('q', 'new.prl'), os.path.join('i', 'new.prl')
                same_cli(f'create {size} {opts} [qemu {ver}]', [qemu, 'create', '-f', 'parallels', *opts, 'new.prl', size],
                         [instar, '--qemu-version', prof, 'create', '-f', 'parallels', *opts, 'new.prl', size],
                         p('q'), results, p('i'))
                if os.path.exists(p(qa)) and os.path.exists(p(ia)):
                    same_bytes(f'create bytes {size} {opts} [qemu {ver}]', p(qa), p(ia), results)
                for f in (qa, ia):
                    if os.path.exists(p(f)):
                        os.unlink(p(f))

        # ---- convert to parallels: bytes identical to qemu-img's ----
        src = p('src.raw')
        with open(src, 'wb') as f:
            f.write(os.urandom(1536 * 1024))
            f.seek(3 * MiB + 4096)
            f.write(os.urandom(8192))
            f.seek(6 * MiB - 333)
            f.write(b'\x01' * 333)
        qimg('convert', '-f', 'raw', '-O', 'qcow2', 'src.raw', 'src.qcow2')
        for ver, prof in PROFILES.items():
            qemu = QEMUS[ver][0]
            for source, fmt in (('src.raw', 'raw'), ('src.qcow2', 'qcow2'), ('data.prl', 'parallels')):
                for opts in ([], ['-o', 'cluster_size=64k']):
                    qa, ia = f'cq-{fmt}-{len(opts)}.prl', f'ci-{fmt}-{len(opts)}.prl'
                    for out in (qa, ia):
                        if os.path.exists(p(out)):
                            os.unlink(p(out))
                    same_cli(f'convert {fmt} -> parallels {opts} [qemu {ver}]',
                             [qemu, 'convert', '-f', fmt, '-O', 'parallels', *opts, source, qa],
                             [instar, '--qemu-version', prof, 'convert', '-f', fmt, '-O', 'parallels', *opts, source, ia],
                             d, results)
                    if os.path.exists(p(qa)) and os.path.exists(p(ia)):
                        same_bytes(f'convert bytes {fmt} -> parallels {opts} [qemu {ver}]', p(qa), p(ia), results)

        # ---- convert from parallels: the data qemu-img reads ----
        for name in ('data.prl', 'old.prl', 'olddataoff.prl', 'far.prl', 'empty.prl', 'zero.prl', 'big.prl',
                     'cq-raw-0.prl', 'cq-raw-1.prl'):
            qa, ia = f'r-q-{name}.raw', f'r-i-{name}.raw'
            same_cli(f'convert {name} -> raw', [q72, 'convert', '-O', 'raw', name, qa],
                     [instar, 'convert', '-O', 'raw', name, ia], d, results)
            if os.path.exists(p(qa)) and os.path.exists(p(ia)):
                same_bytes(f'convert data {name} -> raw', p(qa), p(ia), results)
        for name in ('version.prl', 'tracks0.prl', 'catalog.prl'):
            same_cli(f'convert hostile {name}', [q72, 'convert', '-f', 'parallels', '-O', 'raw', name, 'h-q.raw'],
                     [instar, 'convert', '-f', 'parallels', '-O', 'raw', name, 'h-i.raw'], d, results)

        # ---- convert -n into an existing parallels image (the same starting bytes for both) ----
        qimg('create', '-q', '-f', 'raw', 'small.raw', '1M')
        run_fixture([qio, '-f', 'raw', '-c', 'write -P 0x42 512k 4k', 'small.raw'], check=True, cwd=d)
        qimg('create', '-q', '-f', 'raw', 'tiny.raw', '64k')
        run_fixture([qio, '-f', 'raw', '-c', 'write -P 0x42 40k 4k', 'tiny.raw'], check=True, cwd=d)
        # old.prl under 10.0: qemu reuses the hole before data_end (parallels-convert-n)
        run_fixture([qio, '-f', 'raw', '-c', 'write -P 0x43 64k 64k', 'small.raw'], check=True, cwd=d)
        with open(p('leakbig.prl'), 'wb') as f, open(p('data.prl'), 'rb') as g:
            f.write(g.read())
            f.truncate(3 * MiB)  # leaked space past the data end: cut at close
        for base, src_raw, ver in (('data.prl', 'small.raw', '7.2'), ('data.prl', 'small.raw', '10.0'),
                                   ('old.prl', 'tiny.raw', '7.2'), ('empty.prl', 'small.raw', '10.0'),
                                   ('old.prl', 'tiny.raw', '10.0'), ('oldleak3.prl', 'tiny.raw', '7.2'),
                                   ('oldleak3.prl', 'tiny.raw', '10.0'), ('leakbig.prl', 'small.raw', '7.2'),
                                   ('leakbig.prl', 'small.raw', '10.0'), ('hole.prl', 'small.raw', '10.0'),
                                   ('hole.prl', 'small.raw', '7.2'), ('leak.prl', 'tiny.raw', '10.0')):
            qa, ia = f'n-q-{ver}-{base}', f'n-i-{ver}-{base}'
            shutil.copyfile(p(base), p(qa))
            shutil.copyfile(p(base), p(ia))
            same_cli(f'convert -n raw -> {base} [qemu {ver}]',
                     [QEMUS[ver][0], 'convert', '-n', '-f', 'raw', '-O', 'parallels', src_raw, qa],
                     [instar, '--qemu-version', ver, 'convert', '-n', '-f', 'raw', '-O', 'parallels', src_raw, ia],
                     d, results)
            same_bytes(f'convert -n bytes -> {base} [qemu {ver}]', p(qa), p(ia), results)

        # ---- kill -9 during check -r all (INSTAR_TEST_KILL_AT_WRITE: the host ends at the n-th file
        # change): qemu-img check then finds the original damage or leaks only, and qemu's own repair
        # of what is left reads as qemu's repair of the original ----
        q10 = QEMUS['10.0'][0]
        for name, ver in (('dupleak.prl', '10.0'), ('duphole.prl', '10.0'), ('dupunclean.prl', '10.0'),
                          ('leak.prl', '7.2')):
            qemu = QEMUS[ver][0]
            orig = set(run([qemu, 'check', name], d)[2].splitlines())
            shutil.copyfile(p(name), p('kref.prl'))
            run([qemu, 'check', '-r', 'all', 'kref.prl'], d)
            points = 0
            for n in range(1, 60):
                shutil.copyfile(p(name), p('kill.prl'))
                env = dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n))
                k = subprocess.run([instar, '--qemu-version', ver, 'check', '-r', 'all', 'kill.prl'], cwd=d, env=env,
                                   capture_output=True, text=True, timeout=300)
                _, _, err = run([qemu, 'check', 'kill.prl'], d)
                bad = [ln for ln in err.splitlines() if ln not in orig and 'leaked' not in ln]
                rc2 = run([qemu, 'check', '-r', 'all', 'kill.prl'], d)[0]
                rc3 = run([qemu, 'check', 'kill.prl'], d)[0]
                rc4 = run([q10, 'compare', '-f', 'parallels', '-F', 'parallels', 'kref.prl', 'kill.prl'], d)[0]
                problems = []
                if bad or rc2 != 0 or rc3 != 0 or rc4 != 0:
                    problems.append(f'new damage {bad[:3]}, re-repair rc {rc2}, final rc {rc3}, compare rc {rc4}')
                results.append((f'check -r all killed at change {n} {name} [qemu {ver}]', problems))
                points += 1
                if k.returncode == 0:
                    break
            results.append((f'check -r all kill points {name} [qemu {ver}]',
                            [] if points >= 2 else [f'only {points} kill points']))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

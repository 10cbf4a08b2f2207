#!/usr/bin/env python3
"""Differential check of the qcow2 reader against qemu-img 7.2 and 10.0.

Images are made with qemu-img/qemu-io (v2, v3, cluster sizes 512 B to 2 MiB, extended L2 with
subcluster and zero writes, write -z, discards, compressed writes with zlib and zstd, data across L2
table boundaries, an external data file with and without data_file_raw, internal snapshots, an
overlay over a backing file). For each, under both qemu versions:
  (a) the hosted dump equals `qemu-img convert -O raw` byte for byte (images without backing; with
      -l for snapshots),
  (b) the extents agree with `qemu-img map --output=json`: data / zero / unallocated per byte
      range, the host offset of data, and (10.0) the compressed flag; with a backing file, against
      the depth-0 entries.
The reader's peak memory must stay within 192 KiB plus three clusters on every image.
Refusals (missing snapshot, encryption) must carry qemu's message.

usage: qcow2_read_differential.py HOSTED_READ
"""
import filecmp
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, report, run, start  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402

QI7, QIO7 = QEMUS['7.2']
STATUS_CORRUPT = 2
STATUS_UNSUPPORTED = 3
STATUS_INVALID = 6


def io(img, *cmds, fmt='qcow2', qemu_io=QIO7, extra=()):
    args = [qemu_io, '-f', fmt, *extra]
    for c in cmds:
        args += ['-c', c]
    run(args + [img])


def create(img, size, opts=None, qemu_img=QI7, backing=None):
    cmd = [qemu_img, 'create', '-q', '-f', 'qcow2']
    if backing:
        cmd += ['-b', backing, '-F', 'qcow2']
    if opts:
        cmd += ['-o', ','.join(f'{k}={v}' for k, v in opts.items())]
    run(cmd + [img, str(size)])


def classes_qemu(entries, with_backing):
    """qemu map entries as (start, end, class, compressed, offset)."""
    out = []
    for e in entries:
        if e['depth'] > 0 or not e.get('present', True):
            cls = 'unallocated'
        elif e['data']:
            cls = 'data'
        elif e['zero']:
            cls = 'zero'
        else:
            cls = 'unallocated'
        out.append((e['start'], e['start'] + e['length'], cls, e.get('compressed'),
                    e.get('offset') if cls == 'data' else None))
    return out


def classes_ours(entries):
    return [(e['start'], e['start'] + e['length'], e['allocation'], e['compressed'],
             e.get('offset') if e['allocation'] == 'data' else None) for e in entries]


def compare_maps(ours, theirs, size):
    """Problems found comparing two range lists over [0, size)."""
    problems = []
    if size == 0:
        return [] if not ours else [f'extents on an empty disk: {ours}']
    if not ours or ours[-1][1] != size or (theirs and theirs[-1][1] != size):
        return [f'coverage: ours ends {ours[-1][1] if ours else None}, qemu {theirs[-1][1] if theirs else None}, size {size}']
    cuts = sorted({0, size} | {r[0] for r in ours} | {r[0] for r in theirs})
    i = j = 0
    for a, b in zip(cuts, cuts[1:]):
        while ours[i][1] <= a:
            i += 1
        while theirs[j][1] <= a:
            j += 1
        o, t = ours[i], theirs[j]
        if o[2] != t[2]:
            problems.append(f'[{a:#x},{b:#x}) ours {o[2]} qemu {t[2]}')
        elif t[3] is not None and o[3] != t[3]:
            problems.append(f'[{a:#x},{b:#x}) compressed ours {o[3]} qemu {t[3]}')
        elif o[4] is not None and t[4] is not None and o[4] + (a - o[0]) != t[4] + (a - t[0]):
            problems.append(f'[{a:#x},{b:#x}) offset ours {o[4] + (a - o[0]):#x} qemu {t[4] + (a - t[0]):#x}')
        elif (o[4] is None) != (t[4] is None) and o[2] == 'data':
            problems.append(f'[{a:#x},{b:#x}) offset ours {o[4]} qemu {t[4]}')
        if len(problems) > 5:
            break
    return problems


def hosted(tool, img, out=None, files=(), snapshot=None, chunk=None):
    cmd = [tool]
    for f in files:
        cmd += ['--file', f]
    if snapshot is not None:
        cmd += ['-l', snapshot]
    if chunk is not None:
        cmd += ['--chunk', str(chunk)]
    cmd.append(img)
    if out:
        cmd.append(out)
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def peak_limit(img):
    """The reader's memory bound: 192 KiB (L1 window, 32 L2 slices, the reader) plus, once a
    compressed cluster is read, three clusters (two of compressed input, one decompressed); cluster
    0 during open is smaller than that."""
    with open(img, 'rb') as f:
        cluster = 1 << struct.unpack('>I', f.read(24)[20:24])[0]
    return (192 << 10) + 3 * cluster


def check_image(tool, d, label, img, results, files=(), snapshot=None, backing=False, chunk=None):
    out = os.path.join(d, 'ours.raw')
    ours = hosted(tool, img, None if backing else out, files, snapshot, chunk)
    for ver, (qemu_img, _) in QEMUS.items():
        problems = []
        if ours['peak-memory'] > peak_limit(img):
            problems.append(f'peak memory {ours["peak-memory"]} > {peak_limit(img)}')
        if ours['status'] != 0:
            problems.append(f'status {ours["status"]}: {ours["reason"]}')
            results.append((f'{label} [qemu {ver}]', problems))
            continue
        if not backing:
            theirs = os.path.join(d, 'qemu.raw')
            cmd = [qemu_img, 'convert', '-f', 'qcow2', '-O', 'raw']
            if snapshot is not None:
                cmd += ['-l', snapshot]
            run(cmd + [img, theirs])
            if os.path.getsize(theirs) != ours['virtual-size']:
                problems.append(f'size ours {ours["virtual-size"]} qemu {os.path.getsize(theirs)}')
            elif not filecmp.cmp(out, theirs, shallow=False):
                problems.append('converted bytes differ')
        if snapshot is None:
            qmap = json.loads(run([qemu_img, 'map', '-f', 'qcow2', '--output=json', img]))
            problems += compare_maps(classes_ours(ours['map']), classes_qemu(qmap, backing), ours['virtual-size'])
        results.append((f'{label} [qemu {ver}]', problems))


def check_refusal(tool, img, label, results, want_status, snapshot=None):
    ours = hosted(tool, img, snapshot=snapshot)
    for ver, (qemu_img, _) in QEMUS.items():
        cmd = [qemu_img, 'convert', '-f', 'qcow2', '-O', 'raw']
        if snapshot is not None:
            cmd += ['-l', snapshot]
        p = run_fixture(cmd + [img, img + '.out'])
        problems = []
        if p.returncode == 0:
            problems.append('qemu-img accepted it')
        if ours['status'] != want_status:
            problems.append(f'status {ours["status"]} want {want_status}')
        if not ours['reason'] or ours['reason'] not in p.stderr:
            problems.append(f'reason {ours["reason"]!r} not in qemu\'s {p.stderr.strip()!r}')
        results.append((f'{label} [qemu {ver}]', problems))


def patch_l2(img, out, l2_index, fn, l1_fn=None):
    """Copies img to out with the first L2 table's entry l2_index replaced by fn(entry, bitmap) ->
    (entry, bitmap) and, with l1_fn, the first L1 entry by l1_fn(entry)."""
    b = bytearray(open(img, 'rb').read())
    l1 = struct.unpack('>Q', b[40:48])[0]
    l1e = struct.unpack('>Q', b[l1:l1 + 8])[0]
    l2 = l1e & 0x00fffffffffffe00
    ext = struct.unpack('>Q', b[72:80])[0] & 16 if struct.unpack('>I', b[4:8])[0] == 3 else 0
    size = 16 if ext else 8
    at = l2 + size * l2_index
    entry = struct.unpack('>Q', b[at:at + 8])[0]
    bitmap = struct.unpack('>Q', b[at + 8:at + 16])[0] if ext else 0
    entry, bitmap = fn(entry, bitmap)
    struct.pack_into('>Q', b, at, entry)
    if ext:
        struct.pack_into('>Q', b, at + 8, bitmap)
    if l1_fn:
        struct.pack_into('>Q', b, l1, l1_fn(l1e))
    with open(out, 'wb') as f:
        f.write(b)


def check_corrupt(tool, img, label, results, files=()):
    """qemu-img convert must fail with our reason in its "Image is corrupt: ..." line."""
    ours = hosted(tool, img, os.path.join(os.path.dirname(img), 'ours.raw'), files)
    for ver, (qemu_img, _) in QEMUS.items():
        p = run_fixture([qemu_img, 'convert', '-f', 'qcow2', '-O', 'raw', img, img + '.out'])
        problems = []
        if p.returncode == 0:
            problems.append('qemu-img accepted it')
        if ours['status'] != STATUS_CORRUPT:
            problems.append(f'status {ours["status"]} want {STATUS_CORRUPT}')
        if not ours['reason'] or f'Image is corrupt: {ours["reason"]};' not in p.stderr:
            problems.append(f'reason {ours["reason"]!r} not in qemu\'s {p.stderr.strip()!r}')
        results.append((f'{label} [qemu {ver}]', problems))


# Header fields set to values qemu refuses at open: (label, byte offset, struct format, value).
BAD_HEADERS = [
    ('version 4', 4, '>I', 4),
    ('cluster bits 22', 20, '>I', 22),
    ('header length 100', 100, '>I', 100),
    ('backing file offset past cluster 0', 8, '>Q', 0x20000),
    ('unknown incompatible bit', 72, '>Q', 0x40),
    ('refcount order 7', 96, '>I', 7),
    ('compression type 2', 104, 'B', 2),
    ('compression type without its bit', 104, 'B', 1),
    ('compression bit without the type', 72, '>Q', 8),
    ('encryption method 3', 32, '>I', 3),
    ('data-file-raw without a data file', 88, '>Q', 2),
    ('data file bit without the extension', 72, '>Q', 4),
    ('refcount table too large', 56, '>I', 0x10000),
    ('refcount table unaligned', 48, '>Q', 0x10001),
    ('no refcount table', 56, '>I', 0),
    ('too many snapshots', 60, '>I', 70000),
    ('snapshot table unaligned', 64, '>Q', 0x10001),
    ('L1 table too large', 36, '>I', 0x1000000),
    ('L1 table too small', 36, '>I', 0),
    ('L1 table unaligned', 40, '>Q', 0x30001),
    ('image too big', 24, '>Q', 0x7fffffffffffffff),
]


def check_bad_headers(tool, d, results):
    """Each refused header gives qemu's reason: qemu-img says "Could not open 'X': <reason>"."""
    base = os.path.join(d, 'hdr.qcow2')
    create(base, '1M')
    good = open(base, 'rb').read()
    for label, off, fmt, value in BAD_HEADERS:
        img = os.path.join(d, 'badhdr.qcow2')
        b = bytearray(good)
        struct.pack_into(fmt, b, off, value)
        with open(img, 'wb') as f:
            f.write(b)
        ours = hosted(tool, img)
        for ver, (qemu_img, _) in QEMUS.items():
            p = run_fixture([qemu_img, 'convert', '-f', 'qcow2', '-O', 'raw', img, img + '.out'])
            problems = []
            if p.returncode == 0:
                problems.append('qemu-img accepted it')
            if ours['status'] == 0:
                problems.append('we accepted it')
            if f"Could not open '{img}': {ours['reason']}\n" not in p.stderr:
                problems.append(f'reason {ours["reason"]!r} not in qemu\'s {p.stderr.strip()!r}')
            results.append((f'header: {label} [qemu {ver}]', problems))


def random_writes(img, size, cluster, seed, count, compressed=False, zeros=True):
    """A seeded mix of unaligned writes, zero writes, discards and (optionally) compressed writes."""
    rng = random.Random(seed)
    cmds = []
    for _ in range(count):
        kind = rng.choice(['w', 'w', 'z', 'd'] + (['c', 'c'] if compressed else []) if zeros else ['w'])
        if kind == 'c':
            n = rng.randint(1, 4) * cluster
            off = rng.randrange(0, size - n, cluster)
            # Compression cannot overwrite allocated clusters: free them first.
            cmds.append(f'discard {off} {n}')
            cmds.append(f'write -c -P {rng.randint(1, 255)} {off} {n}')
            continue
        n = rng.randint(1, 6 * cluster // 512) * 512
        off = rng.randrange(0, size - n, 512)
        if kind == 'w':
            cmds.append(f'write -P {rng.randint(1, 255)} {off} {n}')
        elif kind == 'z':
            cmds.append(f'write -z {off} {n}')
        else:
            cmds.append(f'discard {off} {n}')
    for i in range(0, len(cmds), 40):
        io(img, *cmds[i:i + 40])


def raw_source(path, size, seed):
    """A raw file of compressible and incompressible stretches with holes, for convert -c."""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        for off in range(0, size, 96 << 10):
            kind = rng.randrange(4)
            f.seek(off)
            if kind == 0:
                f.write(bytes([rng.randrange(256)]) * (40 << 10))
            elif kind == 1:
                f.write(rng.randbytes(20 << 10))
            elif kind == 2:
                f.write((b'instar qcow2 ' * 4000)[:50 << 10])


def cases(tool, d, results):
    def path(name):
        return os.path.join(d, name)

    # v2 and v3 with the default cluster size.
    img = path('v2.qcow2')
    create(img, '8M', {'compat': '0.10'})
    io(img, 'write -P 0x11 0 64k', 'write -P 0x22 1M 100k', 'write -P 0x33 5000k 7k', 'discard 1M 64k')
    check_image(tool, d, 'v2', img, results)

    img = path('v3.qcow2')
    create(img, '8M')
    io(img, 'write -P 0x11 0 200k', 'write -z 64k 64k', 'write -z -u 128k 64k', 'write -z 3M 256k',
       'discard 4M 64k', 'write -P 0x44 7M 1k')
    check_image(tool, d, 'v3 zero writes and discards', img, results)

    # An empty disk, a size qemu-img rounds up to 512, and one whose header is not a multiple of
    # 512 (qemu reads whole sectors: 1000 bytes is a 512-byte disk).
    img = path('empty.qcow2')
    create(img, '0')
    check_image(tool, d, 'empty disk', img, results)
    img = path('odd.qcow2')
    create(img, '1000')
    io(img, 'write -P 1 0 512')
    check_image(tool, d, 'size 1000', img, results)
    b = bytearray(open(img, 'rb').read())
    struct.pack_into('>Q', b, 24, 1000)
    with open(path('odd2.qcow2'), 'wb') as f:
        f.write(b)
    check_image(tool, d, 'header size 1000', path('odd2.qcow2'), results)

    # Every cluster size, with seeded random writes; small clusters put runs across L2 tables.
    for cs, size, seed in [(512, 2 << 20, 1), (4096, 16 << 20, 2), (65536, 64 << 20, 3), (2 << 20, 64 << 20, 4)]:
        for compat in ('0.10', '1.1'):
            img = path(f'c{cs}-{compat}.qcow2')
            create(img, size, {'cluster_size': cs, 'compat': compat})
            random_writes(img, size, cs, seed, 60, compressed=True, zeros=compat == '1.1')
            check_image(tool, d, f'cluster_size={cs} compat={compat}', img, results)

    # L2 table boundaries: with 512-byte clusters one table maps 32 KiB.
    img = path('l2edge.qcow2')
    create(img, '1M', {'cluster_size': 512})
    io(img, 'write -P 1 30k 8k', 'write -P 2 63k 66k', 'write -z 200k 40k', 'write -c -P 3 256k 512',
       'write -c -P 4 287k 2k')
    check_image(tool, d, 'L2 boundaries 512', img, results)
    check_image(tool, d, 'L2 boundaries 512 (reads of 1000 bytes)', img, results, chunk=1000)

    # Extended L2: subcluster writes, zero and unmapping zero writes, discards.
    for cs in (16384, 65536, 2 << 20):
        img = path(f'extl2-{cs}.qcow2')
        size = max(8 << 20, 64 * cs)
        create(img, size, {'extended_l2': 'on', 'cluster_size': cs})
        sc = cs // 32
        io(img, f'write -P 1 0 {sc}', f'write -P 2 {5 * sc} {3 * sc}', f'write -z {8 * sc} {4 * sc}',
           f'write -z {cs} {cs}', f'write -P 3 {2 * cs + 100 * 512 // 512} {sc * 3}', f'write -z -u {3 * cs} {2 * sc}',
           f'write -P 4 {4 * cs} {cs}', f'discard {4 * cs + sc} {sc}', f'write -c -P 5 {6 * cs} {cs}',
           f'write -P 6 {40 * cs - sc} {2 * sc}')
        if cs < (2 << 20):
            random_writes(img, 8 << 20, cs, 10 + cs, 40)
        check_image(tool, d, f'extended_l2 cluster_size={cs}', img, results)

    # Compressed writes: qemu-io write -c and convert -c, zlib and zstd.
    for ctype in ('zlib', 'zstd'):
        img = path(f'c-{ctype}.qcow2')
        create(img, '4M', {'compression_type': ctype})
        io(img, 'write -c -P 7 0 64k', 'write -c -P 8 128k 192k', 'write -P 9 512k 64k', 'write -c -z 1M 64k')
        check_image(tool, d, f'qemu-io write -c {ctype}', img, results)
        src = path('src.raw')
        raw_source(src, 6 << 20, 5)
        for cs in (4096, 65536):
            img = path(f'conv-{ctype}-{cs}.qcow2')
            run([QI7, 'convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o',
                 f'compression_type={ctype},cluster_size={cs}', src, img])
            check_image(tool, d, f'convert -c {ctype} cluster_size={cs}', img, results)
    # qemu 10.0's compressed writes.
    img = path('c10.qcow2')
    qi10, qio10 = QEMUS['10.0']
    create(img, '2M', {'compression_type': 'zstd', 'cluster_size': 4096}, qemu_img=qi10)
    io(img, 'write -c -P 1 0 64k', 'write -P 2 100k 10k', qemu_io=qio10)
    check_image(tool, d, 'qemu 10.0 write -c zstd', img, results)

    # External data file, with and without data_file_raw.
    for raw in ('off', 'on'):
        img, data = path(f'df-{raw}.qcow2'), path(f'df-{raw}.data')
        create(img, '4M', {'data_file': data, 'data_file_raw': raw})
        io(img, 'write -P 1 0 64k', 'write -P 2 1M 100k', 'write -z 2M 64k', 'discard 1M 64k')
        check_image(tool, d, f'data_file data_file_raw={raw}', img, results, files=[data])

    # Preallocated metadata (clusters mapped, never written).
    img = path('prealloc.qcow2')
    create(img, '4M', {'preallocation': 'metadata', 'cluster_size': 4096})
    io(img, 'write -P 1 8k 4k')
    check_image(tool, d, 'preallocation=metadata', img, results)

    # Internal snapshots, read with -l by name and by id; a missing one is refused.
    img = path('snap.qcow2')
    create(img, '2M', {'cluster_size': 4096})
    io(img, 'write -P 1 0 64k', 'write -c -P 5 512k 8k')
    run([QI7, 'snapshot', '-c', 'first', img])
    io(img, 'write -P 2 32k 64k', 'discard 512k 8k')
    run([QI7, 'snapshot', '-c', 'second', img])
    io(img, 'write -z 0 16k')
    run([QI7, 'resize', '-q', img, '3M'])
    io(img, 'write -P 3 2500k 4k')
    check_image(tool, d, 'snapshot active', img, results)
    check_image(tool, d, 'snapshot -l first', img, results, snapshot='first')
    check_image(tool, d, 'snapshot -l 2', img, results, snapshot='2')
    check_refusal(tool, img, 'snapshot -l nosuch', results, STATUS_INVALID, snapshot='nosuch')

    # An overlay: only its own clusters are allocated; the rest is the backing file's (depth 1).
    base, top = path('base.qcow2'), path('top.qcow2')
    create(base, '4M', {'cluster_size': 4096})
    io(base, 'write -P 1 0 4M')
    create(top, '4M', {'cluster_size': 4096}, backing=base)
    io(top, 'write -P 2 8k 8k', 'write -z 100k 12k', 'write -z -u 1M 64k', 'discard 2M 8k')
    check_image(tool, d, 'overlay with backing', top, results, backing=True)

    # Corrupt entries: qemu's "Image is corrupt: <reason>;" line carries our reason.
    base = path('plain4k.qcow2')
    create(base, '1M', {'cluster_size': 4096})
    io(base, 'write -P 1 0 12k')
    patch_l2(base, path('x1.qcow2'), 1, lambda e, b: (e + 0x200, b))
    check_corrupt(tool, path('x1.qcow2'), 'corrupt: unaligned data cluster', results)
    patch_l2(base, path('x2.qcow2'), 0, lambda e, b: (e, b), lambda l1e: l1e + 0x200)
    check_corrupt(tool, path('x2.qcow2'), 'corrupt: unaligned L2 table', results)
    v2 = path('v2z.qcow2')
    create(v2, '1M', {'cluster_size': 4096, 'compat': '0.10'})
    io(v2, 'write -P 1 0 12k')
    patch_l2(v2, path('x3.qcow2'), 2, lambda e, b: (e | 1, b))
    check_corrupt(tool, path('x3.qcow2'), 'corrupt: zero flag in v2', results)
    ext = path('ext.qcow2')
    create(ext, '1M', {'cluster_size': 16384, 'extended_l2': 'on'})
    io(ext, 'write -P 1 0 16k')
    patch_l2(ext, path('x4.qcow2'), 0, lambda e, b: (e, b | (1 << 32)))
    check_corrupt(tool, path('x4.qcow2'), 'corrupt: subcluster allocated and zero', results)
    patch_l2(ext, path('x5.qcow2'), 3, lambda e, b: (e, b | 1))
    check_corrupt(tool, path('x5.qcow2'), 'corrupt: unallocated cluster with allocated subcluster', results)
    img, data = path('dfx.qcow2'), path('dfx.data')
    create(img, '1M', {'data_file': data, 'cluster_size': 4096})
    io(img, 'write -P 1 0 8k')
    patch_l2(img, path('x6.qcow2'), 1, lambda e, b: (e + 0x1000, b))
    check_corrupt(tool, path('x6.qcow2'), 'corrupt: data file offset mismatch', results, files=[data])
    patch_l2(img, path('x7.qcow2'), 1, lambda e, b: ((e & 0xffffffff) | (1 << 62), b))
    check_corrupt(tool, path('x7.qcow2'), 'corrupt: compressed cluster with a data file', results, files=[data])

    check_bad_headers(tool, d, results)

    # Encrypted images are refused with qemu's message for a missing secret.
    for fmt in ('luks', 'aes'):
        img = path(f'enc-{fmt}.qcow2')
        opts = f'encrypt.format={fmt},encrypt.key-secret=sec0' + (',encrypt.iter-time=10' if fmt == 'luks' else '')
        run([QI7, 'create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=abc', '-o', opts, img, '1M'])
        check_refusal(tool, img, f'encrypted {fmt}', results, STATUS_UNSUPPORTED)


def main():
    tools, status = start(__doc__.split('usage: ')[1].strip(), 1)
    if tools is None:
        return status
    results = []
    with tempfile.TemporaryDirectory() as d:
        cases(tools[0], d, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Differential check of vmdk's convert target: the hosted convert tool (raw sources through the
convert engine into vmdk's create_writer) vs `qemu-img convert -O vmdk` (7.2 and 10.0).

For each case (subformat x source: random data, zeros, partial grains, holes, sizes that are not a multiple
of 64 KiB or of a sector, a source crossing the 2 GiB extent boundary for twoGbMaxExtent*; adapter_type, hwversion,
compat6, zeroed_grain once; -c; -S 0) it converts the same raw file with the hosted tool and with both
qemu-img versions, each in its own directory under the same name, and checks:
  - the same files, the same lengths and data segments, the same bytes once the random CID is masked (qemu rewrites
    the CID on the first write and may leave the old text's last bytes after the new text's NUL:
    the descriptor window is compared as text with CID=X, and what follows its NUL must be zeros or
    a tail of the text);
  - `qemu-img compare` of the source with the result: identical (7.2 and 10.0);
  - `qemu-img check` clean (7.2 and 10.0) and libyal's vmdkinfo opening it.
Then op replays (HOSTED_WRITE_TOOL): writes, zero writes (zeroed_grain on and off, unaligned heads
and tails), rewrites, compressed writes and refused streamOptimized rewrites issued through
create_writer and through qemu-io on a `qemu-img create`d image: the same request results, the same
files and bytes (CID masked), `qemu-img check` clean.

usage: vmdk_write_differential.py HOSTED_CONVERT_TOOL HOSTED_WRITE_TOOL
"""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, report, run, start  # noqa: E402

K, M, G = 1 << 10, 1 << 20, 1 << 30
GRAIN = 64 * K
WINDOW = 20 * 512
SUBFORMATS = ('monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat')
VMDKINFO = shutil.which('vmdkinfo')
CID_RE = re.compile(rb'(^|\n)CID=[0-9a-f]+\n')


def rng(seed):
    return random.Random(seed).randbytes


def make_sources(d):
    """name -> path of the raw sources."""
    src = {}
    r = rng(1)
    # Random data, 3 MiB and three sectors: the last grain is partial.
    src['random'] = (r(3 * M + 1536), None)
    # Written zeros (no holes): every chunk is skipped, nothing is allocated.
    src['zeros'] = (bytes(5 * M), None)
    # Zero grains, partial grains, zero runs shorter and longer than -S's 4 KiB, text-like data.
    b = bytearray(r(40 * GRAIN))
    b[2 * GRAIN:3 * GRAIN] = bytes(GRAIN)
    b[5 * GRAIN + 4096:6 * GRAIN] = bytes(GRAIN - 4096)
    b[8 * GRAIN:8 * GRAIN + 8192] = bytes(8192)
    b[9 * GRAIN + 512:9 * GRAIN + 2048] = bytes(1536)
    b[10 * GRAIN:14 * GRAIN] = bytes(4 * GRAIN)
    b[20 * GRAIN:24 * GRAIN] = (b'compressible text ' * (4 * GRAIN // 18 + 1))[:4 * GRAIN]
    src['partial'] = (bytes(b) + r(2560), None)
    # A small disk of 100 KiB and one sector.
    src['small'] = (r(100 * K + 512), None)
    # Not a whole sector: qemu-img rounds the target up and reads zeros past the source's end.
    src['odd'] = (r(70000), None)
    paths = {}
    for name, (data, _) in src.items():
        p = os.path.join(d, name + '.raw')
        with open(p, 'wb') as f:
            f.write(data)
        paths[name] = p
    # Crossing the 2 GiB extent boundary: a sparse file with data on both sides of it and a last
    # partial grain; the holes cost nothing to convert.
    p = os.path.join(d, 'boundary.raw')
    with open(p, 'wb') as f:
        f.truncate(2 * G + 3 * GRAIN + 1024)
        f.seek(2 * G - 3 * GRAIN - 4096)
        f.write(r(6 * GRAIN))
        f.seek(2 * G + 3 * GRAIN - 1024)
        f.write(r(2048))
        f.seek(5 * M)
        f.write(r(GRAIN + 512))
    paths['boundary'] = p
    # Holes that split grains (the source's block status, not its bytes, says zero there).
    p = os.path.join(d, 'holes.raw')
    with open(p, 'wb') as f:
        f.truncate(M + 3 * 512)
        for at, n in ((4 * K, 8 * K), (100 * K, 100 * K), (300 * K, 4 * K), (M - 8 * K, 8 * K + 1536)):
            f.seek(at)
            f.write(r(n))
    paths['holes'] = p
    return paths


def normalise_window(window):
    """The descriptor window with CID=X and zeros after the text; None when what follows the text's
    NUL is neither zeros nor a tail of the text (qemu's leftover bytes)."""
    text, _, rest = window.partition(b'\0')
    left = rest.rstrip(b'\0')
    if left and not text.endswith(left):
        return None
    norm = CID_RE.sub(rb'\1CID=X\n', text)
    return norm + bytes(len(window) - len(norm))


def masked_head(data):
    if data[:4] == b'KDMV':
        w = normalise_window(data[512:512 + WINDOW])
        return data[:512] + (w if w is not None else b'<bad window>')
    w = normalise_window(data[:WINDOW])
    return w if w is not None else b'<bad window>'


def same_file(a, b):
    """'' when equal apart from the CID, else what differs."""
    sa, sb = os.stat(a), os.stat(b)
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        ta, tb = fa.read(WINDOW + 1), fb.read(WINDOW + 1)
    if sa.st_size != sb.st_size and b'\0' not in ta + tb and ta.startswith(b'# Disk DescriptorFile'):
        # Descriptors nothing was written through keep create's CID, whose hex length is random.
        return '' if CID_RE.sub(rb'\1CID=X\n', ta) == CID_RE.sub(rb'\1CID=X\n', tb) else 'descriptors differ'
    if sa.st_size != sb.st_size:
        return f'length {sa.st_size} != {sb.st_size}'
    # The same data segments (SEEK_DATA/SEEK_HOLE): st_blocks also counts the file system's own
    # extent-tree blocks, which depend on how the writes landed (qemu flushes after every table entry).
    if data_segments(a) != data_segments(b):
        return f'allocation {data_segments(a)} != {data_segments(b)}'
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        ha, hb = fa.read(21 * 512), fb.read(21 * 512)
        is_desc = ha[:4] != b'KDMV' and ha.startswith(b'# Disk DescriptorFile')
        if ha[:4] == b'KDMV' or is_desc:
            if masked_head(ha) != masked_head(hb):
                return 'header/descriptor differ beyond the CID'
            head = 512 + WINDOW if ha[:4] == b'KDMV' else WINDOW
        else:
            head = 0
        if is_desc and len(ha) > WINDOW and ha[WINDOW:] != hb[WINDOW:]:
            return 'descriptor differs past its window'
        for s, e in sorted(set(data_segments(a) + data_segments(b))):
            s = max(s, head)
            while s < e:
                n = min(e - s, 16 * M)
                fa.seek(s)
                fb.seek(s)
                if fa.read(n) != fb.read(n):
                    return f'bytes differ in [{s}, {s + n})'
                s += n
    return ''


def run_case(tool, src, label, opts, extra, results, tmp, backing=None):
    base = os.path.join(tmp, label.replace(' ', '_').replace(',', '_').replace('=', '-'))
    dirs = {'ours': os.path.join(base, 'ours')}
    for ver in QEMUS:
        dirs[ver] = os.path.join(base, ver)
    for d in dirs.values():
        os.makedirs(d)
        if backing:
            shutil.copy(backing, os.path.join(d, 'base.vmdk'))
    if backing:
        extra = list(extra) + ['-B', 'base.vmdk', '-F', 'vmdk']
    o = ['-o', opts] if opts else []
    c = list(extra)
    p = subprocess.run([tool] + c + o + [src, os.path.join(dirs['ours'], 'out.vmdk')], capture_output=True, text=True)
    if p.returncode != 0:
        results.append((label, [f'hosted convert failed: {p.stdout.strip()} {p.stderr.strip()}']))
        return
    for ver, (qemu_img, _) in QEMUS.items():
        run([qemu_img, 'convert', '-f', 'raw', '-O', 'vmdk'] + c + o + [src, os.path.join(dirs[ver], 'out.vmdk')])
    ours = dirs['ours']
    names = sorted(os.listdir(ours))
    for ver, (qemu_img, _) in QEMUS.items():
        problems = []
        theirs = sorted(os.listdir(dirs[ver]))
        if names != theirs:
            problems.append(f'files {names} != {theirs}')
        else:
            for n in names:
                why = same_file(os.path.join(ours, n), os.path.join(dirs[ver], n))
                if why:
                    problems.append(f'{n}: {why}')
        out = os.path.join(ours, 'out.vmdk')
        cmp = subprocess.run([qemu_img, 'compare', '-f', 'raw', '-F', 'vmdk', src, out], capture_output=True, text=True)
        if cmp.returncode != 0:
            problems.append(f'compare: {cmp.stdout.strip()} {cmp.stderr.strip()}')
        chk = subprocess.run([qemu_img, 'check', '-f', 'vmdk', out], capture_output=True, text=True)
        if chk.returncode != 0:
            problems.append(f'check: {chk.stdout.strip()} {chk.stderr.strip()}')
        results.append((f'{label} [qemu {ver}]', problems))
    if VMDKINFO:
        vi = subprocess.run([VMDKINFO, os.path.join(ours, 'out.vmdk')], capture_output=True, text=True, cwd=ours)
        results.append((f'{label} [vmdkinfo]', [] if vi.returncode == 0 else [f'vmdkinfo: {vi.stderr.strip()}']))
    shutil.rmtree(base)


# Op replays: (label, size, create options, ops). w: data of one byte value, z: write_zeroes,
# c: compressed write. qemu-io issues the same requests on a `qemu-img create`d image.
OPS = [
    ('zeroed_grain writes and zero writes', 1 * M, 'zeroed_grain=on',
     ['w:0:65536:0xab', 'z:4096:196608', 'z:262144:65536', 'z:0:65536', 'w:512:512:0x11',
      'w:655360:1024:0x22', 'z:655360:131072', 'z:983040:65536']),
    ('zero writes without zeroed_grain', 1 * M, '',
     ['z:65536:131072', 'z:102400:10240', 'w:524288:4096:0x33', 'z:524288:2048', 'w:0:512:0x44']),
    ('rewrites of allocated grains', 1 * M, '',
     ['w:0:131072:0x55', 'w:4096:512:0x66', 'w:65536:8192:0x77', 'w:1040384:8192:0x78']),
    ('monolithicFlat zero writes', 1 * M, 'subformat=monolithicFlat', ['w:0:131072:0x55', 'z:4096:65536']),
    ('twoGbMaxExtentSparse across 2 GiB', 2 * G + 3 * GRAIN, 'subformat=twoGbMaxExtentSparse,zeroed_grain=on',
     ['w:2147418112:131072:0x5a', 'z:2147352576:196608', 'w:2147483648:512:0x5b']),
    ('twoGbMaxExtentFlat across 2 GiB', 2 * G + 3 * GRAIN, 'subformat=twoGbMaxExtentFlat',
     ['w:2147479552:8192:0x5c', 'z:2147482624:2048']),
    ('streamOptimized grains, zeroed grains, refused rewrites', 4 * GRAIN + 1024,
     'subformat=streamOptimized,zeroed_grain=on',
     ['w:0:65536:0x61', 'z:131072:65536', 'w:0:65536:0x62', 'z:0:65536', 'w:131072:65536:0x63',
      'w:262144:1024:0x64']),
    ('-c on monolithicSparse', 1 * M, '', ['c:65536:65536:0x71', 'c:0:65536:0x72']),
    # Over a backing file (base.vmdk, 1 MiB of 0xee): a new grain's rest is copied from it
    # (get_whole_cluster), zeros past its end; zeroed grains copy nothing.
    ('grains over a backing file', M + 1536, 'BACKING',
     ['w:0:4096:0x11', 'w:131072:512:0x12', 'z:200704:4096', 'z:262144:65536', 'w:1044480:512:0x16',
      'w:1048576:1536:0x14', 'w:524288:512:0x15', 'z:524800:65024']),
    ('zeroed grains over a backing file', M, 'BACKING,zeroed_grain=on',
     ['z:0:131072', 'w:4096:512:0x21', 'z:200704:4096', 'w:327680:512:0x22']),
    ('streamOptimized over a backing file', M + 1024, 'BACKING,subformat=streamOptimized',
     ['w:0:65536:0x31', 'w:1048576:1024:0x32']),
    # qemu reads the backing file at the extent-relative offset (get_cluster_offset's offset).
    ('twoGbMaxExtentSparse over a backing file', 2 * G + 3 * GRAIN, 'BACKING,subformat=twoGbMaxExtentSparse',
     ['w:4096:512:0x41', 'w:2147487744:512:0x42', 'w:2147418112:512:0x43']),
]


def qemu_io_cmd(op):
    f = op.split(':')
    if f[0] == 'z':
        return f'write -z {f[1]} {f[2]}'
    return f'write {"-c " if f[0] == "c" else ""}-P {f[3]} {f[1]} {f[2]}'


def run_ops(tool, label, size, opts, ops, results, tmp):
    base = os.path.join(tmp, 'ops')
    dirs = {'ours': os.path.join(base, 'ours')}
    for ver in QEMUS:
        dirs[ver] = os.path.join(base, ver)
    for d in dirs.values():
        os.makedirs(d)
    backing = opts.startswith('BACKING')
    if backing:
        opts = opts[len('BACKING'):].lstrip(',')
        base_path = os.path.join(base, 'base.vmdk')
        run([QEMUS['10.0'][0], 'create', '-f', 'vmdk', base_path, str(M)])
        run([QEMUS['10.0'][1], '-f', 'vmdk', '-c', f'write -P 0xee 0 {M}', base_path])
        for d in dirs.values():
            shutil.copy(base_path, d)
    kv = [o for o in opts.split(',') if o]
    if backing:
        kv += ['--backing', 'base.vmdk', '--backing-size', str(M)]
    p = subprocess.run([tool, os.path.join(dirs['ours'], 'out.vmdk'), str(size)] + kv + ['--'] + ops,
                       capture_output=True, text=True)
    if 'create error' in p.stdout or 'finish 0' not in p.stdout:
        results.append((f'ops: {label}', [f'hosted write failed: {p.stdout.strip()} {p.stderr.strip()}']))
        shutil.rmtree(base)
        return
    ours_ok = [line.endswith(' ok') for line in p.stdout.splitlines()[:len(ops)]]
    for ver, (qemu_img, qemu_io) in QEMUS.items():
        problems = []
        out = os.path.join(dirs[ver], 'out.vmdk')
        b = ['-b', 'base.vmdk', '-F', 'vmdk'] if backing else []
        run([qemu_img, 'create', '-f', 'vmdk'] + b + (['-o', opts] if opts else []) + [out, str(size)])
        # One open for all ops, as one convert is (qemu recomputes where grains go on every open).
        cmds = [a for op in ops for a in ('-c', qemu_io_cmd(op))]
        q = subprocess.run([qemu_io, '-f', 'vmdk'] + cmds + [out], capture_output=True, text=True)
        theirs_ok = [line.startswith('wrote ') for line in q.stdout.splitlines()
                     if line.startswith('wrote ') or ' failed: ' in line]
        if ours_ok != theirs_ok:
            problems.append(f'request results: ours {ours_ok} qemu {theirs_ok}')
        names, theirs = sorted(os.listdir(dirs['ours'])), sorted(os.listdir(dirs[ver]))
        if names != theirs:
            problems.append(f'files {names} != {theirs}')
        else:
            for n in names:
                why = same_file(os.path.join(dirs['ours'], n), os.path.join(dirs[ver], n))
                if why:
                    problems.append(f'{n}: {why}')
        chk = subprocess.run([qemu_img, 'check', '-f', 'vmdk', os.path.join(dirs['ours'], 'out.vmdk')],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            problems.append(f'check: {chk.stdout.strip()} {chk.stderr.strip()}')
        results.append((f'ops: {label} [qemu {ver}]', problems))
    shutil.rmtree(base)


def main():
    tools, status = start(__doc__.strip().splitlines()[-1], 2)
    if tools is None:
        return status
    tool = tools[0]
    results = []
    with tempfile.TemporaryDirectory(prefix='vmdk-ops-') as tmp:
        for label, size, opts, ops in OPS:
            run_ops(tools[1], label, size, opts, ops, results, tmp)
    with tempfile.TemporaryDirectory(prefix='vmdk-write-') as tmp:
        src = make_sources(tmp)
        for sf in SUBFORMATS:
            for name in ('random', 'zeros', 'partial', 'small', 'odd', 'holes'):
                run_case(tool, src[name], f'{sf} {name}', f'subformat={sf}', [], results, tmp)
        for sf in ('twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'monolithicSparse'):
            run_case(tool, src['boundary'], f'{sf} boundary', f'subformat={sf}', [], results, tmp)
        run_case(tool, src['partial'], 'adapter_type=lsilogic,compat6=on', 'adapter_type=lsilogic,compat6=on',
                 [], results, tmp)
        run_case(tool, src['partial'], 'hwversion=10,adapter_type=buslogic,zeroed_grain=on',
                 'hwversion=10,adapter_type=buslogic,zeroed_grain=on', [], results, tmp)
        run_case(tool, src['partial'], 'streamOptimized zeroed_grain=on', 'subformat=streamOptimized,zeroed_grain=on',
                 [], results, tmp)
        for sf in ('monolithicSparse', 'streamOptimized', 'twoGbMaxExtentSparse'):
            run_case(tool, src['partial'], f'-c {sf}', f'subformat={sf}', ['-c'], results, tmp)
        # -B: the target is backed by a vmdk (1 MiB + 1536 of 0xee, one grain left unallocated);
        # zero runs become zero writes, partly written grains copy the backing's bytes.
        b = os.path.join(tmp, 'base.vmdk')
        run([QEMUS['10.0'][0], 'create', '-f', 'vmdk', b, str(M + 1536)])
        run([QEMUS['10.0'][1], '-f', 'vmdk', '-c', f'write -P 0xee 0 {M - GRAIN}', b])
        for sf in ('monolithicSparse', 'twoGbMaxExtentSparse'):
            for name in ('partial', 'holes'):
                run_case(tool, src[name], f'-B {sf} {name}', f'subformat={sf}', [], results, tmp, b)
        run_case(tool, src['holes'], '-B zeroed_grain=on holes', 'zeroed_grain=on', [], results, tmp, b)
        run_case(tool, src['holes'], '-B streamOptimized holes', 'subformat=streamOptimized', [], results, tmp, b)
        # -S 0: every grain is written, zeros included.
        for sf in ('monolithicSparse', 'streamOptimized'):
            run_case(tool, src['partial'], f'-S 0 {sf}', f'subformat={sf}', ['-S', '0'], results, tmp)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

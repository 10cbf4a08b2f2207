#!/usr/bin/env python3
"""Differential check of vmdk create: the hosted create tool vs `qemu-img create -f vmdk` (7.2 and 10.0).

For each case (subformats x sizes, adapter types, hwversion/compat6/toolsversion, zeroed_grain,
preallocation, backing files, odd file names; each option value once, not every combination) it
creates the image with the hosted tool and with both qemu-img versions, each in its own directory
under the same name, and checks:
  - the same files (descriptor and extents, qemu's names), the same lengths and allocation (st_blocks);
  - the same bytes once the random CID is masked (the descriptor text is compared with CID=X, the
    rest of a sparse file byte for byte);
  - where the files differ, `qemu-img info --output=json` (7.2 and 10.0, without filename,
    actual-size and cid) of ours and of qemu's, to show how (equal bytes read the same);
  - `qemu-img check` clean (7.2 and 10.0) and libyal's vmdkinfo exit status 0;
  - the plugin's own info (hosted info tool) matching qemu, as vmdk_differential.py does;
and for the error cases: status non-zero and reason == qemu-img's message after "FILE: ".

usage: vmdk_create_differential.py HOSTED_CREATE_TOOL HOSTED_INFO_TOOL
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, data_segments, report, run, start  # noqa: E402

NEED_FILES = 7
K, M, G, T = 1 << 10, 1 << 20, 1 << 30, 1 << 40
SUBFORMATS = ('monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat')
VMDKINFO = shutil.which('vmdkinfo')
CID_RE = re.compile(rb'(^|\n)CID=[0-9a-f]+\n')


def masked(data):
    """The file with its CID masked: descriptor text and the bytes around it."""
    if data[:4] == b'KDMV':
        region = data[512:512 + 20 * 512]
        text = region.split(b'\0', 1)[0]
        rest_of_region = region[len(text):]
        return data[:512], CID_RE.sub(rb'\1CID=X\n', text), rest_of_region.count(b'\0') == len(rest_of_region)
    return CID_RE.sub(rb'\1CID=X\n', data)


def same_blocks(sa, sb):
    """Equal allocation. Past 1 MiB of data the file system's own extent-tree blocks (counted in
    st_blocks) depend on how the writes landed: qemu writes a grain directory in one pwrite, instar
    in 64 KiB pieces. Allow one 4 KiB block per 4 MiB there."""
    if sa.st_blocks == sb.st_blocks:
        return True
    data = max(sa.st_blocks, sb.st_blocks) * 512
    return data > M and abs(sa.st_blocks - sb.st_blocks) * 512 <= 4 * K * (data // (4 * M))


def is_descriptor_file(path):
    with open(path, 'rb') as f:
        return f.read(21) == b'# Disk DescriptorFile'


def same_bytes(a, b):
    """Equal contents once the CID is masked: the first 21 sectors (header, descriptor) compared with
    masked(), everything after them over the union of both files' data segments."""
    head = 21 * 512
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        if masked(fa.read(head)) != masked(fb.read(head)):
            return False
        for start, end in sorted(set(data_segments(a) + data_segments(b))):
            start = max(start, head)
            while start < end:
                n = min(end - start, 16 * M)
                fa.seek(start)
                fb.seek(start)
                if fa.read(n) != fb.read(n):
                    return False
                start += n
    return True


def qemu_info(qemu_img, cwd, name):
    p = subprocess.run([qemu_img, 'info', '--output=json', '-f', 'vmdk', name], cwd=cwd, capture_output=True,
                       text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()
    info = json.loads(p.stdout)
    for k in ('filename', 'actual-size'):
        info.pop(k, None)
    spec = info.get('format-specific', {}).get('data', {})
    spec.pop('cid', None)
    for child in info.get('children', []):
        child.get('info', {}).pop('actual-size', None)
        child.get('info', {}).pop('filename', None)
    return info, ''


def qemu_create(qemu_img, cwd, name, size, opts, backing):
    cmd = [qemu_img, 'create', '-q', '-f', 'vmdk']
    if opts:
        cmd += ['-o', ','.join(f'{k}={v}' for k, v in opts)]
    if backing:
        cmd += ['-b', backing[0], '-F', backing[1]] + (['-u'] if backing[2] else [])
    cmd += [name, str(size)]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stderr.rstrip('\n')  # qemu's "invalid parameter value: " keeps its space


def ours_create(tool, cwd, name, size, opts, backing):
    cmd = [tool, os.path.join(cwd, name), str(size)] + [f'{k}={v}' for k, v in opts]
    if backing:
        cmd += ['--backing', backing[0], '--backing-fmt', backing[1]]
    return json.loads(run(cmd))


def ours_info(tool, path):
    first = json.loads(run([tool, path]))
    if first.get('status') != NEED_FILES:
        return first
    extents = [f['name'] for f in first['info']['files'] if f['role'] == 'extent']
    return json.loads(run([tool, path] + [os.path.join(os.path.dirname(path), e) for e in extents]))


class Checker:
    def __init__(self, create_tool, info_tool, root):
        self.create_tool, self.info_tool, self.root = create_tool, info_tool, root
        self.results = []
        self.n = 0

    def dirs(self):
        self.n += 1
        base = os.path.join(self.root, f'case{self.n}')
        out = {}
        for who in ('ours',) + tuple(QEMUS):
            out[who] = os.path.join(base, who)
            os.makedirs(out[who])
        return out

    def case(self, size, opts=(), name='e.vmdk', backing=None, base_files=(), check=True):
        label = f'{name} {size} {",".join(f"{k}={v}" for k, v in opts)}' + (f' -b {backing[0]}' if backing else '')
        d = self.dirs()
        for who, path in d.items():
            for f in base_files:
                shutil.copy(f, path)
        problems = []
        mine = ours_create(self.create_tool, d['ours'], name, size, opts, backing)
        if mine['status'] != 0:
            problems.append(f'ours failed: {mine}')
        for ver, (qemu_img, _) in QEMUS.items():
            rc, err = qemu_create(qemu_img, d[ver], name, size, opts, backing)
            if rc != 0:
                problems.append(f'qemu {ver} failed: {err}')
        if problems:
            self.results.append((label, problems))
            return
        mine_files = sorted(set(os.listdir(d['ours'])) - {os.path.basename(f) for f in base_files})
        for ver, (qemu_img, _) in QEMUS.items():
            before = len(problems)
            theirs = sorted(set(os.listdir(d[ver])) - {os.path.basename(f) for f in base_files})
            if theirs != mine_files:
                problems.append(f'files: ours {mine_files[:5]}.. qemu {ver} {theirs[:5]}..')
                continue
            for f in mine_files:
                a, b = os.path.join(d['ours'], f), os.path.join(d[ver], f)
                sa, sb = os.stat(a), os.stat(b)
                if is_descriptor_file(a):
                    # Its length depends on the CID's digits (%x): compare the masked text.
                    with open(a, 'rb') as fa, open(b, 'rb') as fb:
                        if masked(fa.read()) != masked(fb.read()):
                            problems.append(f'{f}: descriptor differs from qemu {ver} (CID masked)')
                    if sa.st_blocks != sb.st_blocks:
                        problems.append(f'{f}: st_blocks {sa.st_blocks} != qemu {ver} {sb.st_blocks}')
                elif sa.st_size != sb.st_size:
                    problems.append(f'{f}: size {sa.st_size} != qemu {ver} {sb.st_size}')
                elif not same_blocks(sa, sb):
                    problems.append(f'{f}: st_blocks {sa.st_blocks} != qemu {ver} {sb.st_blocks}')
                elif not same_bytes(a, b):
                    problems.append(f'{f}: bytes differ from qemu {ver} (CID masked)')
            if len(problems) == before:
                # Same files, same bytes but the CID, which info leaves out: either qemu reads
                # ours as it reads its own image, so info is compared only to show a difference.
                continue
            for ver2, (qemu_img2, _) in QEMUS.items():
                qi, qerr = qemu_info(qemu_img2, d[ver], name)
                oi, oerr = qemu_info(qemu_img2, d['ours'], name)
                if qi != oi or qerr != oerr:
                    problems.append(f'info [{ver2}] on ours vs qemu {ver} image: {oi or oerr} != {qi or qerr}')
        opened = size >= 512  # qemu's own size-0 images do not open
        for ver, (qemu_img, _) in QEMUS.items():
            if not (check and opened):
                break
            p = subprocess.run([qemu_img, 'check', '-f', 'vmdk', name], cwd=d['ours'], capture_output=True, text=True)
            if p.returncode != 0:
                problems.append(f'check [{ver}]: {p.stdout.strip()} {p.stderr.strip()}')
        if VMDKINFO and opened:
            p = subprocess.run([VMDKINFO, name], cwd=d['ours'], capture_output=True, text=True)
            if p.returncode != 0:
                problems.append(f'vmdkinfo: {p.stdout.strip()[-200:]} {p.stderr.strip()}')
        self.results.append((label, problems))
        splits = any(k == 'subformat' and v.startswith('two') for k, v in opts)
        if opened and size <= 64 * T and (not splits or size <= 1024 * 2 * G):
            # The plugin's own parser (bounded: extents up to 64 TiB, at most 1024 extent files) on the image it wrote, against qemu (vmdk_differential.py's rules).
            path = os.path.join(d['ours'], name)

            def fix(spec):
                for e in spec['data'].get('extents', []):
                    e['filename'] = path if e['filename'] == '' else os.path.join(d['ours'], e['filename'])
            compare_report(ours_info(self.info_tool, path), 'vmdk', path, f'own info: {label}', self.results, fix)
        shutil.rmtree(os.path.dirname(d['ours']))

    def error(self, size, opts=(), name='e.vmdk', backing=None, base_files=()):
        opt_text = ','.join(f'{k}={v}' for k, v in opts)
        label = f'error: {name} {size} {opt_text}' + (f' -b {backing[0]}' if backing else '')
        d = self.dirs()
        for who, path in d.items():
            for f in base_files:
                shutil.copy(f, path)
        problems = []
        mine = ours_create(self.create_tool, d['ours'], name, size, opts, backing)
        for ver, (qemu_img, _) in QEMUS.items():
            rc, err = qemu_create(qemu_img, d[ver], name, size, opts, backing)
            prefix = f'qemu-img: {name}: '
            want = err[len(prefix):] if err.startswith(prefix) else err
            if rc == 0:
                problems.append(f'qemu {ver} succeeded')
            if mine['status'] == 0:
                problems.append('ours succeeded')
            elif mine['reason'] != want:
                problems.append(f'reason {mine["reason"]!r} != qemu {ver} {want!r}')
        self.results.append((label, problems))
        shutil.rmtree(os.path.dirname(d['ours']))


def main():
    tools, status = start(__doc__, 2)
    if tools is None:
        return status
    if VMDKINFO is None:
        print('note: vmdkinfo (libyal) not installed; its check is skipped')
    with tempfile.TemporaryDirectory() as root:
        c = Checker(tools[0], tools[1], root)
        # Sizes: empty, under one sector, two grain tables (64 MiB), a partial last sector past
        # 2 GiB (three extents when split), and a grain directory written in several 64 KiB pieces
        # (1 TiB; for split flat, 512 extents, an exact multiple of 2 GiB, which 4 GiB is for split
        # sparse: the many-extent split is 8 TiB below).
        for sub in SUBFORMATS:
            for size in (64 * M, 5 * G + 1000, 1000, 0):
                c.case(size, [('subformat', sub)])
            if sub == 'twoGbMaxExtentSparse':
                c.case(4 * G, [('subformat', sub)])
            else:
                c.case(T, [('subformat', sub)], check=False)
        # Each adapter once (the descriptor is common to every subformat); ide, the one with 16 heads,
        # both below the 16383-cylinder cap and at it.
        for adapter, size, sub in (('ide', 100 * G, None), ('ide', 3 * G, 'twoGbMaxExtentFlat'),
                                   ('buslogic', 100 * G, None), ('lsilogic', 3 * G, 'twoGbMaxExtentFlat'),
                                   ('legacyESX', 100 * G, None)):
            c.case(size, [('adapter_type', adapter)] + ([('subformat', sub)] if sub else []))
        c.case(64 * M, [('compat6', 'on')])
        c.case(64 * M, [('compat6', 'on'), ('hwversion', 'undefined')])
        c.case(64 * M, [('hwversion', '7'), ('toolsversion', '10240')])
        c.case(64 * M, [('hwversion', '')])
        c.case(64 * M, [('zeroed_grain', 'on')])
        c.case(64 * M, [('zeroed_grain', 'on'), ('subformat', 'streamOptimized')])
        c.case(5 * G, [('zeroed_grain', 'on'), ('subformat', 'twoGbMaxExtentSparse')])
        # preallocation only reaches the file protocol's empty first file (qemu-img 7.2 and 10.0
        # make the same files under every mode): each subformat once, each mode at least once,
        # falloc and full on both sparse and flat extents.
        for mode, sub in (('off', 'monolithicSparse'), ('falloc', 'streamOptimized'), ('full', 'monolithicFlat'),
                          ('full', 'twoGbMaxExtentSparse'), ('falloc', 'twoGbMaxExtentFlat')):
            c.case(64 * M, [('preallocation', mode), ('subformat', sub)])
        c.case(64 * M, [('subformat', 'twoGbMaxExtentSparse')], name='disk.v1.vmdk')
        c.case(64 * M, [('subformat', 'monolithicFlat')], name='noext')
        c.case(64 * M, [('subformat', 'twoGbMaxExtentFlat')], name='a\\b.c.vmdk')
        c.case(100 * T, [('subformat', 'monolithicSparse')], check=False)
        c.case(300 * T, [('subformat', 'monolithicSparse')], check=False)
        c.case(8 * T, [('subformat', 'twoGbMaxExtentFlat')], check=False)

        # Backing files: a sparse base and a descriptor-file base (their CIDs become parentCID).
        bases = os.path.join(root, 'bases')
        os.mkdir(bases)
        qemu72 = QEMUS['7.2'][0]
        base_sparse = os.path.join(bases, 'base.vmdk')
        base_flat = os.path.join(bases, 'basef.vmdk')
        run([qemu72, 'create', '-q', '-f', 'vmdk', base_sparse, str(64 * M)])
        run([qemu72, 'create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentFlat', base_flat, str(64 * M)])
        flat_files = [base_flat, os.path.join(bases, 'basef-f001.vmdk')]
        c.case(64 * M, [], backing=('base.vmdk', 'vmdk', False), base_files=[base_sparse])
        c.case(128 * M, [('subformat', 'streamOptimized')], backing=('base.vmdk', 'vmdk', False), base_files=[base_sparse])
        c.case(64 * M, [('subformat', 'twoGbMaxExtentSparse')], backing=('basef.vmdk', 'vmdk', False),
               base_files=flat_files)

        # qemu's error messages.
        c.error(M, [('subformat', 'foo')])
        c.error(M, [('subformat', 'monolithicflat')])
        c.error(M, [('adapter_type', 'scsi')])
        c.error(M, [('adapter_type', '')])
        c.error(M, [('subformat', 'foo'), ('adapter_type', 'bar')])
        c.error(M, [('compat6', 'on'), ('hwversion', '4')])
        c.error(M, [('compat6', 'on'), ('hwversion', '')])
        c.error(M, [('subformat', 'monolithicFlat'), ('zeroed_grain', 'on')])
        c.error(M, [('subformat', 'twoGbMaxExtentFlat'), ('zeroed_grain', 'on')])
        c.error(M, [('preallocation', 'metadata')])
        c.error(M, [('subformat', 'monolithicFlat')], backing=('base.vmdk', 'vmdk', False), base_files=[base_sparse])
        c.error(M, [('subformat', 'twoGbMaxExtentSparse')], name='x' * 246 + '.vmdk')
        raw = os.path.join(bases, 'r.img')
        run([qemu72, 'create', '-q', '-f', 'raw', raw, str(M)])
        c.error(M, [], backing=('r.img', 'raw', False), base_files=[raw])
        return report(c.results)


if __name__ == '__main__':
    sys.exit(main())

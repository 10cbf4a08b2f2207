#!/usr/bin/env python3
"""Differential check of the VHDX emitter against `qemu-img create -f vhdx` (7.2 and 10.0).

usage: vhdx_create_differential.py HOSTED_CREATE_TOOL HOSTED_INFO_TOOL

For each case and each qemu both files are made (ours with the creator version of the qemu it is
compared with) and compared: `cmp` after masking the random bytes (header checksums, sequence
numbers and write GUIDs; the page 83 GUID), file size, the data/hole map, `du` after fsync, `qemu-img
info --output=json` and `qemu-img check` under the qemu compared with (so each qemu reads and
checks ours in every case), `vhdiinfo`, and once a case the plugin's own info() against both qemus.
Each option value is covered, not every combination: see creation_cases(). Error cases compare the
reason with qemu-img's message. Differencing disks (qemu-img cannot make them)
are checked with vhdiinfo, the plugin's info() and their parent locator bytes.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, data_segments, read_head, report, run, start, strip  # noqa: E402

FORMAT = 'vhdx'
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
SIZES = {'0': 0, '1000': 1000, '1M': MiB, '64M': 64 * MiB, '1G': GiB, '1T': TiB, '64T': 64 * TiB}


def qemu_version(qemu_img):
    m = re.search(r'version (\d+)\.(\d+)\.(\d+)', run([qemu_img, '--version']))
    return int(m.group(1)) * 10000 + int(m.group(2)) * 100 + int(m.group(3))


def ours(tool, path, size, opts, version, extra=()):
    args = [tool, path, str(size)] + [o for o in opts.split(',') if o] + list(extra)
    env = dict(os.environ, VHDX_TEST_QEMU_VERSION=str(version))
    return json.loads(subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout)


def qemu_create(qemu_img, path, size, opts):
    cmd = [qemu_img, 'create', '-q', '-f', FORMAT] + (['-o', opts] if opts else []) + [path, str(size)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    prefix = f'qemu-img: {path}: '
    err = p.stderr.strip()
    return p.returncode, err[len(prefix):] if err.startswith(prefix) else err


def masked(path):
    """The file's bytes with the random fields zeroed."""
    # Every structure lies in the first 16 MiB (64 TiB: metadata at 11 MiB).
    b = read_head(path, 16 * MiB)
    for h in (64 * KiB, 128 * KiB):
        b[h + 4:h + 48] = bytes(44)  # checksum, sequence number, file and data write GUIDs
    md = int.from_bytes(b[192 * KiB + 64:192 * KiB + 72], 'little')
    b[md + 64 * KiB + 16:md + 64 * KiB + 32] = bytes(16)  # page 83 data
    return b


def info_json(qemu_img, path):
    """`qemu-img info --output=json` without the per-file fields, or None when qemu cannot open it."""
    p = subprocess.run([qemu_img, 'info', '-f', FORMAT, '--output=json', path], capture_output=True, text=True)
    return strip(json.loads(p.stdout)) if p.returncode == 0 else None


def compare_files(mine, theirs, problems, qemu_img):
    """Compares ours with the file `qemu_img` made; returns that qemu's info of its file, or None
    when it cannot open it. info and check run under that qemu only: the two files of a version
    differ from the other version's only in the creator string, which neither qemu reads, and the
    matrix runs every case under both."""
    if os.path.getsize(mine) != os.path.getsize(theirs):
        problems.append(f'size {os.path.getsize(mine)} != {os.path.getsize(theirs)}')
    if masked(mine) != masked(theirs):
        a, b = masked(mine), masked(theirs)
        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        problems.append(f'bytes differ at {first} (after masking)')
    if data_segments(mine) != data_segments(theirs):
        problems.append(f'data map {data_segments(mine)[:6]} != {data_segments(theirs)[:6]}')
    # data_segments has just fsynced both files, so their allocation is on disk.
    if os.stat(mine).st_blocks != os.stat(theirs).st_blocks:
        problems.append(f'du {os.stat(mine).st_blocks} != {os.stat(theirs).st_blocks} blocks')
    theirs_info = info_json(qemu_img, theirs)
    if theirs_info is None:
        # A 0-byte disk with 256 MiB blocks: qemu cannot read its own 2 GiB BAT back.
        if info_json(qemu_img, mine) is not None:
            problems.append('qemu opens ours but not its own')
        return None
    mine_info = info_json(qemu_img, mine)
    if mine_info != theirs_info:
        problems.append(f'info: {mine_info} != {theirs_info}')
    if subprocess.run([qemu_img, 'check', '-f', FORMAT, mine], capture_output=True).returncode != 0:
        problems.append('qemu-img check failed')
    # vhdiinfo refuses qemu's own 0-byte images (its BAT size rule differs); ours must do as qemu's.
    vhdi = [subprocess.run(['vhdiinfo', p], capture_output=True).returncode for p in (mine, theirs)]
    if vhdi[0] != vhdi[1]:
        problems.append(f'vhdiinfo exit {vhdi[0]} (qemu\'s image: {vhdi[1]})')
    return theirs_info


def creation_cases():
    """Sizes where the layout changes (qemu's default block size: 8 MiB up to 1 GiB, 32 MiB past
    100 GiB, 64 MiB past 32 TiB; the BAT grows past one sector bitmap chunk at 1 TiB) for each
    kind of BAT: ZERO entries (block_state_zero, the default, dynamic or fixed) and fixed
    FULLY_PRESENT entries carrying each block's offset. A dynamic disk without block_state_zero
    writes no BAT (its layout is the default's): the smallest and the largest size. 64 TiB fixed is
    over the host file system's limit (one case for that)."""
    cases = []
    for size in ('1000', '64M', '1G', '1T', '64T'):
        cases.append((size, ''))
    for size in ('1000', '64T'):
        cases.append((size, 'block_state_zero=off'))
    for size in ('1M', '1T', '64T'):
        cases.append((size, 'subformat=fixed'))
    for size in ('1M', '1G', '1T'):
        cases.append((size, 'subformat=fixed,block_state_zero=off'))
    for bs in ('1000', '1M', '2M', '32M', '256M', '512M', '0'):
        cases.append(('64M', f'block_size={bs}'))
    cases += [('1G', 'block_size=1M,subformat=fixed,block_state_zero=off'), ('1T', 'block_size=1M'),
              ('64M', 'log_size=1000'), ('64M', 'log_size=4M'), ('64M', 'log_size=3M,block_size=2M'),
              ('0', ''), ('0', 'block_size=1M'), ('0', 'block_size=256M,block_state_zero=off'),
              ('64M', 'preallocation=full'), ('64M', 'subformat=dynamic'),
              # qemu cannot open this one it made (its BAT check miscounts the last partial block).
              ('279172874260', 'subformat=fixed,block_state_zero=off')]
    # Refused: qemu's messages.
    cases += [('64M', 'block_size=3M'), ('64M', 'log_size=0'), ('64M', 'log_size=5G'), ('64M', 'log_size=4096M'),
              (str(65 * TiB), ''), (str(64 * TiB + 1), ''), ('0', 'block_size=256M'),
              (str(65 * TiB), 'log_size=0')]
    return cases


def to_bytes(v):
    """Normalises a size option the way the host does (decimal bytes)."""
    m = re.fullmatch(r'(\d+)([KMGT]?)', v)
    return str(int(m.group(1)) * {'': 1, 'K': KiB, 'M': MiB, 'G': GiB, 'T': TiB}[m.group(2)]) if m else v


def normalised(opts):
    out = []
    for o in opts.split(','):
        if not o:
            continue
        k, v = o.split('=', 1)
        out.append(f'{k}={to_bytes(v) if k in ("block_size", "log_size") else v}')
    return ','.join(out)


def utf16_locator(path):
    """The parent locator's key/value pairs of a differencing VHDX."""
    with open(path, 'rb') as f:
        md = int.from_bytes(f.read(256 * KiB)[192 * KiB + 64:192 * KiB + 72], 'little')
        f.seek(md)
        b = f.read(MiB)  # the metadata region, indexed from its start
    count = int.from_bytes(b[10:12], 'little')
    for i in range(count):
        e = 32 + 32 * i
        if b[e:e + 4] == (0xa8d35f2d).to_bytes(4, 'little'):
            loc = int.from_bytes(b[e + 16:e + 20], 'little')
            pairs = {}
            for k in range(int.from_bytes(b[loc + 18:loc + 20], 'little')):
                ent = loc + 20 + 12 * k
                ko, vo = (int.from_bytes(b[ent + o:ent + o + 4], 'little') for o in (0, 4))
                kl, vl = (int.from_bytes(b[ent + o:ent + o + 2], 'little') for o in (8, 10))
                pairs[b[loc + ko:loc + ko + kl].decode('utf-16-le')] = b[loc + vo:loc + vo + vl].decode('utf-16-le')
            return pairs
    return None


def guid_str(g):
    return '{%08x-%04x-%04x-%s-%s}' % (int.from_bytes(g[0:4], 'little'), int.from_bytes(g[4:6], 'little'),
                                       int.from_bytes(g[6:8], 'little'), g[8:10].hex(), g[10:16].hex())


def parent_guid(path):
    """The DataWriteGuid of the current header (qemu writes header 2 with the higher sequence number)."""
    with open(path, 'rb') as f:
        b = f.read(192 * KiB)
    seq = [int.from_bytes(b[h + 8:h + 16], 'little') for h in (64 * KiB, 128 * KiB)]
    h = 64 * KiB if seq[0] > seq[1] else 128 * KiB
    return guid_str(b[h + 32:h + 48])


def differencing_cases(create_tool, info_tool, d, results):
    qemu_img = QEMUS['10.0'][0]
    for maker in ('qemu', 'ours'):
        base = os.path.join(d, f'base-{maker}.vhdx')
        if maker == 'qemu':
            run([qemu_img, 'create', '-q', '-f', FORMAT, base, '1G'])
        else:
            ours(create_tool, base, GiB, '', 100000)
        for size, opts in (('1G', ''), ('1G', 'block_size=1M'), ('64T', 'block_size=1M'), ('64M', 'block_size=256M')):
            problems = []
            child = os.path.join(d, 'child.vhdx')
            name = os.path.basename(base)
            r = ours(create_tool, child, to_bytes(size), normalised(opts), 100000,
                     ['--backing', name, '--backing-fmt', 'vhdx'])
            if r['status'] != 0:
                problems.append(f'status {r["status"]}: {r["reason"]}')
            else:
                vhdi = subprocess.run(['vhdiinfo', child], capture_output=True, text=True)
                if vhdi.returncode != 0:
                    problems.append('vhdiinfo failed')
                vi = vhdi.stdout
                want = parent_guid(base)
                if f'Parent identifier\t: {want[1:-1]}' not in vi:
                    problems.append(f'vhdiinfo parent identifier, want {want}: {vi}')
                if 'Disk type\t\t: Differential' not in vi:
                    problems.append('vhdiinfo disk type')
                loc = utf16_locator(child)
                if loc != {'parent_linkage': want, 'relative_path': name}:
                    problems.append(f'locator {loc}')
                mine = json.loads(run([info_tool, child]))
                files = [f['name'] for f in mine.get('info', {}).get('files', []) if f['role'] == 'backing']
                if mine.get('status') != 0 or files != [name] or mine['info']['virtual-size'] != int(to_bytes(size)):
                    problems.append(f'info {mine}')
                # qemu-img refuses every differencing VHDX (documented): check it still says so.
                p = subprocess.run([qemu_img, 'info', child], capture_output=True, text=True)
                if 'Operation not supported' not in p.stderr:
                    problems.append(f'qemu-img info: {p.stderr.strip()}')
            results.append((f'differencing {size} {opts} on a {maker} parent', problems))
            if os.path.exists(child):
                os.unlink(child)
    # Refusals.
    raw = os.path.join(d, 'base.raw')
    with open(raw, 'wb') as f:
        f.truncate(MiB)
    child = os.path.join(d, 'child.vhdx')
    for extra, want in (
            (['--backing', 'base.raw'], "A differencing VHDX needs a VHDX parent; 'base.raw' has no valid VHDX header"),
            (['--backing', 'base.raw', '--backing-fmt', 'raw'],
             "A differencing VHDX needs a VHDX parent; backing format 'raw' is not supported"),
            (['--backing', 'missing.vhdx'], "A differencing VHDX records its parent's DataWriteGuid: the parent must "
             "be readable (-u is not supported)")):
        r = ours(create_tool, child, GiB, '', 100000, extra)
        problems = [] if r['status'] != 0 and r['reason'] == want else [f'{r}']
        results.append((f'differencing refused {extra}', problems))
    r = ours(create_tool, child, GiB, 'subformat=fixed', 100000, ['--backing', 'base-ours.vhdx'])
    results.append(('differencing fixed refused',
                    [] if r['reason'] == 'A differencing VHDX cannot be fixed (subformat=fixed with a backing file)'
                    else [f'{r}']))


def main():
    tools, status = start(__doc__, 2)
    if tools is None:
        return status
    create_tool, info_tool = tools
    results = []
    reported = set()
    with tempfile.TemporaryDirectory() as d:
        mine, theirs = os.path.join(d, 'ours.vhdx'), os.path.join(d, 'qemu.vhdx')
        for ver, (qemu_img, _) in QEMUS.items():
            version = qemu_version(qemu_img)
            for size, opts in creation_cases():
                label = f'{size} {opts or "(defaults)"} [qemu {ver}]'
                nbytes = SIZES.get(size, int(size) if size.isdigit() else None)
                rc, err = qemu_create(qemu_img, theirs, nbytes, opts)
                r = ours(create_tool, mine, nbytes, normalised(opts), version)
                problems = []
                if rc != 0 and err == f"The image size is too large for file format '{FORMAT}'":
                    # EFBIG from the host file system (ext4 stops at 16 TiB): the hosted tool's
                    # set_length reports IoError, which the emitter cannot tell from other failures.
                    if r['status'] == 0:
                        problems.append('qemu hit the file size limit but ours did not')
                elif rc != 0:
                    if r['status'] == 0 or r['reason'] != err:
                        problems.append(f'qemu refused with {err!r}; ours: status {r["status"]} {r["reason"]!r}')
                elif r['status'] != 0:
                    problems.append(f'status {r["status"]}: {r["reason"]}')
                elif (theirs_info := compare_files(mine, theirs, problems, qemu_img)) is not None:
                    want_unit = theirs_info['cluster-size']
                    if r['unit'] != want_unit:
                        problems.append(f'unit {r["unit"]} != {want_unit}')
                    if (size, opts) not in reported:
                        # The plugin's info() against both qemus, once a case: ours differs
                        # between the versions only in the creator string, which info() leaves out.
                        reported.add((size, opts))
                        compare_report(json.loads(run([info_tool, mine])), FORMAT, mine, f'info() {size} {opts}',
                                       results)
                results.append((label, problems))
                for p in (mine, theirs):
                    if os.path.exists(p):
                        os.unlink(p)
        differencing_cases(create_tool, info_tool, d, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

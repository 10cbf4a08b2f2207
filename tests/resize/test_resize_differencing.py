#!/usr/bin/env python3
"""`instar resize` of differencing VHD and VHDX disks and vmdk delta disks (an instar extension,
docs/resize.md "vmdk, vpc, vhdx"): what a grow exposes reads as zeros, never as the parent's data,
as qemu zeroes the grown area of a qcow2 overlay whose backing file reaches into it.

Each case makes a 64 MiB parent full of 0x11 (qemu-io), a differencing child over it (`instar
create -b`), gives the child data of its own where the case says (written into the file: qemu
cannot write a differencing VHD or VHDX, instar's writer only whole blocks; qemu-io writes a vmdk
child), shrinks the child into the middle of a block (vmdk: of a grain) and grows it past the
parent's end, then checks:
  - the content (`instar convert -O raw` of the chain) is the child's old content up to the
    shrunk size and zeros after it;
  - `instar check` accepts a VHDX child; instar info and qemu-img info (which opens a
    differencing VHD as a dynamic disk) open a VHD child (no tool checks VHD); vhdiinfo reads both;
    instar check, qemu-img check and vmdkinfo a vmdk child, and qemu-img compare reads the same
    content through the chain as instar;
  - vmdk: a grain holding the old end that the parent served gets the parent's bytes (asked from
    the host on a second run), a child with zeroed grains gets zeroed-grain entries, a
    twoGbMaxExtentSparse child's new extent files get grains of their own over the parent (and the
    grain holding its last extent's end, which qemu reads whole), a SPARSE extent behind a
    descriptor grows as monolithicSparse 16 MiB into the disk, a COWD (vmfsSparse) extent gets new
    grains (it has no zeroed-grain entry), a streamOptimized child zeroed-grain entries (the header's
    flag set with the switch) and a compressed head grain, and the one layout the grow does not zero
    (a streamOptimized child in VMware's footer layout) is refused with the image unchanged;
  - the boundary block in every state: served by the parent, partially present (its own head,
    the parent's middle, stale data after the shrunk end), fully present; a VHDX block a shrink
    kept in the last chunk with stale data; a child created smaller than its parent (grown
    without a shrink);
  - a grow that moves the table (VHD BAT, VHDX BAT region);
  - crash consistency: the grow killed at every file-changing call (INSTAR_TEST_KILL_AT_WRITE)
    leaves a child that checks (opens) as above, whose content is the old or the new one.

Usage: test_resize_differencing.py INSTAR QEMU_IMG QEMU_IO
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'plugins', 'vmdk', 'tests'))
import vmdk_vmware_images as vm  # noqa: E402

INSTAR, QIMG, QIO = sys.argv[1:4]
MiB = 1 << 20
PARENT = 64 * MiB
# Inside a block for every format (VHD 2 MiB, VHDX 1 MiB blocks, vmdk 64 KiB grains).
SHRUNK = 41 * MiB + 512 * 1024 + 32 * 1024
GROWN = 80 * MiB                # past the parent's end
passed = failed = 0


def check(label, cond, detail=''):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f'FAIL {label} {detail}')


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, env=env)


def ok(cmd):
    p = run(cmd)
    if p.returncode != 0:
        raise RuntimeError(f'{cmd}: rc {p.returncode}: {p.stderr.decode()} {p.stdout.decode()[:300]}')
    return p


def virtual_size(fmt, path):
    return json.loads(ok([INSTAR, 'info', '-f', fmt, '--output=json', path]).stdout)['virtual-size']


def content(fmt, path, d):
    """The chain's content as instar reads it (None when it cannot)."""
    out = os.path.join(d, 'content.raw')
    if os.path.exists(out):
        os.unlink(out)
    if run([INSTAR, 'convert', '-f', fmt, '-O', 'raw', path, out]).returncode != 0:
        return None
    with open(out, 'rb') as f:
        return f.read()


# ---- writing a child's own data into the file (instar's writer allocates whole blocks only) ----

def vhd_layout(path):
    with open(path, 'rb') as f:
        footer = f.read(512)
        data_offset = struct.unpack('>Q', footer[16:24])[0]
        f.seek(data_offset)
        dyn = f.read(1024)
    table, entries, block = struct.unpack('>Q', dyn[16:24])[0], struct.unpack('>I', dyn[28:32])[0], \
        struct.unpack('>I', dyn[32:36])[0]
    return table, entries, block


def vhd_add_block(path, index, present, data):
    """Block `index` of a differencing VHD: `data` (one block), sectors with `present(s)` marked
    present in its bitmap (bit 7 of byte 0 is the first sector); appended where the trailing footer
    was, the footer after it."""
    table, entries, block = vhd_layout(path)
    assert len(data) == block and index < entries
    bitmap = bytearray(512)
    for s in range(block // 512):
        if present(s):
            bitmap[s // 8] |= 0x80 >> (s % 8)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(size - 512)
        footer = f.read(512)
        at = size - 512
        f.seek(at)
        f.write(bytes(bitmap) + data + footer)
        f.seek(table + 4 * index)
        f.write(struct.pack('>I', at // 512))


BAT_GUID = bytes.fromhex('6677c22d23f600429d64115e9bfd4a08')


def vhdx_bat(path):
    with open(path, 'rb') as f:
        f.seek(192 * 1024)
        t = f.read(64 * 1024)
    for i in range(struct.unpack('<I', t[8:12])[0]):
        e = t[16 + 32 * i:48 + 32 * i]
        if e[:16] == BAT_GUID:
            return struct.unpack('<Q', e[16:24])[0]
    raise RuntimeError('no BAT region')


def vhdx_append(path, data):
    size = os.path.getsize(path)
    at = (size + MiB - 1) // MiB * MiB
    with open(path, 'r+b') as f:
        f.seek(at)
        f.write(data)
    return at


def vhdx_set_entry(path, index, value):
    bat = vhdx_bat(path)
    with open(path, 'r+b') as f:
        f.seek(bat + 8 * index)
        f.write(struct.pack('<Q', value))


def vhdx_add_block(path, block, index, data, present=None):
    """Payload block `index` (1 MiB blocks: chunk ratio 4096): fully present, or partially present
    with the sectors `present(s)` marked in a new sector bitmap block for chunk 0."""
    ratio = (1 << 23) * 512 // block
    at = vhdx_append(path, data)
    if present is None:
        vhdx_set_entry(path, index + index // ratio, at | 6)
        return
    bitmap = bytearray(MiB)
    base = (index % ratio) * (block // 512)
    for s in range(block // 512):
        if present(s):
            bitmap[(base + s) // 8] |= 1 << ((base + s) % 8)
    sb = vhdx_append(path, bytes(bitmap))
    vhdx_set_entry(path, index // ratio * (ratio + 1) + ratio, sb | 6)
    vhdx_set_entry(path, index + index // ratio, at | 7)


# ---- the cases ----

def make_chain(fmt, d, child_size=None, opts=None):
    parent = os.path.join(d, 'parent.' + fmt)
    child = os.path.join(d, 'child.' + fmt)
    opts = opts or (['-o', 'block_size=1M'] if fmt == 'vhdx' else [])
    ok([INSTAR, 'create', '-q', '-f', fmt] + opts + [parent, str(PARENT)])
    ok([QIO, '-f', fmt, '-c', f'write -P 0x11 0 {PARENT}', parent])
    # The parent named relative to the child, so a copy of the directory is a chain of its own.
    cmd = [INSTAR, 'create', '-q', '-f', fmt] + opts + ['-b', os.path.basename(parent), '-F', fmt, child]
    ok(cmd + ([str(child_size)] if child_size else []))
    return child


def descriptor_child(d):
    """A vmdk delta disk SHRUNK bytes long behind a monolithicFlat descriptor: a 16 MiB FLAT extent
    (its first 4 KiB 0x22) then a SPARSE one (a twoGbMaxExtentSparse extent qemu-img made): its
    sparse last extent grows its own capacity over the parent, 16 MiB into the disk."""
    parent = os.path.join(d, 'parent.vmdk')
    ok([INSTAR, 'create', '-q', '-f', 'vmdk', parent, str(PARENT)])
    ok([QIO, '-f', 'vmdk', '-c', f'write -P 0x11 0 {PARENT}', parent])
    flat = 16 * MiB
    tmp = os.path.join(d, 'tmp.vmdk')
    ok([QIMG, 'create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', tmp, str(SHRUNK - flat)])
    os.rename(os.path.join(d, 'tmp-s001.vmdk'), os.path.join(d, 'child-s001.vmdk'))
    os.unlink(tmp)
    with open(os.path.join(d, 'child-f001.vmdk'), 'wb') as f:
        f.write(b'\x22' * 4096)
        f.truncate(flat)
    with open(parent, 'rb') as f:
        cid = next(l.split(b'=')[1].strip() for l in f.read(65536).split(b'\n') if l.startswith(b'CID='))
    child = os.path.join(d, 'child.vmdk')
    with open(child, 'w') as f:
        f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\n'
                f'parentCID={cid.decode()}\ncreateType="monolithicFlat"\nparentFileNameHint="parent.vmdk"\n\n'
                f'# Extent description\nRW {flat // 512} FLAT "child-f001.vmdk" 0\n'
                f'RW {(SHRUNK - flat) // 512} SPARSE "child-s001.vmdk"\n\n'
                '# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\nddb.geometry.cylinders = "100"\n'
                'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n')
    return child


def cowd_child(d):
    """A vmdk delta disk SHRUNK bytes long whose one extent is a COWD (vmfsSparse) file with 64 KiB
    grains, its first grain 0x22, behind a vmfsSparse descriptor (COWD has no zeroed-grain entry)."""
    parent = os.path.join(d, 'parent.vmdk')
    ok([INSTAR, 'create', '-q', '-f', 'vmdk', parent, str(PARENT)])
    ok([QIO, '-f', 'vmdk', '-c', f'write -P 0x11 0 {PARENT}', parent])
    with open(parent, 'rb') as f:
        cid = next(l.split(b'=')[1].strip() for l in f.read(65536).split(b'\n') if l.startswith(b'CID='))
    vm.cowd(os.path.join(d, 'child-delta.vmdk'), SHRUNK // 512, 128, {0: b'\x22' * 4096}, cid_text=False)
    child = os.path.join(d, 'child.vmdk')
    with open(child, 'w') as f:  # vm.descriptor's, with the DDB heading libvmdk (vmdkinfo) needs
        f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\n'
                f'parentCID={cid.decode()}\ncreateType="vmfsSparse"\nparentFileNameHint="parent.vmdk"\n\n'
                f'# Extent description\nRW {SHRUNK // 512} VMFSSPARSE "child-delta.vmdk"\n\n'
                '# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n')
    return child


def footer_child(d):
    """A streamOptimized delta disk SHRUNK bytes long in VMware's layout (its grain directory after
    the grains, the header in a footer), which the grow does not zero."""
    child = make_chain('vmdk', d, child_size=SHRUNK, opts=['-o', 'subformat=streamOptimized'])
    vm.move_directory_to_footer(child)
    return child


def block_size(fmt, child):
    return {'vpc': lambda: vhd_layout(child)[2], 'vhdx': lambda: MiB, 'vmdk': lambda: 64 * 1024}[fmt]()


def opens(fmt, child):
    """instar check accepts the image (vpc, which neither qemu nor instar checks: instar info and
    qemu-img info, which opens a differencing VHD as a dynamic disk, open it)."""
    if fmt == 'vpc':
        p = run([INSTAR, 'info', '-f', fmt, child])
        q = run([QIMG, 'info', '-f', fmt, child])
        return p.returncode == 0 and q.returncode == 0, (p.stderr + q.stderr).decode()[-300:]
    p = run([INSTAR, 'check', '-f', fmt, child])
    if fmt == 'vmdk':
        q = run([QIMG, 'check', '-f', fmt, child])
        return p.returncode == 0 and q.returncode == 0, (p.stdout + p.stderr + q.stdout + q.stderr).decode()[-300:]
    return p.returncode == 0, (p.stdout + p.stderr).decode()[-300:]


def structure_checks(label, fmt, child, want=None):
    check(f'{label}: opens and checks', *opens(fmt, child))
    reader = '/usr/bin/vmdkinfo' if fmt == 'vmdk' else '/usr/bin/vhdiinfo'
    check(f'{label}: {os.path.basename(reader)}', run([reader, child]).returncode == 0)
    if fmt == 'vmdk' and want is not None:
        ref = child + '.ref'
        with open(ref, 'wb') as f:
            f.write(want)
        p = run([QIMG, 'compare', '-f', fmt, '-F', 'raw', child, ref])
        check(f'{label}: qemu-img compare', p.returncode == 0, p.stdout.decode()[-200:])
        os.unlink(ref)


def resize(fmt, child, size, env=None):
    args = [INSTAR, 'resize', '-f', fmt] + (['--shrink'] if size < virtual_size(fmt, child) else []) + [child, str(size)]
    return run(args, env=env)


def shrink_then_grow(label, fmt, prepare, opts=None):
    with tempfile.TemporaryDirectory() as d:
        child = make_chain(fmt, d, opts=opts)
        prepare(fmt, child, block_size(fmt, child))
        before = content(fmt, child, d)
        p = resize(fmt, child, SHRUNK)
        check(f'{label}: shrink', p.returncode == 0, p.stderr.decode())
        shrunk = virtual_size(fmt, child)  # vpc: rounded to its geometry
        check(f'{label}: shrunk inside a block', shrunk % block_size(fmt, child) != 0, str(shrunk))
        check(f'{label}: shrunk content', content(fmt, child, d) == before[:shrunk])
        p = resize(fmt, child, GROWN)
        check(f'{label}: grow', p.returncode == 0, p.stderr.decode())
        grown = virtual_size(fmt, child)
        check(f'{label}: grown size', grown >= GROWN, str(grown))
        got = content(fmt, child, d) or b''
        want = before[:shrunk] + bytes(grown - shrunk)
        first = next((i for i in range(0, min(len(got), len(want)), 512) if got[i:i + 512] != want[i:i + 512]), None)
        check(f'{label}: grown content', got == want, f'length {len(got)}, first differing sector at {first}')
        structure_checks(label, fmt, child, want)


def nothing(fmt, child, block):
    pass


def partial_boundary(fmt, child, block):
    """The block holding SHRUNK: its own data in the first quarter, the parent's in the rest of
    the kept part, stale data (bits clear) after SHRUNK; a fully present block past SHRUNK."""
    index = SHRUNK // block
    data = b'\x33' * (block // 4) + b'\x44' * (block - block // 4)
    quarter = block // 4 // 512
    far = (SHRUNK + 4 * MiB) // block
    if fmt == 'vmdk':
        # qemu-io writes the child: whole grains of its own before, in and after the boundary one.
        ok([QIO, '-f', fmt, '-c', f'write -P 0x33 {index * block - MiB} {MiB}', child])
        ok([QIO, '-f', fmt, '-c', f'write -P 0x44 {index * block} {block}', child])
        ok([QIO, '-f', fmt, '-c', f'write -P 0x55 {far * block} {block}', child])
    elif fmt == 'vpc':
        vhd_add_block(child, index, lambda s: s < quarter, data)
        vhd_add_block(child, far, lambda s: True, b'\x55' * block)
    else:
        vhdx_add_block(child, block, index, data, lambda s: s < quarter)
        vhdx_add_block(child, block, far, b'\x55' * block)


def full_boundary(fmt, child, block):
    index = SHRUNK // block
    if fmt == 'vmdk':
        ok([QIO, '-f', fmt, '-c', f'write -P 0x66 {index * block} {block}', child])
    elif fmt == 'vpc':
        vhd_add_block(child, index, lambda s: True, b'\x66' * block)
    else:
        vhdx_add_block(child, block, index, b'\x66' * block)


def smaller_child(label, fmt, opts=None, make=None):
    """A child created smaller than its parent, grown without a shrink before."""
    with tempfile.TemporaryDirectory() as d:
        child = make(d) if make else make_chain(fmt, d, child_size=SHRUNK, opts=opts)
        before = content(fmt, child, d)
        check(f'{label}: created smaller', len(before) < PARENT, str(len(before)))
        p = resize(fmt, child, GROWN)
        check(f'{label}: grow', p.returncode == 0, p.stderr.decode())
        grown = virtual_size(fmt, child)
        want = before + bytes(grown - len(before))
        check(f'{label}: grown content', content(fmt, child, d) == want)
        structure_checks(label, fmt, child, want)


def crash(label, fmt, prepare, opts=None, make=None):
    """The grow killed at every file-changing call: the old content or the new one."""
    with tempfile.TemporaryDirectory() as d:
        tpl_dir = os.path.join(d, 'tpl')
        os.mkdir(tpl_dir)
        child = make(tpl_dir) if make else make_chain(fmt, tpl_dir, opts=opts)
        prepare(fmt, child, block_size(fmt, child))
        ok([INSTAR, 'resize', '-f', fmt, '--shrink', child, str(SHRUNK)])
        old = content(fmt, child, d)
        scratch = os.path.join(d, 'scratch')
        shutil.copytree(tpl_dir, scratch)
        ok([INSTAR, 'resize', '-f', fmt, os.path.join(scratch, os.path.basename(child)), str(GROWN)])
        new = old + bytes(virtual_size(fmt, os.path.join(scratch, os.path.basename(child))) - len(old))
        work = os.path.join(d, 'work')
        n, points, bad = 1, 0, 0
        while n < 200:
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(tpl_dir, work)
            c = os.path.join(work, os.path.basename(child))
            # The copy names the template's parent (an absolute path), which nothing writes.
            p = resize(fmt, c, GROWN, env=dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n)))
            if p.returncode == 0:
                break
            points += 1
            good, why = opens(fmt, c)
            got = content(fmt, c, d)
            if not good or got not in (old, new):
                bad += 1
                print(f'FAIL {label}: killed at write {n}: {why}, content '
                      f'{"old" if got == old else "new" if got == new else "neither"}')
            n += 1
        check(f'{label}: kill points ({points}) all old or new', bad == 0 and 0 < points < 199, f'{bad} bad')


def relocated(label, fmt, size):
    """A grow far enough to move the table (VHD: past the BAT's sector room; VHDX: past the BAT
    region's 1 MiB): the parent still does not show. The first 80 MiB read back with `instar dd`
    (the disk is too large to convert whole)."""
    with tempfile.TemporaryDirectory() as d:
        child = make_chain(fmt, d)
        before = content(fmt, child, d)
        ok([INSTAR, 'resize', '-f', fmt, '--shrink', child, str(SHRUNK)])
        shrunk = virtual_size(fmt, child)
        p = resize(fmt, child, size)
        check(f'{label}: grow', p.returncode == 0, p.stderr.decode())
        out = os.path.join(d, 'head.raw')
        ok([INSTAR, 'dd', '-f', fmt, '-O', 'raw', 'bs=1M', f'count={GROWN // MiB}', f'if={child}', f'of={out}'])
        with open(out, 'rb') as f:
            got = f.read()
        check(f'{label}: content', got == before[:shrunk] + bytes(GROWN - shrunk))
        structure_checks(label, fmt, child)


def refused(label, fmt, opts, make=None):
    """A layout whose grow cannot zero the area yet: refused, the files unchanged."""
    with tempfile.TemporaryDirectory() as d:
        child = make(d) if make else make_chain(fmt, d, child_size=SHRUNK, opts=opts)
        before = {n: open(os.path.join(d, n), 'rb').read() for n in sorted(os.listdir(d))}
        p = resize(fmt, child, GROWN)
        check(f'{label}: refused', p.returncode == 1 and b'parent' in p.stderr, (p.stdout + p.stderr).decode())
        after = {n: open(os.path.join(d, n), 'rb').read() for n in sorted(os.listdir(d))}
        check(f'{label}: unchanged', before == after)


def main():
    smaller_child('vmdk child smaller than its parent', 'vmdk')
    smaller_child('vmdk child with zeroed grains', 'vmdk', ['-o', 'zeroed_grain=on'])
    shrink_then_grow('vmdk boundary grain from the parent', 'vmdk', nothing)
    shrink_then_grow('vmdk boundary grain and its neighbours written', 'vmdk', partial_boundary)
    crash('vmdk crash, boundary grain from the parent', 'vmdk', nothing)
    split = ['-o', 'subformat=twoGbMaxExtentSparse']
    smaller_child('vmdk twoGbMaxExtentSparse child smaller than its parent', 'vmdk', split)
    smaller_child('vmdk twoGbMaxExtentSparse child with zeroed grains', 'vmdk',
                  ['-o', 'subformat=twoGbMaxExtentSparse,zeroed_grain=on'])
    shrink_then_grow('vmdk twoGbMaxExtentSparse shrunk, then grown', 'vmdk', nothing, split)
    shrink_then_grow('vmdk twoGbMaxExtentSparse boundary grain written', 'vmdk', partial_boundary, split)
    crash('vmdk twoGbMaxExtentSparse crash', 'vmdk', nothing, split)
    smaller_child('vmdk SPARSE extent behind a monolithicFlat descriptor', 'vmdk', make=descriptor_child)
    crash('vmdk SPARSE extent behind a descriptor, crash', 'vmdk', nothing, make=descriptor_child)
    smaller_child('vmdk COWD extent behind a vmfsSparse descriptor', 'vmdk', make=cowd_child)
    crash('vmdk COWD extent, crash', 'vmdk', nothing, make=cowd_child)
    stream = ['-o', 'subformat=streamOptimized']
    smaller_child('vmdk streamOptimized child (compressed head grain, zeroed-grain entries)', 'vmdk', stream)
    crash('vmdk streamOptimized crash', 'vmdk', nothing, stream)
    refused('vmdk streamOptimized child, directory in a footer', 'vmdk', None, make=footer_child)
    relocated('vpc BAT relocated', 'vpc', 2 << 30)
    relocated('vhdx BAT region relocated', 'vhdx', 200 << 30)
    for fmt in ('vpc', 'vhdx'):
        shrink_then_grow(f'{fmt} boundary block from the parent', fmt, nothing)
        shrink_then_grow(f'{fmt} boundary block partially present', fmt, partial_boundary)
        shrink_then_grow(f'{fmt} boundary block fully present', fmt, full_boundary)
        smaller_child(f'{fmt} child smaller than its parent', fmt)
        crash(f'{fmt} crash, boundary block from the parent', fmt, nothing)
        crash(f'{fmt} crash, boundary block partially present', fmt, partial_boundary)
    print(f'{passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

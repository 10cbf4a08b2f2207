"""resize for vmdk, vpc and vhdx (an instar extension: qemu-img refuses them; docs/resize.md
"vmdk, vpc, vhdx"). Each case makes an image with qemu-img, writes data with qemu-io, resizes it
with the hosted driver (the format's guest resize code on real files), then checks:
  - qemu-img info (7.2 and 10.0) reports the expected size (vpc: what qemu's create rounds it to);
  - qemu-img check (7.2 and 10.0) accepts it (vmdk, vhdx; qemu has no vpc check);
  - the libyal reader (vhdiinfo, vmdkinfo) reports the same media size;
  - qemu-img compare against a raw reference (old content cut or zero-extended) finds them identical;
  - qemu-io can write at the new end, and the image still checks.
Crash cases kill the driver at every file-changing call (INSTAR_TEST_KILL_AT_WRITE=N) and require
an image qemu-img check accepts (0 or 3; vpc: info opens it) holding the old or the new content.

Cases named "(instar)" run `instar resize` itself (the host command, the guest module in its sandbox;
crash cases with the host's INSTAR_TEST_KILL_AT_WRITE).

Usage: resize_formats_check.py VPC_TOOL VHDX_TOOL VMDK_TOOL INSTAR
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'plugins', 'vmdk', 'tests'))
import vmdk_vmware_images as vm  # noqa: E402
from vmdk_vmware_images import move_directory_to_footer  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
QEMU_IMG, QEMU_IO = QEMUS['7.2']
LIBYAL = {'vpc': '/usr/bin/vhdiinfo', 'vhdx': '/usr/bin/vhdiinfo', 'vmdk': '/usr/bin/vmdkinfo'}


def sh(cmd, check=True, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise RuntimeError(f'{cmd}: rc {p.returncode}: {p.stderr.strip()} {p.stdout.strip()[:300]}')
    return p


def extent_files(fmt, image):
    """The files a vmdk descriptor names, in order (none for a sparse image opened directly)."""
    if fmt != 'vmdk':
        return []
    with open(image, 'rb') as f:
        head = f.read(4)
        if head == b'KDMV':
            return []
        f.seek(0)
        text = f.read(1 << 20).decode('latin-1')
    d = os.path.dirname(image)
    return [os.path.join(d, m) for m in re.findall(r'^RW \d+ \w+ "([^"]+)"', text, re.M)]


def copy_dir(src, dst):
    """A sparse copy (the fixtures are mostly holes)."""
    sh(['cp', '-r', '--sparse=always', src, dst])


def resize(tools, fmt, image, size, shrink=False, kill=None):
    if tools.get('via') == 'instar':
        cmd = [tools['instar'], 'resize', '-q', '-f', fmt] + (['--shrink'] if shrink else []) + [image, str(size)]
    else:
        cmd = [tools[fmt], image, str(size)] + (['--shrink'] if shrink else [])
        for f in extent_files(fmt, image):
            cmd += ['--file', f]
    env = dict(os.environ)
    if kill is not None:
        env['INSTAR_TEST_KILL_AT_WRITE'] = str(kill)
    p = sh(cmd, check=False, env=env)
    m = re.search(r'writes=(\d+)', p.stderr)
    return p.returncode, (int(m.group(1)) if m else None), p.stderr


def virtual_size(fmt, image, qemu_img=QEMU_IMG):
    return json.loads(sh([qemu_img, 'info', '-f', fmt, '--output=json', image]).stdout)['virtual-size']


def expected_size(fmt, size, d):
    """vpc: the size qemu's create gives for `size` (CHS rounding); others: whole sectors."""
    if fmt != 'vpc':
        return (size + 511) // 512 * 512
    probe = os.path.join(d, 'probe.vhd')
    sh([QEMU_IMG, 'create', '-q', '-f', 'vpc', probe, str(size)])
    v = virtual_size('vpc', probe)
    os.unlink(probe)
    return v


def libyal_size(fmt, image):
    out = sh([LIBYAL[fmt], image], check=False).stdout
    m = re.search(r'Media size\s*:\s*.*\((\d+) bytes\)', out)
    return int(m.group(1)) if m else None


def make_ref(fmt, image, ref):
    sh([QEMU_IMG, 'convert', '-f', fmt, '-O', 'raw', image, ref])


def make_image(fmt, create, image):
    """qemu-img create's arguments (options..., size), or an image to write by hand (Mixed, Cowd)."""
    if hasattr(create, 'make'):
        create.make(image)
    else:
        sh([QEMU_IMG, 'create', '-q', '-f', fmt] + create[:-1] + [image, create[-1]])


class Mixed:
    """A vmdk descriptor qemu-img never writes but opens: extents of the given kinds ('F' flat,
    'S' sparse, with sizes in MiB) under `create_type`, named as create names split extents
    (NAME-fNNN.vmdk, NAME-sNNN.vmdk). `line_sectors` overrides the last extent line's size."""

    def __init__(self, create_type, *extents, line_sectors=None):
        self.create_type, self.extents, self.line_sectors = create_type, extents, line_sectors

    def make(self, image):
        d = os.path.dirname(image)
        stem = os.path.splitext(os.path.basename(image))[0]
        lines = []
        for i, (kind, mib) in enumerate(self.extents, 1):
            sectors = self.line_sectors if self.line_sectors and i == len(self.extents) else mib * 2048
            if kind == 'F':
                name = f'{stem}-f{i:03d}.vmdk'
                with open(os.path.join(d, name), 'wb') as f:
                    f.truncate(mib * MiB)
                lines.append(f'RW {sectors} FLAT "{name}" 0')
            else:
                name = f'{stem}-s{i:03d}.vmdk'
                tmp = os.path.join(d, 'one.vmdk')
                sh([QEMU_IMG, 'create', '-q', '-f', 'vmdk', '-o', 'subformat=twoGbMaxExtentSparse', tmp, f'{mib}M'])
                os.rename(os.path.join(d, 'one-s001.vmdk'), os.path.join(d, name))
                os.unlink(tmp)
                lines.append(f'RW {sectors} SPARSE "{name}"')
        total = sum(mib for _, mib in self.extents) * 2048
        with open(image, 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                    f'createType="{self.create_type}"\n\n# Extent description\n' + '\n'.join(lines) +
                    '\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n'
                    f'ddb.geometry.cylinders = "{min(total // (16 * 63), 16383)}"\n'
                    'ddb.geometry.heads = "16"\nddb.geometry.sectors = "63"\nddb.adapterType = "ide"\n')


class Cowd:
    """A COWD (vmfsSparse) file qemu reads but cannot create (plugins/vmdk/tests/vmdk_vmware_images.py),
    alone or (`descriptor`) as the VMFSSPARSE extent of a vmfsSparse descriptor: `mib` MiB, grains of
    `grain` sectors, data in the first and last grains, `missing` directory entries without a table."""

    def __init__(self, mib, grain, descriptor=False, missing=()):
        self.mib, self.grain, self.descriptor, self.missing = mib, grain, descriptor, missing

    def make(self, image):
        sectors = self.mib * 2048
        grains = {0: b'\x11' * 4096, sectors // self.grain - 1: b'\x44' * 512}
        if not self.descriptor:
            vm.cowd(image, sectors, self.grain, grains, missing_tables=self.missing)
            return
        stem = os.path.splitext(os.path.basename(image))[0]
        extent = os.path.join(os.path.dirname(image), stem + '-delta.vmdk')
        vm.cowd(extent, sectors, self.grain, grains, cid_text=False, missing_tables=self.missing)
        vm.descriptor(image, 'vmfsSparse', [(sectors, 'VMFSSPARSE', os.path.basename(extent))])


def set_ref_size(ref, size):
    with open(ref, 'r+b') as f:
        f.truncate(size)


def checks(fmt, image, ref, want, problems):
    for ver, (qemu_img, _) in QEMUS.items():
        got = virtual_size(fmt, image, qemu_img)
        if got != want:
            problems.append(f'qemu {ver} virtual size {got} != {want}')
        if fmt != 'vpc':
            p = sh([qemu_img, 'check', '-f', fmt, image], check=False)
            if p.returncode != 0:
                problems.append(f'qemu {ver} check rc {p.returncode}: {p.stdout.strip()} {p.stderr.strip()}')
    ly = libyal_size(fmt, image)
    if ly is None and any(open(f, 'rb').read(4) == b'COWD' for f in [image] + extent_files(fmt, image)):
        pass  # libvmdk does not read COWD (vmfsSparse) extents
    elif ly != want:
        problems.append(f'{LIBYAL[fmt]} media size {ly} != {want}')
    if not compare(fmt, ref, image, want):
        problems.append('content differs from the reference')


# Larger disks are compared in windows (start, middle, end): qemu has no block status for vhdx or
# flat vmdk extents, so a whole compare would read every byte.
WHOLE_COMPARE_MAX = 4 * GiB
WINDOW = 64 * MiB


def compare(fmt, ref, image, size):
    """True when the image's content equals the raw reference's (both `size` bytes)."""
    if size <= WHOLE_COMPARE_MAX:
        return sh([QEMU_IMG, 'compare', '-q', '-f', 'raw', '-F', fmt, ref, image], check=False).returncode == 0
    for start in (0, (size // 2) // MiB * MiB, size - WINDOW):
        a = f'driver=raw,offset={start},size={WINDOW},file.driver=file,file.filename={ref}'
        b = f'driver=raw,offset={start},size={WINDOW},file.driver={fmt},file.file.filename={image}'
        if sh([QEMU_IMG, 'compare', '-q', '--image-opts', a, b], check=False).returncode != 0:
            return False
    return True


def write_both(fmt, image, ref, offset, length, pattern):
    for f, path in ((fmt, image), ('raw', ref)):
        sh([QEMU_IO, '-f', f, '-c', f'write -P {pattern} {offset} {length}', path])


def run_case(tools, name, fmt, create, writes, steps, results, footer=False):
    """steps: (new size, shrink) in order; after each, checks and a write at the new end (not with
    `footer`: qemu appends a grain after the footer, which then no longer ends the file)."""
    if not wanted(name):
        return
    with tempfile.TemporaryDirectory(prefix='rf-') as d:
        image = os.path.join(d, 'img.' + ('vhd' if fmt == 'vpc' else fmt))
        ref = os.path.join(d, 'ref.raw')
        make_image(fmt, create, image)
        for off, length, pat in writes:
            sh([QEMU_IO, '-f', fmt, '-c', f'write -P {pat} {off} {length}', image])
        if footer:
            move_directory_to_footer(image)
        make_ref(fmt, image, ref)
        stream = not hasattr(create, 'make') and 'subformat=streamOptimized' in ' '.join(create)
        for i, (size, shrink) in enumerate(steps):
            label = f'{name} step {i + 1}: {"shrink" if shrink else "grow"} to {size}'
            problems = []
            try:
                rc, _, err = resize(tools, fmt, image, size, shrink)
                if rc != 0:
                    problems.append(f'resize rc {rc}: {err.strip()}')
                else:
                    want = expected_size(fmt, size, d)
                    set_ref_size(ref, want)
                    checks(fmt, image, ref, want, problems)
                    # A shrink's dropped extent files are removed; nothing else is left beside it.
                    named = {os.path.basename(f) for f in extent_files(fmt, image)}
                    stray = set(os.listdir(d)) - {os.path.basename(image), 'ref.raw'} - named
                    if stray:
                        problems.append(f'files left beside the image: {sorted(stray)}')
                    if footer:
                        pass
                    elif not problems and stream and not shrink:
                        # qemu writes a streamOptimized image a whole unallocated grain at a time
                        # (the disk's last one from its start): the grown end is one.
                        start = (want - 1) // STREAM_GRAIN * STREAM_GRAIN
                        write_both(fmt, image, ref, start, want - start, 0x6b)
                        checks(fmt, image, ref, want, problems)
                    elif not problems and not stream:
                        end = want - 512 * 3
                        write_both(fmt, image, ref, end, 512 * 3, 0x6b)
                        checks(fmt, image, ref, want, problems)
            except RuntimeError as e:
                problems.append(str(e))
            results.append((label, problems))
            if problems:
                return


def run_refusal(tools, name, fmt, create, size, shrink, want_text, results, footer=False):
    if not wanted(name):
        return
    with tempfile.TemporaryDirectory(prefix='rf-') as d:
        image = os.path.join(d, 'img.' + fmt)
        make_image(fmt, create, image)
        if footer:
            move_directory_to_footer(image)
            virtual_size(fmt, image)  # qemu opens it (raises otherwise)
        stamp = lambda f: (os.stat(f).st_size, os.stat(f).st_mtime_ns)  # noqa: E731 (files may be GiBs)
        before = {f: stamp(f) for f in [image] + extent_files(fmt, image)}
        rc, _, err = resize(tools, fmt, image, size, shrink)
        problems = []
        if rc != 1 or want_text not in err:
            problems.append(f'rc {rc}, stderr {err.strip()!r} (wanted a refusal naming {want_text!r})')
        for f, st in before.items():
            if stamp(f) != st:
                problems.append(f'{os.path.basename(f)} changed')
        results.append((f'{name}: refused', problems))


def run_crash(tools, name, fmt, create, writes, size, shrink, results, footer=False, between=False):
    """Kills the resize at every file-changing call: old or new content, an image qemu accepts.
    `between`: a size between the two is accepted too when the content is the old one cut there (a
    sparse extent set dropping whole extents: the descriptor switches first, the kept last extent's
    header follows)."""
    if not wanted(name):
        return
    with tempfile.TemporaryDirectory(prefix='rfc-') as d:
        base = os.path.join(d, 'base')
        os.mkdir(base)
        image_name = 'img.' + ('vhd' if fmt == 'vpc' else fmt)
        image = os.path.join(base, image_name)
        make_image(fmt, create, image)
        for off, length, pat in writes:
            sh([QEMU_IO, '-f', fmt, '-c', f'write -P {pat} {off} {length}', image])
        if footer:
            move_directory_to_footer(image)
        old_size = virtual_size(fmt, image)
        new_size = expected_size(fmt, size, d)
        ref_old = os.path.join(d, 'old.raw')
        make_ref(fmt, image, ref_old)
        ref_new = os.path.join(d, 'new.raw')
        sh(['cp', '--sparse=always', ref_old, ref_new])
        set_ref_size(ref_new, new_size)
        full = os.path.join(d, 'full')
        copy_dir(base, full)
        rc, total, err = resize(tools, fmt, os.path.join(full, image_name), size, shrink)
        if rc != 0 or (not total and tools.get('via') != 'instar'):
            results.append((f'{name}: crash baseline', [f'rc {rc} {err.strip()}']))
            return
        n = 0
        while True:
            n += 1
            if total and n > total:
                break
            run_dir = os.path.join(d, f'k{n}')
            copy_dir(base, run_dir)
            img = os.path.join(run_dir, image_name)
            problems = []
            rc, _, err = resize(tools, fmt, img, size, shrink, kill=n)
            if not total and rc == 0:  # instar: past its last write
                shutil.rmtree(run_dir)
                break
            # The host's kill hook ends the process at once; under its seccomp filter that may show as
            # SIGSYS (-31) rather than exit 137: either way nothing after it ran.
            if rc not in (137, -31, -9):
                problems.append(f'not killed (rc {rc}: {err.strip()})')
            try:
                got = virtual_size(fmt, img)
                mid = between and min(old_size, new_size) < got < max(old_size, new_size)
                if got not in (old_size, new_size) and not mid:
                    problems.append(f'size {got} is neither {old_size} nor {new_size}')
                if mid:
                    ref_mid = os.path.join(d, 'mid.raw')
                    sh(['cp', '--sparse=always', ref_old, ref_mid])
                    set_ref_size(ref_mid, got)
                if fmt != 'vpc':
                    p = sh([QEMU_IMG, 'check', '-f', fmt, img], check=False)
                    if p.returncode not in (0, 3):
                        problems.append(f'check rc {p.returncode}: {p.stdout.strip()}')
                ref = ref_new if got == new_size else ref_mid if mid else ref_old
                if not compare(fmt, ref, img, got):
                    problems.append(f'content is not the {"new" if ref is ref_new else "old"} one')
            except RuntimeError as e:
                problems.append(str(e))
            results.append((f'{name}: killed at write {n}/{total or "?"}', problems))
            shutil.rmtree(run_dir)


def run_drop_policy(tools, results):
    """instar resize removes a dropped extent file only when it is the image's own NAME-* file beside
    it and no kept extent uses it; crafted descriptors naming another file, or one file twice, keep
    them (a warning), and the shrink still happens."""
    cases = [
        # (label, extent lines (name, sectors, offset), files to make, new size, kept files)
        ('other name', [('img-f001.vmdk', 2048, 0), ('other.raw', 2048, 0)], ['img-f001.vmdk', 'other.raw'], MiB,
         ['other.raw']),
        ('one file twice', [('img-f001.vmdk', 2048, 0), ('img-f001.vmdk', 2048, 2048)], ['img-f001.vmdk'], MiB,
         ['img-f001.vmdk']),
        ('own name', [('img-f001.vmdk', 2048, 0), ('img-f002.vmdk', 2048, 0)], ['img-f001.vmdk', 'img-f002.vmdk'], MiB,
         []),
    ]
    for label, lines, make, size, kept in cases:
        name = f'vmdk dropped files policy: {label} (instar)'
        if not wanted(name):
            continue
        with tempfile.TemporaryDirectory(prefix='rfp-') as d:
            for f in make:
                with open(os.path.join(d, f), 'wb') as out:
                    out.truncate(2 * MiB)
            text = ('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                    'createType="twoGbMaxExtentFlat"\n\n# Extent description\n' +
                    ''.join(f'RW {n} FLAT "{f}" {o}\n' for f, n, o in lines) +
                    '\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = "4"\n')
            image = os.path.join(d, 'img.vmdk')
            with open(image, 'w') as out:
                out.write(text)
            p = sh([tools['instar'], 'resize', '-f', 'vmdk', '--shrink', image, str(size)], check=False)
            problems = []
            if p.returncode != 0:
                problems.append(f'rc {p.returncode}: {p.stderr.strip()}')
            left = sorted(set(os.listdir(d)) - {'img.vmdk'})
            want_left = sorted(set(kept) | {lines[0][0]})
            if left != want_left:
                problems.append(f'files {left}, wanted {want_left}')
            if kept and 'left in place' not in p.stderr:
                problems.append(f'no warning: {p.stderr.strip()!r}')
            try:
                if virtual_size('vmdk', image) != size:
                    problems.append('not shrunk')
            except RuntimeError as e:
                problems.append(str(e))
            results.append((name, problems))


ONLY = os.environ.get('RESIZE_FORMATS_ONLY')  # run only the cases whose name contains this


def wanted(name):
    if ONLY and ONLY not in name:
        return False
    print(f'... {name}', flush=True)
    return True


DATA = [(0, 3 * MiB, 0x5a), (60 * MiB, 4 * MiB, 0x33)]
# streamOptimized (qemu's: tables after the header): 64 KiB grains; a disk ending 3 KiB into its last
# grain, written (qemu's compressed grains hold only what was written: the resize deflates it again
# whole on a grow).
STREAM_GRAIN = 64 * 1024
STREAM = ['-o', 'subformat=streamOptimized', str(64 * MiB + 3072)]
STREAM_DATA = [(0, 3 * MiB, 0x5a), (60 * MiB, 4 * MiB, 0x33), (64 * MiB, 3072, 0x44)]


def main():
    tools, status = start(__doc__.strip().splitlines()[-1], 4, required=list(set(LIBYAL.values())))
    if tools is None:
        return status
    tools = dict(zip(('vpc', 'vhdx', 'vmdk', 'instar'), (os.path.abspath(t) for t in tools)))
    host = dict(tools, via='instar')
    results = []
    # vpc
    for sub in ('dynamic', 'fixed'):
        run_case(tools, f'vpc {sub}', 'vpc', ['-o', f'subformat={sub}', str(64 * MiB)], DATA,
                 [(200 * MiB, False), (61 * MiB + 7, True), (300 * MiB, False), (20 * MiB, True)], results)
    run_case(tools, 'vpc dynamic, BAT relocated', 'vpc', [str(64 * MiB)], DATA,
             [(3 * GiB, False), (62 * MiB, True), (65 * MiB, False)], results)
    run_crash(tools, 'vpc dynamic grow (BAT relocated)', 'vpc', [str(64 * MiB)], DATA, 1 * GiB, False, results)
    run_crash(tools, 'vpc dynamic shrink', 'vpc', [str(64 * MiB)], DATA, 30 * MiB, True, results)
    run_refusal(tools, 'vpc shrink without --shrink', 'vpc', [str(64 * MiB)], 32 * MiB, False, '--shrink', results)
    # vhdx
    for sub in ('dynamic', 'fixed'):
        run_case(tools, f'vhdx {sub}', 'vhdx', ['-o', f'subformat={sub}', str(64 * MiB)], DATA,
                 [(1 * GiB, False), (61 * MiB + 512, True), (70 * MiB, False), (8 * MiB, True)], results)
    run_case(tools, 'vhdx fixed, block_state_zero=off', 'vhdx',
             ['-o', 'subformat=fixed,block_state_zero=off', str(60 * MiB)], [(0, MiB, 0x11), (56 * MiB, 4 * MiB, 0x22)],
             [(1000 * MiB, False), (59 * MiB + 512, True), (70 * MiB, False)], results)
    run_case(tools, 'vhdx dynamic 1 MiB blocks, BAT relocated', 'vhdx', ['-o', 'block_size=1M', str(64 * MiB)], DATA,
             [(200 * GiB, False), (63 * MiB, True), (64 * MiB, False)], results)
    run_crash(tools, 'vhdx dynamic grow (BAT relocated)', 'vhdx', ['-o', 'block_size=1M', str(64 * MiB)], DATA,
              130 * GiB, False, results)
    run_crash(tools, 'vhdx fixed shrink', 'vhdx', ['-o', 'subformat=fixed,block_state_zero=off', str(64 * MiB)],
              DATA, 33 * MiB, True, results)
    run_refusal(tools, 'vhdx shrink without --shrink', 'vhdx', [str(64 * MiB)], 32 * MiB, False, '--shrink', results)
    # vmdk
    run_case(tools, 'vmdk monolithicSparse', 'vmdk', [str(64 * MiB)], DATA,
             [(1 * GiB, False), (10 * GiB, False), (61 * MiB, True), (100 * MiB, False)], results)
    run_case(tools, 'vmdk monolithicFlat', 'vmdk', ['-o', 'subformat=monolithicFlat', str(64 * MiB)], DATA,
             [(1 * GiB, False), (61 * MiB, True), (100 * MiB, False)], results)
    run_case(tools, 'vmdk twoGbMaxExtentFlat', 'vmdk', ['-o', 'subformat=twoGbMaxExtentFlat', str(3 * GiB)],
             [(0, MiB, 0x5a), (2047 * MiB, 4 * MiB, 0x33)],
             [(5 * GiB + 512 * MiB, False), (5 * GiB + 100 * MiB, True), (7 * GiB, False)], results)
    run_crash(tools, 'vmdk monolithicSparse grow (directory moved)', 'vmdk', [str(64 * MiB)], DATA, 10 * GiB, False,
              results)
    run_crash(tools, 'vmdk twoGbMaxExtentFlat grow (new extents)', 'vmdk',
              ['-o', 'subformat=twoGbMaxExtentFlat', str(3 * GiB)], [(0, MiB, 0x5a)], 7 * GiB, False, results)
    run_case(tools, 'vmdk streamOptimized', 'vmdk', STREAM, STREAM_DATA,
             [(1 * GiB, False), (61 * MiB + 512, True), (100 * MiB, False), (10 * GiB, False)], results)
    run_crash(tools, 'vmdk streamOptimized grow (last grain deflated again, directory moved)', 'vmdk', STREAM,
              STREAM_DATA, 10 * GiB, False, results)
    # VMware's layout: the directory after the grains, the header in a footer (made from qemu's).
    run_case(tools, 'vmdk streamOptimized, footer', 'vmdk', STREAM, STREAM_DATA,
             [(1 * GiB, False), (61 * MiB + 512, True), (100 * MiB, False), (3 * GiB, False), (64 * MiB, True)],
             results, footer=True)
    run_crash(tools, 'vmdk streamOptimized, footer grow', 'vmdk', STREAM, STREAM_DATA, 10 * GiB, False, results,
              footer=True)
    run_crash(tools, 'vmdk streamOptimized, footer shrink', 'vmdk', STREAM, STREAM_DATA, 61 * MiB + 512, True,
              results, footer=True)
    run_case(tools, 'vmdk twoGbMaxExtentSparse', 'vmdk', ['-o', 'subformat=twoGbMaxExtentSparse', str(3 * GiB)],
             [(0, MiB, 0x5a), (2047 * MiB, 2 * MiB, 0x33), (3071 * MiB, MiB, 0x44)],
             [(5 * GiB + 512 * MiB, False), (5 * GiB + 100 * MiB, True), (6 * GiB, False)], results)
    run_crash(tools, 'vmdk twoGbMaxExtentSparse grow (new extents)', 'vmdk',
              ['-o', 'subformat=twoGbMaxExtentSparse', str(3 * GiB)], [(0, MiB, 0x5a)], 7 * GiB, False, results)
    run_crash(tools, 'vmdk twoGbMaxExtentSparse shrink (last extent)', 'vmdk',
              ['-o', 'subformat=twoGbMaxExtentSparse', str(3 * GiB)], [(3071 * MiB, MiB, 0x44)], 2 * GiB + 7 * MiB, True,
              results)
    # Shrinks dropping whole extent files (removed after the descriptor switch).
    run_case(tools, 'vmdk twoGbMaxExtentSparse shrink dropping files', 'vmdk',
             ['-o', 'subformat=twoGbMaxExtentSparse', str(5 * GiB)],
             [(0, MiB, 0x5a), (2047 * MiB, 2 * MiB, 0x33), (4095 * MiB, 2 * MiB, 0x44)],
             [(1 * GiB + 7 * MiB, True), (2 * GiB, False), (2 * GiB, True), (5 * GiB, False), (4 * GiB, True)], results)
    run_case(tools, 'vmdk twoGbMaxExtentFlat shrink dropping files', 'vmdk',
             ['-o', 'subformat=twoGbMaxExtentFlat', str(5 * GiB)],
             [(0, MiB, 0x5a), (2047 * MiB, 2 * MiB, 0x33), (4095 * MiB, 2 * MiB, 0x44)],
             [(1 * GiB + 7 * MiB, True), (3 * GiB, False), (2 * GiB, True)], results)
    run_crash(tools, 'vmdk twoGbMaxExtentSparse shrink dropping files', 'vmdk',
              ['-o', 'subformat=twoGbMaxExtentSparse', str(5 * GiB)], [(2047 * MiB, 2 * MiB, 0x33), (4095 * MiB, MiB, 0x44)],
              1 * GiB + 7 * MiB, True, results, between=True)
    run_crash(tools, 'vmdk twoGbMaxExtentFlat shrink dropping files', 'vmdk',
              ['-o', 'subformat=twoGbMaxExtentFlat', str(5 * GiB)], [(2047 * MiB, 2 * MiB, 0x33), (4095 * MiB, MiB, 0x44)],
              1 * GiB + 7 * MiB, True, results)
    # Descriptors mixing FLAT and SPARSE extents, or SPARSE extents under another createType qemu
    # opens: the last extent decides the grow, the kept one the cut.
    steps = [(5 * GiB, False), (2100 * MiB, True), (100 * MiB, True), (3 * GiB, False)]
    run_case(tools, 'vmdk monolithicFlat, FLAT then SPARSE', 'vmdk', Mixed('monolithicFlat', ('F', 64), ('S', 64)),
             DATA, [(1 * GiB, False), (100 * MiB, True), (61 * MiB, True), (100 * MiB, False)], results)
    run_case(tools, 'vmdk twoGbMaxExtentFlat, SPARSE last', 'vmdk',
             Mixed('twoGbMaxExtentFlat', ('F', 64), ('S', 64)), DATA, steps, results)
    run_case(tools, 'vmdk twoGbMaxExtentSparse, FLAT last', 'vmdk',
             Mixed('twoGbMaxExtentSparse', ('S', 64), ('F', 64)), DATA, steps, results)
    run_case(tools, 'vmdk monolithicFlat, one SPARSE extent', 'vmdk', Mixed('monolithicFlat', ('S', 128)), DATA,
             steps, results)
    run_crash(tools, 'vmdk monolithicFlat, SPARSE last grows in place', 'vmdk',
              Mixed('monolithicFlat', ('F', 64), ('S', 64)), DATA, 10 * GiB, False, results)
    run_crash(tools, 'vmdk twoGbMaxExtentFlat, SPARSE last shrinks dropping files', 'vmdk',
              Mixed('twoGbMaxExtentFlat', ('S', 64), ('F', 64), ('S', 64)), DATA, 100 * MiB, True, results,
              between=True)
    run_refusal(tools, 'vmdk sparse extent header and descriptor disagree', 'vmdk',
                Mixed('monolithicFlat', ('F', 64), ('S', 64), line_sectors=100000), 1 * GiB, False,
                'disagree on its size', results)
    # COWD (vmfsSparse): the header's size is the switch; a grow gives the exposed directory entries
    # zeroed tables (a hole), moving the directory when it is too short; a regrow reads zeros.
    cowd_steps = [(1 * GiB, False), (5 * MiB, True), (200 * MiB, False), (9 * MiB + 512, True), (100 * MiB, False)]
    run_case(tools, 'vmdk COWD alone', 'vmdk', Cowd(10, 8), [(4 * MiB, 2 * MiB, 0x5a)], cowd_steps, results)
    run_case(tools, 'vmdk COWD behind a vmfsSparse descriptor', 'vmdk', Cowd(16, 2, descriptor=True, missing=(2,)),
             [(1 * MiB, MiB, 0x5a)], cowd_steps, results)
    run_crash(tools, 'vmdk COWD grow (directory moved)', 'vmdk', Cowd(10, 8), [(4 * MiB, 2 * MiB, 0x5a)], 3 * GiB,
              False, results)
    run_crash(tools, 'vmdk COWD extent shrink', 'vmdk', Cowd(16, 2, descriptor=True), [(1 * MiB, MiB, 0x5a)],
              3 * MiB, True, results)
    run_refusal(tools, 'vmdk COWD past 2 TiB', 'vmdk', Cowd(10, 8), 2 * 1024 * GiB, False, 'at most 2 TiB', results)
    # The same through `instar resize` (host command, sandboxed guest module).
    for sub in ('dynamic', 'fixed'):
        run_case(host, f'vpc {sub} (instar)', 'vpc', ['-o', f'subformat={sub}', str(64 * MiB)], DATA,
                 [(300 * MiB, False), (61 * MiB + 7, True)], results)
        run_case(host, f'vhdx {sub} (instar)', 'vhdx', ['-o', f'subformat={sub}', str(64 * MiB)], DATA,
                 [(1 * GiB, False), (61 * MiB + 512, True)], results)
    for sub in ('monolithicSparse', 'monolithicFlat'):
        run_case(host, f'vmdk {sub} (instar)', 'vmdk', ['-o', f'subformat={sub}', str(64 * MiB)], DATA,
                 [(10 * GiB, False), (61 * MiB, True)], results)
    run_case(host, 'vmdk twoGbMaxExtentFlat (instar)', 'vmdk', ['-o', 'subformat=twoGbMaxExtentFlat', str(3 * GiB)],
             [(0, MiB, 0x5a), (2047 * MiB, 4 * MiB, 0x33)], [(7 * GiB, False), (6 * GiB + 7 * MiB, True)], results)
    run_case(host, 'vmdk twoGbMaxExtentSparse (instar)', 'vmdk', ['-o', 'subformat=twoGbMaxExtentSparse', str(3 * GiB)],
             [(0, MiB, 0x5a), (3071 * MiB, MiB, 0x44)], [(6 * GiB, False), (5 * GiB + 7 * MiB, True)], results)
    run_case(host, 'vmdk streamOptimized (instar)', 'vmdk', STREAM, STREAM_DATA, [(200 * MiB, False), (61 * MiB, True)],
             results)
    run_case(host, 'vmdk twoGbMaxExtentSparse shrink dropping files (instar)', 'vmdk',
             ['-o', 'subformat=twoGbMaxExtentSparse', str(5 * GiB)], [(0, MiB, 0x5a), (4095 * MiB, 2 * MiB, 0x44)],
             [(1 * GiB + 7 * MiB, True), (3 * GiB, False)], results)
    run_case(host, 'vmdk twoGbMaxExtentFlat shrink dropping files (instar)', 'vmdk',
             ['-o', 'subformat=twoGbMaxExtentFlat', str(5 * GiB)], [(0, MiB, 0x5a), (4095 * MiB, 2 * MiB, 0x44)],
             [(2 * GiB, True)], results)
    run_drop_policy(host, results)
    run_case(host, 'vmdk COWD behind a vmfsSparse descriptor (instar)', 'vmdk', Cowd(16, 2, descriptor=True),
             [(1 * MiB, MiB, 0x5a)], [(2 * GiB, False), (7 * MiB, True)], results)
    run_case(host, 'vmdk vmfs, SPARSE then FLAT (instar)', 'vmdk', Mixed('vmfs', ('S', 64), ('F', 64)), DATA,
             [(3 * GiB, False), (100 * MiB, True), (61 * MiB, True)], results)
    run_case(host, 'vmdk streamOptimized, footer (instar)', 'vmdk', STREAM, STREAM_DATA,
             [(200 * MiB, False), (61 * MiB, True)], results, footer=True)
    run_crash(host, 'vpc dynamic grow (BAT relocated) (instar)', 'vpc', [str(64 * MiB)], DATA, 1 * GiB, False, results)
    run_crash(host, 'vhdx fixed grow (instar)', 'vhdx', ['-o', 'subformat=fixed,block_state_zero=off', str(64 * MiB)],
              DATA, 200 * MiB, False, results)
    run_crash(host, 'vmdk monolithicSparse grow (directory moved) (instar)', 'vmdk', [str(64 * MiB)], DATA, 10 * GiB,
              False, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())

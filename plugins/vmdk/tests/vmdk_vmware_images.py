"""Hand-built VMware-only vmdk extents qemu reads but cannot create (layouts from qemu's
block/vmdk.c): COWD (VMDK3, vmfsSparse; vmdk_open_vmfs_sparse) and seSparse (vmdk_open_se_sparse).

cowd(path, sectors, grain_sectors, grains, ...) writes a COWD file; grains maps a grain index to
its bytes (or None for an allocated table with an unallocated entry). sesparse(...) writes a
seSparse extent file; grains maps a grain index to bytes, 'zero' or 'unmapped'.
descriptor(path, create_type, extents) writes a descriptor file.
move_directory_to_footer(image) turns a qemu-made streamOptimized image into VMware's layout.
"""
import struct

SECTOR = 512
COWD_GTES = 4096          # qemu: vmdk_add_extent(..., 4096, granularity)
SE_GTES = 4096            # grain_table_size 64 sectors of 8-byte entries
SE_GRAIN_SECTORS = 8      # the only grain size qemu accepts


def _ceil(a, b):
    return (a + b - 1) // b


def cowd(path, sectors, grain_sectors, grains, cid_text=True, gd_entries=None, missing_tables=()):
    """A COWD file: header, a CID window at 0x200 (qemu's vmdk_read_cid needs one), the grain
    directory at sector 32, every grain table not in missing_tables, then the grains in index order."""
    l1_span = COWD_GTES * grain_sectors
    l1_size = gd_entries if gd_entries is not None else _ceil(sectors, l1_span)
    gd_sector = 32
    gt_sector0 = gd_sector + _ceil(l1_size * 4, SECTOR)
    tables = [i for i in range(l1_size) if i not in missing_tables]
    gt_sectors = COWD_GTES * 4 // SECTOR
    next_sector = gt_sector0 + len(tables) * gt_sectors
    gd = [0] * l1_size
    gts = {}
    for n, i in enumerate(tables):
        gd[i] = gt_sector0 + n * gt_sectors
        gts[i] = [0] * COWD_GTES
    body = []
    for g in sorted(grains):
        data = grains[g]
        if data is None:
            continue
        gts[g // COWD_GTES][g % COWD_GTES] = next_sector
        body.append((next_sector, data.ljust(grain_sectors * SECTOR, b'\0')))
        next_sector += grain_sectors
    with open(path, 'wb') as f:
        f.write(b'COWD' + struct.pack('<10I', 1, 3, sectors, grain_sectors, gd_sector, l1_size, next_sector,
                                      0, 0, 0))
        if cid_text:
            f.seek(0x200)
            f.write(b'# Disk DescriptorFile\nversion=1\nCID=0badcafe\nparentCID=ffffffff\n')
        f.seek(gd_sector * SECTOR)
        f.write(struct.pack('<%dI' % l1_size, *gd))
        for i in tables:
            f.seek(gd[i] * SECTOR)
            f.write(struct.pack('<%dI' % COWD_GTES, *gts[i]))
        for at, data in body:
            f.seek(at * SECTOR)
            f.write(data)
        f.truncate(next_sector * SECTOR)


def se_allocated(index):
    """A seSparse grain-table entry for grain `index` of the grains area (qemu's decoding inverted)."""
    return 0x3000000000000000 | ((index & 0xfff) << 48) | (index >> 12)


def sesparse(path, sectors, grains, replay_journal=0, version=0x0000000200000001, gd_top=0x10000000):
    """A seSparse extent file: const header (sector 0), volatile header (sector 1), the grain
    directory (sector 2), grain tables (64 sectors each), then 4 KiB grains."""
    span = SE_GTES * SE_GRAIN_SECTORS
    l1_size = _ceil(sectors, span)
    gd_sectors = max(1, _ceil(l1_size * 8, SECTOR))
    gd_entries = gd_sectors * SECTOR // 8
    gd_sector = 2
    gt_offset = gd_sector + gd_sectors
    tables = sorted({g // SE_GTES for g in grains})
    gt_sectors = SE_GTES * 8 // SECTOR
    grains_offset = gt_offset + max(1, len(tables)) * gt_sectors
    gd = [0] * gd_entries
    gts = {}
    for n, t in enumerate(tables):
        gd[t] = (gd_top << 32) | n
        gts[t] = [0] * SE_GTES
    data_list = []
    for g in sorted(grains):
        v = grains[g]
        t, i = g // SE_GTES, g % SE_GTES
        if v == 'zero':
            gts[t][i] = 0x2000000000000000
        elif v == 'unmapped':
            gts[t][i] = 0x1000000000000000
        else:
            gts[t][i] = se_allocated(len(data_list))
            data_list.append(v.ljust(SE_GRAIN_SECTORS * SECTOR, b'\0'))
    const = struct.pack('<26Q', 0xcafebabe, version, sectors, SE_GRAIN_SECTORS, 64, 0, 0, 0, 0, 0,
                        1, 1, 0, 0, 0, 0, gd_sector, gd_sectors, gt_offset, len(tables) * gt_sectors,
                        0, 0, 0, 0, grains_offset, len(data_list) * SE_GRAIN_SECTORS).ljust(SECTOR, b'\0')
    volatile = struct.pack('<4Q', 0xcafecafe, len(tables), 1, replay_journal).ljust(SECTOR, b'\0')
    with open(path, 'wb') as f:
        f.write(const + volatile)
        f.write(struct.pack('<%dQ' % gd_entries, *gd))
        for n, t in enumerate(tables):
            f.seek((gt_offset + n * gt_sectors) * SECTOR)
            f.write(struct.pack('<%dQ' % SE_GTES, *gts[t]))
        f.seek(grains_offset * SECTOR)
        for d in data_list:
            f.write(d)
        f.truncate((grains_offset + len(data_list) * SE_GRAIN_SECTORS) * SECTOR)


def descriptor(path, create_type, extents, parent_hint=None):
    """extents: [(sectors, type, file name)]."""
    lines = ['# Disk DescriptorFile', 'version=1', 'CID=1234abcd', 'parentCID=ffffffff',
             'createType="%s"' % create_type]
    if parent_hint:
        lines[3] = 'parentCID=%s' % parent_hint[1]
        lines.append('parentFileNameHint="%s"' % parent_hint[0])
    lines += ['', '# Extent description']
    lines += ['RW %d %s "%s"' % e for e in extents]
    lines += ['', 'ddb.virtualHWVersion = "4"', '']
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


def move_directory_to_footer(image):
    """A qemu-made streamOptimized image as VMware writes them: no redundant directory, the header's
    directory offset GD_AT_END, the real header in a footer (footer marker, magic + header,
    end-of-stream marker)."""
    with open(image, 'r+b') as f:
        head = bytearray(f.read(512))
        flags = struct.unpack_from('<I', head, 8)[0] & ~2  # VMDK4_FLAG_RGD
        struct.pack_into('<IQ', head, 8, flags, struct.unpack_from('<Q', head, 12)[0])
        head[48:56] = bytes(8)  # rgd_offset
        f.seek(0, 2)
        end = (f.tell() + 511) // 512 * 512
        marker = lambda kind: struct.pack('<QII', 1 if kind == 3 else 0, 0, kind) + bytes(496)  # noqa: E731
        footer = bytes(head[:512])
        f.seek(end)
        f.write(marker(3) + footer + marker(0))
        head[56:64] = struct.pack('<Q', 0xffffffffffffffff)
        f.seek(0)
        f.write(head)

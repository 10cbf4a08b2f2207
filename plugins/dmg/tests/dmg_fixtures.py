"""DMG (UDIF) fixture builder for the dmg plugin's tests: qemu-img cannot create dmg images.

An image is the data fork (the chunks' stored bytes), then the block table, either as an XML
property list whose blkx <data> elements hold base64 "mish" blocks or as a binary resource fork
(qemu reads both), then the 512-byte koly trailer.
"""
import base64
import bz2
import random
import struct
import zlib

UDZE, UDRW, UDIG = 0, 1, 2
UDZO, UDBZ, ULFO = 0x80000005, 0x80000006, 0x80000007
UDCM, UDLE = 0x7ffffffe, 0xffffffff


def mish(chunks, sector_number=0, data_offset=0, magic=0x6d697368):
    """A mish block: chunks are (type, first sector, sector count, offset, length), the sector
    relative to sector_number and the offset to data_offset (plus the data fork's offset)."""
    hdr = bytearray(204)
    struct.pack_into('>IIQQQII', hdr, 0, magic, 1, sector_number, sum(c[2] for c in chunks), data_offset, 0, 1)
    struct.pack_into('>I', hdr, 200, len(chunks))
    return bytes(hdr) + b''.join(struct.pack('>IIQQQQ', t, 0, s, n, o, l) for (t, s, n, o, l) in chunks)


def trailer(sectors, data_len, rsrc=(0, 0), xml=(0, 0), data_fork_offset=0):
    k = bytearray(512)
    struct.pack_into('>4sIII', k, 0, b'koly', 4, 512, 1)
    struct.pack_into('>QQQQQ', k, 0x10, 0, data_fork_offset, data_len, rsrc[0], rsrc[1])
    struct.pack_into('>QQ', k, 0xd8, xml[0], xml[1])
    struct.pack_into('>Q', k, 0x1ec, sectors)
    return bytes(k)


def plist(blocks, wrap=True):
    x = ('<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
         '\t<key>resource-fork</key>\n\t<dict>\n\t\t<key>blkx</key>\n\t\t<array>\n')
    for n, m in enumerate(blocks):
        b64 = base64.b64encode(m).decode()
        if wrap:
            b64 = '\n'.join('\t\t\t' + b64[i:i + 52] for i in range(0, len(b64), 52))
        x += (f'\t\t\t<dict>\n\t\t\t\t<key>Name</key>\n\t\t\t\t<string>part {n}</string>\n'
              f'\t\t\t\t<key>Data</key>\n\t\t\t\t<data>\n{b64}\n\t\t\t\t</data>\n\t\t\t</dict>\n')
    x += '\t\t</array>\n\t</dict>\n</dict>\n</plist>\n'
    return x.encode()


def resource_fork(blocks):
    """Binary resource fork: a 256-byte header (data offset, map offset, data length), then each
    resource as a 32-bit length and its bytes."""
    payload = b''.join(struct.pack('>I', len(m)) + m for m in blocks)
    head = bytearray(256)
    struct.pack_into('>IIII', head, 0, 256, 256 + len(payload), len(payload), 0)
    return bytes(head) + payload + bytes(28)  # an empty resource map


def image(sectors, blocks, data, binary=False, pad=b''):
    out = bytearray(data) + pad
    if binary:
        rs = resource_fork(blocks)
        k = trailer(sectors, len(data), rsrc=(len(out), len(rs)))
    else:
        rs = plist(blocks)
        k = trailer(sectors, len(data), xml=(len(out), len(rs)))
    return bytes(out + rs + k)


def pattern(n, seed):
    return bytes((i * 31 + seed * 7 + (i >> 9)) & 0xff for i in range(n))


def sample(binary=False, with_bz2=False, with_lzfse=False):
    """Every chunk type qemu reads: raw, zlib, zero (0 and 2), comment and terminator entries, two
    mish blocks (the second with its own sector and data offsets); bz2/lzfse chunks on request."""
    raw = pattern(512 * 8, 1)
    z1 = zlib.compress(pattern(512 * 16, 2))
    z2 = zlib.compress(bytes(512 * 4) + pattern(512 * 4, 3), 9)
    data = raw + z1 + z2
    first = [(UDRW, 0, 8, 0, len(raw)), (UDZO, 8, 16, len(raw), len(z1)), (UDZE, 24, 8, 0, 0),
             (UDCM, 32, 0, 0, 0), (UDIG, 32, 8, 0, 0), (UDLE, 40, 0, 0, 0)]
    second_data = len(raw) + len(z1)
    second = [(UDZO, 0, 8, 0, len(z2)), (UDZE, 8, 8, 0, 0)]
    sectors = 56
    if with_bz2:
        b = bz2.compress(pattern(512 * 4, 4))
        second.append((UDBZ, 16, 4, len(z2), len(b)))
        data += b
        sectors += 4
    if with_lzfse:
        second.append((ULFO, sectors - 40, 4, 0, 16))
        sectors += 4
    second.append((UDLE, sectors - 40, 0, 0, 0))
    blocks = [mish(first), mish(second, sector_number=40, data_offset=second_data)]
    return image(sectors, blocks, data, binary=binary)


def large(seed):
    """A 24 MiB disk for progress output: 1 MiB raw, a 16 MiB zero chunk, 1 MiB of zlib, 6 MiB raw."""
    rnd = random.Random(seed)
    mib = 2048  # sectors
    raw1 = rnd.randbytes(1 << 20)
    z = zlib.compress(rnd.randbytes(1 << 19) + bytes(1 << 19), 1)
    raw2 = rnd.randbytes(6 << 20)
    chunks = [(UDRW, 0, mib, 0, len(raw1)), (UDZE, mib, 16 * mib, 0, 0),
              (UDZO, 17 * mib, mib, len(raw1), len(z)), (UDRW, 18 * mib, 6 * mib, len(raw1) + len(z), len(raw2)),
              (UDLE, 24 * mib, 0, 0, 0)]
    return image(24 * mib, [mish(chunks)], raw1 + z + raw2)

"""VHDX images whose log needs replay, built by hand (qemu-img never leaves one behind).

with_pending_log(src, dst, writes=(), zeros=(), grow=0): dst is src with one valid log entry
(sequence 1, a fresh log GUID in the current header): qemu's vhdx_log_search finds it, so a
read-only open refuses the image and a read-write open (convert -n, check -r all) replays it. The
entry holds a data descriptor per (file_offset, 4096 bytes) in `writes` and a zero descriptor per
(file_offset, length) in `zeros`; its last file offset is the file's length + `grow` (an unaligned
value makes the replay grow the file to the next MiB); `flushed` overrides its flushed file offset. Layout from qemu's block/vhdx.h and
vhdx-log.c (entry header, descriptors, data sectors, CRC-32C with the checksum field as zero).

block_offset(path, index): the file offset of payload block `index` (FULLY_PRESENT), from the
region table's BAT entry.
"""
import shutil
import struct
import uuid

_T = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _T.append(_c)

SECTOR = 4096
BAT_GUID = uuid.UUID("2DC27766-F623-4200-9D64-115E9BFD4A08").bytes_le


def crc32c(data):
    c = 0xffffffff
    for x in data:
        c = _T[(c ^ x) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff


def block_offset(path, index):
    with open(path, "rb") as f:
        f.seek(192 * 1024)
        t = f.read(64 * 1024)
        count = struct.unpack_from("<I", t, 8)[0]
        for i in range(count):
            e = t[16 + 32 * i:48 + 32 * i]
            if e[:16] == BAT_GUID:
                f.seek(struct.unpack_from("<Q", e, 16)[0] + 8 * index)
                entry = struct.unpack("<Q", f.read(8))[0]
                assert entry & 7 == 6, "block %d is not fully present" % index
                return entry & ~0xfffff
    raise ValueError("no BAT region in " + path)


def with_pending_log(src, dst, writes=(), zeros=(), grow=0, flushed=None):
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        headers = []
        for off in (64 * 1024, 128 * 1024):
            f.seek(off)
            h = bytearray(f.read(4096))
            headers.append((struct.unpack_from("<Q", h, 8)[0], off, h))
        _, off, h = max(headers)
        guid = uuid.uuid4().bytes
        h[48:64] = guid
        _log_length, log_offset = struct.unpack_from("<IQ", h, 68)
        struct.pack_into("<I", h, 4, 0)
        struct.pack_into("<I", h, 4, crc32c(bytes(h)))
        f.seek(off)
        f.write(h)
        size = f.seek(0, 2)
        seq = 1
        count = len(writes) + len(zeros)
        desc_sectors = (count + 2 + 127) // 128
        e = bytearray(SECTOR * (desc_sectors + len(writes)))
        e[0:4] = b"loge"
        struct.pack_into("<IIQII", e, 8, len(e), 0, seq, count, 0)  # entry length, tail, sequence, descriptors
        e[32:48] = guid
        # flushed and last file offsets (a flushed offset past the end fails the replay: -EINVAL)
        struct.pack_into("<QQ", e, 48, size if flushed is None else flushed, size + grow)
        at = 64
        for i, (file_offset, data) in enumerate(writes):
            assert len(data) == SECTOR
            e[at:at + 4] = b"desc"
            e[at + 4:at + 8] = data[SECTOR - 4:]
            e[at + 8:at + 16] = data[:8]
            struct.pack_into("<QQ", e, at + 16, file_offset, seq)
            d = SECTOR * (desc_sectors + i)
            e[d:d + SECTOR] = b"data" + struct.pack("<I", seq >> 32) + data[8:SECTOR - 4] + \
                struct.pack("<I", seq & 0xffffffff)
            at += 32
        for file_offset, length in zeros:
            e[at:at + 4] = b"zero"
            struct.pack_into("<IQQQ", e, at + 4, 0, length, file_offset, seq)
            at += 32
        struct.pack_into("<I", e, 4, crc32c(bytes(e)))
        f.seek(log_offset)
        f.write(e)

"""VHDX images whose log needs replay, built by hand (qemu-img never leaves one behind).

with_pending_log(src, dst): dst is src with a valid log entry (no descriptors, sequence 1, a fresh
log GUID in the current header): qemu's vhdx_log_search finds it, so a read-only open refuses the
image and a read-write open (convert -n, check -r all) replays it. Layout from qemu's
block/vhdx.h and vhdx-log.c (entry header, CRC-32C with the checksum field as zero).
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


def crc32c(data):
    c = 0xffffffff
    for x in data:
        c = _T[(c ^ x) & 0xff] ^ (c >> 8)
    return c ^ 0xffffffff


def with_pending_log(src, dst):
    shutil.copyfile(src, dst)
    with open(dst, 'r+b') as f:
        headers = []
        for off in (64 * 1024, 128 * 1024):
            f.seek(off)
            h = bytearray(f.read(4096))
            headers.append((struct.unpack_from('<Q', h, 8)[0], off, h))
        _, off, h = max(headers)
        guid = uuid.uuid4().bytes
        h[48:64] = guid
        _log_length, log_offset = struct.unpack_from('<IQ', h, 68)
        struct.pack_into('<I', h, 4, 0)
        struct.pack_into('<I', h, 4, crc32c(bytes(h)))
        f.seek(off)
        f.write(h)
        size = f.seek(0, 2)
        e = bytearray(4096)
        e[0:4] = b'loge'
        struct.pack_into('<IIQII', e, 8, 4096, 0, 1, 0, 0)  # entry length, tail, sequence, descriptors
        e[32:48] = guid
        struct.pack_into('<QQ', e, 48, size, size)  # flushed and last file offsets
        struct.pack_into('<I', e, 4, crc32c(bytes(e)))
        f.seek(log_offset)
        f.write(e)

#!/usr/bin/env python3
"""Differential test of `instar info` against qemu-img 7.2 and 10.0.

Images are generated here with qemu-img and qemu-io (formats x options x sizes x written data,
snapshots, bitmaps, LUKS, chains); for each one, instar's human and JSON output must equal each
oracle's, byte for byte, under the matching profile. Deliberate differences (docs/quirks.md) are
checked separately for instar's own behaviour.

Usage: test_info_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402

IMAGES = []  # (file name, [commands]) -- commands run in the work directory


def image(name, *cmds):
    IMAGES.append((name, list(cmds)))


def q(*args):
    return ["QIMG"] + list(args)


def io(fmt, f, *ops):
    cmd = ["QIO", "-f", fmt]
    for op in ops:
        cmd += ["-c", op]
    return cmd + [f]


# qcow2: versions, cluster sizes, refcount widths, features, sizes, data.
for size in ["0", "1M", "64M", "1G", "1T"]:
    image("q3-%s.qcow2" % size, q("create", "-q", "-f", "qcow2", "q3-%s.qcow2" % size, size))
image("q2.qcow2", q("create", "-q", "-f", "qcow2", "-o", "compat=0.10", "q2.qcow2", "64M"))
for cs in ["512", "4k", "2M"]:
    image("qc%s.qcow2" % cs, q("create", "-q", "-f", "qcow2", "-o", "cluster_size=" + cs, "qc%s.qcow2" % cs, "64M"))
for rb in ["1", "64"]:
    image("qr%s.qcow2" % rb, q("create", "-q", "-f", "qcow2", "-o", "refcount_bits=" + rb, "qr%s.qcow2" % rb, "64M"))
image("qfeat.qcow2", q("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on,extended_l2=on,compression_type=zstd",
                       "qfeat.qcow2", "1G"))
image("qdata.qcow2", q("create", "-q", "-f", "qcow2", "qdata.qcow2", "64M"),
      io("qcow2", "qdata.qcow2", "write -P 0xab 0 3M", "write -z 8M 1M", "write -c 16M 64k"))
image("qsnap.qcow2", q("create", "-q", "-f", "qcow2", "qsnap.qcow2", "64M"),
      io("qcow2", "qsnap.qcow2", "write 0 1M"), q("snapshot", "-c", "first", "qsnap.qcow2"),
      io("qcow2", "qsnap.qcow2", "write 1M 1M"), q("snapshot", "-c", "second one", "qsnap.qcow2"))
image("qbm.qcow2", q("create", "-q", "-f", "qcow2", "qbm.qcow2", "64M"),
      q("bitmap", "--add", "qbm.qcow2", "b0"), q("bitmap", "--add", "-g", "1M", "qbm.qcow2", "b1"),
      q("bitmap", "--add", "--disable", "qbm.qcow2", "b2"))
image("qluks.qcow2", q("create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw",
                       "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "qluks.qcow2", "16M"))
image("base.qcow2", q("create", "-q", "-f", "qcow2", "base.qcow2", "64M"), io("qcow2", "base.qcow2", "write 0 64k"))
image("ov.qcow2", q("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2"))
image("ov2.qcow2", q("create", "-q", "-f", "qcow2", "-b", "ov.qcow2", "-F", "qcow2", "ov2.qcow2"))
image("ovraw.qcow2", q("create", "-q", "-f", "raw", "base.raw", "8M"),
      q("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "ovraw.qcow2"))
image("ovnofmt.qcow2", q("create", "-q", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "ovnofmt.qcow2", "1M"))
# vmdk subformats
for sub in ["monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]:
    image("v-%s.vmdk" % sub, q("create", "-q", "-f", "vmdk", "-o", "subformat=" + sub, "v-%s.vmdk" % sub, "3G"))
# 500 extents: more devices than one guest took before INSTAR_MAX_DEVICES covered vmdk's 32768.
image("v-1000g.vmdk", q("create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "v-1000g.vmdk", "1000G"))
image("v6.vmdk", q("create", "-q", "-f", "vmdk", "-o", "compat6=on,adapter_type=lsilogic", "v6.vmdk", "100M"))
# VMware-only vmdk extents qemu reads but cannot create (plugins/vmdk/tests/vmdk_vmware_images.py).
VMWARE = ("import sys\nsys.path.insert(0, %r)\nfrom vmdk_vmware_images import *\n" %
          os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "vmdk", "tests"))
image("w-cowd.vmdk", ["python3", "-c", VMWARE + "cowd('w-cowd.vmdk', 204800, 128, {0: b'1' * 512})"])
image("w-vmfs.vmdk", ["python3", "-c", VMWARE + "cowd('w-vmfs-x.vmdk', 204800, 8, {3: b'1' * 512}, cid_text=False)\n"
                      "descriptor('w-vmfs.vmdk', 'vmfsSparse', [(204800, 'VMFSSPARSE', 'w-vmfs-x.vmdk')])"])
image("w-se.vmdk", ["python3", "-c", VMWARE + "sesparse('w-se-x.vmdk', 204800, {0: b'1' * 512, 9: 'zero'})\n"
                    "descriptor('w-se.vmdk', 'seSparse', [(204800, 'SESPARSE', 'w-se-x.vmdk')])"])
# vpc / vhdx
for sub in ["dynamic", "fixed"]:
    image("p-%s.vpc" % sub, q("create", "-q", "-f", "vpc", "-o", "subformat=" + sub, "p-%s.vpc" % sub, "100M"))
image("pforce.vpc", q("create", "-q", "-f", "vpc", "-o", "force_size=on", "pforce.vpc", "100M"))
for sub in ["dynamic", "fixed"]:
    image("x-%s.vhdx" % sub, q("create", "-q", "-f", "vhdx", "-o", "subformat=" + sub, "x-%s.vhdx" % sub, "100M"))
image("xbs.vhdx", q("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "xbs.vhdx", "1G"),
      io("vhdx", "xbs.vhdx", "write 0 2M"))
# raw with a partition table (an MBR boot signature)
image("mbr.raw", q("create", "-q", "-f", "raw", "mbr.raw", "10M"),
      io("raw", "mbr.raw", "write -P 0x55 510 1", "write -P 0xaa 511 1"))

# qcow2 with an external data file (the data file itself is not an image of the table).
image("qdf.qcow2", q("create", "-q", "-f", "qcow2", "-o", "data_file=qdf.data", "qdf.qcow2", "64M"),
      io("qcow2", "qdf.qcow2", "write -P 0x11 1M 64k"))
image("qdfraw.qcow2", q("create", "-q", "-f", "qcow2", "-o", "data_file=qdfraw.data,data_file_raw=on",
                        "qdfraw.qcow2", "64M"))
# A name qemu would read as protocol "colon" unless written file:colon:x.qcow2 (or ./colon:x.qcow2).
image("colon:x.qcow2", q("create", "-q", "-f", "qcow2", "file:colon:x.qcow2", "1M"))
image("comma,x.qcow2", q("create", "-q", "-f", "qcow2", "comma,x.qcow2", "1M"))

# Image names as the user writes them (docs/info.md, "Image names"): stdout, stderr and the exit
# status must be qemu-img's.
NAMES = [
    ["file:qdata.qcow2"], ["file:colon:x.qcow2"], ["--output=json", "file:colon:x.qcow2"], ["colon:x.qcow2"],
    ["./colon:x.qcow2"], ["file:missing.qcow2"],
    ['json:{"driver":"qcow2","file":{"driver":"file","filename":"qdata.qcow2"}}'],
    ['json:{"file":{"driver":"file","filename":"qdata.qcow2"}}'], ['json:{"file.filename":"qdata.qcow2"}'],
    ["--output=json", 'json:{"file":{"filename":"v-twoGbMaxExtentSparse.vmdk"}}'],
    ['json:{"driver":"vpc","file.filename":"p-dynamic.vpc"}'],
    ['json:{"driver":"vhdx","file.filename":"x-dynamic.vhdx"}'],
    ['json:{"driver":"raw","file.filename":"mbr.raw"}'],
    ['json:{"driver":"qcow2","file.filename":"qdata.qcow2","foo":1}'],
    ['json:{"file.filename":"qdata.qcow2","foo":1}'],
    ['json:{"driver":"nope","file.filename":"qdata.qcow2"}'],
    ['json:{"driver":"qcow2"'], ["json:[]"], ["json:{}"], ['json:{"file.filename":"missing.qcow2"}'],
    ['json:{"driver":"qcow2","file.filename":"qdata.qcow2","encrypt.key-secret":"s0"}'],
    ["--output=json", 'json:{"file.filename":"qluks.qcow2","encrypt.key-secret":"s0"}'],
    ['json:{"driver":"qcow2","file.filename":"ov.qcow2","backing":null}'],
    ["--backing-chain", 'json:{"file.filename":"ov2.qcow2"}'],
    ["--image-opts", "driver=raw,file.filename=mbr.raw"], ["--image-opts", "file.filename=qdata.qcow2"],
    ["--image-opts", "driver=qcow2,file.driver=file,file.filename=qdata.qcow2,file.locking=off"],
    ["--output=json", "--image-opts", "driver=qcow2,file.filename=qdata.qcow2,encrypt.key-secret=s0"],
    ["--image-opts", "file.filename=qdata.qcow2,foo=bar"], ["--image-opts", "qdata.qcow2"], ["--image-opts", ""],
    ["--image-opts", "driver=qcow2"], ["--image-opts", "file.filename=comma,,x.qcow2"],
    ["-f", "raw", "--image-opts", "driver=raw,file.filename=mbr.raw"],
    ["qdf.qcow2"], ["--output=json", "qdfraw.qcow2"],
    ["--image-opts", "driver=qcow2,file.filename=ov.qcow2,backing="],
    ["--image-opts", "file.filename=qdata.qcow2,file.foo=1"],
]
# Names instar refuses where qemu-img would reach a network, a device or an option it lacks:
# (arguments, text the error must contain).
NAMES_REFUSED = [
    (['json:{"file":{"driver":"nbd","host":"localhost"}}'], "protocol 'nbd' is not supported"),
    (["nbd://localhost/x"], "protocol 'nbd' is not supported"),
    (["--image-opts", "driver=qcow2,file.driver=host_device,file.filename=/dev/null"],
     "protocol 'host_device' is not supported"),
    (['json:{"driver":"raw","file.filename":"mbr.raw","offset":512}'], "option 'offset' is not supported"),
]

CHAINS = ["ov2.qcow2", "ovraw.qcow2"]
# Images where instar deliberately differs (docs/quirks.md): what instar must print instead.
DIVERGENT = {
    "p-fixed.vpc": "file format: vpc\n",  # vpc-fixed-probe: qemu-img's probe calls a fixed VHD raw
}
EXTENSION_FORMAT = {"qcow2": "qcow2", "vmdk": "vmdk", "vpc": "vpc", "vhdx": "vhdx", "raw": "raw"}
# instar extensions (docs/info.md). --ignore-quirks: qemu's output with true file sizes and exact
# size text (docs/quirks.md); [image, extra args] -- every image of a chain is affected.
IGNORE_QUIRKS = [["qdata.qcow2"], ["v-twoGbMaxExtentSparse.vmdk"], ["v-twoGbMaxExtentFlat.vmdk"],
                 ["ov2.qcow2", "--backing-chain"]]
# --extra-detail: nothing beyond qemu's output for any supported format (reserved for VDI).
EXTRA_DETAIL = [["qdata.qcow2"], ["v-twoGbMaxExtentSparse.vmdk"], ["p-dynamic.vpc"], ["x-dynamic.vhdx"],
                ["mbr.raw"], ["ov2.qcow2", "--backing-chain"]]


# Corrupt images: (file, format, [(offset, struct format, value) patched in], text instar must
# print instead of qemu-img's exact line when its own limit is the stricter one). qcow2 header
# fields: l1_size @36, refcount_table_clusters @56, nb_snapshots @60, incompatible_features @72;
# VHD: the dynamic header follows the footer copy at 512 (max_table_entries @28, block_size @32).
CORRUPT = [
    ("c-l1small.qcow2", "qcow2", [(36, ">I", 0)], None),
    ("c-l1big.qcow2", "qcow2", [(36, ">I", 0x400001)], None),
    ("c-incompat.qcow2", "qcow2", [(72, ">Q", 0x100)], None),
    ("c-incompat2.qcow2", "qcow2", [(72, ">Q", 0x8000000000000020)], None),
    ("c-snaps.qcow2", "qcow2", [(60, ">I", 0x10001)], None),
    ("c-norefcount.qcow2", "qcow2", [(56, ">I", 0)], None),
    ("c-refcountbig.qcow2", "qcow2", [(56, ">I", 0x10000)], None),
    ("c-refcountorder.qcow2", "qcow2", [(96, ">I", 7)], None),
    ("c-cluster.qcow2", "qcow2", [(20, ">I", 22)], None),
    ("c-maxtable.vpc", "vpc", [(512 + 28, ">I", 0x20000000)], None),
    ("c-maxtable2.vpc", "vpc", [(512 + 28, ">I", 0x80000000)], None),
    ("c-maxtable-instar.vpc", "vpc", [(512 + 28, ">I", 0x1000001)],
     "Max Table Entries 16777217 exceeds instar's limit VPC_MAX_TABLE_ENTRIES (16777216)"),
    ("c-blocksize.vpc", "vpc", [(512 + 32, ">I", 1000)], None),
    ("c-checksum.vpc", "vpc", [(24, ">I", 5)], None),
    ("c-magic.vpc", "vpc", [(512, ">I", 5)], None),
    ("trunc.vpc", "vpc", [(0, "truncate", 2 << 20)], None),
]


def exact_size(n):
    """instar's size text under --ignore-quirks: integer when whole in its unit, else one decimal
    rounded half up; the unit is the largest power of 1024 the value reaches."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while i < 6 and n >= 1024 ** (i + 1):
        i += 1
    if n % 1024 ** i == 0:
        return "%d %s" % (n // 1024 ** i, units[i])
    tenths = (n * 10 + 1024 ** i // 2) // 1024 ** i
    if tenths >= 10240 and i < 6:
        i += 1
        tenths = (n * 10 + 1024 ** i // 2) // 1024 ** i
    return "%d.%d %s" % (tenths // 10, tenths % 10, units[i])


def true_sizes(work, nodes):
    """{image: st_size of the image plus its extent files} from qemu 10.0's JSON nodes."""
    total = {}
    for node in nodes:
        extents = [c["info"]["filename"] for c in node.get("children", []) if c["name"].startswith("extents.")]
        total[node["filename"]] = sum(os.stat(os.path.join(work, f)).st_size for f in [node["filename"]] + extents)
    return total


def without_quirks_human(work, text, total):
    """qemu-img's human output with only the --ignore-quirks fields changed."""
    out, top, cur = [], None, None
    for line in text.split("\n"):
        body = line.lstrip(" ")
        ind = line[:len(line) - len(body)]
        key, _, value = body.partition(": ")
        if key in ("image", "filename"):
            cur = value
            if not ind:
                top = value
        elif key == "disk size":
            line = ind + "disk size: " + exact_size(total[top] if not ind else os.stat(os.path.join(work, cur)).st_size)
        elif key == "virtual size" and value.endswith(" bytes)"):
            n = int(value.rsplit("(", 1)[1].split()[0])
            line = ind + "virtual size: %s (%d bytes)" % (exact_size(n), n)
        elif key == "file length":
            n = os.stat(os.path.join(work, cur)).st_size
            line = ind + "file length: %s (%d bytes)" % (exact_size(n), n)
        out.append(line)
    return "\n".join(out)


def without_quirks_json(work, value, total):
    """qemu-img's JSON with true file sizes in actual-size and the file children's virtual-size."""
    for node in value if isinstance(value, list) else [value]:
        node["actual-size"] = total[node["filename"]]
        for c in node.get("children", []):
            c["info"]["actual-size"] = c["info"]["virtual-size"] = \
                os.stat(os.path.join(work, c["info"]["filename"])).st_size
    return json.dumps(value, indent=4)


def formats_with_info(instar):
    out = subprocess.run([instar, "formats", "--output=json"], capture_output=True, text=True, check=True).stdout
    return {p["name"] for p in json.loads(out) if "info" in p["capabilities"]}


# vmdk and vhdx damage: (file, create arguments, patches, text instar must print where its own
# limit is the stricter one). Patches: (offset, struct format, value); (offset, "bytes", b"..");
# (text, "sub", replacement) in a descriptor; (offset, "crc32c", length) recomputes a VHDX header
# (4 KiB) or region table (64 KiB) checksum; ("meta", guid bytes_le hex, offset in item, format,
# value) patches a VHDX metadata item; ("metahdr", offset, format, value) the metadata table header.
VMDK = ["-f", "vmdk"]
VMDK_FLAT = ["-f", "vmdk", "-o", "subformat=monolithicFlat"]
VHDX = ["-f", "vhdx"]
VHDX_1M, VHDX_2M = VHDX + ["-o", "block_size=1M"], VHDX + ["-o", "block_size=2M"]
BAT = 2 << 20  # the BAT region of a qemu-made VHDX with the default 1 MiB log
H1, H2, R1, R2 = 64 << 10, 128 << 10, 192 << 10, 256 << 10
FIX_HEADERS = [(H1, "crc32c", 4096), (H2, "crc32c", 4096)]
FIX_REGIONS = [(R1, "crc32c", 65536), (R2, "crc32c", 65536)]
FILE_PARAMS = "3767a1ca36fa434db3b633f0aa44e76b"
VDISK_SIZE = "2442a52f1bcd7648b2115dbed83bf4b8"
LOGICAL_SECTOR = "1dbf41816fa90947ba47f233a8faab5f"
CORRUPT_MORE = [
    ("d-version.vmdk", VMDK, [(4, "<I", 4)], None),
    ("d-gtes.vmdk", VMDK, [(44, "<I", 1024)], None),
    ("d-gran0.vmdk", VMDK, [(20, "<Q", 0)], None),
    ("d-grainoff.vmdk", VMDK, [(64, "<Q", 1 << 30)], None),
    ("d-gdend.vmdk", VMDK, [(56, "<Q", (1 << 64) - 1)], None),
    ("d-trunc.vmdk", VMDK, [(0, "truncate", 1024)], None),
    ("d-capacity.vmdk", VMDK, [(12, "<Q", 1 << 40)],
     "Capacity 1099511627776 sectors exceeds instar's limit VMDK_MAX_EXTENT_SECTORS (137438953472)"),
    ("d-createtype.vmdk", VMDK_FLAT, [('createType="monolithicFlat"', "sub", 'createTypo="monolithicFlat"')], None),
    ("d-extenttype.vmdk", VMDK_FLAT, [("RW 131072 FLAT", "sub", "RW 131072 BOGUS")], None),
    ("d-sectors.vmdk", VMDK_FLAT, [("RW 131072 FLAT", "sub", "RW 99999999999999999 FLAT")], None),
    ("d-missing.vmdk", VMDK_FLAT, [("d-missing-flat.vmdk", "sub", "nothere.vmdk")], None),
    ("d-flatbig.vmdk", VMDK_FLAT, [("RW 131072 FLAT", "sub", "RW 1099511627776 FLAT")],
     "Extent of 1099511627776 sectors exceeds instar's limit VMDK_MAX_EXTENT_SECTORS (137438953472)"),
    ("d-ident.vhdx", VHDX, [(0, "bytes", b"vhdxfilX")], None),
    ("d-headers.vhdx", VHDX, [(H1, "bytes", b"hexd"), (H2, "bytes", b"hexd")], None),
    ("d-hcsum.vhdx", VHDX, [(H1 + 100, "bytes", b"x"), (H2 + 100, "bytes", b"x")], None),
    ("d-hversion.vhdx", VHDX, [(H1 + 66, "<H", 2), (H2 + 66, "<H", 2)] + FIX_HEADERS, None),
    ("d-logversion.vhdx", VHDX, [(H1 + 64, "<H", 3), (H2 + 64, "<H", 3)] + FIX_HEADERS, None),
    ("d-regions.vhdx", VHDX, [(R1, "bytes", b"rexi"), (R2, "bytes", b"rexi")], None),
    ("d-rcsum.vhdx", VHDX, [(R1 + 200, "bytes", b"x"), (R2 + 200, "bytes", b"x")], None),
    ("d-rcount.vhdx", VHDX, [(R1 + 8, "<I", 5000), (R2 + 8, "<I", 5000)] + FIX_REGIONS, None),
    ("d-blocksize.vhdx", VHDX, [("meta", FILE_PARAMS, 0, "<I", 3 << 20)], None),
    ("d-blocksize0.vhdx", VHDX, [("meta", FILE_PARAMS, 0, "<I", 0)], None),
    ("d-vsize.vhdx", VHDX, [("meta", VDISK_SIZE, 0, "<Q", 1 << 50)], None),
    ("d-lsector.vhdx", VHDX, [("meta", LOGICAL_SECTOR, 0, "<I", 1000)], None),
    ("d-hasparent.vhdx", VHDX, [("meta", FILE_PARAMS, 4, "<I", 2)], None),
    ("d-mcount.vhdx", VHDX, [("metahdr", 10, "<H", 3000)], None),
    ("d-msig.vhdx", VHDX, [("metahdr", 0, "bytes", b"metadatX")], None),
    ("d-trunc.vhdx", VHDX, [(0, "truncate", 1 << 20)], None),
    # Overlaps: qemu error_reports "VHDX region A-B overlaps with region C-D" (or the BAT entry's
    # line) before its error; region entry 0 is the BAT (2 MiB), entry 1 the metadata (3 MiB).
    ("d-rbat.vhdx", VHDX, [(R1 + 64, "<Q", 0x280000), (R2 + 64, "<Q", 0x280000)] + FIX_REGIONS, None),
    ("d-rlog.vhdx", VHDX, [(R1 + 32, "<Q", 0x180000), (R2 + 32, "<Q", 0x180000)] + FIX_REGIONS, None),
    ("d-rorder.vhdx", VHDX, [(R1 + 64, "<Q", 0x180000), (R2 + 64, "<Q", 0x180000)] + FIX_REGIONS, None),
    ("d-batmeta.vhdx", VHDX_1M, [(BAT, "<Q", 0x300006)], None),
    ("d-batlog.vhdx", VHDX_1M, [(BAT + 8, "<Q", 0x100006)], None),
    ("d-batstart.vhdx", VHDX_1M, [(BAT, "<Q", 0x800006)], None),
    ("d-batend.vhdx", VHDX_2M, [(BAT, "<Q", 0x700006)], None),
    ("d-batwrap.vhdx", VHDX_1M, [(BAT, "<Q", 0xFFFFFFFFFFF00006)], None),
]


def crc32c(data):
    table = crc32c.table
    crc = 0xffffffff
    for b in data:
        crc = table[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


crc32c.table = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    crc32c.table.append(_c)


def vhdx_metadata_offset(f):
    f.seek(R1)
    r = f.read(65536)
    for i in range(struct.unpack_from("<I", r, 8)[0]):
        e = r[16 + 32 * i:48 + 32 * i]
        if e[:16].hex() == "06a27c8b90479a4bb8fe575f050f886e":
            return struct.unpack_from("<Q", e, 16)[0]
    raise ValueError("no metadata region")


def damage(path, patches):
    """Applies CORRUPT_MORE patches to the file at path."""
    for p in patches:
        if p[1] == "sub":
            with open(path, "rb") as f:
                data = f.read()
            with open(path, "wb") as f:
                f.write(data.replace(p[0].encode(), p[2].encode(), 1))
            continue
        with open(path, "r+b") as f:
            if p[0] == "meta":
                base = vhdx_metadata_offset(f)
                f.seek(base)
                t = f.read(65536)
                for i in range(struct.unpack_from("<H", t, 10)[0]):
                    e = t[32 + 32 * i:64 + 32 * i]
                    if e[:16].hex() == p[1]:
                        f.seek(base + struct.unpack_from("<I", e, 16)[0] + p[2])
                        f.write(struct.pack(p[3], p[4]))
            elif p[0] == "metahdr":
                f.seek(vhdx_metadata_offset(f) + p[1])
                f.write(p[3] if p[2] == "bytes" else struct.pack(p[2], p[3]))
            elif p[1] == "truncate":
                f.truncate(p[2])
            elif p[1] == "bytes":
                f.seek(p[0])
                f.write(p[2])
            elif p[1] == "crc32c":
                f.seek(p[0])
                block = bytearray(f.read(p[2]))
                block[4:8] = b"\0\0\0\0"
                struct.pack_into("<I", block, 4, crc32c(bytes(block)))
                f.seek(p[0])
                f.write(block)
            else:
                f.seek(p[0])
                f.write(struct.pack(p[1], p[2]))


def run(cmd, cwd, env):
    p = run_fixture(cmd, cwd=cwd, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    supported = formats_with_info(instar)
    passed = failed = skipped = 0
    work = tempfile.mkdtemp(prefix="instar-info-")
    # instar names itself after argv[0]: a link named qemu-img makes its error lines qemu-img's.
    os.mkdir(os.path.join(work, "bin"))
    qemu_named = os.path.join(work, "bin", "qemu-img")
    os.symlink(os.path.abspath(instar), qemu_named)
    try:
        for name, cmds in IMAGES:
            for c in cmds:
                c = [q72 if a == "QIMG" else qio if a == "QIO" else a for a in c]
                rc, out, err = run(c, work, env)
                if rc != 0:
                    print("SETUP FAIL %s: %s\n%s" % (name, c, err))
                    failed += 1
        for name, _ in IMAGES:
            fmt = EXTENSION_FORMAT[name.rsplit(".", 1)[1]]
            if fmt not in supported:
                skipped += 1
                continue
            if name in DIVERGENT:
                rc, out, err = run([instar, "info", name], work, env)
                if rc == 0 and DIVERGENT[name] in out:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL divergence %s: rc %d\n%s%s" % (name, rc, out, err))
                continue
            variants = [[], ["--output=json"]]
            if name in CHAINS:
                variants += [["--backing-chain"], ["--backing-chain", "--output=json"]]
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                for extra in variants:
                    args = ["info"] + extra + [name]
                    want = run([oracle] + args, work, env)
                    got = run([instar, "--qemu-version", version] + args, work, env)
                    if want[:2] == got[:2]:
                        passed += 1
                    else:
                        failed += 1
                        print("FAIL qemu-img %s %s\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                              (version, " ".join(args), want[0], want[1], want[2], got[0], got[1], got[2]))
        # --extra-detail: qemu-img's output exactly, for every supported format.
        for case in EXTRA_DETAIL:
            if EXTENSION_FORMAT[case[0].rsplit(".", 1)[1]] not in supported:
                continue
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                for extra in ([], ["--output=json"]):
                    args = ["info"] + extra + case[1:] + [case[0]]
                    want = run([oracle] + args, work, env)
                    got = run([instar, "--qemu-version", version, "info", "--extra-detail"] + args[1:], work, env)
                    if want[:2] == got[:2]:
                        passed += 1
                    else:
                        failed += 1
                        print("FAIL --extra-detail %s %s\n--- want\n%s--- got (rc %d)\n%s%s" %
                              (version, " ".join(args), want[1], got[0], got[1], got[2]))
        # --ignore-quirks: qemu-img's output with true file sizes and exact size text.
        for case in IGNORE_QUIRKS:
            if EXTENSION_FORMAT[case[0].rsplit(".", 1)[1]] not in supported:
                continue
            chain = "--backing-chain" in case
            nodes = json.loads(run([q10, "info", "--output=json"] + case[1:] + [case[0]], work, env)[1])
            total = true_sizes(work, nodes if chain else [nodes])
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                for js in (False, True):
                    args = ["info"] + (["--output=json"] if js else []) + case[1:] + [case[0]]
                    qemu = run([oracle] + args, work, env)[1]
                    got = run([instar, "--qemu-version", version, "info", "--ignore-quirks"] + args[1:], work, env)
                    if js:
                        want = without_quirks_json(work, json.loads(qemu), total)
                        ok = got[0] == 0 and json.dumps(json.loads(got[1]), indent=4) == want
                    else:
                        want = without_quirks_human(work, qemu, total)
                        ok = got[0] == 0 and got[1] == want
                    if ok and want != (json.dumps(json.loads(qemu), indent=4) if js else qemu):
                        passed += 1
                    else:
                        failed += 1
                        print("FAIL --ignore-quirks %s %s (or nothing differs from qemu-img)\n--- want\n%s\n--- got (rc %d)\n%s%s" %
                              (version, " ".join(args), want, got[0], got[1], got[2]))
        # Hostile images: names inside images never reach host files (docs/info.md, path policy).
        hostile = [
            ("evil-abs.qcow2", ["-u", "-b", "/etc/shadow", "-F", "raw"], "backing file '/etc/shadow' refused"),
            ("evil-json.qcow2", ["-u", "-b", 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}',
                                 "-F", "raw"], "json: pseudo-protocol names are never followed"),
            ("evil-nbd.qcow2", ["-u", "-b", "nbd://127.0.0.1:10809/x", "-F", "raw"], "protocol names (nbd:)"),
            ("evil-up.qcow2", ["-u", "-b", "../../../etc/hostname", "-F", "raw"], "outside the allowed directories"),
        ]
        for name, opts, want in hostile:
            run([q72, "create", "-q", "-f", "qcow2"] + opts + [name, "1M"], work, env)
            rc, out, err = run([instar, "info", "--backing-chain", name], work, env)
            if rc == 1 and want in err and out == "":
                passed += 1
            else:
                failed += 1
                print("FAIL hostile %s: rc %d out %r err %r" % (name, rc, out, err))
        with open(os.path.join(work, "evil.vmdk"), "w") as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\nRW 2048 FLAT "/etc/passwd" 0\n')
        rc, out, err = run([instar, "info", "evil.vmdk"], work, env)
        if rc == 1 and "extent file '/etc/passwd' refused" in err and out == "":
            passed += 1
        else:
            failed += 1
            print("FAIL hostile vmdk extent: rc %d out %r err %r" % (rc, out, err))
        # A loop: two images naming each other.
        run([q72, "create", "-q", "-f", "qcow2", "-u", "-b", "loop-b.qcow2", "-F", "qcow2", "loop-a.qcow2", "1M"], work, env)
        run([q72, "create", "-q", "-f", "qcow2", "-u", "-b", "loop-a.qcow2", "-F", "qcow2", "loop-b.qcow2", "1M"], work, env)
        # qemu-img's own words for it (instar runs as "qemu-img" so the prefix matches too).
        for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
            want = run([oracle, "info", "--backing-chain", "loop-a.qcow2"], work, env)
            got = run([qemu_named, "--qemu-version", version, "info", "--backing-chain", "loop-a.qcow2"], work, env)
            if got[0] == 1 and want == got and "creates an infinite loop." in got[2]:
                passed += 1
            else:
                failed += 1
                print("FAIL hostile loop %s: want %r got %r" % (version, want, got))

        # Corrupt images (bytes patched into qemu-made ones) get qemu-img's own words, exactly;
        # where instar's limit is stricter than qemu's, the message names the limit and the value.
        for name, fmt, patches, stricter in CORRUPT:
            size = "64M"
            cmds = [[q72, "create", "-q", "-f", fmt, name, size]]
            if name.startswith("trunc"):
                cmds.append([qio, "-f", fmt, "-c", "write 0 4M", name])
            for c in cmds:
                run(c, work, env)
            with open(os.path.join(work, name), "r+b") as f:
                for off, pack, value in patches:
                    if pack == "truncate":
                        f.truncate(value)
                        continue
                    f.seek(off)
                    f.write(struct.pack(pack, value))
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                want = run([oracle, "info", name], work, env)
                got = run([qemu_named, "--qemu-version", version, "info", name], work, env)
                ok = got[0] == 1 and got[1] == "" and (stricter in got[2] if stricter else got == want)
                if ok and not stricter and "Could not open" not in want[2]:
                    ok = False  # the patch must break the image for qemu-img too
                if ok:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL corrupt %s %s: want %r got %r" % (version, name, want, got))

        # Image names: file:, json:{...}, --image-opts.
        for args in NAMES:
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                want = run([oracle, "info"] + args, work, env)
                got = run([qemu_named, "--qemu-version", version, "info"] + args, work, env)
                if want == got:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL name %s %s\n--- want %r\n--- got  %r" % (version, args, want, got))
        for args, text in NAMES_REFUSED:
            rc, out, err = run([instar, "info"] + args, work, env)
            if rc == 1 and out == "" and text in err:
                passed += 1
            else:
                failed += 1
                print("FAIL refused name %s: rc %d %r %r" % (args, rc, out, err))

        # vmdk and vhdx damage, with -f (a damaged signature is not probed as the format).
        for name, create, patches, stricter in CORRUPT_MORE:
            run([q72, "create", "-q"] + create + [name, "64M"], work, env)
            damage(os.path.join(work, name), patches)
            fmt = create[1]
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                want = run([oracle, "info", "-f", fmt, name], work, env)
                got = run([qemu_named, "--qemu-version", version, "info", "-f", fmt, name], work, env)
                ok = got[0] == 1 and got[1] == "" and (stricter in got[2] if stricter else got == want)
                if ok and not stricter and "Could not open" not in want[2]:
                    ok = False  # the patch must break the image for qemu-img too
                if ok:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL corrupt %s %s: want %r got %r" % (version, name, want, got))

        # Deliberate differences: a file with no signature is not silently raw.
        with open(os.path.join(work, "plain.img"), "wb") as f:
            f.write(b"\0" * 65536)
        rc, out, err = run([instar, "info", "plain.img"], work, env)
        if rc == 1 and "image format not recognised" in err:
            passed += 1
        else:
            failed += 1
            print("FAIL plain file should be refused: rc %d %s" % (rc, err))
        rc, out, err = run([instar, "info", "--unsafe-quirks", "plain.img"], work, env)
        if rc == 0 and "file format: raw" in out:
            passed += 1
        else:
            failed += 1
            print("FAIL --unsafe-quirks should restore raw: rc %d %s" % (rc, err))
        # --unsafe-quirks probes as qemu-img does: a fixed VHD (footer only at the end) is raw,
        # its footer counted in the size, exactly as each oracle prints it.
        for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
            for extra in ([], ["--output=json"]):
                args = ["info"] + extra + ["p-fixed.vpc"]
                want = run([oracle] + args, work, env)
                got = run([instar, "--qemu-version", version, "info", "--unsafe-quirks"] + args[1:], work, env)
                if want[:2] == got[:2] and "raw" in want[1]:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL --unsafe-quirks fixed VHD %s %s\n--- want\n%s--- got (rc %d)\n%s%s" %
                          (version, " ".join(args), want[1], got[0], got[1], got[2]))
        # --ignore-quirks never enables an unsafe quirk; with --unsafe-quirks both apply.
        rc, out, err = run([instar, "info", "--ignore-quirks", "plain.img"], work, env)
        if rc == 1 and "image format not recognised" in err:
            passed += 1
        else:
            failed += 1
            print("FAIL --ignore-quirks must not restore raw: rc %d %s" % (rc, err))
        rc, out, err = run([instar, "info", "--ignore-quirks", "--unsafe-quirks", "plain.img"], work, env)
        if rc == 0 and "file format: raw" in out and "disk size: 64 KiB\n" in out:
            passed += 1
        else:
            failed += 1
            print("FAIL --ignore-quirks --unsafe-quirks: rc %d %s%s" % (rc, out, err))
    finally:
        shutil.rmtree(work)
    if skipped:
        print("note: %d image(s) skipped: their format's plugin has no info support yet" % skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

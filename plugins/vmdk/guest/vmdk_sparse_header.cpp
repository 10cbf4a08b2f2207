// Opening of a hosted sparse (KDMV) extent, following qemu's vmdk_open_vmdk4.
#include "vmdk_sparse_header.h"

#include "vmdk_bytes.h"

namespace instar::vmdk {

using guest::Status;

void vmdk4_header_decode(const uint8_t* p, Vmdk4Header* out) {
    Vmdk4HeaderDisk d;
    __builtin_memcpy(&d, p, sizeof d);
    out->version = load_le32(d.version);
    out->flags = load_le32(d.flags);
    out->capacity = load_le64(d.capacity);
    out->granularity = load_le64(d.granularity);
    out->desc_offset = load_le64(d.desc_offset);
    out->desc_size = load_le64(d.desc_size);
    out->num_gtes_per_gt = load_le32(d.num_gtes_per_gt);
    out->rgd_offset = load_le64(d.rgd_offset);
    out->gd_offset = load_le64(d.gd_offset);
    out->grain_offset = load_le64(d.grain_offset);
    out->compress_algorithm = load_le16(d.compress_algorithm);
}

namespace {

void store_le(uint8_t* p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

} // namespace

void vmdk4_header_encode(const Vmdk4Header& h, uint8_t out[VMDK4_HEADER_BYTES]) {
    out[0] = 'K';
    out[1] = 'D';
    out[2] = 'M';
    out[3] = 'V';
    Vmdk4HeaderDisk d{};
    store_le(d.version, h.version, 4);
    store_le(d.flags, h.flags, 4);
    store_le(d.capacity, h.capacity, 8);
    store_le(d.granularity, h.granularity, 8);
    store_le(d.desc_offset, h.desc_offset, 8);
    store_le(d.desc_size, h.desc_size, 8);
    store_le(d.num_gtes_per_gt, h.num_gtes_per_gt, 4);
    store_le(d.rgd_offset, h.rgd_offset, 8);
    store_le(d.gd_offset, h.gd_offset, 8);
    store_le(d.grain_offset, h.grain_offset, 8);
    d.check_bytes[0] = '\n';
    d.check_bytes[1] = ' ';
    d.check_bytes[2] = '\r';
    d.check_bytes[3] = '\n';
    store_le(d.compress_algorithm, h.compress_algorithm, 2);
    __builtin_memcpy(out + 4, &d, sizeof d);
}

namespace {

// The streamOptimized footer: a footer marker sector, the footer (magic + header), an
// end-of-stream marker, ending 512 bytes before the end of the file (rounded up to a sector).
Status read_footer(guest::BlockDevice& dev, Vmdk4Header* header) {
    constexpr uint64_t FOOTER_BYTES = 1536;
    const uint64_t sectors = (dev.size() + 511) / 512;
    if (sectors * 512 < FOOTER_BYTES)
        return Status::Corrupt; // qemu: "Failed to read footer"
    uint8_t f[FOOTER_BYTES];
    const Status st = read_zero_filled(dev, sectors * 512 - FOOTER_BYTES, f, sizeof f);
    if (st != Status::Ok)
        return st;
    if (load_be32(f + 512) != VMDK4_MAGIC || load_le32(f + 8) != 0 || load_le32(f + 12) != MARKER_FOOTER ||
        load_le64(f + 1024) != 0 || load_le32(f + 1032) != 0 || load_le32(f + 1036) != MARKER_END_OF_STREAM)
        return Status::Corrupt; // qemu: "Invalid footer"
    vmdk4_header_decode(f + 512 + 4, header);
    return Status::Ok;
}

} // namespace

Status vmdk_sparse_open(guest::BlockDevice& dev, VmdkSparseExtent* out, Vmdk4Header* header, bool* embedded_descriptor) {
    *embedded_descriptor = false;
    if (dev.size() < 4)
        return Status::Corrupt; // qemu: "File is too small, not a valid image"
    uint8_t raw[4 + sizeof(Vmdk4HeaderDisk)];
    Status st = read_zero_filled(dev, 0, raw, sizeof raw);
    if (st != Status::Ok)
        return st;
    const uint32_t magic = load_be32(raw);
    if (magic == VMDK3_MAGIC)
        return Status::Unsupported;
    if (magic != VMDK4_MAGIC)
        return Status::Corrupt; // qemu: "Image not in VMDK format"
    vmdk4_header_decode(raw + 4, header);
    if (header->capacity == 0 && header->desc_offset != 0) {
        *embedded_descriptor = true;
        return Status::Ok;
    }
    if (header->gd_offset == VMDK4_GD_AT_END && (st = read_footer(dev, header)) != Status::Ok)
        return st;
    const Vmdk4Header& h = *header;
    if (h.version > 3)
        return Status::Unsupported; // qemu: "Unsupported VMDK version"
    if (h.num_gtes_per_gt > VMDK_MAX_GTES_PER_GT)
        return Status::Corrupt;
    // qemu computes the L1 entry span in 32 bits and the L1 size in 32 bits; keep its results.
    const uint32_t l1_entry_sectors = static_cast<uint32_t>(h.num_gtes_per_gt * h.granularity);
    if (l1_entry_sectors == 0)
        return Status::Corrupt; // qemu: "L1 entry size is invalid"
    const uint64_t l1_wide = h.capacity / l1_entry_sectors + (h.capacity % l1_entry_sectors != 0);
    const uint32_t l1_size = static_cast<uint32_t>(l1_wide);
    if ((dev.size() + 511) / 512 < h.grain_offset)
        return Status::Corrupt; // qemu: "File truncated"
    if (h.granularity > VMDK_MAX_GRAIN_SECTORS || l1_size > VMDK_MAX_L1_SIZE)
        return Status::TooLarge; // qemu: "Invalid granularity" / "L1 size too big" (-EFBIG)
    if (h.capacity > VMDK_MAX_EXTENT_SECTORS)
        return Status::TooLarge;
    out->sectors = h.capacity;
    out->cluster_sectors = h.granularity;
    out->compressed = h.compress_algorithm == VMDK4_COMPRESSION_DEFLATE;
    return Status::Ok;
}

void vmdk_reason_append(char* buf, const char* text, uint64_t number, bool with_number) {
    size_t n = 0;
    while (n < VMDK_REASON_MAX - 1 && buf[n] != 0)
        ++n;
    for (const char* p = text; *p != 0 && n < VMDK_REASON_MAX - 1; ++p)
        buf[n++] = *p;
    if (with_number) {
        char digits[20];
        size_t k = 0;
        do {
            digits[k++] = static_cast<char>('0' + number % 10);
            number /= 10;
        } while (number != 0);
        while (k > 0 && n < VMDK_REASON_MAX - 1)
            buf[n++] = digits[--k];
    }
    buf[n] = 0;
}

Status vmdk_sparse_refusal(guest::BlockDevice& dev, Status st, const Vmdk4Header& h, char* why) {
    why[0] = 0;
    uint8_t m[4] = {};
    if (dev.size() < 4) {
        vmdk_reason_append(why, "File is too small, not a valid image");
        return st;
    }
    (void)read_zero_filled(dev, 0, m, 4);
    const uint32_t magic = load_be32(m);
    if (magic == VMDK3_MAGIC) {
        vmdk_reason_append(why, "VMFS sparse (COWD) extents are not supported");
        return Status::Unsupported;
    }
    const uint32_t l1_entry_sectors = static_cast<uint32_t>(h.num_gtes_per_gt * h.granularity);
    if (magic != VMDK4_MAGIC) {
        vmdk_reason_append(why, "Image not in VMDK format");
    } else if (h.gd_offset == VMDK4_GD_AT_END && st == Status::Corrupt) {
        vmdk_reason_append(why, "Invalid footer");
    } else if (h.version > 3) {
        vmdk_reason_append(why, "Unsupported VMDK version ", h.version, true);
    } else if (h.num_gtes_per_gt > VMDK_MAX_GTES_PER_GT) {
        vmdk_reason_append(why, "L2 table size too big");
    } else if (l1_entry_sectors == 0) {
        vmdk_reason_append(why, "L1 entry size is invalid");
    } else if ((dev.size() + 511) / 512 < h.grain_offset) {
        vmdk_reason_append(why, "File truncated, expecting at least ", h.grain_offset * 512, true);
        vmdk_reason_append(why, " bytes");
    } else if (h.granularity > VMDK_MAX_GRAIN_SECTORS) {
        vmdk_reason_append(why, "Invalid granularity, image may be corrupt");
    } else if (static_cast<uint32_t>(h.capacity / l1_entry_sectors + (h.capacity % l1_entry_sectors != 0)) >
               VMDK_MAX_L1_SIZE) {
        vmdk_reason_append(why, "L1 size too big");
    } else {
        // qemu has no such limit: name instar's.
        vmdk_reason_append(why, "Capacity ", h.capacity, true);
        vmdk_reason_append(why, " sectors exceeds instar's limit VMDK_MAX_EXTENT_SECTORS (", VMDK_MAX_EXTENT_SECTORS,
                           true);
        vmdk_reason_append(why, ")");
    }
    return st;
}

namespace {

// "0x" and 16 lower-case hex digits, as qemu's "0x%016" PRIx64.
void append_hex64(char* why, uint64_t v) {
    char hex[19] = {'0', 'x'};
    for (int i = 0; i < 16; ++i)
        hex[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    hex[18] = 0;
    vmdk_reason_append(why, hex);
}

// qemu's vmdk_add_extent checks and instar's own bounds on the directory and capacity.
Status check_alt_extent(const VmdkAltExtent& x, char* why) {
    if (x.grain_sectors > VMDK_MAX_GRAIN_SECTORS) {
        vmdk_reason_append(why, "Invalid granularity, image may be corrupt");
        return Status::TooLarge;
    }
    if (x.l1_size > VMDK_MAX_L1_SIZE) {
        vmdk_reason_append(why, "L1 size too big");
        return Status::TooLarge;
    }
    if (x.grain_sectors == 0) { // qemu divides by it (SIGFPE) on the first access
        vmdk_reason_append(why, "L1 entry size is invalid");
        return Status::Corrupt;
    }
    if (x.sectors > VMDK_MAX_EXTENT_SECTORS) {
        vmdk_reason_append(why, "Capacity ", x.sectors, true);
        vmdk_reason_append(why, " sectors exceeds instar's limit VMDK_MAX_EXTENT_SECTORS (", VMDK_MAX_EXTENT_SECTORS,
                           true);
        vmdk_reason_append(why, ")");
        return Status::TooLarge;
    }
    return Status::Ok;
}

bool all_zero(const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
        if (p[i] != 0)
            return false;
    return true;
}

} // namespace

Status vmdk_cowd_open(guest::BlockDevice& dev, VmdkAltExtent* out, char* why) {
    why[0] = 0;
    *out = VmdkAltExtent{};
    // magic, version, flags, disk_sectors, granularity, l1dir_offset, l1dir_size, file_sectors,
    // cylinders, heads, sectors_per_track: 32-bit little-endian (qemu's VMDK3Header).
    uint8_t h[44];
    if (const Status st = read_zero_filled(dev, 0, h, sizeof h); st != Status::Ok)
        return st;
    if (load_be32(h) != VMDK3_MAGIC) {
        vmdk_reason_append(why, "Image not in VMDK format");
        return Status::Corrupt;
    }
    out->sectors = load_le32(h + 12);
    out->grain_sectors = load_le32(h + 16);
    out->gd_offset = uint64_t{load_le32(h + 20)} << 9;
    out->l1_size = load_le32(h + 24);
    out->gtes = VMDK3_GTES_PER_GT;
    return check_alt_extent(*out, why);
}

Status vmdk_sesparse_open(guest::BlockDevice& dev, VmdkAltExtent* out, char* why) {
    why[0] = 0;
    *out = VmdkAltExtent{};
    uint8_t c[512];
    if (const Status st = read_zero_filled(dev, 0, c, sizeof c); st != Status::Ok)
        return st;
    auto field = [&](int i) { return load_le64(c + 8 * i); };
    if (field(0) != SESPARSE_CONST_MAGIC) {
        vmdk_reason_append(why, "Bad const header magic: ");
        append_hex64(why, field(0));
        return Status::Corrupt;
    }
    if (field(1) != SESPARSE_VERSION) {
        vmdk_reason_append(why, "Unsupported version: ");
        append_hex64(why, field(1));
        return Status::Unsupported;
    }
    if (field(3) != SESPARSE_GRAIN_SECTORS) {
        vmdk_reason_append(why, "Unsupported grain size: ", field(3), true);
        return Status::Unsupported;
    }
    if (field(4) != SESPARSE_GT_SECTORS) {
        vmdk_reason_append(why, "Unsupported grain table size: ", field(4), true);
        return Status::Unsupported;
    }
    if (field(5) != 0) {
        vmdk_reason_append(why, "Unsupported flags: ");
        append_hex64(why, field(5));
        return Status::Unsupported;
    }
    if (field(6) != 0 || field(7) != 0 || field(8) != 0 || field(9) != 0) {
        vmdk_reason_append(why, "Unsupported reserved bits: ");
        for (int i = 6; i <= 9; ++i) {
            append_hex64(why, field(i));
            if (i != 9)
                vmdk_reason_append(why, " ");
        }
        return Status::Unsupported;
    }
    if (!all_zero(c + 26 * 8, sizeof c - 26 * 8)) {
        vmdk_reason_append(why, "Unsupported non-zero const header padding");
        return Status::Unsupported;
    }
    uint8_t v[512];
    const uint64_t vh = field(10);
    if (vh > (~uint64_t{0} >> 9)) {
        vmdk_reason_append(why, "Could not read volatile header");
        return Status::Corrupt;
    }
    if (const Status st = read_zero_filled(dev, vh << 9, v, sizeof v); st != Status::Ok)
        return st;
    if (load_le64(v) != SESPARSE_VOLATILE_MAGIC) {
        vmdk_reason_append(why, "Bad volatile header magic: ");
        append_hex64(why, load_le64(v));
        return Status::Corrupt;
    }
    if (load_le64(v + 24) != 0) {
        vmdk_reason_append(why, "Image is dirty, Replaying journal not supported");
        return Status::Unsupported;
    }
    if (!all_zero(v + 32, sizeof v - 32)) {
        vmdk_reason_append(why, "Unsupported non-zero volatile header padding");
        return Status::Unsupported;
    }
    const uint64_t gd = field(16);
    if (gd > (~uint64_t{0} >> 9)) {
        vmdk_reason_append(why, "Grain directory offset is invalid");
        return Status::Corrupt;
    }
    out->sectors = field(2);
    out->grain_sectors = SESPARSE_GRAIN_SECTORS;
    out->gd_offset = gd << 9;
    // qemu: grain_dir_size * SECTOR_SIZE / sizeof(uint64_t), kept in 32 bits.
    out->l1_size = static_cast<uint32_t>(field(17) * 512 / 8);
    out->gtes = SESPARSE_GTES_PER_GT;
    out->sesparse = true;
    out->se_gt_offset = field(18);
    out->se_grains_offset = field(24);
    return check_alt_extent(*out, why);
}

} // namespace instar::vmdk

// The VDI (VirtualBox) header: its on-disk layout, little-endian helpers, and qemu's open checks
// (block/vdi.c vdi_open), shared by info, the reader, the writer and check.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::vdi {

inline constexpr uint32_t VDI_SIGNATURE = 0xbeda107f;
inline constexpr uint32_t VDI_VERSION_1_1 = 0x00010001;
inline constexpr uint32_t VDI_TYPE_DYNAMIC = 1;
inline constexpr uint32_t VDI_TYPE_STATIC = 2;
inline constexpr uint32_t VDI_UNALLOCATED = 0xffffffffu; // never allocated: reads as zeros in qemu
inline constexpr uint32_t VDI_DISCARDED = 0xfffffffeu;   // discarded: zeros
inline constexpr bool vdi_is_allocated(uint32_t e) { return e < VDI_DISCARDED; }
inline constexpr uint32_t VDI_SECTOR_SIZE = 512;
// The only block size qemu opens or creates (DEFAULT_CLUSTER_SIZE; CONFIG_VDI_BLOCK_SIZE is off).
inline constexpr uint32_t VDI_BLOCK_SIZE = 1048576;
// qemu's VDI_BLOCKS_IN_IMAGE_MAX: the block map (4 bytes an entry, rounded up to a sector) must
// fit in an int, since qemu reads it in one request.
inline constexpr uint32_t VDI_BLOCKS_IN_IMAGE_MAX = (0x80000000u - 512u) / 4u;
// qemu's VDI_DISK_SIZE_MAX: as many 1 MiB blocks as the block map can hold.
inline constexpr uint64_t VDI_DISK_SIZE_MAX = uint64_t{VDI_BLOCKS_IN_IMAGE_MAX} * VDI_BLOCK_SIZE;
inline constexpr size_t VDI_HEADER_SIZE = 512;
// The text qemu writes at the start of the images it creates.
inline constexpr char VDI_TEXT[] = "<<< QEMU VM Virtual Disk Image >>>\n";

// Byte offsets of the fields of the 512-byte header (qemu's VdiHeader, packed, little-endian).
namespace off {
inline constexpr size_t text = 0;            // char[64]
inline constexpr size_t signature = 64;
inline constexpr size_t version = 68;
inline constexpr size_t header_size = 72;
inline constexpr size_t image_type = 76;
inline constexpr size_t image_flags = 80;
inline constexpr size_t description = 84;    // char[256]
inline constexpr size_t offset_bmap = 340;
inline constexpr size_t offset_data = 344;
inline constexpr size_t cylinders = 348;
inline constexpr size_t heads = 352;
inline constexpr size_t sectors = 356;
inline constexpr size_t sector_size = 360;
inline constexpr size_t unused1 = 364;
inline constexpr size_t disk_size = 368;     // u64
inline constexpr size_t block_size = 376;
inline constexpr size_t block_extra = 380;
inline constexpr size_t blocks_in_image = 384;
inline constexpr size_t blocks_allocated = 388;
inline constexpr size_t uuid_image = 392;    // 16 bytes each
inline constexpr size_t uuid_last_snap = 408;
inline constexpr size_t uuid_link = 424;
inline constexpr size_t uuid_parent = 440;
inline constexpr size_t unused2 = 456;       // u64[7]
} // namespace off

inline uint32_t load_le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t load_le64(const uint8_t* p) { return load_le32(p) | (static_cast<uint64_t>(load_le32(p + 4)) << 32); }
inline void store_le32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_le64(uint8_t* p, uint64_t v) {
    store_le32(p, static_cast<uint32_t>(v));
    store_le32(p + 4, static_cast<uint32_t>(v >> 32));
}
inline bool add_u64(uint64_t a, uint64_t b, uint64_t* out) { return !__builtin_add_overflow(a, b, out); }

// What qemu's vdi_open establishes about an image.
struct VdiImage {
    uint8_t raw[VDI_HEADER_SIZE]; // the header as read (qemu rewrites it, updated, after allocating)
    uint32_t image_type;
    uint32_t offset_bmap;
    uint32_t offset_data;
    uint64_t disk_size; // rounded up to a sector, as qemu does for odd sizes
    uint32_t blocks_in_image;
    uint32_t blocks_allocated;
    char message[160];  // storage for a formatted refusal (*why may point here)
};

// Parses and checks a header as qemu's vdi_open does, in its order. On failure *why is qemu's
// error text and the Status is Corrupt (qemu's -EINVAL) or Unsupported (-ENOTSUP).
guest::Status vdi_load(guest::BlockDevice& dev, VdiImage* out, const char** why);

// True when the first 512 bytes carry the VDI signature at offset 64 (qemu's vdi_probe).
bool vdi_signature(const uint8_t* buf, size_t len);

} // namespace instar::vdi

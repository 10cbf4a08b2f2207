// The bochs format's guest half: the header, qemu's open rules (block/bochs.c bochs_open), probe and
// info. Layout (all little-endian), as qemu reads it:
//   0   char[32] magic "Bochs Virtual HD Image" (NUL-terminated)
//   32  char[16] type "Redolog";  48 char[16] subtype "Growing"
//   64  u32 version (0x00020000, or 0x00010000 for the older layout)
//   68  u32 header (byte offset of the catalog)   72 u32 catalog (entries)
//   76  u32 bitmap (bytes per extent bitmap)      80 u32 extent (bytes per extent)
//   v2: 84 u32 reserved, 88 u64 disk size;  v1: 84 u64 disk size
// The catalog maps extent i to a slot (0xffffffff: not allocated); slot s starts at
// header + 4 * catalog + 512 * s * (bitmap_blocks + extent_blocks): a bitmap (one bit per 512-byte
// sector, set when stored) then the extent's sectors.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::bochs {

inline constexpr size_t BOCHS_HEADER_SIZE = 512;
inline constexpr uint32_t BOCHS_VERSION_2 = 0x00020000;
inline constexpr uint32_t BOCHS_VERSION_1 = 0x00010000;
inline constexpr uint32_t BOCHS_UNALLOCATED = 0xffffffffu;
// qemu's bound on the catalog ("Catalog size is too large"): 1M entries, 4 MiB held in memory, the
// largest image bximage creates (~8 TB).
inline constexpr uint32_t BOCHS_MAX_CATALOG = 0x100000;
// qemu's bounds on the extent size: at least a sector, at most 8 MiB ("Extent size N is too large"),
// so an extent's bitmap needs at most 2 KiB.
inline constexpr uint32_t BOCHS_MIN_EXTENT = 512;
inline constexpr uint32_t BOCHS_MAX_EXTENT = 0x800000;
inline constexpr uint32_t BOCHS_MAX_BITMAP_BYTES = BOCHS_MAX_EXTENT / 512 / 8;
// qemu's BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB): a file offset past it is -EIO.
inline constexpr uint64_t BOCHS_MAX_FILE_OFFSET = 0x7fffffffc0000000ull;

struct BochsImage {
    uint32_t version;
    uint32_t header;       // catalog offset
    uint32_t catalog_size; // entries
    uint32_t bitmap;
    uint32_t extent_size;
    uint64_t disk;         // the header's disk size (bytes)
    uint64_t total_sectors;
    uint32_t data_offset;  // qemu's uint32 header + 4 * catalog (wraps as qemu's does)
    uint32_t bitmap_blocks;
    uint32_t extent_blocks;

    uint64_t virtual_size() const { return total_sectors * 512; }
};

// bochs_open's checks on the header, in its order (the catalog itself is the reader's). *why gets
// qemu's words for a refusal, in `msg` (which must outlive the use of *why).
struct BochsMessage {
    char text[96];
};
guest::Status bochs_load(guest::BlockDevice& dev, BochsImage* out, const char** why, BochsMessage* msg);

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::bochs

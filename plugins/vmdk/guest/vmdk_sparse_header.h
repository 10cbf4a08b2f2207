// The hosted sparse extent header ("KDMV", VMware Virtual Disk Format 1.1, section 4) and the
// streamOptimized footer that overrides it.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vmdk {

inline constexpr uint32_t VMDK4_MAGIC = 0x4b444d56; // "KDMV" read big-endian
inline constexpr uint32_t VMDK3_MAGIC = 0x434f5744; // "COWD": ESX vmfsSparse (vmdk_cowd_open)
inline constexpr uint64_t VMDK4_GD_AT_END = 0xffffffffffffffffull;
inline constexpr uint32_t VMDK4_FLAG_NL_DETECT = 1u << 0;
inline constexpr uint32_t VMDK4_FLAG_RGD = 1u << 1;
inline constexpr uint32_t VMDK4_FLAG_ZERO_GRAIN = 1u << 2;
inline constexpr uint32_t VMDK4_FLAG_COMPRESS = 1u << 16;
inline constexpr uint32_t VMDK4_FLAG_MARKER = 1u << 17;
inline constexpr uint16_t VMDK4_COMPRESSION_DEFLATE = 1;
inline constexpr uint32_t MARKER_END_OF_STREAM = 0;
inline constexpr uint32_t MARKER_FOOTER = 3;
// qemu's bounds (block/vmdk.c vmdk_open_vmdk4 / vmdk_add_extent).
inline constexpr uint32_t VMDK_MAX_GTES_PER_GT = 512;        // "L2 table size too big"
inline constexpr uint64_t VMDK_MAX_GRAIN_SECTORS = 0x200000; // a 1 GiB grain is unrealistic
inline constexpr uint64_t VMDK_MAX_L1_SIZE = 32u << 20;      // grain directory entries (8 TiB at 512 B grains)
// Largest extent instar accepts: 64 TiB, the largest VMDK VMware defines (seSparse); hosted
// sparse extents stop at 2 TiB. Guards the byte arithmetic on a hostile capacity.
inline constexpr uint64_t VMDK_MAX_EXTENT_SECTORS = (64ull << 40) / 512;

// On-disk layout after the 4-byte magic, little-endian, packed (qemu's VMDK4Header).
struct Vmdk4HeaderDisk {
    uint8_t version[4];
    uint8_t flags[4];
    uint8_t capacity[8];      // sectors
    uint8_t granularity[8];   // sectors per grain
    uint8_t desc_offset[8];   // sectors
    uint8_t desc_size[8];     // sectors
    uint8_t num_gtes_per_gt[4];
    uint8_t rgd_offset[8];    // sectors
    uint8_t gd_offset[8];     // sectors, or VMDK4_GD_AT_END
    uint8_t grain_offset[8];  // sectors
    uint8_t filler[1];
    uint8_t check_bytes[4];   // "\n \r\n"
    uint8_t compress_algorithm[2];
};
static_assert(sizeof(Vmdk4HeaderDisk) == 75);

struct Vmdk4Header {
    uint32_t version;
    uint32_t flags;
    uint64_t capacity;
    uint64_t granularity;
    uint64_t desc_offset;
    uint64_t desc_size;
    uint32_t num_gtes_per_gt;
    uint64_t rgd_offset;
    uint64_t gd_offset;
    uint64_t grain_offset;
    uint16_t compress_algorithm;
};

void vmdk4_header_decode(const uint8_t* after_magic, Vmdk4Header* out);

// The magic and the header as qemu writes them (check bytes "\n \r\n", filler 0): 79 bytes.
inline constexpr size_t VMDK4_HEADER_BYTES = 4 + sizeof(Vmdk4HeaderDisk);
void vmdk4_header_encode(const Vmdk4Header& h, uint8_t out[VMDK4_HEADER_BYTES]);

// What `info` needs from a sparse extent.
struct VmdkSparseExtent {
    uint64_t sectors;
    uint64_t cluster_sectors;
    bool compressed;
};

// Opens a KDMV extent as qemu's vmdk_open_vmdk4 does: the footer when the grain directory is at the
// end, version <= 3, qemu's table bounds, the file at least grain_offset sectors long. A header with
// capacity 0 and a descriptor offset is a descriptor in disguise: *embedded_descriptor is set and
// the caller parses the descriptor instead.
guest::Status vmdk_sparse_open(guest::BlockDevice& dev, VmdkSparseExtent* out, Vmdk4Header* header,
                               bool* embedded_descriptor);

// Room for one refusal message (qemu's texts are short; a number or two at most).
inline constexpr size_t VMDK_REASON_MAX = 160;

// qemu's message for a sparse extent vmdk_sparse_open refused with `st`, found by repeating
// its checks in qemu's order; where instar's own limit is the stricter one, the message names
// the limit and the value. Writes NUL-terminated text to `why` (VMDK_REASON_MAX bytes) and
// returns the status to report.
guest::Status vmdk_sparse_refusal(guest::BlockDevice& dev, guest::Status st, const Vmdk4Header& h, char* why);

// Appends `text`, then `number` in decimal when `with_number`, to the NUL-terminated `buf`
// (VMDK_REASON_MAX bytes), truncating.
void vmdk_reason_append(char* buf, const char* text, uint64_t number = 0, bool with_number = false);

// ---- VMware-only extents qemu reads but cannot create: COWD (VMDK3, "vmfsSparse") and seSparse.

// COWD: qemu's vmdk_open_vmfs_sparse gives every grain table 4096 entries.
inline constexpr uint32_t VMDK3_GTES_PER_GT = 4096;
// seSparse (qemu's check_se_sparse_const_header accepts exactly these).
inline constexpr uint64_t SESPARSE_CONST_MAGIC = 0xcafebabe;
inline constexpr uint64_t SESPARSE_VOLATILE_MAGIC = 0xcafecafe;
inline constexpr uint64_t SESPARSE_VERSION = 0x0000000200000001;
inline constexpr uint64_t SESPARSE_GRAIN_SECTORS = 8;     // const header grain_size
inline constexpr uint64_t SESPARSE_GT_SECTORS = 64;       // const header grain_table_size
inline constexpr uint32_t SESPARSE_GTES_PER_GT = 4096;    // 64 sectors of 8-byte entries

// Reading parameters of a COWD or seSparse extent (qemu's VmdkExtent for them).
struct VmdkAltExtent {
    uint64_t sectors;        // virtual sectors
    uint64_t grain_sectors;
    uint64_t gd_offset;      // byte offset of the grain directory
    uint32_t l1_size;        // directory entries (qemu's 32-bit l1_size)
    uint32_t gtes;           // entries per grain table
    bool sesparse;           // 8-byte directory and table entries
    uint64_t se_gt_offset;   // seSparse: sector of the grain tables area
    uint64_t se_grains_offset; // seSparse: sector of the grains area
};

// A COWD file (magic "COWD") as qemu's vmdk_open_vmfs_sparse opens it. On failure `why`
// (VMDK_REASON_MAX bytes) holds qemu's words, or instar's limit and the value.
guest::Status vmdk_cowd_open(guest::BlockDevice& dev, VmdkAltExtent* out, char* why);

// A seSparse extent file as qemu's vmdk_open_se_sparse opens it (read-only); `why` as above.
guest::Status vmdk_sesparse_open(guest::BlockDevice& dev, VmdkAltExtent* out, char* why);

} // namespace instar::vmdk

// One new hosted sparse (KDMV) or flat extent, laid out as qemu's vmdk_init_extent lays it out.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <instar/guest/create_api.h>

#include "vmdk_sparse_header.h"

namespace instar::vmdk {

// qemu's fixed choices for a new sparse extent.
inline constexpr uint64_t VMDK_CREATE_GRAIN_SECTORS = 128;       // 64 KiB grains
inline constexpr uint32_t VMDK_CREATE_GTES_PER_GT = 512;         // BDRV_SECTOR_SIZE entries
inline constexpr uint64_t VMDK_CREATE_DESC_OFFSET_SECTORS = 1;   // the embedded descriptor at 0x200
inline constexpr uint64_t VMDK_CREATE_DESC_SECTORS = 20;         // DESC_SIZE
// The grain directories are written in pieces of this many bytes: at most 32 MiB each (2^23 tables
// at 255 TiB), so one bounded buffer serves any size.
inline constexpr size_t VMDK_CREATE_GD_CHUNK = 64u << 10;

// The header and table placement for an extent of `bytes` (a multiple of 512), with qemu's 32-bit
// arithmetic: grains and table counts wrap exactly as in qemu (a 256 TiB extent gets no tables).
struct SparseLayout {
    Vmdk4Header header;
    uint32_t gt_count;    // grain tables
    uint32_t gt_sectors;  // sectors per grain table
    uint32_t gd_sectors;  // sectors per grain directory
};
SparseLayout sparse_layout(uint64_t bytes, bool compress, bool zeroed_grain);

// Writes a sparse extent into the empty `dev`: header, length (grain_offset sectors, a hole),
// redundant grain directory, grain directory. `chunk` is scratch of VMDK_CREATE_GD_CHUNK bytes.
guest::Status write_sparse_extent(guest::CreateTarget& target, guest::BlockDevice& dev, const SparseLayout& l,
                                  uint8_t* chunk);

} // namespace instar::vmdk

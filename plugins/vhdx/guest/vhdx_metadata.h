// The VHDX metadata region: its table ("metadata") and the known items (file parameters, virtual
// disk size, sector sizes, page 83 data, parent locator).
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_region_table.h"

namespace instar::vhdx {

inline constexpr uint32_t VHDX_METADATA_TABLE_MAX_SIZE = 64 * 1024; // MS-VHDX 2.6.1: the table is 64 KiB
inline constexpr char VHDX_METADATA_SIGNATURE[] = "metadata";
inline constexpr uint32_t VHDX_META_FLAGS_IS_REQUIRED = 4;
inline constexpr uint32_t VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED = 1;
inline constexpr uint32_t VHDX_PARAMS_HAS_PARENT = 2;
inline constexpr uint32_t VHDX_BLOCK_SIZE_MIN = 1u << 20;   // MS-VHDX 2.6.2.1
inline constexpr uint32_t VHDX_BLOCK_SIZE_MAX = 256u << 20; // MS-VHDX 2.6.2.1

// On-disk layout, little-endian (MS-VHDX 2.6.1 "Metadata Table").
struct VhdxMetadataHeaderDisk {
    uint8_t signature[8];
    uint8_t reserved[2];
    uint8_t entry_count[2];
    uint8_t reserved2[20];
};
struct VhdxMetadataEntryDisk {
    uint8_t item_id[16];
    uint8_t offset[4];
    uint8_t length[4];
    uint8_t flags[4];
    uint8_t reserved[4];
};
static_assert(sizeof(VhdxMetadataHeaderDisk) == 32 && sizeof(VhdxMetadataEntryDisk) == 32);

// Where a metadata item is (offset relative to the metadata region).
struct VhdxMetadataItem {
    uint32_t offset;
    uint32_t length;
};

struct VhdxMetadata {
    uint32_t block_size;
    uint32_t data_bits; // file parameters flags
    uint64_t virtual_disk_size;
    uint32_t logical_sector_size;
    uint32_t physical_sector_size;
    bool has_parent_locator;
    VhdxMetadataItem parent_locator;
};

// Parses the metadata table (64 KiB at `bytes`) into item locations; then vhdx_metadata_read
// reads the items. Corrupt/Unsupported exactly where qemu's vhdx_parse_metadata fails.
guest::Status vhdx_metadata_read(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxRegion& region,
                                 VhdxMetadata* out);

} // namespace instar::vhdx

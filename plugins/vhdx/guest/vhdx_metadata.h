// The VHDX metadata region: its table ("metadata") and the known items (file parameters, virtual
// disk size, sector sizes, page 83 data, parent locator).
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_bytes.h"
#include "vhdx_region_table.h"

namespace instar::vhdx {

inline constexpr uint32_t VHDX_METADATA_TABLE_MAX_SIZE = 64 * 1024; // MS-VHDX 2.6.1: the table is 64 KiB
inline constexpr char VHDX_METADATA_SIGNATURE[] = "metadata";
inline constexpr uint32_t VHDX_META_FLAGS_IS_VIRTUAL_DISK = 2;
inline constexpr uint32_t VHDX_META_FLAGS_IS_REQUIRED = 4;
inline constexpr uint32_t VHDX_PARAMS_LEAVE_BLOCKS_ALLOCATED = 1;
inline constexpr uint32_t VHDX_PARAMS_HAS_PARENT = 2;
inline constexpr uint32_t VHDX_BLOCK_SIZE_MIN = 1u << 20;   // MS-VHDX 2.6.2.1
inline constexpr uint32_t VHDX_BLOCK_SIZE_MAX = 256u << 20; // MS-VHDX 2.6.2.1

// MS-VHDX 2.6.2: the known metadata items.
inline constexpr uint8_t VHDX_FILE_PARAMETERS_D4[8] = {0xb3, 0xb6, 0x33, 0xf0, 0xaa, 0x44, 0xe7, 0x6b};
inline constexpr uint8_t VHDX_VIRTUAL_DISK_SIZE_D4[8] = {0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8};
inline constexpr uint8_t VHDX_PAGE83_D4[8] = {0x93, 0xef, 0xc3, 0x09, 0xe0, 0x00, 0xc7, 0x46};
inline constexpr uint8_t VHDX_LOGICAL_SECTOR_D4[8] = {0xba, 0x47, 0xf2, 0x33, 0xa8, 0xfa, 0xab, 0x5f};
inline constexpr uint8_t VHDX_PHYSICAL_SECTOR_D4[8] = {0x9c, 0xc9, 0xe9, 0x88, 0x52, 0x51, 0xc5, 0x56};
inline constexpr uint8_t VHDX_PARENT_LOCATOR_D4[8] = {0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c};
inline constexpr Guid VHDX_FILE_PARAMETERS_GUID = make_guid(0xcaa16737, 0xfa36, 0x4d43, VHDX_FILE_PARAMETERS_D4);
inline constexpr Guid VHDX_VIRTUAL_DISK_SIZE_GUID = make_guid(0x2fa54224, 0xcd1b, 0x4876, VHDX_VIRTUAL_DISK_SIZE_D4);
inline constexpr Guid VHDX_PAGE83_GUID = make_guid(0xbeca12ab, 0xb2e6, 0x4523, VHDX_PAGE83_D4);
inline constexpr Guid VHDX_LOGICAL_SECTOR_GUID = make_guid(0x8141bf1d, 0xa96f, 0x4709, VHDX_LOGICAL_SECTOR_D4);
inline constexpr Guid VHDX_PHYSICAL_SECTOR_GUID = make_guid(0xcda348c7, 0x445d, 0x4471, VHDX_PHYSICAL_SECTOR_D4);
inline constexpr Guid VHDX_PARENT_LOCATOR_GUID = make_guid(0xa8d35f2d, 0xb30b, 0x454d, VHDX_PARENT_LOCATOR_D4);

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

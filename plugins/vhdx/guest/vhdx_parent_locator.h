// The VHDX parent locator metadata item of a differencing disk: key/value pairs in UTF-16LE.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include "vhdx_bytes.h"
#include "vhdx_metadata.h"

namespace instar::vhdx {

// MS-VHDX 2.6.2.6: the whole parent locator must be smaller than 64 KiB.
inline constexpr uint32_t VHDX_PARENT_LOCATOR_MAX_SIZE = 64 * 1024;

// MS-VHDX 2.6.2.6.1: the locator type of a VHDX parent.
inline constexpr uint8_t VHDX_PARENT_LOCATOR_TYPE_D4[8] = {0xb7, 0x89, 0x25, 0xb8, 0xe9, 0x44, 0x59, 0x13};
inline constexpr Guid VHDX_PARENT_LOCATOR_TYPE_VHDX = make_guid(0xb04aefb7, 0xd19e, 0x4a81, VHDX_PARENT_LOCATOR_TYPE_D4);

// On-disk layout, little-endian (MS-VHDX 2.6.2.6 "Parent Locator").
struct VhdxParentLocatorHeaderDisk {
    uint8_t locator_type[16];
    uint8_t reserved[2];
    uint8_t key_value_count[2];
};
struct VhdxParentLocatorEntryDisk {
    uint8_t key_offset[4];
    uint8_t value_offset[4];
    uint8_t key_length[2];
    uint8_t value_length[2];
};
static_assert(sizeof(VhdxParentLocatorHeaderDisk) == 20 && sizeof(VhdxParentLocatorEntryDisk) == 12);

// Finds the parent path in the locator item bytes: relative_path, else absolute_win32_path, else
// volume_path (the order Hyper-V tries them). Writes UTF-8 to `out` (capacity INFO_MAX_STRING);
// *len = 0 when there is none. Corrupt on entries outside the item.
guest::Status vhdx_parent_locator_parse(const uint8_t* item, uint32_t item_len, char* out, size_t* len);

// Reads the item and reports the parent as a Backing file reference.
guest::Status vhdx_report_parent(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxRegion& metadata_region,
                                 const VhdxMetadataItem& item, guest::InfoSink& sink);

} // namespace instar::vhdx

// The VHDX log: whether it holds entries that must be replayed before the image can be read.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_header.h"

namespace instar::vhdx {

inline constexpr uint32_t VHDX_LOG_SECTOR_SIZE = 4096;
inline constexpr uint64_t VHDX_LOG_MIN_SIZE = 1u << 20; // log offset and length are 1 MiB multiples
inline constexpr char VHDX_LOG_SIGNATURE[] = "loge";
// Bytes of log entries checksummed while searching for a valid entry. qemu tries an entry at every
// 4 KiB sector, so a hostile log costs log_length^2 / 4 KiB; real logs (1 MiB by default) stay far
// below this.
inline constexpr uint64_t VHDX_LOG_SCAN_BUDGET = 256u << 20;

// On-disk layout, little-endian (MS-VHDX 2.3.1.1 "Entry Header").
struct VhdxLogEntryHeaderDisk {
    uint8_t signature[4];
    uint8_t checksum[4];
    uint8_t entry_length[4];
    uint8_t tail[4];
    uint8_t sequence_number[8];
    uint8_t descriptor_count[4];
    uint8_t reserved[4];
    uint8_t log_guid[16];
    uint8_t flushed_file_offset[8];
    uint8_t last_file_offset[8];
};
// MS-VHDX 2.3.1.2/2.3.1.3: zero and data descriptors share this shape.
struct VhdxLogDescriptorDisk {
    uint8_t signature[4];
    uint8_t trailing_bytes_or_reserved[4];
    uint8_t leading_bytes_or_zero_length[8];
    uint8_t file_offset[8];
    uint8_t sequence_number[8];
};
static_assert(sizeof(VhdxLogEntryHeaderDisk) == 64 && sizeof(VhdxLogDescriptorDisk) == 32);

// Ok when the log is empty (zero log GUID or length) or holds no valid entry. Corrupt where qemu's
// vhdx_parse_log fails (misaligned offset/length, log version != 0). Unsupported when a valid
// entry exists: qemu-img info refuses such an image ("... opened read-only, but contains a log
// that needs to be replayed"), and instar never writes during info.
guest::Status vhdx_log_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h);

} // namespace instar::vhdx

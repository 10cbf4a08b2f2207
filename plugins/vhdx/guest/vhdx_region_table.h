// The VHDX region table ("regi" at 192 KiB): where the BAT and the metadata region are.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_bytes.h"

namespace instar::vhdx {

inline constexpr uint64_t VHDX_REGION_TABLE_OFFSET = 192 * 1024;
inline constexpr uint32_t VHDX_REGION_TABLE_SIZE = 64 * 1024; // the checksum covers all 64 KiB
inline constexpr char VHDX_REGION_SIGNATURE[] = "regi";
inline constexpr uint32_t VHDX_REGION_MAX_ENTRIES = 2047; // MS-VHDX 2.2.3.1: at most 2047 entries
inline constexpr uint32_t VHDX_REGION_ENTRY_REQUIRED = 1;

// MS-VHDX 2.2.3.2: the two known regions.
inline constexpr uint8_t VHDX_BAT_GUID_D4[8] = {0x9d, 0x64, 0x11, 0x5e, 0x9b, 0xfd, 0x4a, 0x08};
inline constexpr uint8_t VHDX_METADATA_GUID_D4[8] = {0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e};
inline constexpr Guid VHDX_BAT_GUID = make_guid(0x2dc27766, 0xf623, 0x4200, VHDX_BAT_GUID_D4);
inline constexpr Guid VHDX_METADATA_GUID = make_guid(0x8b7ca206, 0x4790, 0x4b9a, VHDX_METADATA_GUID_D4);

// On-disk layout, little-endian (MS-VHDX 2.2.3 "Region Table").
struct VhdxRegionTableHeaderDisk {
    uint8_t signature[4];
    uint8_t checksum[4];
    uint8_t entry_count[4];
    uint8_t reserved[4];
};
struct VhdxRegionTableEntryDisk {
    uint8_t guid[16];
    uint8_t file_offset[8];
    uint8_t length[4];
    uint8_t required[4];
};
static_assert(sizeof(VhdxRegionTableHeaderDisk) == 16 && sizeof(VhdxRegionTableEntryDisk) == 32);

struct VhdxRegion {
    uint64_t file_offset;
    uint32_t length;
    uint32_t index; // its entry in the table: qemu checks later entries first
};

struct VhdxRegions {
    VhdxRegion bat;
    VhdxRegion metadata;
};

// One line of text qemu error_reports before failing an open ("VHDX region A-B overlaps with
// region C-D", "VHDX BAT entry N ..."), without the program name or a newline.
inline constexpr uint32_t VHDX_REPORT_MAX = 160; // the longest: 4 numbers of <= 20 digits + 76 chars
struct VhdxReport {
    char text[VHDX_REPORT_MAX];
    uint32_t len = 0;

    VhdxReport& add(const char* s);
    VhdxReport& dec(uint64_t v);
    VhdxReport& signed_dec(int64_t v);
};

// qemu's region test (vhdx_region_check): [start, end) against a registered [r_start, r_end), the
// ends computed as qemu does (start + length, wrapping at 2^64).
bool vhdx_region_overlap(uint64_t start, uint64_t end, uint64_t r_start, uint64_t r_end);

// qemu's line for an overlap found by vhdx_region_check; the second end is printed with "%.0",
// so an end of 0 (wrapped) prints as nothing.
void vhdx_overlap_report(uint64_t start, uint64_t end, uint64_t r_start, uint64_t r_end, VhdxReport* out);

// Parses the 64 KiB table at `bytes`. Corrupt on a bad signature/checksum, too many entries,
// overlapping regions (with each other or the log, in qemu's order and arithmetic: each entry
// against the earlier ones, latest first, then the log; *overlap, when given, gets qemu's line),
// a duplicate or missing BAT/metadata region; Unsupported on an unknown region marked required
// (qemu: -ENOTSUP).
guest::Status vhdx_region_table_parse(const uint8_t* bytes, uint64_t len, uint64_t log_offset,
                                      uint32_t log_length, VhdxRegions* out, VhdxReport* overlap = nullptr);

} // namespace instar::vhdx

// Where a new VHDX image puts its log, BAT, metadata and payload, and what each BAT entry holds
// (qemu's vhdx_create_new_region_table / vhdx_create_bat rules).
#pragma once

#include <stdint.h>

#include "vhdx_create_params.h"

namespace instar::vhdx {

inline constexpr uint64_t VHDX_HEADER_SECTION_END = 1u << 20;   // MS-VHDX 2.1: the header section is 1 MiB
inline constexpr uint32_t VHDX_CREATE_METADATA_LENGTH = 1u << 20; // qemu: "min size, and more than enough"
inline constexpr uint64_t VHDX_CREATE_DATA_GAP = 5u << 20;        // qemu: payload starts 5 MiB past the BAT
// qemu writes the BAT with one request; a request of BDRV_REQUEST_MAX_BYTES (INT_MAX rounded down
// to 512) or more fails with EIO. Only a 0-byte disk with 256 MiB blocks reaches it (its uint32
// entry count wraps), and qemu-img reports "Failed to write the BAT: Input/output error".
inline constexpr uint64_t VHDX_CREATE_MAX_BAT_WRITE = 0x7FFFFE00u;

struct VhdxLayout {
    uint64_t log_offset;
    uint32_t log_length;
    uint64_t bat_offset;
    uint32_t bat_length;  // the BAT region: entries rounded up to 1 MiB
    uint32_t bat_entries; // payload and sector bitmap entries (uint32 as qemu computes them)
    uint64_t chunk_ratio;
    uint64_t data_blocks; // payload blocks holding the virtual disk
    uint64_t metadata_offset;
    uint64_t data_offset; // the first payload block of a fixed disk
    uint64_t file_length; // the final file length
    bool write_bat;       // whether qemu writes the BAT (else it stays a hole of zero entries)
};

void vhdx_create_layout(const VhdxCreateParams& p, VhdxLayout* out);

// The little-endian value of BAT entry `index` (payload or sector bitmap entry).
uint64_t vhdx_create_bat_entry(const VhdxCreateParams& p, const VhdxLayout& l, uint64_t index);

} // namespace instar::vhdx

// The VHDX block allocation table: its size rule and qemu's open-time checks of its entries.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_header.h"
#include "vhdx_metadata.h"
#include "vhdx_region_table.h"

namespace instar::vhdx {

inline constexpr uint64_t VHDX_MAX_SECTORS_PER_BLOCK = 1u << 23; // MS-VHDX 2.5: chunk ratio base
inline constexpr uint64_t VHDX_BAT_STATE_BIT_MASK = 7;
inline constexpr uint64_t VHDX_BAT_FILE_OFF_MASK = 0xFFFFFFFFFFF00000ull; // offsets in 1 MiB units
inline constexpr uint64_t PAYLOAD_BLOCK_NOT_PRESENT = 0;
inline constexpr uint64_t PAYLOAD_BLOCK_ZERO = 2;
inline constexpr uint64_t PAYLOAD_BLOCK_FULLY_PRESENT = 6;
// Bytes of BAT read at a time: each read is a hypercall. qemu reads the BAT region's entries for
// the virtual size, and for a 0-byte disk that count wraps (vhdx_bat_entries) to a whole 64 MiB
// table, which qemu-img 7.2's create makes: 1024 reads of 64 KiB, not 16384 of 4 KiB (info took
// 0.15 s, and ran past its 10 s budget on a loaded machine). The buffer is freed before the reader
// allocates its own (whose peak the unit tests bound at 96 KiB).
inline constexpr size_t VHDX_BAT_CHUNK = 64 * 1024;

// qemu's BAT entry count for a non-differencing disk (uint32 arithmetic, as qemu does it).
uint32_t vhdx_bat_entries(uint64_t virtual_disk_size, uint32_t block_size);

// A differencing disk's BAT entry count (MS-VHDX 2.5: one sector bitmap entry after every chunk
// ratio payload entries, the last chunk included), in qemu's uint32 arithmetic.
uint32_t vhdx_bat_entries_differencing(uint64_t virtual_disk_size, uint32_t block_size);

// The chunk ratio of MS-VHDX 2.5 for 512-byte logical sectors (a power of two, 32..8192).
inline uint64_t vhdx_chunk_ratio(uint32_t block_size) { return VHDX_MAX_SECTORS_PER_BLOCK * 512 / block_size; }

// Corrupt if the BAT region is too small for the disk, or a present payload block lies past the
// end of the file or over the BAT, metadata or log region (qemu's vhdx_check_bat_entries; qemu
// checks every region the table lists, instar the two it knows and the log). *report, when given,
// gets the line qemu error_reports for the entry (empty when qemu reports none).
guest::Status vhdx_bat_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h,
                             const VhdxRegions& regions, const VhdxMetadata& m, VhdxReport* report = nullptr);

} // namespace instar::vhdx

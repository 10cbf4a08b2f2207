// The VHDX log: whether it holds entries that must be replayed before the image can be read.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

#include "vhdx_header.h"

namespace instar::vhdx {

inline constexpr uint32_t VHDX_LOG_SECTOR_SIZE = 4096;
inline constexpr uint64_t VHDX_LOG_MIN_SIZE = 1u << 20; // log offset and length are 1 MiB multiples
inline constexpr char VHDX_LOG_SIGNATURE[] = "loge";
// Bytes of log sectors read while searching for the active sequence. qemu's search restarts at
// sectors it has read before (a chain it follows, a wrapped entry), so a hostile log costs up to
// log_length^2 / 4 KiB; real logs (1 MiB by default) stay far below this.
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

// qemu's VHDXLogEntries: the circular log and a read and a write index (byte offsets into it,
// multiples of VHDX_LOG_SECTOR_SIZE). Reading stops where read reaches write (empty).
struct VhdxLogCursor {
    uint64_t offset;
    uint32_t length;
    uint32_t read;
    uint32_t write;
};

// The log sector at the cursor's read index into `sector` (VHDX_LOG_SECTOR_SIZE bytes), the index
// advanced (wrapping at the log's end). *got is false, nothing read, when the cursor is empty.
guest::Status vhdx_log_next_sector(guest::BlockDevice& dev, VhdxLogCursor& cur, uint8_t* sector, bool* got);

// An entry header's fields (host order).
struct VhdxLogEntry {
    uint32_t checksum;
    uint32_t entry_length;
    uint64_t sequence_number;
    uint32_t descriptor_count;
    uint64_t flushed_file_offset;
    uint64_t last_file_offset;
};

// qemu's vhdx_log_hdr_is_valid on the entry header at the start of `sector`: signature, length (at
// most the log's, whole sectors), sequence > 0, the current header's log GUID, descriptors that fit.
bool vhdx_log_entry_parse(const uint8_t* sector, uint32_t log_length, const uint8_t* log_guid, VhdxLogEntry* out);

// qemu's vhdx_log_desc_is_valid: the entry's sequence number, a sector-aligned file offset, "desc",
// or "zero" with a sector-multiple length.
bool vhdx_log_descriptor_valid(const uint8_t* desc, uint64_t sequence);

// The descriptors of entry `e` in its `i`-th descriptor sector, all valid (vhdx_log_read_desc's
// checks); *index counts the entry's descriptors checked so far.
bool vhdx_log_sector_descriptors_valid(const uint8_t* sector, uint32_t i, const VhdxLogEntry& e, uint64_t* index);

// Sectors holding the entry header and `count` descriptors (vhdx_compute_desc_sectors; never 0).
inline uint32_t vhdx_log_desc_sectors(uint32_t count) {
    constexpr uint32_t per_sector = VHDX_LOG_SECTOR_SIZE / sizeof(VhdxLogDescriptorDisk);
    return static_cast<uint32_t>((static_cast<uint64_t>(count) + 2 + per_sector - 1) / per_sector);
}

// The active sequence qemu's vhdx_log_search picks: `count` entries from cursor.read up to
// cursor.write, the first with sequence number `sequence`. valid is false when there is none.
struct VhdxLogSequence {
    bool valid;
    uint32_t count;
    uint64_t sequence;
    VhdxLogCursor cursor;
};

// qemu's vhdx_parse_log up to its replay decision. Ok with *out (valid or not) for a log that is
// empty (zero log GUID or length) or searched; Corrupt where qemu fails (misaligned offset/length,
// log version != 0, a log past the file's end, an entry with a valid header and an invalid
// descriptor); TooLarge past VHDX_LOG_SCAN_BUDGET.
guest::Status vhdx_log_search(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h,
                              VhdxLogSequence* out);

// vhdx_log_search for a read-only open: Unsupported when an active sequence exists (qemu-img info
// refuses such an image: "... opened read-only, but contains a log that needs to be replayed";
// instar never writes during info; convert -n replays first, vhdx_log_replay.h).
guest::Status vhdx_log_check(guest::BlockDevice& dev, guest::Allocator& alloc, const VhdxHeader& h);

} // namespace instar::vhdx

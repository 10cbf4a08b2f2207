// Parsing of the VHDX region table.
#include "vhdx_region_table.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"

namespace instar::vhdx {

using guest::Status;

namespace {

bool overlaps(uint64_t a_start, uint64_t a_len, uint64_t b_start, uint64_t b_len) {
    // Computed without overflow: [a, a+len) and [b, b+len) intersect.
    if (a_len == 0 || b_len == 0)
        return false;
    return a_start < b_start ? b_start - a_start < a_len : a_start - b_start < b_len;
}

} // namespace

Status vhdx_region_table_parse(const uint8_t* bytes, uint64_t len, uint64_t log_offset, uint32_t log_length,
                               VhdxRegions* out) {
    if (len < VHDX_REGION_TABLE_SIZE)
        return Status::Corrupt;
    VhdxRegionTableHeaderDisk h;
    __builtin_memcpy(&h, bytes, sizeof h);
    if (crc32c_skipping(bytes, VHDX_REGION_TABLE_SIZE, offsetof(VhdxRegionTableHeaderDisk, checksum)) !=
        load_le32(h.checksum))
        return Status::Corrupt;
    if (!same_bytes(h.signature, VHDX_REGION_SIGNATURE, 4))
        return Status::Corrupt;
    const uint32_t count = load_le32(h.entry_count);
    if (count > VHDX_REGION_MAX_ENTRIES)
        return Status::Corrupt;
    bool bat_found = false, metadata_found = false;
    const uint8_t* entries = bytes + sizeof h;
    for (uint32_t i = 0; i < count; ++i) {
        VhdxRegionTableEntryDisk e;
        __builtin_memcpy(&e, entries + i * sizeof e, sizeof e);
        const uint64_t offset = load_le64(e.file_offset);
        const uint32_t length = load_le32(e.length);
        // qemu registers the log and each region and refuses overlaps between them.
        if (overlaps(offset, length, log_offset, log_length))
            return Status::Corrupt;
        for (uint32_t j = 0; j < i; ++j) {
            VhdxRegionTableEntryDisk p;
            __builtin_memcpy(&p, entries + j * sizeof p, sizeof p);
            if (overlaps(offset, length, load_le64(p.file_offset), load_le32(p.length)))
                return Status::Corrupt;
        }
        VhdxRegion* slot = nullptr;
        bool* found = nullptr;
        if (guid_eq(e.guid, VHDX_BAT_GUID)) {
            slot = &out->bat;
            found = &bat_found;
        } else if (guid_eq(e.guid, VHDX_METADATA_GUID)) {
            slot = &out->metadata;
            found = &metadata_found;
        } else if (load_le32(e.required) & VHDX_REGION_ENTRY_REQUIRED) {
            return Status::Unsupported;
        }
        if (slot) {
            if (*found)
                return Status::Corrupt;
            *found = true;
            slot->file_offset = offset;
            slot->length = length;
        }
    }
    return bat_found && metadata_found ? Status::Ok : Status::Corrupt;
}

} // namespace instar::vhdx

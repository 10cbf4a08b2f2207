// Parsing of the VHDX region table.
#include "vhdx_region_table.h"

#include "vhdx_bytes.h"
#include "vhdx_crc32c.h"

namespace instar::vhdx {

using guest::Status;

VhdxReport& VhdxReport::add(const char* s) {
    while (*s != 0 && len < VHDX_REPORT_MAX)
        text[len++] = *s++;
    return *this;
}

VhdxReport& VhdxReport::dec(uint64_t v) {
    char digits[20];
    int n = 0;
    do {
        digits[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0 && len < VHDX_REPORT_MAX)
        text[len++] = digits[--n];
    return *this;
}

VhdxReport& VhdxReport::signed_dec(int64_t v) {
    if (v >= 0)
        return dec(static_cast<uint64_t>(v));
    add("-");
    return dec(0 - static_cast<uint64_t>(v));
}

bool vhdx_region_overlap(uint64_t start, uint64_t end, uint64_t r_start, uint64_t r_end) {
    return !(start >= r_end || end <= r_start);
}

void vhdx_overlap_report(uint64_t start, uint64_t end, uint64_t r_start, uint64_t r_end, VhdxReport* out) {
    out->len = 0;
    out->add("VHDX region ").dec(start).add("-").dec(end).add(" overlaps with region ").dec(r_start).add("-");
    if (r_end != 0) // "%." PRIu64: precision 0, and 0 with precision 0 prints no digit
        out->dec(r_end);
}

Status vhdx_region_table_parse(const uint8_t* bytes, uint64_t len, uint64_t log_offset, uint32_t log_length,
                               VhdxRegions* out, VhdxReport* overlap) {
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
        // qemu registers the log, then each entry after checking it against those registered
        // before (a list with the latest first), with wrapping ends: the first overlap fails.
        const uint64_t end = offset + length;
        for (uint32_t j = i + 1; j-- > 0;) {
            uint64_t r_start = log_offset, r_end = log_offset + log_length;
            if (j > 0) {
                VhdxRegionTableEntryDisk p;
                __builtin_memcpy(&p, entries + (j - 1) * sizeof p, sizeof p);
                r_start = load_le64(p.file_offset);
                r_end = r_start + load_le32(p.length);
            }
            if (vhdx_region_overlap(offset, end, r_start, r_end)) {
                if (overlap != nullptr)
                    vhdx_overlap_report(offset, end, r_start, r_end, overlap);
                return Status::Corrupt;
            }
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
            slot->index = i;
        }
    }
    return bat_found && metadata_found ? Status::Ok : Status::Corrupt;
}

} // namespace instar::vhdx

// Plausibility checks for MBR and GPT partition tables.
#include "raw_detect_partition.h"

namespace instar::raw {

namespace {

uint32_t load_le32(const uint8_t* p) {
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
           (static_cast<uint32_t>(p[3]) << 24);
}

} // namespace

bool mbr_plausible(const uint8_t* sector, size_t len) {
    if (len < MBR_SIZE || sector[MBR_SIGNATURE_OFFSET] != 0x55 || sector[MBR_SIGNATURE_OFFSET + 1] != 0xAA)
        return false;
    for (uint32_t i = 0; i < MBR_PARTITION_COUNT; ++i) {
        MbrPartitionEntryDisk e;
        __builtin_memcpy(&e, sector + MBR_PARTITION_TABLE_OFFSET + i * sizeof e, sizeof e);
        if (e.status != 0x00 && e.status != 0x80)
            return false;
        if (e.type != 0 && load_le32(e.sector_count) == 0)
            return false;
    }
    return true;
}

bool gpt_plausible(const uint8_t* sector, size_t len, uint32_t sector_size) {
    if (len < sizeof(GptHeaderDisk))
        return false;
    GptHeaderDisk h;
    __builtin_memcpy(&h, sector, sizeof h);
    for (int i = 0; i < 8; ++i)
        if (h.signature[i] != static_cast<uint8_t>(GPT_SIGNATURE[i]))
            return false;
    const uint32_t size = load_le32(h.header_size);
    return size >= GPT_HEADER_MIN_SIZE && size <= sector_size;
}

} // namespace instar::raw

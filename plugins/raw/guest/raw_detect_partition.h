// Partition tables that make a file "raw": the MBR and the GPT header.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::raw {

inline constexpr uint64_t MBR_SIZE = 512;
inline constexpr uint64_t MBR_PARTITION_TABLE_OFFSET = 446;
inline constexpr uint32_t MBR_PARTITION_COUNT = 4;
inline constexpr uint64_t MBR_SIGNATURE_OFFSET = 510; // 0x55 0xAA
inline constexpr char GPT_SIGNATURE[] = "EFI PART";
inline constexpr uint32_t GPT_HEADER_MIN_SIZE = 92; // UEFI 2.x, 5.3.2: the header is 92 bytes

// On-disk layout of one MBR partition entry (little-endian).
struct MbrPartitionEntryDisk {
    uint8_t status;       // 0x00 or 0x80 (bootable)
    uint8_t chs_first[3];
    uint8_t type;         // 0 = unused
    uint8_t chs_last[3];
    uint8_t lba_first[4];
    uint8_t sector_count[4];
};
static_assert(sizeof(MbrPartitionEntryDisk) == 16);

// On-disk layout of the start of a GPT header (little-endian; UEFI 2.x, 5.3.2).
struct GptHeaderDisk {
    uint8_t signature[8];
    uint8_t revision[4];
    uint8_t header_size[4];
    uint8_t header_crc32[4];
};

// The first 512 bytes hold a boot signature and a partition table whose entries are well formed
// (status 0x00/0x80, used entries have sectors). A FAT boot sector's code fails the status test.
bool mbr_plausible(const uint8_t* sector, size_t len);

// The sector (at LBA 1) starts with a GPT header signature and a sane header size.
bool gpt_plausible(const uint8_t* sector, size_t len, uint32_t sector_size);

} // namespace instar::raw

// The VHD hard disk footer ("conectix"): 512 bytes at the end of every VHD, copied to offset 0 in
// dynamic and differencing disks. Parsed for `info`, built for `create`.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vpc {

inline constexpr uint64_t VPC_FOOTER_SIZE = 512;
inline constexpr char VPC_FOOTER_COOKIE[] = "conectix";

// Disk types (VHD spec, "Disk Type").
inline constexpr uint32_t VHD_FIXED = 2;
inline constexpr uint32_t VHD_DYNAMIC = 3;
inline constexpr uint32_t VHD_DIFFERENCING = 4;

// Footer timestamps count seconds from 2000-01-01 00:00:00 UTC (this many seconds after 1970).
inline constexpr int64_t VHD_TIMESTAMP_BASE = 946684800;
// data_offset of a fixed disk: no further structure (all 64 bits set, as qemu and Microsoft write).
inline constexpr uint64_t VPC_NO_DATA_OFFSET = ~uint64_t{0};

// On-disk layout, big-endian (VHD spec, "Hard Disk Footer Format").
struct VpcFooterDisk {
    uint8_t cookie[8];
    uint8_t features[4];
    uint8_t file_format_version[4];
    uint8_t data_offset[8];
    uint8_t timestamp[4];
    uint8_t creator_application[4];
    uint8_t creator_version[4];
    uint8_t creator_host_os[4];
    uint8_t original_size[8];
    uint8_t current_size[8];
    uint8_t cylinders[2];
    uint8_t heads[1];
    uint8_t sectors_per_track[1];
    uint8_t disk_type[4];
    uint8_t checksum[4];
    uint8_t unique_id[16];
    uint8_t saved_state[1];
    uint8_t reserved[427];
};
static_assert(sizeof(VpcFooterDisk) == VPC_FOOTER_SIZE);

struct VpcFooter {
    uint64_t data_offset;
    uint32_t timestamp;
    uint8_t creator_application[4];
    uint64_t original_size;
    uint64_t current_size;
    uint16_t cylinders;
    uint8_t heads;
    uint8_t sectors_per_track;
    uint32_t disk_type;
    uint32_t checksum;
    uint8_t unique_id[16];
};

// True when the 512 bytes start with the footer cookie.
bool vpc_footer_has_cookie(const uint8_t* bytes);

// Parses a footer; Corrupt on a wrong cookie or checksum (qemu refuses: "Incorrect header checksum").
guest::Status vpc_footer_parse(const uint8_t* bytes, uint64_t len, VpcFooter* out);

// Builds the 512 footer bytes for `f` as qemu's vpc_co_create lays them out: features 2 (reserved,
// always set), format version 1.0, creator version 5.3 (Virtual PC 2007) on "Wi2k", not in a saved
// state; the checksum is computed (f.checksum is ignored).
void vpc_footer_build(const VpcFooter& f, uint8_t* out);

// The one's complement of the byte sum with the checksum field taken as zero (VHD spec).
uint32_t vpc_footer_checksum(const uint8_t* bytes);

} // namespace instar::vpc

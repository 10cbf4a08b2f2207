// The VHD dynamic disk header ("cxsparse"): 1024 bytes at the footer's data offset in dynamic and
// differencing disks: where the block allocation table is, the block size, and the parent locators.
// Parsed for `info`, built for `create`.
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vpc {

inline constexpr uint64_t VPC_DYNAMIC_HEADER_SIZE = 1024;
inline constexpr char VPC_DYNAMIC_COOKIE[] = "cxsparse";
inline constexpr uint32_t VPC_PARENT_LOCATOR_COUNT = 8;
inline constexpr uint32_t VPC_PARENT_NAME_BYTES = 512;

// On-disk layout of one parent locator entry, big-endian (VHD spec, "Parent Locator Entries").
struct VpcParentLocatorDisk {
    uint8_t platform_code[4];
    uint8_t platform_data_space[4];
    uint8_t platform_data_length[4];
    uint8_t reserved[4];
    uint8_t platform_data_offset[8];
};
static_assert(sizeof(VpcParentLocatorDisk) == 24);

// On-disk layout of the dynamic disk header, big-endian (VHD spec, "Dynamic Disk Header Format").
struct VpcDynamicHeaderDisk {
    uint8_t cookie[8];
    uint8_t data_offset[8];
    uint8_t table_offset[8];
    uint8_t header_version[4];
    uint8_t max_table_entries[4];
    uint8_t block_size[4];
    uint8_t checksum[4];
    uint8_t parent_unique_id[16];
    uint8_t parent_timestamp[4];
    uint8_t reserved1[4];
    uint8_t parent_unicode_name[VPC_PARENT_NAME_BYTES]; // UTF-16 big-endian, NUL padded
    VpcParentLocatorDisk parent_locators[VPC_PARENT_LOCATOR_COUNT];
    uint8_t reserved2[256];
};
static_assert(sizeof(VpcDynamicHeaderDisk) == VPC_DYNAMIC_HEADER_SIZE);

struct VpcParentLocator {
    uint8_t platform_code[4]; // all zero: unused entry
    uint32_t data_space;      // bytes reserved (the spec says sectors; Windows writes bytes)
    uint32_t data_length;
    uint64_t data_offset;
};

// A block allocation table entry for a block that is not allocated (big-endian, like the others:
// each used entry is the sector of the block's bitmap).
inline constexpr uint32_t VPC_BAT_UNUSED = 0xFFFFFFFF;

struct VpcDynamicHeader {
    uint64_t table_offset;
    uint32_t max_table_entries;
    uint32_t block_size;
    uint8_t parent_unique_id[16];
    uint32_t parent_timestamp;
    uint8_t parent_unicode_name[VPC_PARENT_NAME_BYTES];
    VpcParentLocator parent_locators[VPC_PARENT_LOCATOR_COUNT];
};

// Parses the header; Corrupt on a wrong cookie or a block size that is not a power of two >= 512
// (qemu: "Invalid header magic", "Invalid block size"). The header checksum is not checked: qemu
// does not check it either.
guest::Status vpc_dynamic_header_parse(const uint8_t* bytes, uint64_t len, VpcDynamicHeader* out);

// Builds the 1024 header bytes for `h` as qemu's create_dynamic_disk does (no next structure,
// version 1.0), with the checksum computed.
void vpc_dynamic_header_build(const VpcDynamicHeader& h, uint8_t* out);

} // namespace instar::vpc

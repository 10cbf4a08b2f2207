// The VHDX file identifier ("vhdxfile" at 0) and the two headers ("head" at 64 KiB and 128 KiB).
#pragma once

#include <stdint.h>

#include <instar/guest/format_api.h>

namespace instar::vhdx {

inline constexpr uint64_t VHDX_FILE_IDENTIFIER_OFFSET = 0;
inline constexpr char VHDX_FILE_SIGNATURE[] = "vhdxfile";
inline constexpr uint64_t VHDX_HEADER1_OFFSET = 64 * 1024;
inline constexpr uint64_t VHDX_HEADER2_OFFSET = 128 * 1024;
inline constexpr uint32_t VHDX_HEADER_SIZE = 4096; // the checksum covers the whole 4 KiB
inline constexpr char VHDX_HEADER_SIGNATURE[] = "head";

// On-disk layout, little-endian (MS-VHDX 2.2.2 "Headers").
struct VhdxHeaderDisk {
    uint8_t signature[4];
    uint8_t checksum[4];
    uint8_t sequence_number[8];
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t log_guid[16];
    uint8_t log_version[2];
    uint8_t version[2];
    uint8_t log_length[4];
    uint8_t log_offset[8];
};
static_assert(sizeof(VhdxHeaderDisk) == 80);

struct VhdxHeader {
    uint64_t sequence_number;
    uint8_t log_guid[16];
    uint16_t log_version;
    uint16_t version;
    uint32_t log_length;
    uint64_t log_offset;
    uint8_t raw[sizeof(VhdxHeaderDisk)]; // for qemu's "two identical headers" rule
};

// True if the 4 KiB at `bytes` is a valid header (signature, CRC-32C, version 1), filled into *out.
bool vhdx_header_parse(const uint8_t* bytes, uint64_t len, VhdxHeader* out);

// Reads both headers and picks the current one as qemu does: the only valid one, or the higher
// sequence number; equal numbers are accepted only if the headers are identical. Corrupt when
// no header is usable ("No valid VHDX header found").
guest::Status vhdx_read_current_header(guest::BlockDevice& dev, guest::Allocator& alloc, VhdxHeader* out);

} // namespace instar::vhdx

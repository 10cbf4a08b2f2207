// CRC-32C (Castagnoli), the checksum of VHDX headers, region tables and log entries.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::vhdx {

// Continues a CRC-32C: start with state 0xFFFFFFFF, finish by xor with 0xFFFFFFFF.
uint32_t crc32c_update(uint32_t state, const uint8_t* data, size_t len);

// The CRC of `len` bytes with the 4-byte field at `skip` (the stored checksum) taken as zero.
uint32_t crc32c_skipping(const uint8_t* data, size_t len, size_t skip);

} // namespace instar::vhdx

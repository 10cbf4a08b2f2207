// The options of a new VHDX image, read and checked as qemu's vhdx_co_create_opts/vhdx_co_create do.
#pragma once

#include <stdint.h>

#include <instar/guest/create_api.h>

namespace instar::vhdx {

inline constexpr uint64_t VHDX_CREATE_MAX_SIZE = 64ull << 40;      // MS-VHDX 2.6.2.2; qemu's VHDX_MAX_IMAGE_SIZE
inline constexpr uint32_t VHDX_CREATE_DEFAULT_LOG_SIZE = 1u << 20; // qemu's DEFAULT_LOG_SIZE

struct VhdxCreateParams {
    uint64_t size;       // virtual size, rounded up to 512 bytes
    uint32_t block_size; // a power of two in [1 MiB, 256 MiB]
    uint32_t log_size;   // a non-zero multiple of 1 MiB
    bool fixed;          // subformat=fixed
    bool zero_blocks;    // block_state_zero
    bool differencing;   // a backing file was given
};

// qemu's automatic block size for a virtual size (vhdx_co_create: keeps the BAT small).
uint32_t vhdx_auto_block_size(uint64_t size);

// Fills *out from the request; on a value qemu refuses, reports qemu's words and fails.
guest::Status vhdx_create_params(const guest::CreateRequest& req, guest::CreateTarget& target,
                                 VhdxCreateParams* out);

} // namespace instar::vhdx

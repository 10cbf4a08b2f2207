// The VHD (vpc) reader: the data path of read_api.h over fixed, dynamic and differencing disks,
// following qemu's block/vpc.c (vpc_co_preadv, vpc_co_block_status).
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::vpc {

// BAT entries are cached in pages of this many entries (4 KiB of BAT, one device read each).
inline constexpr uint32_t VPC_BAT_PAGE_ENTRIES = 1024;
// Pages kept: 8 x 4 KiB = 32 KiB of BAT, 16 GiB of disk at 2 MiB blocks; older pages are evicted.
inline constexpr uint32_t VPC_BAT_CACHE_PAGES = 8;
// Bytes of a differencing block's sector bitmap cached (one sector: 4096 sectors = 2 MiB of disk).
inline constexpr uint32_t VPC_BITMAP_CACHE_BYTES = 512;

// Opens a VHD for reading after qemu's open checks (vpc_load, the same code as info).
//  - fixed: the virtual disk is the file from offset 0 (zeros past its end); status follows the
//    file's allocation (holes Zero), with offsets, as qemu's raw pass-through does;
//  - dynamic: allocated blocks are Data (the whole block, the sector bitmap is not consulted, as
//    qemu), unallocated blocks Zero (qemu's BDRV_BLOCK_ZERO);
//  - differencing (instar extension; qemu reads them as dynamic disks): blocks absent from the BAT
//    and sectors whose bitmap bit is clear are Unallocated, so the caller reads the parent.
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::vpc

// The VHDX reader: the data path of read_api.h over fixed, dynamic and differencing disks,
// following qemu's block/vhdx.c (vhdx_co_readv; qemu has no block status for vhdx).
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::vhdx {

// BAT entries are cached in pages of this many entries (4 KiB of BAT, one device read each).
inline constexpr uint32_t VHDX_BAT_PAGE_ENTRIES = 512;
// Pages kept: 8 x 4 KiB = 32 KiB of BAT (4 GiB of disk at 1 MiB blocks); older pages are evicted.
inline constexpr uint32_t VHDX_BAT_CACHE_PAGES = 8;
// Bytes of a sector bitmap block cached (4 KiB: 32768 sectors, 16 MiB of disk).
inline constexpr uint32_t VHDX_BITMAP_CACHE_BYTES = 4096;

// Opens a VHDX for reading after qemu's open checks (vhdx_load, the same code as info; a log that
// needs replay is refused with qemu-img's read-only message).
//  - fixed and dynamic: every range is Data without an offset, as qemu's map shows them (the
//    driver has no block status); reads return the payload of FULLY_PRESENT blocks and zeros for
//    NOT_PRESENT, UNDEFINED, ZERO and UNMAPPED blocks, as qemu; PARTIALLY_PRESENT and the reserved
//    state 4 are Corrupt (qemu: -EIO).
//  - differencing (instar extension; qemu refuses them with "Operation not supported"):
//    FULLY_PRESENT is Data (with its offset), ZERO is Zero, NOT_PRESENT / UNDEFINED / UNMAPPED are
//    Unallocated (the parent's), PARTIALLY_PRESENT follows the chunk's sector bitmap (set: Data,
//    clear: Unallocated).
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::vhdx

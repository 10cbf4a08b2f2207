// The VDI reader: the data path of read_api.h over static and dynamic images, following qemu's
// block/vdi.c (vdi_co_preadv, vdi_co_block_status).
#pragma once

#include <instar/guest/read_api.h>

#include "vdi_header.h"

#include <stdint.h>

namespace instar::vdi {

// Block map entries are cached in pages of this many entries (4 KiB of map, one device read each).
inline constexpr uint32_t VDI_BMAP_PAGE_ENTRIES = 1024;
// Pages kept: 8 x 4 KiB of map = 8 GiB of disk at 1 MiB blocks; older pages are evicted, so memory
// stays fixed whatever blocks_in_image says (qemu would allocate up to 2 GiB for the map).
inline constexpr uint32_t VDI_BMAP_CACHE_PAGES = 8;

// The block map entry of `block` (< blocks_in_image) read from the device: the map's bytes that lie
// past the end of the file read as zeros, as qemu's block layer reads them.
guest::Status vdi_read_entries(guest::BlockDevice& dev, const VdiImage& img, uint64_t first, uint64_t count,
                               uint32_t* out);

// Opens a VDI for reading after qemu's open checks (vdi_load):
//  - a block whose map entry is 0xffffffff or 0xfffffffe is Zero (qemu: BDRV_BLOCK_ZERO);
//  - any other entry is Data at offset_data + entry * 1 MiB; bytes past the end of the file read as
//    zeros (qemu's block layer), so entries need no upper bound;
//  - in a static image (qemu: BDRV_BLOCK_RECURSE) a block's runs that are holes in the file, or lie
//    past its end, are Zero with their offset (the file's allocation, as the host reports it).
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::vdi

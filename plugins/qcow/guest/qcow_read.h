// The qcow reader: read_api.h over qemu's get_cluster_offset (allocate = 0), qcow_co_preadv and
// qcow_co_block_status. Unallocated clusters are Unallocated (the caller reads the backing file or
// zeros), compressed ones Data without an offset (zlib raw deflate, window 12), plain ones Data at
// their file offset; AES-encrypted images decrypt with the user's key (legacy qcow AES-CBC).
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qcow {

// Table entries are cached in pages of this many (4 KiB of table, one device read per miss)...
inline constexpr uint32_t QCOW_ENTRY_PAGE_ENTRIES = 512;
// ... and this many pages (256 KiB: 32 Mi clusters' worth of L2 entries).
inline constexpr uint32_t QCOW_ENTRY_CACHE_PAGES = 64;

guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::qcow

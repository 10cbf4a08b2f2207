// The QED reader: read_api.h over qemu's qed_find_cluster (block/qed-cluster.c) and
// bdrv_qed_co_block_status. Unallocated clusters are Unallocated (the caller reads the backing
// file or zeros), zero clusters (offset 1) Zero, allocated ones Data with their file offset.
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qed {

// Table entries are cached in pages of this many (4 KiB of table, one device read per miss)...
inline constexpr uint32_t QED_ENTRY_PAGE_ENTRIES = 512;
// ... and this many pages (256 KiB: a whole default L1 table, or 2 GiB of disk at 64 KiB clusters).
inline constexpr uint32_t QED_ENTRY_CACHE_PAGES = 64;

guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::qed

// The Parallels reader: the data path of read_api.h, as qemu's parallels_co_readv and
// parallels_co_block_status.
#pragma once

#include <instar/guest/read_api.h>

namespace instar::parallels {

// BAT pages kept by the reader: 8 x 1024 entries (32 KiB), whatever bat_entries says.
inline constexpr uint32_t PRL_BAT_CACHE_PAGES = 8;
// Clusters one status() answer walks at most (the caller asks again for the rest), so a request
// over a 2^29-entry BAT costs bounded time per call.
inline constexpr uint64_t PRL_MAX_RUN_CLUSTERS = 65536;

// Opens a Parallels image after qemu's open checks:
//  - cluster i (< bat_entries) with a nonzero BAT entry is Data at entry * off_multiplier * 512 in
//    the file; bytes past the end of the file read as zeros (qemu's block layer);
//  - a zero entry, and every cluster past the BAT, is Unallocated (zeros, or the backing file's:
//    qemu's parallels supports backing files through the generic layer);
//  - contiguous clusters are one run, as qemu's block_status merges them.
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::parallels

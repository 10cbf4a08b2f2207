// The VMDK format's convert target: create's image, then data stored as qemu's block/vmdk.c stores
// it, so `convert -O vmdk` output is qemu-img's byte for byte apart from the random CID.
#pragma once

#include <instar/guest/write_api.h>

namespace instar::vmdk {

// qemu's zlib compress() for streamOptimized grains: deflateInit's defaults.
inline constexpr int VMDK_DEFLATE_LEVEL = 6;     // Z_DEFAULT_COMPRESSION
inline constexpr int VMDK_DEFLATE_WINDOW = 15;   // zlib wrapper, 32 KiB window
inline constexpr int VMDK_DEFLATE_MEM_LEVEL = 8; // DEF_MEM_LEVEL
// qemu's grain marker before each compressed grain: lba (8 bytes) and size (4 bytes).
inline constexpr size_t VMDK_GRAIN_MARKER_BYTES = 12;
// qemu allocates grains only below 2^32 sectors (VMDK_EXTENT_MAX_SECTORS): grain table entries are
// 32-bit sector numbers.
inline constexpr uint64_t VMDK_WRITE_MAX_SECTOR = 1ull << 32;
// A zeroed grain's table entry (VMDK_GTE_ZEROED), with the zeroed_grain flag.
inline constexpr uint32_t VMDK_GTE_ZEROED = 1;

// Creates the image exactly as create() does (extents through target.add_file), then returns a
// writer: sparse extents allocate 64 KiB grains at the end of their file and update both grain
// tables; streamOptimized stores each grain deflated behind a grain marker; flat extents take the
// data in place. The first write gives the descriptor a new CID, as qemu's does.
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

} // namespace instar::vmdk

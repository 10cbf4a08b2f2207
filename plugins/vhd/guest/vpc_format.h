// The VHD (qemu: vpc) format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

#include "vpc_dynamic_header.h"
#include "vpc_footer.h"

namespace instar::vpc {

// True for a footer cookie at offset 0 (dynamic/differencing) or in the last 512 bytes of a fixed disk.
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "vpc", qemu's virtual size and cluster size, and a differencing disk's parent.
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

// What qemu's vpc_open establishes about an image, shared by info and the reader.
struct VpcImage {
    VpcFooter footer;
    bool dynamic;             // a footer copy at 0: dynamic or differencing (header valid)
    uint64_t virtual_size;    // qemu's rule: CHS, or current_size for some creators / maxed geometry
    VpcDynamicHeader header;  // dynamic only
    uint64_t bitmap_size;     // dynamic only: bytes of sector bitmap before each block's data
    uint64_t free_data_block_offset = 0; // dynamic only: qemu's next block position (after the last one)
    // Dynamic only: bit i set when an allocated block covers parent locator i's data (a writer that
    // took a differencing disk for a dynamic one, as qemu does, put a block over it).
    uint8_t covered_locators = 0;
    char message[96];         // storage for a formatted error text (*why may point here)
};

// qemu's sector bitmap size before each block's data: ((block_size / 4096) + 511) & ~511 (0 for
// blocks under 4 KiB, as qemu computes it).
inline uint64_t vpc_bitmap_size(uint32_t block_size) { return ((block_size / (8 * 512)) + uint64_t{511}) & ~uint64_t{511}; }

// Runs qemu's open checks (footer, size, dynamic header, BAT truncation check). On failure *why
// (when not nullptr) is qemu's error text where it has one.
guest::Status vpc_load(guest::BlockDevice& dev, guest::Allocator& alloc, VpcImage* out, const char** why);

} // namespace instar::vpc

// The VHD (qemu: vpc) format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/format_util.h>
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
    char message[96];         // storage for a formatted error text (*why may point here)
};

// qemu's sector bitmap size before each block's data: ((block_size / 4096) + 511) & ~511 (0 for
// blocks under 4 KiB, as qemu computes it).
inline uint64_t vpc_bitmap_size(uint32_t block_size) { return ((block_size / (8 * 512)) + uint64_t{511}) & ~uint64_t{511}; }

inline constexpr uint32_t VPC_BAT_UNUSED = 0xFFFFFFFF;
// Bytes of BAT read at a time by a scan: each read is a hypercall, so a 2 TiB disk's 4 MiB BAT
// takes 128 reads, not 1024 (vhdx_bat.h has the same reason). The buffer is freed before the
// reader allocates its own (whose peak the unit tests bound below 64 KiB).
inline constexpr size_t VPC_BAT_CHUNK = 32 * 1024;

// Calls visit(start, end) with the file range of every allocated block (its sector bitmap and
// data), in BAT order, until visit returns false. The BAT must lie in the file (Corrupt otherwise).
template <class Visit>
guest::Status vpc_each_block(guest::BlockDevice& dev, guest::Allocator& alloc, const VpcDynamicHeader& h,
                             Visit visit) {
    const uint64_t bat_bytes = static_cast<uint64_t>(h.max_table_entries) * 4;
    if (h.table_offset > dev.size() || bat_bytes > dev.size() - h.table_offset)
        return guest::Status::Corrupt;
    const uint64_t span = vpc_bitmap_size(h.block_size) + h.block_size;
    guest::ScopedBuffer chunk(alloc, VPC_BAT_CHUNK);
    if (!chunk.p)
        return guest::Status::NoMemory;
    for (uint64_t done = 0; done < bat_bytes;) {
        const uint64_t n = bat_bytes - done < VPC_BAT_CHUNK ? bat_bytes - done : VPC_BAT_CHUNK;
        if (const guest::Status st = dev.read(h.table_offset + done, chunk.p, n); st != guest::Status::Ok)
            return st;
        for (uint64_t i = 0; i + 4 <= n; i += 4) {
            const uint8_t* b = chunk.p + i;
            const uint32_t e = uint32_t{b[0]} << 24 | uint32_t{b[1]} << 16 | uint32_t{b[2]} << 8 | b[3];
            if (e == VPC_BAT_UNUSED)
                continue;
            const uint64_t start = 512 * static_cast<uint64_t>(e);
            if (!visit(start, start + span))
                return guest::Status::Ok;
        }
        done += n;
    }
    return guest::Status::Ok;
}

// Runs qemu's open checks (footer, size, dynamic header, BAT truncation check). On failure *why
// (when not nullptr) is qemu's error text where it has one.
guest::Status vpc_load(guest::BlockDevice& dev, guest::Allocator& alloc, VpcImage* out, const char** why);

} // namespace instar::vpc

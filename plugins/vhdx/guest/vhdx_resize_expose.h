// vhdx: what a differencing disk's grow exposes reads as zeros, not as its parent's data
// (docs/resize.md, "vmdk, vpc, vhdx"). qemu zeroes the grown area of a qcow2 overlay whose backing
// image reaches into it (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE); a differencing VHDX does the same
// with its own states: whole payload blocks past the old size become PAYLOAD_BLOCK_ZERO (the new
// entries, written by the grow, and the old ones a shrink kept in the last chunk), and the block
// holding the old end keeps its head as it was and reads zeros after it (its data zeroed and its
// sectors marked present; a block the parent served becomes partially present, in a new payload
// block, with a new sector bitmap block when its chunk has none).
#pragma once

#include <instar/guest/edit_device.h>
#include <instar/guest/format_api.h>

#include <stdint.h>

namespace instar::vhdx {

struct VhdxExpose {
    uint64_t bat;         // the BAT's file offset as the grow writes it (relocated or not)
    uint64_t old_size;    // the virtual size before
    uint64_t new_size;    // after
    uint64_t old_entries; // BAT entries the old size had (whole chunks: a differencing disk's rule)
    uint64_t ratio;       // chunk ratio
    uint32_t block;       // payload block size
    bool parent_reaches;  // the parent image is longer than old_size
};

// File bytes the block holding the old end needs at the file's end (1 MiB aligned, zeros): 0, the
// payload block, or the payload block and a sector bitmap block.
guest::Status vhdx_expose_space(guest::SizedDevice& dev, const VhdxExpose& x, uint64_t* bytes);

// After the grow wrote its new entries and zeroed the old end's block tail, before the size
// switch: the stale entries past the old end become PAYLOAD_BLOCK_ZERO and the old end's block
// reads zeros past it. `space` is where vhdx_expose_space's bytes start (the file already covers
// them). Nothing the old size shows changes.
guest::Status vhdx_expose_zeros(guest::SizedDevice& dev, guest::Allocator& alloc, const VhdxExpose& x,
                                uint64_t space);

} // namespace instar::vhdx

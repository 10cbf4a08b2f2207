// vmdk: what a delta disk's grow exposes reads as zeros, not its parent's data (docs/resize.md,
// "vmdk, vpc, vhdx"). A sparse extent shows its parent wherever a grain is unallocated, so a grow
// over a parent that reaches past the old end (a child made smaller than its parent, or shrunk and
// grown again) would show the parent there; qemu zeroes that area of a qcow2 overlay
// (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE). For a hosted sparse extent (monolithicSparse, the
// delta disk qemu-img creates): every grain from the old end to the parent's end gets a grain of
// its own (GTE 1 where the header allows zeroed grains, else new grains at the file's end whose
// data is left as holes), and an unallocated grain holding the old end a new grain with the
// parent's bytes up to the old end (the host sends them: RESIZE_DATA_NEED_BACKING) and zeros
// after. Both directories' tables are written; all of it before the header switch, and nothing
// the old capacity shows changes.
#pragma once

#include <instar/guest/edit_api.h>
#include <instar/guest/edit_device.h>

#include <stdint.h>

namespace instar::vmdk {

struct VmdkExpose {
    uint64_t gd;          // the grain directory's file offset as the grow writes it
    uint64_t rgd;         // the redundant one's, 0 when none
    uint64_t gtes_per_gt; // grain table entries per table
    uint64_t granularity; // sectors per grain
    uint64_t cap;         // the old capacity, sectors
    uint64_t parent_end;  // where the parent's data ends, sectors, capped at the new capacity
    bool zero_grain;      // the header's zeroed-grain flag: GTE 1 reads zeros
};

// Before anything is written: the file offset of the parent's bytes the grain holding the old end
// needs (that grain's start, granularity * 512 bytes), or UINT64_MAX when it needs none. Unsupported
// when that grain has no table, TooLarge when it is larger than RESIZE_MAX_BACKING_BYTES.
guest::Status vmdk_expose_head(guest::SizedDevice& dev, const VmdkExpose& x, uint64_t* parent_offset);

// After the grow's tables are in place, before the header switch. `head`: the parent's bytes of
// the grain holding the old end (granularity * 512 of them), when vmdk_expose_head asked for them.
guest::Status vmdk_expose_zeros(guest::SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc,
                                const VmdkExpose& x, const uint8_t* head);

} // namespace instar::vmdk

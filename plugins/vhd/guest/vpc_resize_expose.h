// vpc: what a dynamic or differencing disk's grow exposes reads as zeros (docs/resize.md, "vmdk,
// vpc, vhdx"). Blocks wholly past the old end that the table still references (another tool's
// image: instar's shrink drops them) are dropped as a shrink drops them (their space discarded,
// since qemu reuses space after the last referenced block without zeroing it). A differencing
// disk whose parent reaches past the old end must not show the parent there (qemu zeroes a qcow2
// overlay's grown area then, bdrv_co_truncate's BDRV_REQ_ZERO_WRITE); VHD has no zero state, so
// the block holding the old end gets its tail sectors marked present (its data zeroed by the
// grow's zero_tail; a block the parent served becomes a new block), and every block the parent
// reaches past it a new block with every sector in the disk present: bitmaps written, data left
// as holes of the file, the footer after the last one.
#pragma once

#include <instar/guest/edit_device.h>
#include <instar/guest/format_api.h>

#include <stdint.h>

namespace instar::vpc {

struct VpcExpose {
    uint64_t table;        // the BAT's file offset as the grow writes it (relocated or not)
    uint32_t old_entries;  // entries the old table had (the ones that may reference blocks); the
                           // grown table has one for every block of new_size
    uint32_t block_size;
    uint64_t bitmap_size;  // bytes of sector bitmap before each block's data
    uint64_t old_size;     // the virtual size before
    uint64_t new_size;     // after
    uint64_t parent_end;   // differencing disks: where the parent's data ends, capped at new_size
                           // (old_size when it does not reach past the old end); 0 otherwise
};

// [offset, offset + len) of `dev` written with `byte` (BAT entries 0xFF, zeros), 64 KiB at a time.
guest::Status vpc_write_fill(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t offset, uint64_t len,
                             uint8_t byte);

// Entries [first, last) of the table at x.table that reference blocks become unused, and the space
// of those blocks is discarded (or zeroed where the file cannot punch holes): a shrink's tidying
// after its switch, and a grow's first step.
guest::Status vpc_drop_blocks(guest::SizedDevice& dev, guest::Allocator& alloc, const VpcExpose& x, uint64_t first,
                              uint64_t last);

// Run after the grown table is in place and before the header and footer switch; *footer_at is
// where the file's trailing footer lies (new blocks go there, and it moves past them). Nothing the
// old size shows changes.
guest::Status vpc_expose_zeros(guest::SizedDevice& dev, guest::EditHost& host, guest::Allocator& alloc,
                               const VpcExpose& x, uint64_t* footer_at);

} // namespace instar::vpc

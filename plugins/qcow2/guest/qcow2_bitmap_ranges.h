// Where an image's persistent bitmaps lie: the bitmap directory, every bitmap table and every data
// cluster the tables name (qemu's metadata overlap check, QCOW2_OL_BITMAP_DIRECTORY, and the
// clusters qemu's refcounts count for bitmaps). An in-place writer that frees the active layer's
// clusters (qcow2_edit_empty_discard.cpp) must neither name nor free one of them.
#pragma once

#include "qcow2_bitmap_dirty.h"
#include "qcow2_header.h"
#include "qcow2_ranges.h"
#include "qcow2_read_reason.h"

#include <stdint.h>

namespace instar::qcow2 {

// Bitmap data clusters tracked at most (16 bytes each: 16 MiB). A 64 KiB-granularity bitmap of a
// 32 TiB disk is 1024 data clusters of 64 KiB; a directory whose tables name more is refused
// (TooLarge, with a reason) rather than tracked without bound.
inline constexpr uint64_t BITMAP_RANGES_MAX = 1u << 20;

class BitmapRanges {
public:
    // Reads the bitmaps extension, the directory and every bitmap table (in BITMAP_TABLE_CHUNK
    // pieces) of the image on `dev` (`file_len` bytes long), with qemu's checks
    // (qcow2_bitmap_walk.h). Nothing to do without the autoclear bitmaps bit (qemu ignores the
    // extension then). Corrupt with `why` set on a directory or table qemu would not load.
    // `dirty` (may be null): filled from the same walk (BitmapDirty::begin, then add per entry).
    Status load(const Qcow2Header& h, guest::BlockDevice& dev, uint64_t file_len, guest::Allocator& alloc,
                ReasonText* why, BitmapDirty* dirty = nullptr);
    bool hits(uint64_t first, uint64_t end) const { return ranges_.hits(first, end); }
    void release(guest::Allocator& alloc) { ranges_.release(alloc); }

private:
    SortedRanges ranges_;
};

} // namespace instar::qcow2

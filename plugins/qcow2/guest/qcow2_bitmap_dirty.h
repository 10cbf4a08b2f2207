// Writes into an existing qcow2 image record themselves in its enabled persistent bitmaps, as
// qemu's block layer does (bdrv_set_dirty for every write, zero write and discard): convert -n,
// commit into a base, safe rebase's copies into the overlay (qcow2_existing_write.cpp).
//
// qemu keeps the bitmaps in memory while the image is open read-write (marked IN_USE on disk) and
// stores them anew on close, into new clusters. instar sets the bits in place instead, in the data
// clusters the tables name (a table entry without one gets a new cluster, counted before the entry
// names it), and does so before the data is written: a kill at any point leaves every bitmap a
// superset of the guest writes that reached the image, consistent, never IN_USE. Same bits as
// qemu's; the clusters they live in differ (divergence qcow2-write-bitmaps, docs/quirks.md).
// Disabled bitmaps and IN_USE (inconsistent) ones are left alone, as qemu leaves them.
// Freestanding-clean.
#pragma once

#include "qcow2_bitmap_walk.h"
#include "qcow2_header.h"
#include "qcow2_read_reason.h"

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qcow2 {

class BitmapDirty {
public:
    // Where a bitmap's new data cluster comes from: the writer appends a cluster holding `data`
    // (cluster_size bytes), its refcount 1 before it returns, and says where. file_length(): the
    // image file's current length (new clusters lie past the length at load).
    class Clusters {
    public:
        virtual Status append(const uint8_t* data, uint64_t* host) = 0;
        virtual uint64_t file_length() const = 0;

    protected:
        ~Clusters() = default;
    };

    // Filled by BitmapRanges::load's walk of the directory (one read of it for both): begin() for
    // the image on `dev` with `count` directory entries, then add() for each entry (checked as
    // qemu's, qcow2_bitmap_walk.h), which keeps the enabled, consistent ones.
    Status begin(const Qcow2Header& h, guest::BlockDevice& dev, uint32_t count, guest::Allocator& alloc);
    void add(const Qcow2BitmapDirEntry& e);
    bool active() const { return count_ != 0; }
    // Sets the bits of every loaded bitmap that cover guest bytes [offset, offset + len).
    Status mark(uint64_t offset, uint64_t len, Clusters& clusters, ReasonText* why);
    void release(guest::Allocator& alloc);

private:
    struct Bitmap {
        uint64_t table_offset;
        uint32_t table_size;
        uint8_t gran_bits;
    };
    Status mark_one(const Bitmap& b, uint64_t first, uint64_t last, Clusters& clusters, ReasonText* why);

    guest::BlockDevice* dev_ = nullptr;
    uint64_t cs_ = 0;
    Bitmap* bitmaps_ = nullptr;
    uint32_t count_ = 0;
    uint32_t capacity_ = 0;
    uint8_t* buf_ = nullptr; // one cluster: a data cluster's bytes being changed
};

} // namespace instar::qcow2

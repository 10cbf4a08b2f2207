// The set of host clusters with refcount 1 while a new image is laid out, as sorted disjoint
// ranges. A new image's refcounts are only ever 0 or 1 and its allocations are nearly contiguous,
// so a few ranges describe even a fully preallocated 1 TiB image.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

struct Qcow2Extent {
    uint64_t start; // first cluster index
    uint64_t end;   // one past the last
};

// The ranges never exceed QCOW2_CREATE_MAX_EXTENTS: holes appear only where qemu frees an old
// refcount table (a handful per image, the table grows by half each time), so 4096 is far beyond
// any real layout while bounding the storage at 64 KiB.
inline constexpr size_t QCOW2_CREATE_MAX_EXTENTS = 4096;

class Qcow2Extents {
public:
    // `storage` holds QCOW2_CREATE_MAX_EXTENTS entries and outlives this object.
    explicit Qcow2Extents(Qcow2Extent* storage) : e_(storage) {}

    bool contains(uint64_t c) const;
    // The first free cluster >= c.
    uint64_t next_free(uint64_t c) const;
    // The first allocated cluster >= c, or UINT64_MAX.
    uint64_t next_allocated(uint64_t c) const;
    // The last allocated cluster < limit, or UINT64_MAX when there is none.
    uint64_t last_allocated_below(uint64_t limit) const;
    // Marks [a, b) allocated / free. False when the range list is full.
    bool set(uint64_t a, uint64_t b);
    bool clear(uint64_t a, uint64_t b);

    // Index of the first range ending after c (count() when none).
    size_t first_ending_after(uint64_t c) const;
    size_t count() const { return n_; }
    const Qcow2Extent& at(size_t i) const { return e_[i]; }

private:
    bool insert_at(size_t i, Qcow2Extent x);
    void erase(size_t i, size_t k);

    Qcow2Extent* e_;
    size_t n_ = 0;
};

} // namespace instar::qcow2

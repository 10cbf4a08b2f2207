// A set of byte ranges of an image file that no write may land on (SnapshotRanges, BitmapRanges):
// kept sorted by start with the running maximum of their ends, so one binary search answers
// whether a range meets any of them, whatever their number or overlaps. Freestanding-clean.
#pragma once

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qcow2 {

using guest::Status;

class SortedRanges {
public:
    // Room for `n` ranges (once, before any add).
    Status reserve(guest::Allocator& alloc, uint64_t n);
    // Adds [start, end) (an empty one is dropped); false when the room reserve() made is full.
    bool add(uint64_t start, uint64_t end);
    // Sorts what was added; hits() answers after this.
    void finish();
    // Whether [first, end) meets a range (an empty set has none).
    bool hits(uint64_t first, uint64_t end) const;
    void release(guest::Allocator& alloc);

private:
    struct Range {
        uint64_t start;
        uint64_t max_end; // the largest end among ranges [0, this one] once finished
    };
    Range* ranges_ = nullptr;
    uint64_t count_ = 0;
    uint64_t capacity_ = 0;
    uint64_t bytes_ = 0;
};

} // namespace instar::qcow2

// Sorted metadata ranges (qcow2_ranges.h).
#include "qcow2_ranges.h"

#include "qcow2_sort.h"

namespace instar::qcow2 {

Status SortedRanges::reserve(guest::Allocator& alloc, uint64_t n) {
    if (ranges_ != nullptr || n == 0)
        return ranges_ != nullptr ? Status::Invalid : Status::Ok;
    if (n > UINT64_MAX / sizeof(Range))
        return Status::TooLarge;
    bytes_ = n * sizeof(Range);
    ranges_ = static_cast<Range*>(alloc.allocate(static_cast<size_t>(bytes_), 16));
    if (ranges_ == nullptr)
        return Status::NoMemory;
    capacity_ = n;
    return Status::Ok;
}

bool SortedRanges::add(uint64_t start, uint64_t end) {
    if (start >= end)
        return true; // holds no byte (an empty L1 or bitmap table): nothing may be kept off it
    if (count_ == capacity_)
        return false;
    ranges_[count_++] = {start, end};
    return true;
}

void SortedRanges::finish() {
    heap_sort(ranges_, count_, [](const Range& a, const Range& b) { return a.start < b.start; });
    for (uint64_t i = 1; i < count_; ++i)
        if (ranges_[i].max_end < ranges_[i - 1].max_end)
            ranges_[i].max_end = ranges_[i - 1].max_end;
}

bool SortedRanges::hits(uint64_t first, uint64_t end) const {
    // The ranges starting below `end` are ranges_[0, lo); the last of them has the largest end.
    const uint64_t lo = partition_point(ranges_, count_, [end](const Range& r) { return r.start < end; });
    return lo > 0 && ranges_[lo - 1].max_end > first;
}

void SortedRanges::release(guest::Allocator& alloc) {
    if (ranges_ != nullptr)
        alloc.deallocate(ranges_, static_cast<size_t>(bytes_));
    ranges_ = nullptr;
    count_ = capacity_ = bytes_ = 0;
}

} // namespace instar::qcow2

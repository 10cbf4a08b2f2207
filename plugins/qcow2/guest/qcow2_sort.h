// In-place heap sort and binary search for the qcow2 guest code (no libc in the guest): O(n log n)
// and O(log n) whatever the input, no recursion and no extra memory, so a hostile table of any
// length costs no more than a sorted one.
#pragma once

#include <stdint.h>

namespace instar::qcow2 {

// Sorts v[0..n) so that !less(v[i + 1], v[i]) for every i.
template <class T, class Less>
void heap_sort(T* v, uint64_t n, Less less) {
    auto sift = [v, &less](uint64_t root, uint64_t end) {
        while (2 * root + 1 < end) {
            uint64_t child = 2 * root + 1;
            if (child + 1 < end && less(v[child], v[child + 1]))
                ++child;
            if (!less(v[root], v[child]))
                return;
            const T t = v[root];
            v[root] = v[child];
            v[child] = t;
            root = child;
        }
    };
    for (uint64_t i = n / 2; i-- > 0;)
        sift(i, n);
    for (uint64_t end = n; end > 1; --end) {
        const T t = v[0];
        v[0] = v[end - 1];
        v[end - 1] = t;
        sift(0, end - 1);
    }
}

// The number of leading elements of v[0..n) for which below(v[i]) holds, v being ordered so that
// they come first (std::partition_point's index): the first element not below, or n.
template <class T, class Below>
uint64_t partition_point(const T* v, uint64_t n, Below below) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (below(v[mid]))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

} // namespace instar::qcow2

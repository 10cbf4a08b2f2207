// Sorted disjoint cluster ranges for the create-time refcount model.
#include "qcow2_create_extents.h"

#include "qcow2_sort.h"

namespace instar::qcow2 {

size_t Qcow2Extents::first_ending_after(uint64_t c) const {
    return static_cast<size_t>(partition_point(e_, n_, [c](const auto& e) { return e.end <= c; }));
}

bool Qcow2Extents::contains(uint64_t c) const {
    const size_t i = first_ending_after(c);
    return i < n_ && e_[i].start <= c;
}

uint64_t Qcow2Extents::next_free(uint64_t c) const {
    const size_t i = first_ending_after(c);
    return i < n_ && e_[i].start <= c ? e_[i].end : c; // ranges are merged, so end is free
}

uint64_t Qcow2Extents::next_allocated(uint64_t c) const {
    const size_t i = first_ending_after(c);
    if (i == n_)
        return UINT64_MAX;
    return e_[i].start <= c ? c : e_[i].start;
}

uint64_t Qcow2Extents::last_allocated_below(uint64_t limit) const {
    if (limit == 0)
        return UINT64_MAX;
    size_t i = first_ending_after(limit - 1);
    if (i < n_ && e_[i].start <= limit - 1)
        return limit - 1;
    if (i == 0)
        return UINT64_MAX;
    return e_[i - 1].end - 1;
}

bool Qcow2Extents::insert_at(size_t i, Qcow2Extent x) {
    if (n_ == QCOW2_CREATE_MAX_EXTENTS)
        return false;
    for (size_t j = n_; j > i; --j)
        e_[j] = e_[j - 1];
    e_[i] = x;
    ++n_;
    return true;
}

void Qcow2Extents::erase(size_t i, size_t k) {
    for (size_t j = i; j + k < n_; ++j)
        e_[j] = e_[j + k];
    n_ -= k;
}

bool Qcow2Extents::set(uint64_t a, uint64_t b) {
    if (a >= b)
        return true;
    // Ranges touching or overlapping [a, b) merge with it.
    const size_t i = first_ending_after(a == 0 ? 0 : a - 1); // the first range ending at or after a
    size_t j = i;
    uint64_t lo = a;
    uint64_t hi = b;
    while (j < n_ && e_[j].start <= b) {
        lo = e_[j].start < lo ? e_[j].start : lo;
        hi = e_[j].end > hi ? e_[j].end : hi;
        ++j;
    }
    if (j == i)
        return insert_at(i, {lo, hi});
    e_[i] = {lo, hi};
    erase(i + 1, j - i - 1);
    return true;
}

bool Qcow2Extents::clear(uint64_t a, uint64_t b) {
    if (a >= b)
        return true;
    size_t i = first_ending_after(a);
    while (i < n_ && e_[i].start < b) {
        Qcow2Extent& x = e_[i];
        if (x.start < a && x.end > b) { // split in two
            const Qcow2Extent tail{b, x.end};
            x.end = a;
            return insert_at(i + 1, tail);
        }
        if (x.start < a) {
            x.end = a;
            ++i;
        } else if (x.end > b) {
            x.start = b;
            return true;
        } else {
            erase(i, 1);
        }
    }
    return true;
}

} // namespace instar::qcow2

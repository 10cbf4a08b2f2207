// A set of table indexes held as bits in one arena block (freestanding): what the existing-image
// writer has vetted, or made itself, among its L1 and refcount-table entries.
#pragma once

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

class Qcow2IndexSet {
public:
    // Room for indexes [0, n), all absent. NoMemory when the arena is exhausted.
    guest::Status init(guest::Allocator& alloc, uint64_t n) {
        const uint64_t bytes = n / 8 + 1;
        if (bytes > SIZE_MAX)
            return guest::Status::NoMemory;
        bits_ = static_cast<uint8_t*>(alloc.allocate(static_cast<size_t>(bytes), 8));
        if (bits_ == nullptr)
            return guest::Status::NoMemory;
        __builtin_memset(bits_, 0, static_cast<size_t>(bytes));
        n_ = n;
        return guest::Status::Ok;
    }
    void release(guest::Allocator& alloc) {
        if (bits_ != nullptr)
            alloc.deallocate(bits_, static_cast<size_t>(n_ / 8 + 1));
        bits_ = nullptr;
        n_ = 0;
    }
    bool has(uint64_t i) const { return i < n_ && ((bits_[i / 8] >> (i % 8)) & 1) != 0; }
    void add(uint64_t i) {
        if (i < n_)
            bits_[i / 8] = static_cast<uint8_t>(bits_[i / 8] | (1u << (i % 8)));
    }

private:
    uint8_t* bits_ = nullptr;
    uint64_t n_ = 0;
};

} // namespace instar::qcow2

// Subclusters of extended L2 entries (qcow2.txt, "Extended L2 Entries"): each 16-byte entry is
// the standard descriptor and a bitmap, bit i "subcluster i allocated", bit 32 + i "subcluster i
// reads as zeros", 32 subclusters per cluster. qemu's qcow2_get_subcluster_type, the bitmap
// updates of qcow2_alloc_cluster_link_l2 and zero_l2_subclusters, and calculate_l2_meta's
// copy-on-write bounds for a write inside one cluster. Freestanding; the existing-image writer's.
#pragma once

#include <stdint.h>

namespace instar::qcow2 {

inline constexpr uint64_t QCOW2_SUBCLUSTERS = 32; // per cluster, with extended L2 entries
inline constexpr uint64_t QCOW2_L2_BITMAP_ALL_ALLOC = 0xffffffffull;
inline constexpr uint64_t QCOW2_L2_BITMAP_ALL_ZEROES = 0xffffffffull << 32;

enum class Qcow2Sc { Normal, ZeroPlain, ZeroAlloc, UnallocPlain, UnallocAlloc, Compressed, Invalid };

// qcow2_get_subcluster_type: `allocated` says the entry maps a host cluster (not compressed).
inline Qcow2Sc qcow2_sc_type(bool compressed, bool allocated, uint64_t bm, uint64_t sc) {
    if (compressed)
        return Qcow2Sc::Compressed;
    const bool alloc_bit = (bm >> sc) & 1, zero_bit = (bm >> (32 + sc)) & 1;
    if (alloc_bit && zero_bit)
        return Qcow2Sc::Invalid;
    if (allocated)
        return zero_bit ? Qcow2Sc::ZeroAlloc : alloc_bit ? Qcow2Sc::Normal : Qcow2Sc::UnallocAlloc;
    if (alloc_bit)
        return Qcow2Sc::Invalid;
    return zero_bit ? Qcow2Sc::ZeroPlain : Qcow2Sc::UnallocPlain;
}

// Whether any subcluster of the entry is Invalid (an allocation bit with its zero bit, or on an
// entry mapping nothing): qemu fails a request that meets one; the writer refuses the image.
inline bool qcow2_sc_bitmap_invalid(bool compressed, bool allocated, uint64_t bm) {
    if (compressed)
        return false; // the bitmap of a compressed cluster is not looked at
    const uint64_t alloc = bm & QCOW2_L2_BITMAP_ALL_ALLOC, zero = bm >> 32;
    return (alloc & zero) != 0 || (!allocated && alloc != 0);
}

// The allocation bits of subclusters first..last (QCOW_OFLAG_SUB_ALLOC_RANGE); << 32, their zero bits.
inline uint64_t qcow2_sc_range(uint64_t first, uint64_t last) {
    return ((uint64_t{1} << (last + 1)) - 1) & ~((uint64_t{1} << first) - 1);
}
// Data landed on subclusters first..last (qcow2_alloc_cluster_link_l2).
inline uint64_t qcow2_sc_written(uint64_t bm, uint64_t first, uint64_t last) {
    const uint64_t r = qcow2_sc_range(first, last);
    return (bm | r) & ~(r << 32);
}
// Subclusters first..last read as zeros from now on (zero_l2_subclusters).
inline uint64_t qcow2_sc_zeroed(uint64_t bm, uint64_t first, uint64_t last) {
    const uint64_t r = qcow2_sc_range(first, last);
    return (bm | (r << 32)) & ~r;
}

// calculate_l2_meta for a write of [in, in + n) inside one cluster of `cs` bytes (subclusters of
// 1 << sc_bits): the bytes [from, to) of the cluster that end up written, the request's and the
// copy-on-write regions around it ([from, in) and [in + n, to): the guest's old bytes). keep_old:
// the cluster is written in place (handle_copied), only partial subclusters that are not Normal
// are completed; else a new cluster (handle_alloc) takes the old one's allocated subclusters
// from the first to the last (the whole cluster for a compressed one), a plain one's partial
// subclusters only. False: an Invalid subcluster where qemu looks.
struct Qcow2Cow {
    uint64_t from;
    uint64_t to;
};
inline bool qcow2_cow_bounds(bool compressed, bool allocated, uint64_t bm, uint64_t in, uint64_t n, bool keep_old,
                             uint32_t sc_bits, uint64_t cs, Qcow2Cow* out) {
    const uint64_t scs = uint64_t{1} << sc_bits, end = in + n;
    const uint64_t sc0 = in >> sc_bits, sc1 = (end - 1) >> sc_bits;
    const uint32_t alloc = static_cast<uint32_t>(bm & QCOW2_L2_BITMAP_ALL_ALLOC);
    const uint64_t ctz = alloc == 0 ? 32 : static_cast<uint64_t>(__builtin_ctz(alloc));
    const uint64_t clz = alloc == 0 ? 32 : static_cast<uint64_t>(__builtin_clz(alloc));
    const Qcow2Sc t0 = qcow2_sc_type(compressed, allocated, bm, sc0);
    const Qcow2Sc t1 = qcow2_sc_type(compressed, allocated, bm, sc1);
    const auto round_sc = [&](uint64_t v) { return (v + scs - 1) & ~(scs - 1); };
    switch (t0) {
    case Qcow2Sc::Normal: out->from = keep_old ? in : (sc0 < ctz ? sc0 : ctz) << sc_bits; break;
    case Qcow2Sc::ZeroAlloc:
    case Qcow2Sc::UnallocAlloc: out->from = keep_old ? sc0 << sc_bits : (sc0 < ctz ? sc0 : ctz) << sc_bits; break;
    case Qcow2Sc::ZeroPlain:
    case Qcow2Sc::UnallocPlain: out->from = sc0 << sc_bits; break;
    case Qcow2Sc::Compressed: out->from = 0; break;
    default: return false;
    }
    const uint64_t tail_keep = QCOW2_SUBCLUSTERS - 1 - sc1; // unallocated subclusters past the last written
    switch (t1) {
    case Qcow2Sc::Normal: out->to = keep_old ? end : cs - ((tail_keep < clz ? tail_keep : clz) << sc_bits); break;
    case Qcow2Sc::ZeroAlloc:
    case Qcow2Sc::UnallocAlloc:
        out->to = keep_old ? round_sc(end) : cs - ((tail_keep < clz ? tail_keep : clz) << sc_bits);
        break;
    case Qcow2Sc::ZeroPlain:
    case Qcow2Sc::UnallocPlain: out->to = round_sc(end); break;
    case Qcow2Sc::Compressed: out->to = cs; break;
    default: return false;
    }
    if (keep_old && (t0 == Qcow2Sc::ZeroPlain || t0 == Qcow2Sc::UnallocPlain || t1 == Qcow2Sc::ZeroPlain ||
                     t1 == Qcow2Sc::UnallocPlain))
        return false; // an allocated cluster has no plain subclusters
    return true;
}

} // namespace instar::qcow2

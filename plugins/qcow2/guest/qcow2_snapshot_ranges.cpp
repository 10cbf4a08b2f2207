// The snapshot metadata ranges (qcow2_snapshot_ranges.h).
#include "qcow2_snapshot_ranges.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_snapshot.h"
#include "qcow2_sort.h"

namespace instar::qcow2 {

Status SnapshotRanges::load(const Qcow2Header& h, guest::BlockDevice& dev, guest::Allocator& alloc, ReasonText* why) {
    const uint32_t n = h.nb_snapshots;
    if (n == 0)
        return Status::Ok;
    if (n > QCOW_MAX_SNAPSHOTS)
        return Status::TooLarge;
    bytes_ = (uint64_t{n} + 1) * sizeof(Range);
    ranges_ = static_cast<Range*>(alloc.allocate(static_cast<size_t>(bytes_), 16));
    if (ranges_ == nullptr)
        return Status::NoMemory;
    uint64_t offset = h.snapshots_offset;
    for (uint32_t i = 0; i < n; ++i) {
        offset = (offset + 7) & ~uint64_t{7};
        uint8_t hdr[sizeof(Qcow2SnapshotHeaderDisk)];
        const uint32_t extra = dev.read(offset, hdr, sizeof hdr) == Status::Ok ? load_be32(hdr + 36) : UINT32_MAX;
        if (extra > QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
            why->add("Snapshot table entry ").dec(i).add(" unreadable or too large (offset ").hex(offset).add(")");
            return Status::Corrupt;
        }
        const uint64_t l1 = load_be64(hdr), l1_bytes = uint64_t{load_be32(hdr + 8)} * 8;
        ranges_[i] = {l1, l1 > UINT64_MAX - l1_bytes ? UINT64_MAX : l1 + l1_bytes};
        offset += sizeof hdr + extra + load_be16(hdr + 12) + load_be16(hdr + 14);
        if (offset - h.snapshots_offset > QCOW_MAX_SNAPSHOTS_SIZE) {
            why->add("Snapshot table is too big");
            return Status::Corrupt;
        }
    }
    ranges_[n] = {h.snapshots_offset, offset};
    count_ = uint64_t{n} + 1;
    heap_sort(ranges_, count_, [](const Range& a, const Range& b) { return a.start < b.start; });
    for (uint64_t i = 1; i < count_; ++i)
        if (ranges_[i].max_end < ranges_[i - 1].max_end)
            ranges_[i].max_end = ranges_[i - 1].max_end;
    return Status::Ok;
}

bool SnapshotRanges::hits(uint64_t first, uint64_t end) const {
    uint64_t lo = 0, hi = count_; // the ranges starting below `end`: ranges_[0, lo)
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo) / 2;
        if (ranges_[mid].start < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ranges_[lo - 1].max_end > first;
}

void SnapshotRanges::release(guest::Allocator& alloc) {
    if (ranges_ != nullptr)
        alloc.deallocate(ranges_, static_cast<size_t>(bytes_));
    ranges_ = nullptr;
    count_ = 0;
}

} // namespace instar::qcow2

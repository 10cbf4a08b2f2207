// The snapshot metadata ranges (qcow2_snapshot_ranges.h).
#include "qcow2_snapshot_ranges.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_snapshot_walk.h"
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
    SnapshotWalk walk;
    const Status st = qcow2_snapshot_walk(
        h.snapshots_offset, n, [&dev](uint64_t at, uint8_t* buf, uint64_t len) { return dev.read(at, buf, len); },
        [this](uint32_t i, const uint8_t* hdr) {
            const uint64_t l1 = load_be64(hdr), l1_bytes = uint64_t{load_be32(hdr + 8)} * 8;
            ranges_[i] = {l1, l1 > UINT64_MAX - l1_bytes ? UINT64_MAX : l1 + l1_bytes};
        },
        &walk);
    if (walk.stop == SnapshotWalk::Stop::BadEntry)
        why->add("Snapshot table entry ").dec(walk.index).add(" unreadable or too large (offset ").hex(walk.offset).add(")");
    else if (walk.stop == SnapshotWalk::Stop::TooBig)
        why->add("Snapshot table is too big");
    if (st != Status::Ok)
        return st;
    ranges_[n] = {h.snapshots_offset, h.snapshots_offset + walk.length};
    count_ = uint64_t{n} + 1;
    heap_sort(ranges_, count_, [](const Range& a, const Range& b) { return a.start < b.start; });
    for (uint64_t i = 1; i < count_; ++i)
        if (ranges_[i].max_end < ranges_[i - 1].max_end)
            ranges_[i].max_end = ranges_[i - 1].max_end;
    return Status::Ok;
}

bool SnapshotRanges::hits(uint64_t first, uint64_t end) const {
    // The ranges starting below `end` are ranges_[0, lo); the last of them has the largest end.
    const uint64_t lo = partition_point(ranges_, count_, [end](const Range& r) { return r.start < end; });
    return lo > 0 && ranges_[lo - 1].max_end > first;
}

void SnapshotRanges::release(guest::Allocator& alloc) {
    if (ranges_ != nullptr)
        alloc.deallocate(ranges_, static_cast<size_t>(bytes_));
    ranges_ = nullptr;
    count_ = 0;
}

} // namespace instar::qcow2

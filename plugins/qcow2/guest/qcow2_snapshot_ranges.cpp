// The snapshot metadata ranges (qcow2_snapshot_ranges.h).
#include "qcow2_snapshot_ranges.h"

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_snapshot_walk.h"

namespace instar::qcow2 {

Status SnapshotRanges::load(const Qcow2Header& h, guest::BlockDevice& dev, guest::Allocator& alloc, ReasonText* why) {
    const uint32_t n = h.nb_snapshots;
    if (n == 0)
        return Status::Ok;
    if (n > QCOW_MAX_SNAPSHOTS)
        return Status::TooLarge;
    if (const Status st = ranges_.reserve(alloc, uint64_t{n} + 1); st != Status::Ok)
        return st;
    SnapshotWalk walk;
    const Status st = qcow2_snapshot_walk(
        h.snapshots_offset, n, [&dev](uint64_t at, uint8_t* buf, uint64_t len) { return dev.read(at, buf, len); },
        [this](uint32_t, const uint8_t* hdr) {
            const uint64_t l1 = load_be64(hdr), l1_bytes = uint64_t{load_be32(hdr + 8)} * 8;
            ranges_.add(l1, l1 > UINT64_MAX - l1_bytes ? UINT64_MAX : l1 + l1_bytes);
        },
        &walk);
    if (walk.stop == SnapshotWalk::Stop::BadEntry)
        why->add("Snapshot table entry ").dec(walk.index).add(" unreadable or too large (offset ").hex(walk.offset).add(")");
    else if (walk.stop == SnapshotWalk::Stop::TooBig)
        why->add("Snapshot table is too big");
    if (st != Status::Ok)
        return st;
    ranges_.add(h.snapshots_offset, h.snapshots_offset + walk.length);
    ranges_.finish();
    return Status::Ok;
}

} // namespace instar::qcow2

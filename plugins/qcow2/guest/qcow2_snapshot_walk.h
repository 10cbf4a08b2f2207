// The walk through a qcow2 snapshot table's entry headers that the in-place editors share (the
// snapshot command's table load, qcow2_edit_snapshot.cpp, and the metadata ranges writers keep off,
// qcow2_snapshot_ranges.cpp): entry by entry as qemu's qcow2_read_snapshots, each entry 8-aligned,
// its extra data bounded by QCOW_MAX_SNAPSHOT_EXTRA_DATA and the whole table by
// QCOW_MAX_SNAPSHOTS_SIZE. info's report (qcow2_snapshot.cpp) reads ids and names as it goes and
// keeps its own walk.
#pragma once

#include "qcow2_bytes.h"
#include "qcow2_limits.h"
#include "qcow2_snapshot.h"

#include <stdint.h>

namespace instar::qcow2 {

// Why a walk stopped short, and where.
struct SnapshotWalk {
    enum class Stop : uint8_t {
        None,
        BadEntry, // the header unreadable, or its extra data over QCOW_MAX_SNAPSHOT_EXTRA_DATA
        TooBig,   // the table longer than QCOW_MAX_SNAPSHOTS_SIZE
    };
    Stop stop = Stop::None;
    uint32_t index = 0;  // the entry it stopped at
    uint64_t offset = 0; // that entry's offset
    uint64_t length = 0; // the table's length in bytes, when the walk completed
};

// Walks the `n` entries of the table at `table`: read(offset, buf, len) fetches bytes (a Status),
// visit(i, hdr) sees each 40-byte header once it has been bounded. Ok with walk->length set, or
// Corrupt with walk->stop, index and offset saying where (n is at most QCOW_MAX_SNAPSHOTS, the
// caller's check).
template <class Read, class Visit>
Status qcow2_snapshot_walk(uint64_t table, uint32_t n, Read read, Visit visit, SnapshotWalk* walk) {
    uint64_t offset = table;
    for (uint32_t i = 0; i < n; ++i) {
        offset = round_up8(offset);
        uint8_t hdr[sizeof(Qcow2SnapshotHeaderDisk)];
        if (read(offset, hdr, sizeof hdr) != Status::Ok || load_be32(hdr + 36) > QCOW_MAX_SNAPSHOT_EXTRA_DATA) {
            *walk = {SnapshotWalk::Stop::BadEntry, i, offset, 0};
            return Status::Corrupt;
        }
        visit(i, hdr);
        const uint64_t at = offset;
        offset += sizeof hdr + load_be32(hdr + 36) + load_be16(hdr + 12) + load_be16(hdr + 14);
        if (offset - table > QCOW_MAX_SNAPSHOTS_SIZE) {
            *walk = {SnapshotWalk::Stop::TooBig, i, at, 0};
            return Status::Corrupt;
        }
    }
    *walk = {SnapshotWalk::Stop::None, n, offset, offset - table};
    return Status::Ok;
}

} // namespace instar::qcow2

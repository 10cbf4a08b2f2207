// Where an image's internal snapshot metadata lies: the snapshot table and every snapshot's L1
// table, the byte ranges no write into the active layer may land on (qemu's metadata overlap check,
// QCOW2_OL_SNAPSHOT_TABLE | QCOW2_OL_INACTIVE_L1). Used by the writers that change an image with
// snapshots in place (qcow2_existing_write.cpp, qcow2_edit_empty_discard.cpp).
#pragma once

#include "qcow2_header.h"
#include "qcow2_read_reason.h"

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qcow2 {

class SnapshotRanges {
public:
    // Reads the table's entry headers as qemu's qcow2_read_snapshots walks them (each bounded by
    // QCOW_MAX_SNAPSHOT_EXTRA_DATA, the whole by QCOW_MAX_SNAPSHOTS_SIZE) and keeps the ranges
    // sorted by start with the running maximum of their ends: at most QCOW_MAX_SNAPSHOTS + 1 ranges
    // (1 MiB), one binary search per query. Corrupt with `why` set on a table qemu would not load.
    Status load(const Qcow2Header& h, guest::BlockDevice& dev, guest::Allocator& alloc, ReasonText* why);
    // Whether [first, end) meets a range (an image without snapshots has none).
    bool hits(uint64_t first, uint64_t end) const;
    void release(guest::Allocator& alloc);

private:
    struct Range {
        uint64_t start;
        uint64_t max_end; // the largest end among ranges [0, this one]
    };
    Range* ranges_ = nullptr;
    uint64_t count_ = 0;
    uint64_t bytes_ = 0;
};

} // namespace instar::qcow2

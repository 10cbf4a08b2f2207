// Where an image's internal snapshot metadata lies: the snapshot table and every snapshot's L1
// table, the byte ranges no write into the active layer may land on (qemu's metadata overlap check,
// QCOW2_OL_SNAPSHOT_TABLE | QCOW2_OL_INACTIVE_L1). Used by the writers that change an image with
// snapshots in place (qcow2_existing_write.cpp, qcow2_edit_empty_discard.cpp).
#pragma once

#include "qcow2_header.h"
#include "qcow2_ranges.h"
#include "qcow2_read_reason.h"

#include <instar/guest/read_api.h>

#include <stdint.h>

namespace instar::qcow2 {

class SnapshotRanges {
public:
    // Reads the table's entry headers as qemu's qcow2_read_snapshots walks them (each bounded by
    // QCOW_MAX_SNAPSHOT_EXTRA_DATA, the whole by QCOW_MAX_SNAPSHOTS_SIZE): at most
    // QCOW_MAX_SNAPSHOTS + 1 ranges (1 MiB). Corrupt with `why` set on a table qemu would not load.
    Status load(const Qcow2Header& h, guest::BlockDevice& dev, guest::Allocator& alloc, ReasonText* why);
    // Whether [first, end) meets a range (an image without snapshots has none).
    bool hits(uint64_t first, uint64_t end) const { return ranges_.hits(first, end); }
    void release(guest::Allocator& alloc) { ranges_.release(alloc); }

private:
    SortedRanges ranges_;
};

} // namespace instar::qcow2

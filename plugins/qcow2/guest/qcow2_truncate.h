// qcow2's truncate and L1 growth on an image another edit has open (qcow2_edit_resize.cpp):
// snapshot -a of a snapshot whose disk size or L1 table differs from the active ones
// (qcow2_snapshot_goto: blk_truncate to the snapshot's size, exact, no preallocation; then
// qcow2_grow_l1_table(sn->l1_size, exact)).
#pragma once

#include "qcow2_inplace.h"

#include <instar/guest/edit_api.h>

#include <stdint.h>

namespace instar::qcow2 {

// qemu's qcow2_co_truncate to `new_size` (grow or shrink, PREALLOC_MODE_OFF), as resize runs it:
// its refusals are reasons (the caller's command fails with them). `backing_size` (nullptr: the
// image has no backing image): a grown overlay's new area is zeroed where the backing reaches into
// it, as bdrv_co_truncate's BDRV_REQ_ZERO_WRITE makes qcow2_co_truncate do. Zeros over a last
// cluster copied from the backing chain need its bytes: without `backing_bytes` (req.extra[0]
// holds them) a RESIZE_DATA_NEED_BACKING record is sent and the truncate refused, nothing written.
guest::Status qcow2_truncate(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& q, uint64_t new_size,
                             const uint64_t* backing_size, bool backing_bytes = false);

// qemu's qcow2_grow_l1_table(min_size, exact): a new table, the header switched, the old freed.
guest::Status qcow2_grow_l1_exact(const guest::EditRequest& req, guest::EditHost& host, Qcow2Inplace& q,
                                  uint64_t min_size);

} // namespace instar::qcow2

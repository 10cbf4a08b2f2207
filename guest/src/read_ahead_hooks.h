// The runtime's read-ahead (runtime.h, docs/convert.md "Read-ahead") as a walk's hooks.
#pragma once

#include "image_table.h"
#include "read_ahead.h"
#include "runtime.h"

namespace instar::guest {

// Hooks whose reads ahead drop the reasons given meanwhile through `reasons`.
inline convert::ReadAheadHooks runtime_read_ahead(RecordReasons& reasons) {
    convert::ReadAheadHooks h;
    h.read_ahead = read_ahead_into;
    h.settle_reads = settle_reads;
    h.reads_ahead = host_reads_ahead;
    h.quiet_reasons = [](void* ctx, bool q) { static_cast<RecordReasons*>(ctx)->quiet(q); };
    h.quiet_ctx = &reasons;
    return h;
}

} // namespace instar::guest

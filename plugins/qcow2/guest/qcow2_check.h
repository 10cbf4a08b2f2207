// qemu-img check for qcow2: qemu's qcow2_co_check (snapshot table, refcounts against references,
// OFLAG_COPIED), read-only, with its counters and its stderr lines in its order (docs/check.md).
#pragma once

#include <instar/guest/check_api.h>

#include <stdint.h>

namespace instar::qcow2 {

// The in-guest reference-count array takes 4 bytes per host cluster of the file. Bound: 2^28
// clusters (a 1 GiB array, a third of the largest guest RAM) -- 128 GiB of file at 512-byte
// clusters, 16 TiB at 64 KiB. qemu's own bound is INT_MAX clusters (then -EFBIG); between the two
// instar refuses with a message naming this limit. The guest RAM cap (--max-guest-memory) may
// bind first: the check then reports that the array does not fit.
inline constexpr uint64_t QCOW2_CHECK_MAX_CLUSTERS = uint64_t{1} << 28;

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* result);

} // namespace instar::qcow2

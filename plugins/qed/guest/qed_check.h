// qemu-img check for QED: qemu's qed_check (block/qed-check.c) and, with -r, its repairs and the
// header updates of a read-write open and close (bdrv_qed_do_open, bdrv_qed_close).
#pragma once

#include <instar/guest/check_api.h>

#include <stdint.h>

namespace instar::qed {

// The check's bitmap of referenced clusters has one bit per host cluster: 2^31 bits (256 MiB) is
// 8 TiB of file at 4 KiB clusters, past which the check stops with "File too large".
inline constexpr uint64_t QED_CHECK_MAX_CLUSTERS = 1ull << 31;

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* result);

} // namespace instar::qed

// `check` for Parallels images: qemu's parallels_co_check per profile.
//  7.2: image not closed correctly, clusters outside the image (offset > file size), leaked space
//       at the end, statistics (allocated, fragmented).
//  10.0: the same plus data_off validity, duplicate BAT offsets (the check fails with EBUSY when the
//       last allocated entry is a duplicate, as qemu's), outside means offset + cluster > file size.
// Repairs (-r): "not closed correctly" (inuse cleared), BAT entries outside the image zeroed, a bad
// data_off rewritten (10.0), leaked space cut off (CheckRequest::set_length) and (10.0) duplicate
// clusters copied to new ones from qemu's used-cluster map (prl_used.h). Without set_length (a
// hosted caller) leaks and duplicates are reported with "ERROR" and left.
#pragma once

#include <instar/guest/check_api.h>

namespace instar::parallels {

// Bytes of used-cluster bitmap the 10.0 duplicate check may take from the arena: 2^29 clusters
// (512 TiB of 1 MiB clusters); beyond that the check fails with ENOMEM, as qemu's would when its
// allocation failed.
inline constexpr uint64_t PRL_CHECK_MAX_BITMAP_BYTES = uint64_t{64} << 20;

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* res);

} // namespace instar::parallels

// `check` for VDI: qemu's vdi_co_check (block map entries in range, no block used twice, the
// header's blocks_allocated right). qemu repairs nothing for vdi: -r is refused as qemu refuses it.
#pragma once

#include <instar/guest/check_api.h>

namespace instar::vdi {

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* res);

} // namespace instar::vdi

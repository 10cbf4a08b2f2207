// qemu-img check for vhdx: qemu's vhdx_co_check (docs/check.md).
#pragma once

#include <instar/guest/check_api.h>

namespace instar::vhdx {

// qemu checks the BAT against the file (vhdx_check_bat_entries) already when it opens the image and
// refuses it there, and replays a log only when it opens read-write: a read-only check of an image
// that opened (info accepted it) finds nothing, and -r has nothing to replay (info refuses an image
// whose log needs replaying, as qemu's read-only open does).
guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* result);

} // namespace instar::vhdx

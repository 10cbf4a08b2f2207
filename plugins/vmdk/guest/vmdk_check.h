// qemu-img check for vmdk: qemu's vmdk_co_check (docs/check.md).
#pragma once

#include <instar/guest/check_api.h>

namespace instar::vmdk {

guest::Status check(const guest::CheckRequest& req, guest::CheckSink& sink, guest::CheckResult* result);

} // namespace instar::vmdk

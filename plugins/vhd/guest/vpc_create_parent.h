// The parent side of a new differencing VHD: the parent's identity in the dynamic header and the
// parent locator that names it.
#pragma once

#include "vpc_dynamic_header.h"

#include <instar/guest/create_api.h>

namespace instar::vpc {

// Checks that the backing file is a VHD, copies its unique id and timestamp into `h`, sets the
// parent Unicode name (the backing path's last component, UTF-16BE) and one locator ("W2ku" for an
// absolute backing path, "W2ru" for a relative one; the path verbatim, UTF-16LE), and writes the
// locator data at `offset`. *end is where the space reserved for it ends. Refusals give a reason.
guest::Status vpc_create_parent(const guest::CreateRequest& req, guest::CreateTarget& target, uint64_t offset,
                                VpcDynamicHeader* h, uint64_t* end);

} // namespace instar::vpc

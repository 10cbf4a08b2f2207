// The VDI format's emitter: `create` for dynamic and static images, as qemu's vdi_co_do_create.
#pragma once

#include <instar/guest/create_api.h>

#include "vdi_header.h"

namespace instar::vdi {

// Writes a new VDI as qemu-img create -f vdi does (option `static`): the 512-byte header (two
// random version-4 UUIDs), the block map (all 0xffffffff, or 0, 1, 2, ... when static) and, for a
// static image, the file's length set over every block (a hole, as qemu's truncate leaves it).
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// create(), also describing the image it made in *out (filled only on Ok).
guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, VdiImage* out);

} // namespace instar::vdi

// The bochs reader: read_api.h over qemu's seek_to_sector/bochs_co_preadv. qemu's driver has no
// block-status callback, so its block layer reports the whole disk as data (no offset): status()
// says Data for every range, as qemu-img map does. read() gives a stored sector's bytes, and zeros
// for sectors whose extent is unallocated or whose bitmap bit is clear.
#pragma once

#include <instar/guest/read_api.h>

namespace instar::bochs {

guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::bochs

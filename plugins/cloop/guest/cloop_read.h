// The cloop reader: read_api.h over qemu's cloop_read_block/cloop_co_preadv. qemu's driver has no
// block-status callback, so its block layer reports the whole disk as data (no offset): status()
// says Data for every range, as qemu-img map does. read() inflates each block touched (one block
// cached, as qemu); a block that does not inflate to exactly block_size bytes is qemu's -EIO.
#pragma once

#include <instar/guest/read_api.h>

namespace instar::cloop {

guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::cloop

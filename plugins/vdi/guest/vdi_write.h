// The VDI writer: the target side of convert (write_api.h), as qemu's vdi_co_pwritev.
#pragma once

#include <instar/guest/write_api.h>

namespace instar::vdi {

// Creates the image exactly as create() does, then stores data as qemu does: a write into an
// unallocated block allocates the next block (index blocks_allocated, at offset_data + index *
// 1 MiB), writes the whole block (zeros around the data) and sets its map entry; writes into
// allocated blocks (every block of a static image) go in place. The header's blocks_allocated is
// rewritten at finish(). zero_init is true, the cluster size 1 MiB (qemu's vdi_get_info).
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

// convert -n: the same writer over an existing image, after qemu's open checks. A map entry whose
// block would start past the end of the file is refused (Corrupt, with a reason) before anything
// is written there; qemu would write at that offset, growing the file by up to 4 PiB.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::vdi

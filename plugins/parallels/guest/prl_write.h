// The Parallels writer: the target side of convert (write_api.h), as qemu's parallels_co_writev.
#pragma once

#include <instar/guest/write_api.h>

namespace instar::parallels {

// Creates the image as create() does, then stores data as qemu does: a write into an unallocated
// cluster allocates the cluster at data_end (the BAT entry is data_end / off_multiplier), writes
// the whole cluster (zeros around the data: qemu preallocates zeros and truncates at close) and
// sets the BAT entry after the data. zero_init is true; cluster_size() is 0 (qemu's parallels has
// no bdrv_get_info). write_zeroes: 7.2 writes zeros (no driver callback, so it allocates); 10.0
// discards whole allocated clusters when the range is cluster-aligned (parallels_co_pdiscard) and
// writes zeros otherwise.
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

// convert -n: the same writer over an existing image after qemu's open checks; an image not
// closed correctly is refused as qemu 7.2 refuses it read/write.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::parallels

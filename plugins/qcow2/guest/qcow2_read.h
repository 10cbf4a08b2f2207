// qcow2's data path for reading: open() gives a reader over the active L1 table or an internal
// snapshot's, with a bounded L2 cache and zlib/zstd compressed clusters (read_api.h).
#pragma once

#include <instar/guest/read_api.h>

namespace instar::qcow2 {

// Opens a qcow2 image (v2 or v3) for reading. Encrypted images are Unsupported (no secret reaches
// the guest yet); an external data file arrives as req.files[0].
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::qcow2

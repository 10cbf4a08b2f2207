// raw's data path: a reader over the file (holes from the host's SEEK_DATA/SEEK_HOLE) and a writer
// that stores the virtual disk as the file itself (read_api.h, write_api.h).
#pragma once

#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>

namespace instar::raw {

// The virtual disk is the file, its size rounded up to 512 bytes (the tail reads as zeros). Holes
// are Zero, everything else Data, both with their file offset, as qemu's raw-over-file reports.
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

// A new raw image of req.size bytes (a sparse file, or preallocated as create does), written in
// place. It reads as zeros when created sparse, so zero ranges are never written.
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

// convert -n: the existing file (or block device) req.image written in place, zero ranges included.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::raw

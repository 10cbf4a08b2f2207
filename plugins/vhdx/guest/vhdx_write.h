// The VHDX format's writer: the target side of convert (write_api.h).
#pragma once

#include <instar/guest/write_api.h>

namespace instar::vhdx {

// Creates the image exactly as create() does, then stores data as qemu's block/vhdx.c does:
//  - on open for writing qemu updates both headers (a new file write GUID), and before the first
//    data write both again (new data write GUIDs);
//  - a write into a block whose BAT entry is not FULLY_PRESENT (a dynamic disk, or any disk made
//    with block_state_zero=on: its entries are ZERO) allocates the block at the file's end rounded
//    up to 1 MiB, extends the file by the block size, writes the data, then journals the BAT sector
//    through the log (headers with a new log GUID, one 8 KiB log entry, the sector written in place,
//    headers with the log GUID cleared), leaving the entries in the log region as qemu does;
//  - FULLY_PRESENT blocks are written in place.
// The GUIDs qemu draws at random come from req.random. `target` must outlive the writer (blocks
// are added with target.set_length). Differencing disks are refused, as qemu refuses to write one.
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);

} // namespace instar::vhdx

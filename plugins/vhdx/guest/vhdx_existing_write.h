// convert -n into an existing VHDX image (write_api.h's OpenWriterFn). docs/formats/vhdx.md,
// "convert -n".
#pragma once

#include <instar/guest/write_api.h>

namespace instar::vhdx {

// Opens a fixed or dynamic VHDX (any block size, 512- or 4096-byte logical sectors) for writing in
// place, after qemu's open checks (vhdx_load). Writes follow qemu's vhdx_co_writev: FULLY_PRESENT
// blocks are written in place; a block in any other state qemu writes (NOT_PRESENT, UNDEFINED,
// ZERO, UNMAPPED) gets a new block at the file's end rounded up to 1 MiB, reading as zeros where
// the write does not cover it. Unlike qemu, the BAT entry is not journalled through the log: it is
// written in place after the block's data, so a crash leaves either the old entry (and unused
// space at the end of the file) or the new one over complete data. Before the first write both
// headers get new file and data write GUIDs (derived from the old ones: an OpenRequest carries no
// random bytes). A differencing disk is refused as qemu refuses to open one ("Operation not
// supported"). zero_init is false: zeros are written as data, as qemu's vhdx (no write_zeroes) does.
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::vhdx

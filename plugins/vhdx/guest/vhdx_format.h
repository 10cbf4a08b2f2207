// The VHDX format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::vhdx {

// True when the file starts with the "vhdxfile" file identifier (qemu's probe).
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "vhdx", the virtual size, the block size as cluster size, and a differencing
// disk's parent (qemu itself refuses differencing VHDX: see docs/formats/vhdx.md).
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::vhdx

// The Parallels format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::parallels {

// qemu's parallels_probe: either magic in the first 16 bytes and version 2 after it.
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "parallels" and the virtual size only: qemu's driver has no bdrv_get_info, so
// info shows no cluster size, no dirty flag and no format-specific section.
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::parallels

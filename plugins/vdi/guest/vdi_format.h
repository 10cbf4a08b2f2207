// The VDI format's guest half: detection and `info`.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::vdi {

// qemu's vdi_probe: the signature 0xbeda107f (little-endian) at offset 64 of a 512-byte header.
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports format "vdi", the virtual size (rounded up to a sector), the 1 MiB block size as
// cluster size, and no format-specific section (qemu has none for vdi).
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::vdi

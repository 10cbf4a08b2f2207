// The VMDK format's guest half: detection and `info` (sparse, streamOptimized, flat and split
// subformats, descriptor files).
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::vmdk {

// qemu's vmdk_probe on the first 2 KiB: a KDMV/COWD magic, or a text descriptor whose first
// non-comment, non-blank line is "version=1|2|3".
guest::Status probe(guest::BlockDevice& dev, bool* match);

// First pass (no files): a descriptor naming extent files reports them (FileRole::Extent, in
// descriptor order) and returns NeedFiles. Second pass: req.files[i] is the i-th extent file.
// Reports format "vmdk", virtual size, cluster size and dirty flag when qemu has them, the
// parentFileNameHint as backing file (format "vmdk"), and qemu's format-specific data.
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::vmdk

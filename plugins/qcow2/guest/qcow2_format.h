// The qcow2 guest half's entry points: probe and info.
#pragma once

#include <instar/guest/format_api.h>
#include <instar/guest/info_sink.h>

namespace instar::qcow2 {

// True for "QFI\xfb" followed by a version >= 2 (qemu's probe); version 1 is qcow, not ours.
guest::Status probe(guest::BlockDevice& dev, bool* match);

// Reports what `qemu-img info` shows for a qcow2 image, reading only the header cluster, the
// snapshot table, the bitmap directory and the LUKS header (never L1/L2 or refcount tables).
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);

} // namespace instar::qcow2

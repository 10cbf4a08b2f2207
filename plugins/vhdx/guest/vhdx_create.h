// The VHDX format's emitter: `create` as qemu-img create -f vhdx, plus differencing disks.
#pragma once

#include <instar/guest/create_api.h>

namespace instar::vhdx {

// Writes a new VHDX image (dynamic or fixed, byte-identical to qemu-img's apart from its random
// GUIDs and sequence number), or a differencing disk when req.backing_file is set (an instar
// extension: qemu-img refuses backing files for vhdx). See docs/formats/vhdx.md.
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

} // namespace instar::vhdx

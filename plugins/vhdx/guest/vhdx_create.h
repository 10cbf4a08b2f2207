// The VHDX format's emitter: `create` as qemu-img create -f vhdx, plus differencing disks.
#pragma once

#include <instar/guest/create_api.h>

#include "vhdx_create_ids.h"
#include "vhdx_create_layout.h"
#include "vhdx_create_params.h"

namespace instar::vhdx {

// Writes a new VHDX image (dynamic or fixed, byte-identical to qemu-img's apart from its random
// GUIDs and sequence number), or a differencing disk when req.backing_file is set (an instar
// extension: qemu-img refuses backing files for vhdx). See docs/formats/vhdx.md.
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// What create laid down, for the writer that continues from it (vhdx_write.h).
struct VhdxCreated {
    VhdxCreateParams params;
    VhdxLayout layout;
    VhdxCreateIds ids;
};

// create(), also describing the image it made in *out (filled only on Ok).
guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, VhdxCreated* out);

} // namespace instar::vhdx

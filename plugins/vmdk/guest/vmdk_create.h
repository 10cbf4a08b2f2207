// The VMDK format's create entry point (`instar create -f vmdk`): qemu-img's vmdk images, byte for
// byte apart from the random CID.
#pragma once

#include <instar/guest/create_api.h>

#include "vmdk_create_options.h"

namespace instar::vmdk {

// What create laid down, for the writer that continues from it (vmdk_write.h).
struct CreatedImage {
    CreateSettings settings;
    uint32_t cid;
    uint32_t parent_cid;
    uint64_t descriptor_bytes; // the descriptor text's length (at 0x200, or the whole descriptor file)
};

// Writes a new image of req.size bytes: monolithicSparse (default), streamOptimized,
// monolithicFlat, twoGbMaxExtentSparse or twoGbMaxExtentFlat, with qemu's descriptor, geometry,
// grain directories and extent file names. The CID comes from req.random; with a backing file the
// parentCID is read from req.backing.
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

// create, also saying what it made (`out` is filled when it returns Ok).
guest::Status create_image(const guest::CreateRequest& req, guest::CreateTarget& target, CreatedImage* out);

} // namespace instar::vmdk

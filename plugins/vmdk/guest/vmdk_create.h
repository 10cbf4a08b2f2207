// The VMDK format's create entry point (`instar create -f vmdk`): qemu-img's vmdk images, byte for
// byte apart from the random CID.
#pragma once

#include <instar/guest/create_api.h>

namespace instar::vmdk {

// Writes a new image of req.size bytes: monolithicSparse (default), streamOptimized,
// monolithicFlat, twoGbMaxExtentSparse or twoGbMaxExtentFlat, with qemu's descriptor, geometry,
// grain directories and extent file names. The CID comes from req.random; with a backing file the
// parentCID is read from req.backing.
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

} // namespace instar::vmdk

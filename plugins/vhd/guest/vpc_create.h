// The VHD (qemu: vpc) format's emitter: `create` for fixed, dynamic and differencing disks.
#pragma once

#include <instar/guest/create_api.h>

namespace instar::vpc {

// Writes a new VHD as qemu-img create -f vpc does (options subformat and force_size), or, with a
// backing file, a differencing VHD (an instar extension: qemu-img cannot make one).
guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

} // namespace instar::vpc

// The qcow2 emitter: `instar create -f qcow2`, byte-identical to what qemu-img create writes.
#pragma once

#include <instar/guest/create_api.h>

namespace instar::qcow2 {

guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);

} // namespace instar::qcow2

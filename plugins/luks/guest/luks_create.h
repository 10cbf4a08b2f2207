// The luks format's write side: create (qemu-img create -f luks), create_writer (convert -O luks)
// and open_writer (convert -n into an existing luks image), all with the passphrase from
// --object secret (CreateRequest::secret / OpenRequest::secret).
#pragma once

#include <instar/guest/create_api.h>
#include <instar/guest/write_api.h>

namespace instar::luks {

guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::luks

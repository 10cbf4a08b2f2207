// Writing into an existing monolithicSparse vmdk in place (write_api.h's OpenWriterFn): commit's
// base (and convert -n). Grains are allocated at the end of the file as qemu's vmdk driver does.
#pragma once

#include <instar/guest/read_api.h>
#include <instar/guest/write_api.h>

namespace instar::vmdk {

guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);

} // namespace instar::vmdk

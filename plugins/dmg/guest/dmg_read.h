// The DMG reader: read_api.h over qemu's dmg_co_preadv / dmg_read_chunk. One chunk is held
// decoded at a time, as qemu does; every sector is Data (qemu's dmg has no block status), and a
// sector no kept chunk covers (bzip2, lzfse, unknown types, gaps) is an I/O error.
#pragma once

#include <instar/guest/read_api.h>

namespace instar::dmg {

guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::dmg

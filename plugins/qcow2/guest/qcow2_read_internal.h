// What qcow2 open() works out before it builds a reader: devices, size, geometry, the L1 table to use.
#pragma once

#include "qcow2_read_map.h"

#include "luks_crypto.h"

#include <instar/guest/read_api.h>

namespace instar::qcow2 {

struct Qcow2ReadSetup {
    BlockDevice* image = nullptr;
    BlockDevice* data = nullptr; // the image, or the external data file (req.files[0])
    uint32_t data_device = 0;    // Extent::device of data clusters: 0 the image, 1 the data file
    uint64_t virtual_size = 0;
    Qcow2Geometry geometry;      // with the active L1 table, or the snapshot's
    uint8_t compression_type = 0;
    // Encrypted images (with the secret): the unlocked sector cipher (arena memory), and whether
    // sectors are numbered by host offset (LUKS) or by guest offset (legacy AES), as qemu's
    // crypt_physical_offset.
    luks::SectorCipher* cipher = nullptr;
    bool crypt_physical_offset = false;
};

// Parses and checks the header, extensions and (with req.snapshot) the snapshot table, as qemu's
// open and bdrv_snapshot_load_tmp_by_id_or_name do; reasons go to req.reasons.
Status qcow2_read_setup(const guest::OpenRequest& req, Qcow2ReadSetup* out);

} // namespace instar::qcow2

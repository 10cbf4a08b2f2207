// The random identity of a new VHDX image: GUIDs and the header sequence number.
#pragma once

#include <stdint.h>

namespace instar::vhdx {

struct VhdxCreateIds {
    uint8_t file_write_guid[16];
    uint8_t data_write_guid[16];
    uint8_t page83_guid[16];
    uint32_t sequence_number; // header 1; header 2 has the next number (qemu: g_random_int())
};

// Derives the identity from the host's CREATE_RANDOM_BYTES (32) random bytes. The two write GUIDs
// are the random bytes themselves; the page 83 GUID and the sequence number need 20 more bytes, so
// they are derived from all 32 with a mixing function (they only need to differ between images).
// Every GUID is a version 4 UUID stored byte for byte, as qemu's vhdx_guid_generate stores them.
void vhdx_create_ids(const uint8_t* random, VhdxCreateIds* out);

// A further version 4 GUID derived from the same random bytes, one per `label` (labels 1..3 are
// create's own; the writer's session, data write and log GUIDs use labels from 16 on).
void vhdx_derived_guid(const uint8_t* random, uint64_t label, uint8_t* out);

} // namespace instar::vhdx

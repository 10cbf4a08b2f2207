// An encrypted qcow2 image's data cipher from its key, for the code that writes guest data into an
// existing image (the existing-image writer; resize's explicit zeros). Freestanding-clean.
#pragma once

#include "qcow2_header.h"

#include "luks_crypto.h"

#include <instar/guest/read_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::qcow2 {

// The cipher set up to encrypt (arena memory; free it with luks::delete_wiped): LUKS unlocked with
// `secret` from the crypto header extension's clusters (sectors numbered by host offset: *physical),
// the old AES method keyed with the secret's first 16 bytes (sectors by guest offset), as the reader
// does (qcow2_read_open.cpp). `decrypt` (optional): the same key set up to decrypt too. A refusal's
// reason goes to `reasons` in qemu's words.
guest::Status qcow2_unlock(guest::BlockDevice& dev, const Qcow2Header& h, guest::Allocator& alloc, const uint8_t* secret,
                           size_t secret_len, guest::ReasonSink* reasons, uint32_t qemu_version,
                           luks::SectorCipher** out, luks::SectorCipher** decrypt, bool* physical);

} // namespace instar::qcow2

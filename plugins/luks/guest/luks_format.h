// The luks format's guest entry points: probe, info (qemu's QCryptoBlockInfoLUKS) and open (read
// the decrypted payload with the passphrase from --object secret).
#pragma once

#include "luks_crypto.h"
#include "luks_header.h"

#include <instar/guest/info_sink.h>
#include <instar/guest/read_api.h>

namespace instar::luks {

// Unlocks a LUKS1 header at `header_offset` of `dev` (0 for a luks image; qcow2's crypto header
// extension otherwise; key slot offsets count from there) with `pass`, and sets up `*cipher` with the
// master key (copied to master_key_out[header->key_bytes] when given). Reasons are qemu's ("Invalid password, cannot unlock any keyslot", ...).
// A header naming a hash the emulated qemu-img (`qemu_version`) lacks is refused with its words.
// `detached`: `dev` is a detached header file (luks_header_parse).
guest::Status luks_unlock(guest::BlockDevice& dev, uint64_t header_offset, guest::Allocator& alloc,
                          const uint8_t* pass, size_t pass_len, LuksHeader* header, SectorCipher* cipher,
                          guest::ReasonSink* reasons, uint8_t* master_key_out = nullptr,
                          uint32_t qemu_version = LUKS_ANY_QEMU_VERSION, bool detached = false);

// qcrypto_block_luks_load_key: whether `pass` opens key slot `slot` (Ok, the master key copied to
// master_key[h.key_bytes]), does not (Invalid; also for an inactive slot), or another Status (Corrupt:
// iterations above LUKS_MAX_PBKDF2_ITERATIONS or key material past the end). `split` is scratch of
// h.key_bytes * LUKS_STRIPES bytes; `base` as luks_unlock's header_offset.
guest::Status luks_load_key(guest::BlockDevice& dev, uint64_t base, guest::Allocator& alloc, const LuksHeader& h,
                            uint32_t slot, const uint8_t* pass, size_t pass_len, uint8_t* split, uint8_t* master_key);

// Reads and parses the LUKS1 header at `at` of `dev` (luks_header_parse's checks, `detached` and
// `why` as there; bytes past the device's end read as zeros, as through qemu's block layer).
guest::Status load_header(guest::BlockDevice& dev, LuksHeader* h, uint64_t at = 0, bool detached = false,
                          LuksWhy* why = nullptr);

// The payload reader over `dev` from `payload_offset`, `size` bytes: `unit` bytes decrypted with one
// IV (LUKS1 512; a LUKS2 segment's sector size), IVs counting 512-byte sectors from `iv_base`, with
// a copy of `cipher`. Its bounce buffer and itself come from `alloc`.
guest::Status luks_make_reader(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t payload_offset,
                               uint64_t size, uint32_t unit, uint64_t iv_base, const SectorCipher& cipher,
                               guest::ImageReader** out);

guest::Status probe(guest::BlockDevice& dev, bool* match);
guest::Status info(const guest::InfoRequest& req, guest::InfoSink& sink);
guest::Status open(const guest::OpenRequest& req, guest::ImageReader** out);

} // namespace instar::luks

// The luks format's write side: create (qemu-img create -f luks), create_writer (convert -O luks)
// and open_writer (convert -n into an existing luks image), all with the passphrase from
// --object secret (CreateRequest::secret / OpenRequest::secret).
#pragma once

#include "luks_crypto.h"

#include <instar/guest/create_api.h>
#include <instar/guest/write_api.h>

namespace instar::luks {

// Where a new LUKS header goes (qemu's QCryptoBlockInitFunc / QCryptoBlockWriteFunc): the luks
// format's own file, or a qcow2 image's crypto header clusters.
class LuksHeaderTarget {
public:
    // Room for `header_len` bytes (the header and the key slots: the payload offset), offsets from 0.
    virtual guest::Status init(uint64_t header_len) = 0;
    virtual guest::Status write(uint64_t offset, const void* buf, size_t len) = 0;

protected:
    ~LuksHeaderTarget() = default;
};

// qcrypto_pbkdf2_count_iters for `out_len` bytes of PBKDF2 output, scaled to `iter_time` ms and
// divided by `divisor` as qemu scales it, at least qemu's 1000. false: more than 32 bits hold
// (`iter_time` below 2^32).
bool luks_iterations(const char* hash, size_t out_len, uint64_t iter_time, uint64_t divisor, uint32_t* out);

// qcrypto_block_luks_store_key's key material: `master_key` split over LUKS_STRIPES stripes (random
// ones from `rng`) and encrypted with the key PBKDF2 derives from `pass` over the slot's 32-byte
// `salt`, into out[h.key_bytes * LUKS_STRIPES]. Unsupported: a hash or cipher instar lacks.
guest::Status luks_seal_key(const LuksHeader& h, const uint8_t* master_key, const uint8_t* pass, size_t pass_len,
                            const uint8_t* salt, uint32_t iterations, KeyStream& rng, guest::Allocator& alloc,
                            uint8_t* out);

// qcrypto_block_luks_create: checks the options `prefix` + "cipher-alg", "cipher-mode",
// "ivgen-alg", "ivgen-hash-alg", "hash-alg", "iter-time" (prefix "" for luks, "encrypt." for qcow2),
// makes key slot 0 for req.secret and writes the header through `out`. `payload` is set up to
// encrypt; `*header_len` is the header's length (the payload offset). Failures go to `t`.
guest::Status luks_create_header(const guest::CreateRequest& req, guest::CreateTarget& t, const char* prefix,
                                 LuksHeaderTarget& out, SectorCipher* payload, uint64_t* header_len);

guest::Status create(const guest::CreateRequest& req, guest::CreateTarget& target);
guest::Status create_writer(const guest::CreateRequest& req, guest::CreateTarget& target, guest::ImageWriter** out);
guest::Status open_writer(const guest::OpenRequest& req, guest::ImageWriter** out);
// A writer of an unlocked LUKS2 segment (convert -n): `size` bytes of payload at `payload_offset`,
// encrypted in units of `unit` bytes (512 to 4096) whose IVs count 512-byte sectors from `iv_base`;
// `decryptor` reads back the units a write covers only in part.
guest::Status luks_payload_writer(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t payload_offset,
                                  uint64_t size, uint32_t unit, uint64_t iv_base, const SectorCipher& encryptor,
                                  const SectorCipher& decryptor, guest::ImageWriter** out);

} // namespace instar::luks

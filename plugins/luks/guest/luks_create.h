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

// What qcrypto_block_luks_create decides before it writes anything: the LUKS1 header (key slot 0's
// salt and iterations filled in, its key material not yet made), that header parsed, the master
// key, and the key stream (seeded with the host's 32 getrandom bytes) the rest of the randomness
// comes from. Holds key material: made on the arena and freed with delete_wiped.
struct LuksPlan {
    explicit LuksPlan(const uint8_t seed[32]) : rng(seed) {}
    KeyStream rng;
    LuksHeaderDisk disk{};
    LuksHeader h;
    uint8_t master_key[LUKS_MAX_KEY_BYTES] = {};
    uint32_t mk_iters = 0;   // the master key digest's PBKDF2 iterations (1/8 of iter-time)
    uint32_t slot_iters = 0; // key slot 0's (all of iter-time)
};

// The options checked and the plan made, as the header functions below do first; failures go to `t`.
guest::Status luks_plan_header(const guest::CreateRequest& req, guest::CreateTarget& t, const char* prefix,
                               LuksPlan* p);

// A failed key sealing or payload set-up: Unsupported (a hash or cipher instar lacks) named to `t`.
guest::Status luks_seal_failed(guest::CreateTarget& t, guest::Status st);

// qcrypto_block_luks_create: checks the options `prefix` + "cipher-alg", "cipher-mode",
// "ivgen-alg", "ivgen-hash-alg", "hash-alg", "iter-time" (prefix "" for luks, "encrypt." for qcow2),
// makes key slot 0 for req.secret and writes the header through `out`. `payload` is set up to
// encrypt; `*header_len` is the header's length (the payload offset). Failures go to `t`.
guest::Status luks_create_header(const guest::CreateRequest& req, guest::CreateTarget& t, const char* prefix,
                                 LuksHeaderTarget& out, SectorCipher* payload, uint64_t* header_len);

// An instar extension (luks-version=2): the same options made into a LUKS2 volume as cryptsetup
// lays one out (luks2_create.cpp): two 16 KiB header copies, key slot 0 (pbkdf2) in a keyslots area
// that ends at the 16 MiB segment offset, one dynamic crypt segment of 512-byte sectors. `payload`
// is set up to encrypt; `*header_len` is the segment offset.
guest::Status luks2_create_header(const guest::CreateRequest& req, guest::CreateTarget& t, LuksHeaderTarget& out,
                                  SectorCipher* payload, uint64_t* header_len);

// The payload's encryption, ready to encrypt: what create made or convert -n unlocked.
struct LuksPayload {
    SectorCipher cipher;
    uint64_t offset = 0; // bytes
    // LUKS2 segments (convert -n): bytes per IV, the IV of the payload's first 512-byte sector, and
    // the decrypting cipher for the units a write covers only in part (read, merged, re-encrypted).
    uint32_t unit = LUKS_SECTOR_SIZE;
    uint64_t iv_base = 0;
    bool merge = false;
    SectorCipher decryptor;
    // LUKS2 create: a short last write still writes its whole sector (the volume holds whole
    // sectors, and a sector's ciphertext decrypts only whole).
    bool whole_units = false;
};

// A writer of `size` bytes of disk through `payload` into `dev` (convert -O luks, convert -n).
guest::Status luks_new_writer(guest::BlockDevice& dev, guest::Allocator& alloc, uint64_t size,
                              const LuksPayload& payload, guest::ImageWriter** out);

// luks_create_file.cpp: the luks format's own create and create_writer.
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

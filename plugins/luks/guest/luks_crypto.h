// The LUKS1 cryptography, all through Debian's nettle (no primitive is written here): PBKDF2,
// the anti-forensic merge (qemu: crypto/afsplit.c), and sector decryption with qemu's IV
// generators (crypto/ivgen-plain.c, -plain64.c, -essiv.c).
#pragma once

#include "luks_header.h"

#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

inline constexpr size_t LUKS_MAX_KEY_BYTES = 64;    // aes-256-xts: two 32-byte keys, the largest LUKS1 key
inline constexpr size_t LUKS_DIGEST_BYTES = 20;     // LUKS1's master key digest length
// PBKDF2 iterations accepted from an image: far above what qemu's iter-time calibration makes
// (a few million for 2 s), low enough that a hostile header cannot make unlocking run for hours.
inline constexpr uint32_t LUKS_MAX_PBKDF2_ITERATIONS = 64u << 20;

// PBKDF2-HMAC with the named hash (sha1, sha224, sha256, sha384, sha512). false: hash not
// supported.
bool luks_pbkdf2(const char* hash, const uint8_t* password, size_t password_len, const uint8_t* salt, size_t salt_len,
            uint32_t iterations, uint8_t* out, size_t out_len);

// qcrypto_afsplit_decode: merges `stripes` blocks of `block_len` bytes into out[block_len].
bool af_merge(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, uint8_t* out);

// qcrypto_afsplit_encode: spreads `in[block_len]` over `stripes` blocks in out[] (the first
// stripes - 1 filled from `random`, stripes - 1 blocks of it), the inverse of af_merge.
bool af_split(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, const uint8_t* random,
              uint8_t* out);

// Digest length of a hash af_merge / luks_pbkdf2 know, 0 otherwise.
size_t luks_digest_len(const char* hash);

// A deterministic random bit generator for create (salts, keys, anti-forensic stripes): AES-256 in
// counter mode, keyed with the host's 32 random bytes (getrandom), through nettle.
class KeyStream {
public:
    explicit KeyStream(const uint8_t seed[32]);
    void fill(uint8_t* out, size_t len);

private:
    alignas(16) uint8_t ctx_[512] = {};
    uint8_t counter_[16] = {};
};

// A sector cipher: the payload's (or a key slot's) cipher, mode and IV generator with one key.
class SectorCipher {
public:
    // Unsupported when the combination is one instar does not implement (only aes, in xts/cbc/ecb).
    // `for_encryption`: set up the encrypting direction (create, convert -O luks) instead.
    guest::Status init(const LuksHeader& h, const uint8_t* key, size_t key_len, bool for_encryption = false);
    // Decrypts `len` bytes in place: 512-byte sectors numbered from `first_sector` (the last may be short).
    void decrypt(uint64_t first_sector, uint8_t* data, size_t len) const;
    // Encrypts in place, the same way (init with for_encryption).
    void encrypt(uint64_t first_sector, uint8_t* data, size_t len) const;

private:
    void iv_for(uint64_t sector, uint8_t iv[16]) const;
    uint32_t mode_ = 0;  // 1 xts, 2 cbc, 3 ecb
    uint32_t ivgen_ = 0; // 0 none, 1 plain, 2 plain64, 3 essiv
    size_t key_bytes_ = 0;
    alignas(16) mutable uint8_t ctx_[1024] = {}; // nettle's aes or xts context
    alignas(16) uint8_t essiv_ctx_[512] = {};  // aes encrypt context keyed with hash(key)
    size_t essiv_key_bytes_ = 0;
};

} // namespace instar::luks

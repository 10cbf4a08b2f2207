// The LUKS1 cryptography, all through Debian's nettle (no primitive is written here): PBKDF2,
// the anti-forensic merge (qemu: crypto/afsplit.c), and sector encryption with qemu's IV
// generators (crypto/ivgen-plain.c, -plain64.c, -essiv.c). One table of block ciphers (aes,
// serpent, twofish, cast5 at their LUKS key sizes) and one of hashes (md5, sha1, sha224, sha256,
// sha384, sha512, ripemd160, sm3) drive every mode: ecb, cbc, ctr and xts (16-byte blocks only).
#pragma once

#include "luks_header.h"

#include <instar/guest/arena_new.h>
#include <instar/guest/format_api.h>

#include <stddef.h>
#include <stdint.h>

namespace instar::luks {

inline constexpr size_t LUKS_MAX_KEY_BYTES = 64;    // 256-bit xts: two 32-byte keys, the largest LUKS1 key
inline constexpr size_t LUKS_DIGEST_BYTES = 20;     // LUKS1's master key digest length
inline constexpr size_t LUKS_MAX_DIGEST_BYTES = 64; // sha512, the longest hash LUKS names
inline constexpr size_t LUKS_MAX_BLOCK_BYTES = 16;  // aes/serpent/twofish; cast5 has 8
// nettle's largest key schedule among the ciphers (twofish_ctx: 4256 bytes), rounded up.
inline constexpr size_t LUKS_CIPHER_CTX_BYTES = 4352;
// PBKDF2 iterations accepted from an image: far above what qemu's iter-time calibration makes
// (a few million for 2 s), low enough that a hostile header cannot make unlocking run for hours.
inline constexpr uint32_t LUKS_MAX_PBKDF2_ITERATIONS = 64u << 20;

// PBKDF2-HMAC with the named hash (any luks_digest_len knows). false: hash not supported.
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

// The digest of data[len] with the named hash into out[luks_digest_len(hash)]. false: unknown hash.
bool luks_hash(const char* hash, const uint8_t* data, size_t len, uint8_t* out);

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

struct BlockCipherDesc; // a row of luks_crypto.cpp's cipher table

// A sector cipher: the payload's (or a key slot's) cipher, mode and IV generator with one key.
class SectorCipher {
public:
    // Unsupported when qemu's crypto layer has no such combination (xts with cast5's 8-byte
    // blocks, an unknown cipher, mode or hash). `for_encryption`: set up the encrypting direction
    // (create, convert -O luks) instead.
    guest::Status init(const LuksHeader& h, const uint8_t* key, size_t key_len, bool for_encryption = false);
    // LUKS2 segments: encryption units of `bytes` (512 to 4096, a power of two), each one IV, the IV
    // counting 512-byte sectors as dm-crypt does without iv_large_sectors (a unit's IV is its first
    // 512-byte sector's number). LUKS1 and key slot areas keep the default, 512.
    void set_sector_size(uint32_t bytes) {
        unit_ = bytes;
        iv_step_ = bytes / LUKS_SECTOR_SIZE;
    }
    // Decrypts `len` bytes in place: units (512-byte sectors by default) whose IVs count from
    // `first_sector` (the last may be short).
    void decrypt(uint64_t first_sector, uint8_t* data, size_t len) const;
    // Encrypts in place, the same way (init with for_encryption).
    void encrypt(uint64_t first_sector, uint8_t* data, size_t len) const;

private:
    void crypt(uint64_t first_sector, uint8_t* data, size_t len, bool enc) const;
    void iv_for(uint64_t sector, uint8_t iv[LUKS_MAX_BLOCK_BYTES]) const;
    const BlockCipherDesc* cipher_ = nullptr;
    const BlockCipherDesc* essiv_ = nullptr; // essiv only: the IV cipher
    uint32_t mode_ = 0;  // 1 xts, 2 cbc, 3 ecb, 4 ctr
    uint32_t ivgen_ = 0; // 0 none, 1 plain, 2 plain64, 3 essiv
    uint32_t unit_ = LUKS_SECTOR_SIZE; // bytes encrypted with one IV
    uint32_t iv_step_ = 1;             // IV increment from one unit to the next
    alignas(16) uint8_t ctx_[LUKS_CIPHER_CTX_BYTES] = {};       // the data key's schedule
    alignas(16) uint8_t tweak_ctx_[LUKS_CIPHER_CTX_BYTES] = {}; // xts: the tweak key's (encrypting)
    alignas(16) uint8_t essiv_ctx_[LUKS_CIPHER_CTX_BYTES] = {}; // essiv: keyed with hash(key), encrypting
};

// Frees an arena object holding key material (a SectorCipher, or a writer's payload holding them),
// its bytes wiped first (nullptr: nothing to free).
template <typename T>
inline void delete_wiped(guest::Allocator& alloc, T* p) {
    if (p == nullptr)
        return;
    __builtin_memset(static_cast<void*>(p), 0, sizeof *p);
    guest::arena_delete(alloc, p);
}

} // namespace instar::luks

// LUKS1 cryptography through nettle (luks_crypto.h).
#include "luks_crypto.h"

#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/hmac.h>
#include <nettle/pbkdf2.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <nettle/xts.h>

namespace instar::luks {

using guest::Status;

namespace {

bool eq(const char* a, const char* b) {
    while (*a && *a == *b) {
        ++a;
        ++b;
    }
    return *a == *b;
}

size_t digest_len(const char* hash) {
    if (eq(hash, "sha1")) return SHA1_DIGEST_SIZE;
    if (eq(hash, "sha224")) return SHA224_DIGEST_SIZE;
    if (eq(hash, "sha256")) return SHA256_DIGEST_SIZE;
    if (eq(hash, "sha384")) return SHA384_DIGEST_SIZE;
    if (eq(hash, "sha512")) return SHA512_DIGEST_SIZE;
    return 0;
}

// hash(prefix[4] || data) into out (digest_len(hash) bytes).
void hash2(const char* hash, const uint8_t* prefix, size_t plen, const uint8_t* data, size_t len, uint8_t* out) {
    if (eq(hash, "sha1")) {
        sha1_ctx c;
        sha1_init(&c);
        sha1_update(&c, plen, prefix);
        sha1_update(&c, len, data);
        sha1_digest(&c, SHA1_DIGEST_SIZE, out);
    } else if (eq(hash, "sha224")) {
        sha224_ctx c;
        sha224_init(&c);
        sha224_update(&c, plen, prefix);
        sha224_update(&c, len, data);
        sha224_digest(&c, SHA224_DIGEST_SIZE, out);
    } else if (eq(hash, "sha256")) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, plen, prefix);
        sha256_update(&c, len, data);
        sha256_digest(&c, SHA256_DIGEST_SIZE, out);
    } else if (eq(hash, "sha384")) {
        sha384_ctx c;
        sha384_init(&c);
        sha384_update(&c, plen, prefix);
        sha384_update(&c, len, data);
        sha384_digest(&c, SHA384_DIGEST_SIZE, out);
    } else {
        sha512_ctx c;
        sha512_init(&c);
        sha512_update(&c, plen, prefix);
        sha512_update(&c, len, data);
        sha512_digest(&c, SHA512_DIGEST_SIZE, out);
    }
}

constexpr uint32_t MODE_XTS = 1, MODE_CBC = 2, MODE_ECB = 3;
constexpr uint32_t IV_NONE = 0, IV_PLAIN = 1, IV_PLAIN64 = 2, IV_ESSIV = 3;

void aes_set_decrypt(void* ctx, size_t key_bytes, const uint8_t* key) {
    if (key_bytes == 16) aes128_set_decrypt_key(static_cast<aes128_ctx*>(ctx), key);
    else if (key_bytes == 24) aes192_set_decrypt_key(static_cast<aes192_ctx*>(ctx), key);
    else aes256_set_decrypt_key(static_cast<aes256_ctx*>(ctx), key);
}
void aes_set_encrypt(void* ctx, size_t key_bytes, const uint8_t* key) {
    if (key_bytes == 16) aes128_set_encrypt_key(static_cast<aes128_ctx*>(ctx), key);
    else if (key_bytes == 24) aes192_set_encrypt_key(static_cast<aes192_ctx*>(ctx), key);
    else aes256_set_encrypt_key(static_cast<aes256_ctx*>(ctx), key);
}
void aes_decrypt(const void* ctx, size_t key_bytes, size_t len, uint8_t* dst, const uint8_t* src) {
    if (key_bytes == 16) aes128_decrypt(static_cast<const aes128_ctx*>(ctx), len, dst, src);
    else if (key_bytes == 24) aes192_decrypt(static_cast<const aes192_ctx*>(ctx), len, dst, src);
    else aes256_decrypt(static_cast<const aes256_ctx*>(ctx), len, dst, src);
}
void aes_encrypt(const void* ctx, size_t key_bytes, size_t len, uint8_t* dst, const uint8_t* src) {
    if (key_bytes == 16) aes128_encrypt(static_cast<const aes128_ctx*>(ctx), len, dst, src);
    else if (key_bytes == 24) aes192_encrypt(static_cast<const aes192_ctx*>(ctx), len, dst, src);
    else aes256_encrypt(static_cast<const aes256_ctx*>(ctx), len, dst, src);
}

static_assert(sizeof(xts_aes256_key) <= 1024 && sizeof(aes256_ctx) <= 512, "nettle context sizes");

} // namespace

bool luks_pbkdf2(const char* hash, const uint8_t* password, size_t password_len, const uint8_t* salt, size_t salt_len,
            uint32_t iterations, uint8_t* out, size_t out_len) {
    if (iterations == 0) return false;
    if (eq(hash, "sha1")) pbkdf2_hmac_sha1(password_len, password, iterations, salt_len, salt, out_len, out);
    else if (eq(hash, "sha224")) {
        // nettle has no pbkdf2_hmac_sha224: its generic PBKDF2 over HMAC-SHA224.
        hmac_sha224_ctx ctx;
        hmac_sha224_set_key(&ctx, password_len, password);
        PBKDF2(&ctx, hmac_sha224_update, hmac_sha224_digest, SHA224_DIGEST_SIZE, iterations, salt_len, salt, out_len,
               out);
        __builtin_memset(&ctx, 0, sizeof ctx);
    } else if (eq(hash, "sha256")) pbkdf2_hmac_sha256(password_len, password, iterations, salt_len, salt, out_len, out);
    else if (eq(hash, "sha384")) pbkdf2_hmac_sha384(password_len, password, iterations, salt_len, salt, out_len, out);
    else if (eq(hash, "sha512")) pbkdf2_hmac_sha512(password_len, password, iterations, salt_len, salt, out_len, out);
    else return false;
    return true;
}

namespace {

// qcrypto_afsplit_hash: each digest-sized piece i of `block` becomes hash(be32(i) || piece).
void af_diffuse(const char* hash, size_t dl, uint8_t* block, size_t block_len) {
    uint8_t digest[SHA512_DIGEST_SIZE];
    const size_t count = (block_len + dl - 1) / dl;
    for (size_t i = 0; i < count; ++i) {
        const size_t this_len = i + 1 == count && block_len % dl ? block_len % dl : dl;
        const uint8_t be[4] = {static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
                               static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
        hash2(hash, be, 4, block + i * dl, this_len, digest);
        __builtin_memcpy(block + i * dl, digest, this_len);
    }
}

} // namespace

size_t luks_digest_len(const char* hash) { return digest_len(hash); }

bool af_merge(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, uint8_t* out) {
    const size_t dl = digest_len(hash);
    if (dl == 0 || stripes == 0 || block_len > LUKS_MAX_KEY_BYTES) return false;
    uint8_t block[LUKS_MAX_KEY_BYTES] = {};
    for (uint32_t s = 0; s + 1 < stripes; ++s) {
        for (size_t k = 0; k < block_len; ++k) block[k] ^= in[s * block_len + k];
        af_diffuse(hash, dl, block, block_len);
    }
    for (size_t k = 0; k < block_len; ++k) out[k] = block[k] ^ in[size_t{stripes - 1} * block_len + k];
    return true;
}

bool af_split(const char* hash, size_t block_len, uint32_t stripes, const uint8_t* in, const uint8_t* random,
              uint8_t* out) {
    const size_t dl = digest_len(hash);
    if (dl == 0 || stripes == 0 || block_len > LUKS_MAX_KEY_BYTES) return false;
    uint8_t block[LUKS_MAX_KEY_BYTES] = {};
    for (uint32_t s = 0; s + 1 < stripes; ++s) {
        __builtin_memcpy(out + size_t{s} * block_len, random + size_t{s} * block_len, block_len);
        for (size_t k = 0; k < block_len; ++k) block[k] ^= out[size_t{s} * block_len + k];
        af_diffuse(hash, dl, block, block_len);
    }
    for (size_t k = 0; k < block_len; ++k) out[size_t{stripes - 1} * block_len + k] = in[k] ^ block[k];
    __builtin_memset(block, 0, sizeof block);
    return true;
}

KeyStream::KeyStream(const uint8_t seed[32]) {
    static_assert(sizeof(aes256_ctx) <= sizeof ctx_, "nettle context size");
    aes256_set_encrypt_key(reinterpret_cast<aes256_ctx*>(ctx_), seed);
}

void KeyStream::fill(uint8_t* out, size_t len) {
    __builtin_memset(out, 0, len);
    ctr_crypt(ctx_, reinterpret_cast<nettle_cipher_func*>(aes256_encrypt), AES_BLOCK_SIZE, counter_, len, out, out);
}

Status SectorCipher::init(const LuksHeader& h, const uint8_t* key, size_t key_len, bool for_encryption) {
    if (!eq(h.cipher_name, "aes")) return Status::Unsupported;
    if (eq(h.cipher_mode, "xts")) mode_ = MODE_XTS;
    else if (eq(h.cipher_mode, "cbc")) mode_ = MODE_CBC;
    else if (eq(h.cipher_mode, "ecb")) mode_ = MODE_ECB;
    else return Status::Unsupported;
    ivgen_ = IV_NONE;
    if (eq(h.ivgen_alg, "plain")) ivgen_ = IV_PLAIN;
    else if (eq(h.ivgen_alg, "plain64")) ivgen_ = IV_PLAIN64;
    else if (eq(h.ivgen_alg, "essiv")) ivgen_ = IV_ESSIV;
    if (mode_ == MODE_XTS) {
        key_bytes_ = key_len / 2;
        if (key_bytes_ == 16 && for_encryption) xts_aes128_set_encrypt_key(reinterpret_cast<xts_aes128_key*>(ctx_), key);
        else if (key_bytes_ == 16) xts_aes128_set_decrypt_key(reinterpret_cast<xts_aes128_key*>(ctx_), key);
        else if (key_bytes_ == 32 && for_encryption) xts_aes256_set_encrypt_key(reinterpret_cast<xts_aes256_key*>(ctx_), key);
        else if (key_bytes_ == 32) xts_aes256_set_decrypt_key(reinterpret_cast<xts_aes256_key*>(ctx_), key);
        else return Status::Unsupported; // nettle has no aes-192-xts
    } else {
        key_bytes_ = key_len;
        if (key_bytes_ != 16 && key_bytes_ != 24 && key_bytes_ != 32) return Status::Unsupported;
        if (for_encryption) aes_set_encrypt(ctx_, key_bytes_, key);
        else aes_set_decrypt(ctx_, key_bytes_, key);
    }
    if (ivgen_ == IV_ESSIV) {
        // qcrypto_ivgen_essiv: the IV cipher (the same algorithm) keyed with hash(key).
        const char* ivhash = h.ivgen_hash_alg ? h.ivgen_hash_alg : "sha256";
        essiv_key_bytes_ = digest_len(ivhash);
        if (essiv_key_bytes_ != 16 && essiv_key_bytes_ != 24 && essiv_key_bytes_ != 32) return Status::Unsupported;
        uint8_t digest[SHA512_DIGEST_SIZE];
        hash2(ivhash, key, 0, key, key_len, digest);
        aes_set_encrypt(essiv_ctx_, essiv_key_bytes_, digest);
    }
    return Status::Ok;
}

void SectorCipher::iv_for(uint64_t sector, uint8_t iv[16]) const {
    __builtin_memset(iv, 0, 16);
    if (ivgen_ == IV_NONE) return;
    const uint64_t s = ivgen_ == IV_PLAIN ? (sector & 0xffffffffu) : sector;
    for (int i = 0; i < 8; ++i) iv[i] = static_cast<uint8_t>(s >> (8 * i));
    if (ivgen_ == IV_ESSIV) aes_encrypt(essiv_ctx_, essiv_key_bytes_, 16, iv, iv);
}

void SectorCipher::decrypt(uint64_t first_sector, uint8_t* data, size_t len) const {
    for (size_t at = 0; at < len; at += LUKS_SECTOR_SIZE) {
        const size_t n = len - at < LUKS_SECTOR_SIZE ? len - at : LUKS_SECTOR_SIZE;
        uint8_t iv[16];
        iv_for(first_sector + at / LUKS_SECTOR_SIZE, iv);
        uint8_t* p = data + at;
        if (mode_ == MODE_XTS) {
            if (key_bytes_ == 16)
                xts_aes128_decrypt_message(reinterpret_cast<xts_aes128_key*>(ctx_), iv, n, p, p);
            else
                xts_aes256_decrypt_message(reinterpret_cast<xts_aes256_key*>(ctx_), iv, n, p, p);
        } else if (mode_ == MODE_CBC) {
            const size_t whole = n / AES_BLOCK_SIZE * AES_BLOCK_SIZE;
            nettle_cipher_func* f = key_bytes_ == 16   ? reinterpret_cast<nettle_cipher_func*>(aes128_decrypt)
                                    : key_bytes_ == 24 ? reinterpret_cast<nettle_cipher_func*>(aes192_decrypt)
                                                       : reinterpret_cast<nettle_cipher_func*>(aes256_decrypt);
            cbc_decrypt(ctx_, f, AES_BLOCK_SIZE, iv, whole, p, p);
        } else {
            aes_decrypt(ctx_, key_bytes_, n / AES_BLOCK_SIZE * AES_BLOCK_SIZE, p, p);
        }
    }
}

void SectorCipher::encrypt(uint64_t first_sector, uint8_t* data, size_t len) const {
    for (size_t at = 0; at < len; at += LUKS_SECTOR_SIZE) {
        const size_t n = len - at < LUKS_SECTOR_SIZE ? len - at : LUKS_SECTOR_SIZE;
        uint8_t iv[16];
        iv_for(first_sector + at / LUKS_SECTOR_SIZE, iv);
        uint8_t* p = data + at;
        if (mode_ == MODE_XTS) {
            if (key_bytes_ == 16)
                xts_aes128_encrypt_message(reinterpret_cast<xts_aes128_key*>(ctx_), iv, n, p, p);
            else
                xts_aes256_encrypt_message(reinterpret_cast<xts_aes256_key*>(ctx_), iv, n, p, p);
        } else if (mode_ == MODE_CBC) {
            const size_t whole = n / AES_BLOCK_SIZE * AES_BLOCK_SIZE;
            nettle_cipher_func* f = key_bytes_ == 16   ? reinterpret_cast<nettle_cipher_func*>(aes128_encrypt)
                                    : key_bytes_ == 24 ? reinterpret_cast<nettle_cipher_func*>(aes192_encrypt)
                                                       : reinterpret_cast<nettle_cipher_func*>(aes256_encrypt);
            cbc_encrypt(ctx_, f, AES_BLOCK_SIZE, iv, whole, p, p);
        } else {
            aes_encrypt(ctx_, key_bytes_, n / AES_BLOCK_SIZE * AES_BLOCK_SIZE, p, p);
        }
    }
}

} // namespace instar::luks
